//! The AWS channels on moto server: SNS with filterable attributes (read back through SQS
//! subscriptions, raw and enveloped), EventBridge rules routing `certpilot` events to SQS,
//! and, against a mock of the EventBridge API, failed entries sent again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certpilot_core::model::channel::{Channel, ChannelKind};
use certpilot_core::model::finding::{Finding, Severity, Transition};
use certpilot_core::ports::{Notification, NotifyError};
use certpilot_testkit::http_mock::{MockServer, Reply};
use certpilot_testkit::procs::shared_moto;
use serde_json::{Value, json};

fn channel(name: &str, kind: ChannelKind) -> Channel {
    Channel {
        name: name.into(),
        kind,
        min_severity: Severity::Info,
        kinds: Vec::new(),
        matches: BTreeMap::new(),
    }
}

/// A finding with this severity, environment and owner.
fn finding(severity: Severity, environment: &str, owner: &str) -> Finding {
    let now = time::OffsetDateTime::now_utc();
    let mut f = certpilot_notify::sample(&channel("sample", ChannelKind::Slack), now);
    f.severity = severity;
    f.summary = format!("{} {environment} {owner}", severity.as_str());
    f.environment = Some(environment.into());
    f.owner = Some(owner.into());
    f.tags.insert("environment".into(), environment.into());
    f.tags.insert("owner".into(), owner.into());
    f
}

use certpilot_e2e::sns_queue::{drain, queue};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_subscribers_filter_on_severity_and_environment_and_read_the_settled_body() {
    let moto = shared_moto();
    let config = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns
        .create_topic()
        .name(format!("alerts-{}", std::process::id()))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    // The on-call team: production criticals only, raw (attributes as SQS attributes).
    let (oncall_url, oncall_arn) = queue(&config, &format!("oncall-{}", std::process::id())).await;
    let sub = sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&oncall_arn)
        .attributes(
            "FilterPolicy",
            json!({"severity": ["critical"], "environment": ["prod"]}).to_string(),
        )
        .attributes("RawMessageDelivery", "true")
        .return_subscription_arn(true)
        .send()
        .await
        .unwrap();
    assert!(sub.subscription_arn.is_some());
    // A team: its own findings, in SNS's envelope (what e-mail-json and HTTP subscribers get).
    let (team_url, team_arn) = queue(&config, &format!("search-{}", std::process::id())).await;
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&team_arn)
        .attributes("FilterPolicy", json!({"owner": ["search"]}).to_string())
        .send()
        .await
        .unwrap();

    // E-mail: moto takes the subscription and its filter but sends no mail; what it kept of
    // each Publish (below) is what an e-mail subscriber's filter is matched against.
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("email")
        .endpoint("payments-oncall@example.com")
        .attributes(
            "FilterPolicy",
            json!({"owner": ["payments"], "severity": ["critical"]}).to_string(),
        )
        .send()
        .await
        .unwrap();

    let notifier = certpilot_notify::notifier(
        &channel(
            "alerts-topic",
            ChannelKind::Sns {
                topic_arn: topic.clone(),
            },
        ),
        None,
        Some(&config),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    for f in [
        finding(Severity::Critical, "prod", "payments"),
        finding(Severity::Warning, "prod", "payments"),
        finding(Severity::Critical, "staging", "payments"),
        finding(Severity::Warning, "prod", "search"),
    ] {
        notifier
            .notify(Notification {
                transition: Transition::Opened,
                finding: &f,
                now,
            })
            .await
            .unwrap();
    }

    let oncall = drain(&config, &oncall_url).await;
    assert_eq!(oncall.len(), 1, "only the production critical: {oncall:?}");
    let m = &oncall[0];
    let attrs = m.message_attributes().unwrap();
    let attr = |k: &str| attrs[k].string_value().unwrap().to_owned();
    assert_eq!(attr("severity"), "critical");
    assert_eq!(attr("environment"), "prod");
    assert_eq!(attr("owner"), "payments");
    assert_eq!(attr("kind"), "expiring");
    assert_eq!(attr("transition"), "opened");
    let body = m.body().unwrap();
    let (transition, f) = certpilot_notify::sns::read_body(body).unwrap();
    assert_eq!(transition, Transition::Opened);
    assert_eq!(f.summary, "critical prod payments");
    // The body is written for people first: the sentence leads, then the data.
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["schema"], 1);
    assert!(
        body.find("\"text\"").unwrap() < body.find("\"finding\"").unwrap(),
        "{body}"
    );

    let team = drain(&config, &team_url).await;
    assert_eq!(team.len(), 1, "only the search team's own: {team:?}");
    let envelope: Value = serde_json::from_str(team[0].body().unwrap()).unwrap();
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["MessageAttributes"]["owner"]["Value"], "search");
    assert_eq!(
        envelope["MessageAttributes"]["severity"]["Value"],
        "warning"
    );
    assert!(
        envelope["Subject"]
            .as_str()
            .unwrap()
            .starts_with("certpilot: "),
        "{envelope}"
    );
    let (_, f) = certpilot_notify::sns::read_body(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(f.owner.as_deref(), Some("search"));

    // Every Publish carried its attributes as message attributes (never a
    // MessageStructure=json message, which would drop them for e-mail subscribers): moto's
    // record of the topic's notifications, (id, message, subject, attributes, group).
    let mut stream = tokio::net::TcpStream::connect(moto.addr).await.unwrap();
    let response = certpilot_e2e::exchange(
        &mut stream,
        "GET /moto-api/data.json HTTP/1.0\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let data: Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
    let sent = data["sns"]["Topic"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["arn"] == topic.as_str())
        .unwrap()["sent_notifications"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(sent.len(), 4);
    for n in &sent {
        let attributes = &n[3];
        for name in ["severity", "kind", "environment", "owner", "transition"] {
            assert_eq!(attributes[name]["Type"], "String", "{name}: {n}");
        }
        assert!(n[2].as_str().unwrap().is_ascii(), "the e-mail subject: {n}");
        // The body an e-mail reader sees starts with the sentence.
        let body: Value = serde_json::from_str(n[1].as_str().unwrap()).unwrap();
        assert!(
            body["text"].as_str().unwrap().contains("certpilot"),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventbridge_rules_route_certpilot_events_by_detail_type() {
    let moto = shared_moto();
    let config = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let bus = format!("certpilot-{}", std::process::id());
    events.create_event_bus().name(&bus).send().await.unwrap();
    let (url, arn) = queue(&config, &format!("events-{}", std::process::id())).await;
    events
        .put_rule()
        .name("certpilot-all")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": ["certpilot"]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("certpilot-all")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(&arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let notifier = certpilot_notify::notifier(
        &channel("event-bus", ChannelKind::EventBridge { bus: bus.clone() }),
        None,
        Some(&config),
    )
    .unwrap();
    let f = finding(Severity::Critical, "prod", "payments");
    let now = time::OffsetDateTime::now_utc();
    for transition in [Transition::Opened, Transition::Resolved] {
        notifier
            .notify(Notification {
                transition,
                finding: &f,
                now,
            })
            .await
            .unwrap();
    }
    // Outcomes, as the functions announce them: more than one PutEvents takes (10).
    let client = aws_sdk_eventbridge::Client::new(&config);
    let outcomes: Vec<_> = (0..12)
        .map(|i| {
            certpilot_notify::eventbridge::outcome_event(
                certpilot_notify::eventbridge::CERTIFICATE_ISSUED,
                json!({"id": format!("shop-{i}"), "outcome": "issued"}),
            )
        })
        .collect();
    certpilot_notify::eventbridge::put_events(&client, &bus, "test bus", &outcomes)
        .await
        .unwrap();

    let got: Vec<Value> = drain(&config, &url)
        .await
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(got.len(), 14, "{got:?}");
    assert!(got.iter().all(|e| e["source"] == "certpilot"));
    let types: Vec<&str> = got
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(types.iter().filter(|t| **t == "Finding opened").count(), 1);
    assert_eq!(
        types.iter().filter(|t| **t == "Finding resolved").count(),
        1
    );
    assert_eq!(
        types.iter().filter(|t| **t == "Certificate issued").count(),
        12
    );
    let opened = got
        .iter()
        .find(|e| e["detail-type"] == "Finding opened")
        .unwrap();
    assert_eq!(opened["detail"]["schema"], 1);
    assert_eq!(opened["detail"]["finding"]["owner"], "payments");
    let mut ids: Vec<&str> = got
        .iter()
        .filter_map(|e| e["detail"]["id"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 12, "each outcome once: {ids:?}");
}

/// EventBridge's PutEvents as documented: 200 with `FailedEntryCount` and, per entry in
/// request order, an `EventId` or an `ErrorCode`. The first call fails its second entry
/// with `ThrottlingException`; a later one refuses with `AccessDeniedException` when told.
struct MockEvents {
    calls: Mutex<Vec<Vec<String>>>,
    deny: Mutex<bool>,
}

fn put_events_answer(state: &MockEvents, body: &[u8]) -> Reply {
    let request: Value = serde_json::from_slice(body).unwrap();
    let entries = request["Entries"].as_array().unwrap();
    let types: Vec<String> = entries
        .iter()
        .map(|e| e["DetailType"].as_str().unwrap().to_owned())
        .collect();
    let mut calls = state.calls.lock().unwrap();
    calls.push(types);
    let first = calls.len() == 1;
    let deny = *state.deny.lock().unwrap();
    let mut failed = 0;
    let answers: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if deny {
                failed += 1;
                json!({"ErrorCode": "AccessDeniedException", "ErrorMessage": "not authorized to put events on this bus"})
            } else if first && i == 1 {
                failed += 1;
                json!({"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"})
            } else {
                json!({"EventId": format!("id-{i}")})
            }
        })
        .collect();
    Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/x-amz-json-1.1".into())],
        body: json!({"FailedEntryCount": failed, "Entries": answers}).to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_eventbridge_entries_are_sent_again_and_a_refusal_is_named() {
    let state = Arc::new(MockEvents {
        calls: Mutex::default(),
        deny: Mutex::new(false),
    });
    let s = state.clone();
    let server = MockServer::start(Arc::new(move |r| {
        assert_eq!(
            r.headers.get("x-amz-target").map(String::as_str),
            Some("AWSEvents.PutEvents")
        );
        put_events_answer(&s, &r.body)
    }))
    .await;
    let config = certpilot_e2e::moto_sdk_config(&server.base_url());
    let client = aws_sdk_eventbridge::Client::new(&config);
    let events: Vec<_> = [
        "Certificate issued",
        "Deployment verified",
        "Finding opened",
    ]
    .iter()
    .map(|t| certpilot_notify::eventbridge::outcome_event(t, json!({"id": "shop"})))
    .collect();
    tokio::time::timeout(
        Duration::from_secs(30),
        certpilot_notify::eventbridge::put_events(&client, "default", "bus default", &events),
    )
    .await
    .unwrap()
    .unwrap();
    let calls = state.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[1],
        vec!["Deployment verified".to_owned()],
        "only the throttled entry is sent again"
    );

    *state.deny.lock().unwrap() = true;
    let e = certpilot_notify::eventbridge::put_events(&client, "default", "bus default", &events)
        .await
        .unwrap_err();
    match e {
        NotifyError::Refused(text) => {
            assert!(text.contains("AccessDeniedException"), "{text}");
            assert!(text.contains("bus default"), "{text}");
        }
        other => panic!("a refusal, not {other:?}"),
    }
}
