//! The real API function under `cargo lambda watch`, on moto: API Gateway HTTP API events
//! (payload v2, `infra/events/api-*.json`) with IAM and JWT request contexts, answered by the
//! same router as `certpilot serve`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_core::ports::EndpointStore as _;
use certpilot_dynamodb::DynamoStore;
use certpilot_testkit::procs::{shared_moto, workspace_root};
use serde_json::{Value, json};

fn event(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("infra/events").join(name)).unwrap(),
    )
    .unwrap()
}

/// The status and the JSON body of a function's answer to an HTTP API event.
fn answer(response: &Value) -> (u64, Value) {
    let body = response["body"].as_str().unwrap_or_default();
    (
        response["statusCode"].as_u64().unwrap(),
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_function_answers_http_api_events_as_the_caller_in_the_context() {
    let moto = shared_moto();
    let config = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let table = format!("api-{}", std::process::id());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), &table);
    store.create_table().await.unwrap();
    let watch = certpilot_e2e::LambdaWatch::start(
        &moto.endpoint_url,
        &[("CERTPILOT_TABLE", table.clone())],
    );

    // An IAM caller registers an endpoint.
    let (status, created) = answer(
        &watch
            .invoke("api", &event("api-iam-register-endpoint.json"))
            .await,
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["target"], "93.184.215.14:443");
    let stored = store.endpoint("93.184.215.14:443").await.unwrap().unwrap();
    assert_eq!(
        stored.tags.get("owner").map(String::as_str),
        Some("payments")
    );

    // A JWT caller lists it.
    let (status, page) = answer(
        &watch
            .invoke("api", &event("api-jwt-list-endpoints.json"))
            .await,
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], created["id"]);

    // Loopback (the function's own environment) is refused; nothing is stored.
    let mut internal = event("api-iam-register-endpoint.json");
    internal["body"] = Value::String(json!({"target": "127.0.0.1:9001"}).to_string());
    let (status, err) = answer(&watch.invoke("api", &internal).await);
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["code"], "address_not_allowed");
    assert!(store.endpoint("127.0.0.1:9001").await.unwrap().is_none());

    // No authorizer in the context (a route deployed without one): refused.
    let mut anonymous = event("api-jwt-list-endpoints.json");
    anonymous["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let (status, err) = answer(&watch.invoke("api", &anonymous).await);
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["code"], "unauthenticated");

    // The document is the router's.
    let mut doc = event("api-jwt-list-endpoints.json");
    doc["rawPath"] = "/openapi.json".into();
    doc["rawQueryString"] = "".into();
    doc["requestContext"]["http"]["path"] = "/openapi.json".into();
    let (status, openapi) = answer(&watch.invoke("api", &doc).await);
    assert_eq!(status, 200);
    assert_eq!(openapi, certpilot_api::openapi());
}

async fn one_message(sqs: &aws_sdk_sqs::Client, url: &str) -> aws_sdk_sqs::types::Message {
    let received = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(received.messages().len(), 1, "{received:?}");
    received.messages()[0].clone()
}

/// The issue's whole path on AWS: a caller with IAM credentials asks the API function for a
/// certificate; the policy (from the template's SSM parameter, here the variable it fills)
/// allows it; the request goes on the renew queue; the renew function takes that message and
/// issues through Pebble (DNS-01 in Route 53) and announces it on the deploy queue; the
/// deploy function installs it on a load balancer and proves it served; `GET` through the API
/// shows it verified, and the audit trail who asked, with API Gateway's request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_requested_through_the_api_function_is_issued_deployed_and_verified() {
    use certpilot_core::ports::{CertificateStore as _, SecretStore as _, SecretVersion};
    use certpilot_testkit::certs::{Ca, Leaf};
    let moto = shared_moto();
    let aws = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let run = std::process::id();
    let table = format!("api-flow-{run}");
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &table);
    store.create_table().await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue = |name: String| {
        let sqs = sqs.clone();
        async move {
            sqs.create_queue()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        }
    };
    let renew_url = queue(format!("renew-{run}")).await;
    let deploy_url = queue(format!("api-deploy-{run}")).await;
    let route53 = aws_sdk_route53::Client::new(&aws);
    let domain = format!("api-{run}.certpilot.test");
    let zone = certpilot_e2e::route53_zone(&route53, &domain).await;
    let nameserver = certpilot_e2e::route53_nameserver(&route53, &zone).await;
    let (pebble, _dir, ca_file) = certpilot_e2e::pebble_resolving_through(nameserver.addr);

    let estate = certpilot_e2e::estate::Estate::new(&moto.endpoint_url);
    let legacy = Ca::new("Team CA").leaf(&[&domain]).build();
    let legacy_arn = estate.import(&legacy).await;
    let listener = estate.listener(&format!("api-{run}"), &legacy_arn).await;
    let alb = estate.follow_listener(&listener, false).await;

    let policy = format!(
        r#"{{"issuers": {{"pebble": {{"directory": "{}"}}}},
            "challenges": {{"route53": {{"type": "dns01", "provider": {{"kind": "route53"}}}}}},
            "rules": [{{"name": "payments", "callers": ["iam:arn:aws:sts::123456789012:assumed-role/platform-ops/*"],
                        "suffixes": ["{domain}"], "issuers": ["pebble"], "deploy_kinds": ["elbv2-listener"]}}]}}"#,
        pebble.directory_url
    );
    let prefix = format!("api-flow-{run}/");
    let watch = certpilot_e2e::LambdaWatch::start(
        &moto.endpoint_url,
        &[
            ("CERTPILOT_TABLE", table.clone()),
            ("CERTPILOT_REQUEST_POLICY_DOCUMENT", policy),
            ("CERTPILOT_RENEW_QUEUE_URL", renew_url.clone()),
            ("CERTPILOT_DEPLOY_QUEUE_URL", deploy_url.clone()),
            // The load balancer's stand-in listens on loopback: allowed, knowingly.
            ("CERTPILOT_ALLOW_NETWORKS", "127.0.0.0/8".into()),
            ("CERTPILOT_SECRETS_PREFIX", prefix.clone()),
            ("CERTPILOT_ACME_CA_FILE", ca_file.display().to_string()),
            ("CERTPILOT_ACME_TIMEOUT", "30s".into()),
            ("CERTPILOT_VERIFY_INTERVAL", "200ms".into()),
            ("CERTPILOT_VERIFY_MAX_DEADLINE", "10s".into()),
        ],
    );

    let mut request = event("api-iam-register-endpoint.json");
    request["rawPath"] = "/certificates".into();
    request["requestContext"]["http"]["path"] = "/certificates".into();
    request["requestContext"]["requestId"] = "req-request-1".into();
    request["body"] = Value::String(
        json!({
            "id": "shop",
            "names": [domain],
            "issuer": "pebble",
            "challenge": "route53",
            "tags": {"owner": "payments"},
            "deployments": [{
                "name": "alb",
                "kind": "elbv2-listener",
                "settings": {"listener-arn": listener, "sni": false},
                "endpoints": [alb.endpoint()],
                "verify_deadline": 10,
            }],
        })
        .to_string(),
    );
    let (status, accepted) = answer(&watch.invoke("api", &request).await);
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["state"], "pending");

    // The renew function takes the API's message off the renew queue and issues.
    let work = one_message(&sqs, &renew_url).await;
    assert_eq!(
        serde_json::from_str::<Value>(work.body().unwrap()).unwrap(),
        json!({"action": "renew", "id": "shop", "force": false})
    );
    let answer_renew = watch
        .invoke("renew", &certpilot_e2e::sqs_event(&work, "renew"))
        .await;
    assert_eq!(
        answer_renew["batchItemFailures"],
        json!([]),
        "{answer_renew}"
    );
    let cert = store.certificate("shop").await.unwrap().unwrap();
    let current = cert.current.clone().expect("issued");

    // The deploy function takes the announcement and proves the load balancer serves it.
    let secrets = certpilot_aws::SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        prefix,
        None,
    );
    let (_, key) = secrets
        .get("certificate-key/shop", &SecretVersion::Current)
        .await
        .unwrap()
        .unwrap();
    estate.keyring.remember(&Leaf::from_pem(
        &current.chain_pem,
        key.expose_str().unwrap(),
    ));
    let issued = one_message(&sqs, &deploy_url).await;
    let deployed = watch
        .invoke("deploy", &certpilot_e2e::sqs_event(&issued, "deploy"))
        .await;
    assert_eq!(deployed["batchItemFailures"], json!([]), "{deployed}");

    // The API shows it verified, and the audit trail who asked.
    let mut show = event("api-jwt-list-endpoints.json");
    show["rawPath"] = "/certificates/shop".into();
    show["rawQueryString"] = "".into();
    show["requestContext"]["http"]["path"] = "/certificates/shop".into();
    let (status, shown) = answer(&watch.invoke("api", &show).await);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        shown["certificate"]["deployments"][0]["status"], "verified",
        "{shown}"
    );
    assert_eq!(
        shown["certificate"]["deployments"][0]["fingerprint"],
        current.fingerprint.as_str()
    );
    let mut audit = show.clone();
    audit["rawPath"] = "/audit".into();
    audit["requestContext"]["http"]["path"] = "/audit".into();
    let (status, trail) = answer(&watch.invoke("api", &audit).await);
    assert_eq!(status, 200, "{trail}");
    let first = &trail["items"][0];
    assert_eq!(
        first["principal"],
        "iam:arn:aws:sts::123456789012:assumed-role/platform-ops/alice"
    );
    assert_eq!(first["request_id"], "req-request-1");
    assert_eq!(first["source"], "198.51.100.7");
    assert_eq!(first["subject"], "shop");
}

/// The dashboard through the API function: a caller API Gateway authorized gets a session
/// cookie (payload v2's `cookies`), and with it the pages, drawn from the DynamoDB store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_function_serves_the_dashboard_with_a_session_cookie() {
    use certpilot_core::ports::ObservationStore as _;
    let moto = shared_moto();
    let config = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let table = format!("api-ui-{}", std::process::id());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), &table);
    store.create_table().await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    store
        .record_observations(&[
            certpilot_testkit::observations::observed("shop.example.com:443", "93.184.215.14:443")
                .at(now)
                .cert("aa", now + time::Duration::days(60))
                .build(),
            certpilot_testkit::observations::observed("old.example.com:443", "93.184.215.15:443")
                .at(now)
                .cert("bb", now + time::Duration::days(9))
                .build(),
        ])
        .await
        .unwrap();
    let prefix = format!("api-ui-{}/", std::process::id());
    let watch = certpilot_e2e::LambdaWatch::start(
        &moto.endpoint_url,
        &[
            ("CERTPILOT_TABLE", table.clone()),
            ("CERTPILOT_SECRETS_PREFIX", prefix.clone()),
        ],
    );
    let page = |path: &str, cookie: Option<&str>| {
        let mut e = event("api-jwt-list-endpoints.json");
        e["rawPath"] = path.into();
        e["rawQueryString"] = "".into();
        e["requestContext"]["http"]["path"] = path.into();
        e["headers"]["accept"] = "text/html".into();
        if let Some(c) = cookie {
            e["cookies"] = json!([c]);
        }
        e
    };
    let first = watch.invoke("api", &page("/ui", None)).await;
    assert_eq!(first["statusCode"], 303, "{first}");
    let cookie = first["cookies"][0]
        .as_str()
        .or_else(|| first["headers"]["set-cookie"].as_str())
        .unwrap_or_else(|| panic!("a session cookie: {first}"))
        .to_owned();
    assert!(
        cookie.contains("HttpOnly; Secure; SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let overview = watch.invoke("api", &page("/ui", Some(session))).await;
    assert_eq!(overview["statusCode"], 200, "{overview}");
    let html = overview["body"].as_str().unwrap();
    assert!(
        html.contains("Signed in as <strong>jwt:https://login.example.com/|payments-ci</strong>"),
        "{html}"
    );
    assert!(html.contains("data-count=\"healthy\">1<"), "{html}");
    assert!(html.contains("data-count=\"expiring\">1<"), "{html}");
    let inventory = watch
        .invoke("api", &page("/ui/inventory", Some(session)))
        .await;
    let html = inventory["body"].as_str().unwrap();
    assert!(
        html.contains("old.example.com:443") && html.contains("2 row(s)"),
        "{html}"
    );

    // The key is in Secrets Manager: a session signed with it is good at any instance,
    // with no authorizer in the context.
    use certpilot_core::ports::{SecretStore as _, SecretVersion};
    let secrets = certpilot_aws::SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&config),
        prefix,
        None,
    );
    let (_, key) = secrets
        .get("dashboard/session-key", &SecretVersion::Current)
        .await
        .unwrap()
        .expect("the function made the session key");
    let key = certpilot_api::dashboard::session::SessionKey::from_secret(key.expose()).unwrap();
    let elsewhere = key.open(
        &certpilot_api::Caller::new("jwt:https://login.example.com/|sre-on-call"),
        now,
    );
    let mut e = page("/ui/findings", None);
    e["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    e["cookies"] = json!([format!("certpilot_session={}", key.seal(&elsewhere))]);
    let findings = watch.invoke("api", &e).await;
    assert_eq!(findings["statusCode"], 200, "{findings}");
    assert!(
        findings["body"]
            .as_str()
            .unwrap()
            .contains("Signed in as <strong>jwt:https://login.example.com/|sre-on-call</strong>")
    );
    // A forged one is not.
    let forged = certpilot_api::dashboard::session::SessionKey::random().seal(&elsewhere);
    e["cookies"] = json!([format!("certpilot_session={forged}")]);
    let refused = watch.invoke("api", &e).await;
    assert_eq!(refused["statusCode"], 303, "to sign in: {refused}");
}
