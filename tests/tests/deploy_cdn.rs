//! The CDN targets through the deploy service, against their vendors' mocks with TLS edges:
//! Cloudflare's first install, renewal in place (a new id each time, followed), the outage
//! (the API accepts, the edge keeps the old certificate) ending `not_serving` and rolled
//! back through the API, an error in Cloudflare's words, and its rate limit waited out
//! across runs rather than slept through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::DeploymentStatus;
use certpilot_core::ports::{CertificateStore, SecretStore, SecretValue};
use certpilot_e2e::deploy_world::{World, deployment};
use certpilot_testkit::certs::KeyKind;
use certpilot_testkit::clock::ManualClock;
use certpilot_testkit::cloudflare::MockCloudflare;

async fn cloudflare_world(run: &str) -> (World, MockCloudflare) {
    let w = World::new(run);
    let cf = MockCloudflare::start("example.test").await;
    w.secrets
        .put_current(
            "deploy/cf-token",
            &SecretValue::new(cf.token.clone().into_bytes()),
        )
        .await
        .unwrap();
    let settings = serde_json::json!({
        "zone-id": cf.zone_id, "token-secret": "deploy/cf-token", "api-url": cf.api_url(),
    });
    w.add(
        "checkout",
        vec![deployment(
            "edge",
            ("cloudflare", settings),
            &cf.edge_target(),
        )],
    )
    .await;
    (w, cf)
}

async fn record(w: &World) -> certpilot_core::model::deploy::DeploymentRecord {
    w.store
        .certificate("checkout")
        .await
        .unwrap()
        .unwrap()
        .deployments
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_installs_replaces_in_place_and_rolls_back_what_the_edge_does_not_serve() {
    let (w, cf) = cloudflare_world("cf-flow").await;

    // First install: a new sni_custom certificate, served by the edge.
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let stored = cf.certificates();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kind, "sni_custom");
    let first_id = stored[0].id.clone();
    assert!(
        record(&w)
            .await
            .state
            .handle
            .unwrap()
            .starts_with(&first_id)
    );

    // Renewal: replaced in place; Cloudflare's new id is what the record holds.
    let second = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &second, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let stored = cf.certificates();
    assert_eq!(stored.len(), 1, "the old one is gone: {stored:?}");
    assert_ne!(stored[0].id, first_id);
    assert_eq!(stored[0].chain, second.chain_pem());
    assert!(cf.calls().iter().any(|c| c.starts_with(&format!(
        "PATCH /client/v4/zones/{}/custom_certificates/{first_id}",
        cf.zone_id
    ))));
    let second_id = stored[0].id.clone();
    assert!(
        record(&w)
            .await
            .state
            .handle
            .unwrap()
            .starts_with(&second_id)
    );

    // The outage: the API takes the third, the edge keeps the second. Not served: the
    // second goes back through the API, under yet another id, and the record follows it.
    cf.stick(true);
    let third = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &third, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(!report.is_verified());
    let rec = record(&w).await;
    assert_eq!(rec.state.status, DeploymentStatus::NotServing, "{rec:?}");
    assert!(
        rec.state
            .detail
            .as_deref()
            .unwrap()
            .contains("previous certificate was put back"),
        "{rec:?}"
    );
    let stored = cf.certificates();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].chain,
        second.chain_pem(),
        "the zone holds the second again"
    );
    assert!(
        rec.state
            .handle
            .as_deref()
            .unwrap()
            .starts_with(&stored[0].id),
        "{rec:?} / {stored:?}"
    );
    assert_eq!(
        rec.state.holding.as_deref(),
        Some(second.fingerprint().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudflare_error_is_reported_in_its_words_and_nothing_is_left_half_done() {
    let (w, cf) = cloudflare_world("cf-error").await;
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    cf.fail_next(400, 2103, "The SSL attribute is invalid.");
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(!report.is_verified());
    let rec = record(&w).await;
    assert_eq!(rec.state.status, DeploymentStatus::Failed, "{rec:?}");
    let detail = rec.state.detail.unwrap();
    assert!(
        detail.contains("none of the certificate's names is a hostname of zone")
            && detail.contains("Cloudflare said: 2103 The SSL attribute is invalid."),
        "{detail}"
    );
    assert!(cf.certificates().is_empty(), "nothing uploaded");
    // The owning team hears of it with Cloudflare's words.
    let app = certpilot_app::App::new(w.store.clone(), w.secrets.clone());
    app.record_certificate_findings().await.unwrap();
    let findings = app.findings().active_findings().await.unwrap();
    let failed = findings
        .iter()
        .find(|f| f.kind.as_str() == "deploy_failed")
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert!(
        failed.public_json().to_string().contains("2103"),
        "{}",
        failed.public_json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflares_lockout_ends_the_run_in_progress_and_the_run_after_it_finishes() {
    let (w, cf) = cloudflare_world("cf-limit").await;
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    // Locked out at once; Cloudflare says five minutes (the mock lifts it after one second).
    cf.rate_limit_after(0, Duration::from_secs(1), Duration::from_secs(300));
    let started = std::time::Instant::now();
    w.service.deploy("checkout", None, false).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no sleeping through a lockout"
    );
    let rec = record(&w).await;
    assert_eq!(
        rec.state.status,
        DeploymentStatus::InProgress,
        "{:?}",
        cf.calls()
    );
    let after = rec.state.check_after.unwrap();
    assert!(after > time::OffsetDateTime::now_utc() + time::Duration::minutes(4));
    // Before then a run leaves it alone; after then, it finishes.
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let later = w.service.with_clock(clock.clone());
    later.deploy("checkout", None, false).await.unwrap();
    assert_eq!(record(&w).await.state.status, DeploymentStatus::InProgress);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    clock.advance(time::Duration::minutes(6));
    let report = later.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    assert_eq!(cf.certificates().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_cloudflare_lockout_is_sat_out_within_the_run() {
    let (w, cf) = cloudflare_world("cf-short").await;
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    cf.rate_limit_after(0, Duration::from_secs(1), Duration::from_secs(2));
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    assert_eq!(cf.certificates().len(), 1);
}

/// The deploy function (under `cargo lambda watch`, on moto) deploys to Cloudflare with the
/// token it reads from Secrets Manager (`deploy/…`, the only vendor secrets its role may
/// read), and proves the edge serves the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_function_deploys_to_cloudflare_with_the_token_from_secrets_manager() {
    use certpilot_core::model::certificate::ManagedCertificate;
    use certpilot_core::ports::SecretStore as _;
    let moto = certpilot_testkit::procs::shared_moto();
    let aws = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let run = std::process::id();
    let table = format!("deploy-cdn-{run}");
    let store = certpilot_dynamodb::DynamoStore::new(certpilot_dynamodb::Client::new(&aws), &table);
    store.create_table().await.unwrap();
    let prefix = format!("deploy-cdn-{run}/");
    let secrets = certpilot_aws::SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        prefix.clone(),
        None,
    );
    let cf = MockCloudflare::start("example.test").await;
    secrets
        .put_current(
            "deploy/cf",
            &SecretValue::new(cf.token.clone().into_bytes()),
        )
        .await
        .unwrap();
    let leaf = certpilot_testkit::certs::Ca::new("CDN CA")
        .leaf(&["shop.example.test"])
        .key(KeyKind::EcdsaP256)
        .build();
    let version = secrets
        .put_current(
            "certificate-key/shop",
            &SecretValue::new(leaf.key_pem().into_bytes()),
        )
        .await
        .unwrap();
    let settings = serde_json::json!({
        "zone-id": cf.zone_id, "token-secret": "deploy/cf", "api-url": cf.api_url(),
    });
    let spec = certpilot_e2e::deploy_world::spec_for(
        "shop.example.test",
        vec![deployment(
            "edge",
            ("cloudflare", settings),
            &cf.edge_target(),
        )],
    );
    let mut cert = ManagedCertificate::new("shop".into(), spec, time::OffsetDateTime::now_utc());
    cert.current = Some(certpilot_e2e::issued(&leaf, &version));
    store.add_certificate(&cert).await.unwrap();

    let watch = certpilot_e2e::LambdaWatch::start(
        &moto.endpoint_url,
        &[
            ("CERTPILOT_TABLE", table.clone()),
            ("CERTPILOT_SECRETS_PREFIX", prefix),
            ("CERTPILOT_VERIFY_INTERVAL", "200ms".into()),
            ("CERTPILOT_VERIFY_MAX_DEADLINE", "10s".into()),
        ],
    );
    let tick: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            certpilot_testkit::procs::workspace_root().join("infra/events/scheduled.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let swept = watch.invoke("deploy", &tick).await;
    assert_eq!(swept["verified"], 1, "{swept}");
    let cert = store.certificate("shop").await.unwrap().unwrap();
    assert!(cert.is_deployed(), "{:?}", cert.deployments);
    let stored = cf.certificates();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].chain, leaf.chain_pem());
}

/// The webhook: a signed POST of the certificate and chain (never the key unless asked, and
/// then only over HTTPS), the receiver's refusal reported with its words, a rollback
/// delivered as such, and its 503s retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_delivers_signed_certificates_without_the_key_and_reports_refusals() {
    use certpilot_core::model::deploy::Deployment;
    use certpilot_testkit::webhook_receiver::WebhookReceiver;
    let w = World::new("webhook");
    let receiver = WebhookReceiver::start().await;
    w.secrets
        .put_current(
            "deploy/hook",
            &SecretValue::new(receiver.secret.clone().into_bytes()),
        )
        .await
        .unwrap();
    let mut d = Deployment::new("inhouse", "webhook");
    d.settings = serde_json::json!({"url": receiver.url(), "secret": "deploy/hook"})
        .as_object()
        .cloned()
        .unwrap();
    w.add("checkout", vec![d]).await;
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    receiver.fail(1);
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let delivered = receiver.deliveries();
    assert_eq!(delivered.len(), 1, "the 503 was retried once");
    let body = &delivered[0].body;
    assert_eq!(body["type"], "deploy");
    assert_eq!(body["certificate_id"], "checkout");
    assert_eq!(body["deployment"], "inhouse");
    assert_eq!(body["fingerprint"], first.fingerprint());
    assert_eq!(body["chain_pem"], first.chain_pem());
    assert!(
        body.get("key_pem").is_none(),
        "never the key unless asked: {body}"
    );
    assert!(!body.to_string().contains("PRIVATE KEY"));

    // A rollback by hand is delivered as one.
    let second = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &second, KeyType::EcdsaP256).await;
    w.service.deploy("checkout", None, false).await.unwrap();
    w.service.roll_back("checkout", None).await.unwrap();
    let last = receiver.deliveries().pop().unwrap();
    assert_eq!(last.body["type"], "rollback");
    assert_eq!(last.body["fingerprint"], first.fingerprint());

    // A receiver that refuses (here: a key it does not know) is reported with its words.
    w.secrets
        .put_current(
            "deploy/hook",
            &SecretValue::new(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec()),
        )
        .await
        .unwrap();
    let third = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &third, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(!report.is_verified());
    let rec = record(&w).await;
    assert_eq!(rec.state.status, DeploymentStatus::Failed, "{rec:?}");
    let detail = rec.state.detail.unwrap();
    assert!(
        detail.contains("the receiver refused the deploy: HTTP 401: bad signature"),
        "{detail}"
    );

    // The key travels only over HTTPS: refused before anything runs.
    let kinds = certpilot_app::deploy_kinds();
    let mut with_key = Deployment::new("inhouse", "webhook");
    with_key.settings =
        serde_json::json!({"url": receiver.url(), "secret": "deploy/hook", "send-key": true})
            .as_object()
            .cloned()
            .unwrap();
    let refused = kinds.check_deployment(&with_key, &[]).unwrap_err();
    assert!(refused.to_string().contains("only over HTTPS"), "{refused}");
    // Endpoints to prove, but no key for the receiver to serve with: it could never be
    // served, so it is refused too.
    let mut unservable = Deployment::new("inhouse", "webhook")
        .with_endpoint("shop.example.test:443".parse().unwrap());
    unservable.settings =
        serde_json::json!({"url": "https://hooks.example.test/cert", "secret": "deploy/hook"})
            .as_object()
            .cloned()
            .unwrap();
    let refused = kinds.check_deployment(&unservable, &[]).unwrap_err();
    assert!(
        refused.to_string().contains("needs send-key=true"),
        "{refused}"
    );
    unservable
        .settings
        .insert("send-key".into(), serde_json::Value::Bool(true));
    kinds.check_deployment(&unservable, &[]).unwrap();
}
