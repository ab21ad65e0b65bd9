//! Alerts through the real functions under `cargo lambda watch`, on moto server: the scan
//! function publishes each finding's transition to the alerts topic once (read back through
//! an SQS subscription, as SNS delivers it), the Slack function turns each into one Block Kit
//! post on a mock Slack webhook, and Slack's answers (429 with `Retry-After`, 5xx) are
//! honoured or end in an error that Lambda retries and dead-letters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use certpilot_core::model::finding::{Finding, Severity, Transition};
use certpilot_core::ports::Notification;
use certpilot_core::services::endpoints::register;
use certpilot_core::{Tags, Target};
use certpilot_dynamodb::DynamoStore;
use certpilot_e2e::LambdaWatch;
use certpilot_testkit::certs::Ca;
use certpilot_testkit::procs::shared_moto;
use certpilot_testkit::servers::Swappable;
use certpilot_testkit::slack::MockSlack;
use serde_json::{Value, json};

/// The Lambda event SNS delivers for one message, from the envelope SNS put on an SQS
/// subscription (the same fields; the Lambda form adds the record around it).
fn sns_event(envelopes: &[Value]) -> Value {
    json!({"Records": envelopes.iter().map(|e| json!({
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{}:slack", e["TopicArn"].as_str().unwrap()),
        "Sns": e,
    })).collect::<Vec<_>>()})
}

/// An envelope as SNS makes one, for a message published by hand.
fn envelope(message: &certpilot_notify::sns::Message, id: &str) -> Value {
    let attributes: BTreeMap<&str, Value> = message
        .attributes
        .iter()
        .map(|(k, v)| (*k, json!({"Type": "String", "Value": v})))
        .collect();
    json!({
        "Type": "Notification",
        "MessageId": id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:certpilot-prod-alerts",
        "Subject": message.subject,
        "Message": message.body,
        "Timestamp": "2026-12-05T10:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        "MessageAttributes": attributes,
    })
}

fn finding(owner: &str) -> Finding {
    let now = time::OffsetDateTime::now_utc();
    let channel = certpilot_core::model::channel::Channel {
        name: "x".into(),
        kind: certpilot_core::model::channel::ChannelKind::Slack,
        min_severity: Severity::Warning,
        kinds: Vec::new(),
        matches: BTreeMap::from([("owner".to_owned(), owner.to_owned())]),
    };
    let mut f = certpilot_notify::sample(&channel, now);
    f.summary = format!("shop.example.com:443 expires in 12 days ({owner})");
    // A long detail: cut to Slack's limits, never refused for it.
    f.detail = "the CA said: ".to_owned() + &"x".repeat(5000);
    f
}

async fn put_secret(config: &aws_config::SdkConfig, name: &str, value: &str) {
    aws_sdk_secretsmanager::Client::new(config)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slack_function_posts_per_owner_waits_out_429_and_fails_for_retry_on_5xx() {
    let moto = shared_moto();
    let config = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let payments = MockSlack::start().await;
    let everyone = MockSlack::start().await;
    let secret = format!("slack-webhooks-{}", std::process::id());
    put_secret(
        &config,
        &secret,
        &json!({"payments": payments.url(), "*": everyone.url()}).to_string(),
    )
    .await;
    let watch = LambdaWatch::start(
        &moto.endpoint_url,
        &[("CERTPILOT_SLACK_WEBHOOK_SECRET", secret.clone())],
    );
    let now = time::OffsetDateTime::now_utc();
    let message = |f: &Finding, transition| {
        certpilot_notify::sns::message(&Notification {
            transition,
            finding: f,
            now,
        })
    };
    let shop = finding("payments");
    let search = finding("search");

    // Each owner's message goes to its webhook; the others' to "*".
    let answer = watch
        .invoke(
            "slack",
            &sns_event(&[
                envelope(&message(&shop, Transition::Opened), "m1"),
                envelope(&message(&search, Transition::Opened), "m2"),
            ]),
        )
        .await;
    assert_eq!(answer["posted"], 2, "{answer}");
    let posted = payments.messages();
    assert_eq!(posted.len(), 1);
    assert!(
        posted[0]["text"]
            .as_str()
            .unwrap()
            .contains("shop.example.com:443 expires in 12 days (payments)"),
        "{}",
        posted[0]
    );
    assert!(
        posted[0]["blocks"].as_array().unwrap().len() <= 50,
        "within Slack's limits (the mock refuses anything else)"
    );
    assert_eq!(everyone.messages().len(), 1);

    // A 429 with Retry-After: waited out, then posted once.
    payments.rate_limit(1, 2);
    let answer = watch
        .invoke(
            "slack",
            &sns_event(&[envelope(&message(&shop, Transition::Resolved), "m3")]),
        )
        .await;
    assert_eq!(answer["posted"], 1);
    assert_eq!(payments.early_retries(), 0, "Retry-After was honoured");
    let resolved = payments.messages().pop().unwrap();
    assert!(
        resolved.to_string().contains("Nothing more to do"),
        "resolved messages say so: {resolved}"
    );

    // Slack failing: retried within the invocation, then the invocation fails as retryable,
    // so Lambda tries the event again and then dead-letters it. Nothing is lost.
    payments.fail(10);
    let before = payments.requests();
    let error = watch
        .try_invoke(
            "slack",
            &sns_event(&[envelope(&message(&shop, Transition::Reminded), "m4")]),
        )
        .await
        .unwrap_err();
    assert!(error.contains("Retryable"), "{error}");
    assert!(error.contains("Slack failed (500"), "{error}");
    assert!(
        !error.contains(&payments.url()),
        "the URL is the secret: {error}"
    );
    assert_eq!(payments.requests() - before, 3, "three attempts");

    // A message of another schema is refused (and dead-lettered), not posted half-read.
    let mut other = message(&shop, Transition::Opened);
    other.body = other.body.replace("\"schema\": 1", "\"schema\": 2");
    let error = watch
        .try_invoke("slack", &sns_event(&[envelope(&other, "m5")]))
        .await
        .unwrap_err();
    assert!(error.contains("schema"), "{error}");
}

fn batch_event(targets: &[(String, Tags)]) -> Value {
    let endpoints: Vec<Value> = targets
        .iter()
        .map(|(t, tags)| json!({"target": t, "tags": tags}))
        .collect();
    json!({"Records": [{
        "messageId": format!("batch-{}", targets[0].0),
        "receiptHandle": "AQEBexample==",
        "body": json!({"endpoints": endpoints}).to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795000000000", "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795000000100"},
        "messageAttributes": {},
        "md5OfBody": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:certpilot-prod-scan",
        "awsRegion": "us-east-1"
    }]})
}

/// The SNS envelopes on the subscription's queue now.
async fn delivered(config: &aws_config::SdkConfig, url: &str) -> Vec<Value> {
    certpilot_e2e::sns_queue::drain(config, url)
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

/// (kind, transition, subject id) of each envelope, sorted.
fn said(envelopes: &[Value]) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = envelopes
        .iter()
        .map(|e| {
            let a = &e["MessageAttributes"];
            let body: Value = serde_json::from_str(e["Message"].as_str().unwrap()).unwrap();
            (
                a["kind"]["Value"].as_str().unwrap().to_owned(),
                a["transition"]["Value"].as_str().unwrap().to_owned(),
                body["finding"]["subject"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_endpoint_is_said_once_through_sns_and_slack_and_its_fix_once_more() {
    let moto = shared_moto();
    let config = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let pid = std::process::id();
    let table = format!("alerts-{pid}");
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), &table);
    store.create_table().await.unwrap();
    let (topic, queue_url) = certpilot_e2e::sns_queue::topic_with_queue(
        &config,
        &format!("certpilot-alerts-{pid}"),
        None,
        false,
    )
    .await;
    let slack = MockSlack::start().await;
    let secret = format!("slack-e2e-{pid}");
    put_secret(&config, &secret, &slack.url()).await;

    let ca = Ca::new("Alerts Root");
    let server = Swappable::start().await;
    server.serve(&ca.leaf(&["127.0.0.1"]).expiring_in_days(12).build());
    let target = server.server().target();
    let tags = Tags::from([
        ("owner".into(), "payments".into()),
        ("environment".into(), "prod".into()),
    ]);
    let parsed: Target = target.parse().unwrap();
    register(&store, &parsed, &tags, time::OffsetDateTime::now_utc())
        .await
        .unwrap();

    let env = [
        ("CERTPILOT_TABLE", table.clone()),
        ("CERTPILOT_TARGET_TIMEOUT", "5s".to_owned()),
        ("CERTPILOT_ALERTS_TOPIC_ARN", topic.clone()),
        ("CERTPILOT_SLACK_WEBHOOK_SECRET", secret.clone()),
    ];
    let watch = LambdaWatch::start(&moto.endpoint_url, &env);
    let batch = batch_event(&[(target.clone(), tags.clone())]);

    // First run: each of the endpoint's findings is published once. The test CA is not a
    // public root, so beside `expiring` the address is also `validation` (untrusted).
    watch.invoke("scan", &batch).await;
    let first = delivered(&config, &queue_url).await;
    let expected = |kind: &str, transition: &str| (kind.into(), transition.into(), target.clone());
    assert_eq!(
        said(&first),
        vec![
            expected("expiring", "opened"),
            expected("validation", "opened")
        ],
        "{first:?}"
    );
    for e in &first {
        assert_eq!(e["MessageAttributes"]["owner"]["Value"], "payments");
        assert_eq!(e["MessageAttributes"]["environment"]["Value"], "prod");
    }
    // The Slack function, as SNS invokes it: one post per message.
    let answer = watch.invoke("slack", &sns_event(&first)).await;
    assert_eq!(answer["posted"], 2, "{answer}");
    assert_eq!(slack.messages().len(), 2);

    // The same facts again: nothing is published.
    watch.invoke("scan", &batch).await;
    assert_eq!(delivered(&config, &queue_url).await, Vec::<Value>::new());

    // The fix: a fresh certificate. Exactly one message, the expiry resolved.
    server.serve(&ca.leaf(&["127.0.0.1"]).expiring_in_days(90).build());
    watch.invoke("scan", &batch).await;
    let fixed = delivered(&config, &queue_url).await;
    // The new certificate is from the same untrusted CA: the validation finding now speaks
    // of another certificate, which is said once too.
    assert_eq!(
        said(&fixed),
        vec![
            expected("expiring", "resolved"),
            expected("validation", "reminded")
        ]
    );
    watch.invoke("slack", &sns_event(&fixed)).await;
    assert!(
        slack
            .messages()
            .iter()
            .any(|p| p["text"].as_str().unwrap().starts_with("Resolved")),
        "a resolved post"
    );

    // Two scan invocations evaluating a new endpoint at once (two execution environments):
    // one message per transition still.
    let other = Swappable::start().await;
    other.serve(&ca.leaf(&["127.0.0.1"]).expiring_in_days(5).build());
    let other_target = other.server().target();
    let other_batch = batch_event(&[(other_target.clone(), tags.clone())]);
    let second = LambdaWatch::start(&moto.endpoint_url, &env);
    let (a, b) = tokio::join!(
        watch.invoke("scan", &other_batch),
        second.invoke("scan", &other_batch)
    );
    assert_eq!(a["batchItemFailures"], json!([]), "{a}");
    assert_eq!(b["batchItemFailures"], json!([]), "{b}");
    let concurrent = delivered(&config, &queue_url).await;
    let other_expected = |kind: &str| (kind.into(), "opened".into(), other_target.clone());
    assert_eq!(
        said(&concurrent),
        vec![other_expected("expiring"), other_expected("validation")],
        "{concurrent:?}"
    );

    // The daily digest: one per owner, filterable like the findings.
    let answer = watch
        .invoke("scan", &json!({"action": "digest", "days": 30}))
        .await;
    assert_eq!(answer["digests"], 1, "{answer}");
    let digests = delivered(&config, &queue_url).await;
    assert_eq!(digests.len(), 1);
    let a = &digests[0]["MessageAttributes"];
    assert_eq!(a["kind"]["Value"], "digest");
    assert_eq!(a["owner"]["Value"], "payments");
    assert_eq!(
        a["severity"]["Value"], "critical",
        "the worst open finding's"
    );
    match certpilot_notify::sns::read_message(digests[0]["Message"].as_str().unwrap()).unwrap() {
        certpilot_notify::sns::Body::Digest(d) => {
            assert_eq!(d.owner, "payments");
            // Open: the first endpoint's validation, the second's expiring and validation.
            assert_eq!(d.findings.len(), 3, "{d:?}");
            assert_eq!(d.expiring.len(), 1, "the 5-day certificate: {d:?}");
        }
        other => panic!("a digest, not {other:?}"),
    }
    let answer = watch.invoke("slack", &sns_event(&digests)).await;
    assert_eq!(answer["posted"], 1);
    let post = slack.messages().pop().unwrap();
    assert!(
        post["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("Daily certificate digest"),
        "{post}"
    );
}
