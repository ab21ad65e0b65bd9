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
use certpilot_e2e::deploy_world::{NAME, World, deployment};
use certpilot_testkit::certs::KeyKind;
use certpilot_testkit::clock::ManualClock;
use certpilot_testkit::cloudflare::MockCloudflare;
use certpilot_testkit::fastly::MockFastly;

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

/// Deploys what is current, which the edge does not serve: the record says `not_serving`
/// with the previous certificate put back.
async fn deploy_not_served(w: &World) -> certpilot_core::model::deploy::DeploymentRecord {
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(!report.is_verified());
    let rec = record(w).await;
    assert_eq!(rec.state.status, DeploymentStatus::NotServing, "{rec:?}");
    assert!(
        rec.state
            .detail
            .as_deref()
            .unwrap()
            .contains("previous certificate was put back"),
        "{rec:?}"
    );
    rec
}

/// The findings the owning team would hear of now.
async fn findings(w: &World) -> Vec<certpilot_core::model::finding::Finding> {
    let app = certpilot_app::App::new(w.store.clone(), w.secrets.clone());
    app.record_certificate_findings().await.unwrap();
    app.findings().active_findings().await.unwrap()
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
    let rec = deploy_not_served(&w).await;
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
    let findings = findings(&w).await;
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

/// The deploy function (under `cargo lambda watch`, on moto) deploys to Cloudflare, Fastly,
/// a NetScaler and a webhook with the credentials it reads from Secrets Manager (`deploy/…`, the only
/// vendor secrets its role may read): the first install proven at both edges, a renewal
/// (Cloudflare's new id followed, Fastly's certificate replaced in place), and an outage at
/// Fastly's edge ending `not_serving` with the previous certificate put back there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_function_deploys_to_every_vendor_target_with_credentials_from_secrets_manager()
{
    use certpilot_core::model::certificate::ManagedCertificate;
    use certpilot_core::model::deploy::Deployment;
    use certpilot_core::ports::SecretStore as _;
    use certpilot_testkit::webhook_receiver::WebhookReceiver;
    const SHOP: &str = "shop.example.test";
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
    let fastly = MockFastly::start(SHOP).await;
    let receiver = WebhookReceiver::start().await;
    let netscaler = certpilot_testkit::netscaler::MockNetScaler::start(
        "shop",
        &certpilot_testkit::certs::Ca::new("Old CA")
            .leaf(&[SHOP])
            .build(),
    )
    .await;
    let nitro_credentials = format!("{}:{}", netscaler.user, netscaler.password);
    // Two clusters, their kubeconfig in Secrets Manager (a Lambda has no file).
    let old = certpilot_testkit::certs::Ca::new("Old CA")
        .leaf(&[SHOP])
        .build();
    let mut clusters = Vec::new();
    for context in ["prod-eu", "prod-us"] {
        clusters.push(
            certpilot_testkit::kube_api::MockKubeApi::start(context, &["shop"], "shop-tls", &old)
                .await,
        );
    }
    let kubeconfig =
        certpilot_testkit::kube_api::MockKubeApi::kubeconfig_of(&[&clusters[0], &clusters[1]]);
    // And an EKS cluster, reached with the function's own AWS credentials (no kubeconfig).
    let eks_name = format!("shop-eks-{run}");
    let eks = certpilot_testkit::kube_api::MockKubeApi::start_eks(
        &eks_name,
        &["shop"],
        "shop-tls",
        &old,
        "testing",
    )
    .await;
    certpilot_e2e::create_eks_cluster(&aws, &eks_name).await;
    // The access entry of the identity moto gives the tests' credentials.
    eks.grant("arn:aws:sts::123456789012:user/moto");
    // Two VMs through SSM, the function reaching AWS through the agents' stand-in.
    let fleet = certpilot_testkit::ssm_fleet::SsmFleet::start(
        &moto.endpoint_url,
        &[
            ("i-0f0f0f0f0f0f0f0f1", &[("Role", "shop")]),
            ("i-0f0f0f0f0f0f0f0f2", &[("Role", "shop")]),
        ],
        &old,
    )
    .await;
    for (name, value) in [
        ("deploy/kubeconfig", &kubeconfig),
        ("deploy/ns", &nitro_credentials),
        ("deploy/cf", &cf.token),
        ("deploy/fastly", &fastly.token),
        ("deploy/hook", &receiver.secret),
    ] {
        secrets
            .put_current(name, &SecretValue::new(value.clone().into_bytes()))
            .await
            .unwrap();
    }
    let ca = certpilot_testkit::certs::Ca::new("CDN CA");
    let leaf = || ca.leaf(&[SHOP]).key(KeyKind::EcdsaP256).build();
    let issue = |leaf: &certpilot_testkit::certs::Leaf| {
        let (secrets, store) = (&secrets, &store);
        let (pem, issued) = (leaf.key_pem(), certpilot_e2e::issued(leaf, ""));
        async move {
            let version = secrets
                .put_current("certificate-key/shop", &SecretValue::new(pem.into_bytes()))
                .await
                .unwrap();
            let mut cert = store.certificate("shop").await.unwrap().unwrap();
            cert.previous = cert.current.take();
            cert.current = Some(certpilot_core::model::certificate::IssuedCertificate {
                key_version: version,
                ..issued
            });
            store.update_certificate(&cert).await.unwrap();
        }
    };
    let mut hook = Deployment::new("inhouse", "webhook");
    hook.settings = serde_json::json!({"url": receiver.url(), "secret": "deploy/hook"})
        .as_object()
        .cloned()
        .unwrap();
    let spec = certpilot_e2e::deploy_world::spec_for(
        SHOP,
        vec![
            deployment(
                "cloudflare-edge",
                (
                    "cloudflare",
                    serde_json::json!({"zone-id": cf.zone_id, "token-secret": "deploy/cf", "api-url": cf.api_url()}),
                ),
                &cf.edge_target(),
            ),
            deployment(
                "fastly-edge",
                (
                    "fastly",
                    serde_json::json!({"token-secret": "deploy/fastly", "api-url": fastly.api_url()}),
                ),
                &fastly.edge_target(),
            ),
            hook,
            deployment(
                "netscaler-vs",
                (
                    "netscaler",
                    serde_json::json!({"nitro-url": netscaler.url(), "credentials-secret": "deploy/ns", "certkey": "shop"}),
                ),
                &netscaler.vserver_target(),
            ),
            serde_json::from_value(serde_json::json!({
                "name": "clusters", "kind": "kubernetes-secret", "verify_deadline": 10,
                "settings": {"secret-name": "shop-tls", "kubeconfig-secret": "deploy/kubeconfig"},
                "units": clusters.iter().map(|c| serde_json::json!({
                    "name": c.context, "endpoints": [c.ingress("shop")],
                    "settings": {"context": c.context, "namespace": "shop"}}))
                    .chain([serde_json::json!({"name": "eks", "endpoints": [eks.ingress("shop")],
                        "settings": {"eks-cluster": eks_name, "namespace": "shop"}})])
                    .collect::<Vec<_>>(),
            }))
            .unwrap(),
            serde_json::from_value(serde_json::json!({
                "name": "vm-fleet", "kind": "ssm-fleet", "verify_deadline": 10,
                "settings": {"region": "eu-west-1", "tags": "Role=shop", "dir": fleet.dir_setting(),
                    "reload": fleet.reload_setting(), "port": fleet.port().to_string(),
                    "bundle-prefix": format!("deploy-cdn-{run}/")},
            }))
            .unwrap(),
        ],
    );
    certpilot_app::deploy_kinds().check_spec(&spec).unwrap();
    store
        .add_certificate(&ManagedCertificate::new(
            "shop".into(),
            spec,
            time::OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();

    // The function reaches AWS through EKS's stand-in, then the fleet's, then moto.
    let eks_front =
        certpilot_testkit::kube_api::EksFront::start(&fleet.endpoint_url(), &[&eks]).await;
    let watch = certpilot_e2e::LambdaWatch::start(
        &eks_front.endpoint_url(),
        &[
            ("CERTPILOT_TABLE", table.clone()),
            ("CERTPILOT_SECRETS_PREFIX", prefix),
            ("CERTPILOT_VERIFY_INTERVAL", "200ms".into()),
            ("CERTPILOT_VERIFY_MAX_DEADLINE", "5s".into()),
        ],
    );
    let tick: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            certpilot_testkit::procs::workspace_root().join("infra/events/scheduled.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let deployment_of = |cert: &ManagedCertificate, name: &str| {
        cert.deployments
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name}: {:?}", cert.deployments))
            .clone()
    };

    // First install: everywhere, proven at both edges.
    let first = leaf();
    issue(&first).await;
    let swept = watch.invoke("deploy", &tick).await;
    assert_eq!(swept["verified"], 1, "{swept}");
    let cert = store.certificate("shop").await.unwrap().unwrap();
    assert!(cert.is_deployed(), "{:?}", cert.deployments);
    assert_eq!(cf.certificates()[0].chain, first.chain_pem());
    let fastly_id = fastly.certificates()[0].id.clone();
    assert_eq!(receiver.deliveries().len(), 1);
    assert!(
        !receiver.deliveries()[0]
            .body
            .to_string()
            .contains("PRIVATE KEY")
    );

    // Renewal: Cloudflare's new id followed, Fastly's replaced in place.
    let cf_first = cf.certificates()[0].id.clone();
    let second = leaf();
    issue(&second).await;
    let swept = watch.invoke("deploy", &tick).await;
    assert_eq!(swept["verified"], 1, "{swept}");
    let cert = store.certificate("shop").await.unwrap().unwrap();
    assert!(cert.is_deployed(), "{:?}", cert.deployments);
    let cf_now = cf.certificates();
    assert_ne!(cf_now[0].id, cf_first);
    assert!(
        deployment_of(&cert, "cloudflare-edge")
            .state
            .handle
            .unwrap()
            .starts_with(&cf_now[0].id)
    );
    let fastly_now = fastly.certificates();
    assert_eq!(
        (fastly_now.len(), fastly_now[0].id.as_str()),
        (1, fastly_id.as_str())
    );
    assert_eq!(fastly_now[0].chain, second.chain_pem());

    // The outage at Fastly's edge: not served, the second put back there; the others,
    // proven, keep the third.
    fastly.stick(true);
    clusters[1].stick("shop", true);
    let third = leaf();
    issue(&third).await;
    let swept = watch.invoke("deploy", &tick).await;
    assert_eq!(swept["verified"], 0, "{swept}");
    let cert = store.certificate("shop").await.unwrap().unwrap();
    let at_fastly = deployment_of(&cert, "fastly-edge");
    assert_eq!(
        at_fastly.state.status,
        DeploymentStatus::NotServing,
        "{at_fastly:?}"
    );
    assert_eq!(
        at_fastly.state.holding.as_deref(),
        Some(second.fingerprint().as_str())
    );
    assert_eq!(fastly.certificates()[0].chain, second.chain_pem());
    assert_eq!(
        deployment_of(&cert, "cloudflare-edge").state.status,
        DeploymentStatus::Verified
    );
    assert_eq!(cf.certificates()[0].chain, third.chain_pem());
    // The NetScaler's certkey holds the third too, saved.
    assert_eq!(
        deployment_of(&cert, "netscaler-vs").state.status,
        DeploymentStatus::Verified
    );
    assert_eq!(
        netscaler.certkey_cert("shop").unwrap(),
        format!("certpilot-{}.pem", &third.fingerprint()[..16])
    );
    // prod-us's ingress kept the second: its secret is put back to the second, prod-eu
    // keeps the third it serves.
    let k8s = deployment_of(&cert, "clusters");
    assert_eq!(k8s.state.status, DeploymentStatus::NotServing, "{k8s:?}");
    let holds = |c: &certpilot_testkit::kube_api::MockKubeApi| {
        c.secret("shop", "shop-tls").unwrap()["metadata"]["annotations"]["certpilot.io/fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(holds(&clusters[0]), third.fingerprint());
    assert!(certpilot_e2e::serves(&ca, &clusters[0].ingress("shop"), &third.fingerprint()).await);
    assert_eq!(holds(&clusters[1]), second.fingerprint());
    assert_eq!(holds(&eks), third.fingerprint());
    assert!(certpilot_e2e::serves(&ca, &eks.ingress("shop"), &third.fingerprint()).await);
    assert!(
        k8s.units
            .iter()
            .any(|u| u.name == "eks" && u.state.status == DeploymentStatus::Verified),
        "{k8s:?}"
    );
    // Each VM of the fleet, a unit of its own, serves the third.
    let vms = deployment_of(&cert, "vm-fleet");
    assert_eq!(vms.state.status, DeploymentStatus::Verified, "{vms:?}");
    assert_eq!(vms.units.len(), 2, "{vms:?}");
    for vm in fleet.instances() {
        assert!(certpilot_e2e::serves(&ca, &fleet.target(&vm.id), &third.fingerprint()).await);
    }
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

const WWW: &str = "www.example.test";

/// A world whose certificate covers `names`, deployed to a Fastly mock whose edge serves
/// the certificate activated for [`NAME`] to handshakes without SNI.
async fn fastly_world(run: &str, names: &[&str]) -> (World, MockFastly) {
    let w = World::new(run);
    let fastly = MockFastly::start(NAME).await;
    w.secrets
        .put_current(
            "deploy/fastly",
            &SecretValue::new(fastly.token.clone().into_bytes()),
        )
        .await
        .unwrap();
    let settings =
        serde_json::json!({"token-secret": "deploy/fastly", "api-url": fastly.api_url()});
    let spec = certpilot_e2e::deploy_world::spec_for(
        NAME,
        vec![deployment(
            "edge",
            ("fastly", settings),
            &fastly.edge_target(),
        )],
    );
    let mut spec = spec;
    spec.names = names.iter().map(|n| n.parse().unwrap()).collect();
    certpilot_app::deploy_kinds().check_spec(&spec).unwrap();
    let cert = certpilot_core::model::certificate::ManagedCertificate::new(
        "checkout".into(),
        spec,
        time::OffsetDateTime::now_utc(),
    );
    w.store.add_certificate(&cert).await.unwrap();
    (w, fastly)
}

fn fastly_leaf(w: &World, names: &[&str]) -> certpilot_testkit::certs::Leaf {
    w.ca.leaf(names).key(KeyKind::EcdsaP256).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastly_replaces_in_place_moves_activations_when_a_name_is_dropped_and_rolls_back_the_outage()
 {
    let (w, fastly) = fastly_world("fastly-flow", &[NAME, WWW]).await;

    // First install: the key, then the certificate, then an activation per name.
    let first = fastly_leaf(&w, &[NAME, WWW]);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let calls = fastly.calls();
    let key_at = calls
        .iter()
        .position(|c| c == "POST /tls/private_keys")
        .unwrap();
    let cert_at = calls
        .iter()
        .position(|c| c == "POST /tls/certificates")
        .unwrap();
    assert!(key_at < cert_at, "the key goes first: {calls:?}");
    let stored = fastly.certificates();
    assert_eq!(stored.len(), 1);
    let first_id = stored[0].id.clone();
    let mut domains: Vec<String> = fastly.activations().into_iter().map(|a| a.domain).collect();
    domains.sort();
    assert_eq!(domains, [NAME, WWW]);

    // Renewal with the same names: replaced in place, same id, activations untouched.
    let second = fastly_leaf(&w, &[NAME, WWW]);
    w.issue("checkout", &second, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let stored = fastly.certificates();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, first_id);
    assert_eq!(stored[0].chain, second.chain_pem());
    assert!(
        fastly
            .calls()
            .contains(&format!("PATCH /tls/certificates/{first_id}"))
    );
    assert!(
        fastly
            .activations()
            .iter()
            .all(|a| a.certificate == first_id)
    );
    assert_eq!(fastly.keys().len(), 1, "the first key, unused, is deleted");

    // Renewal that drops www: Fastly refuses that in place, so a new certificate, the
    // activation of the kept name moved to it, proven, then www's activation ended and the
    // old certificate deleted.
    let mut cert = w.store.certificate("checkout").await.unwrap().unwrap();
    cert.spec.names = vec![NAME.parse().unwrap()];
    w.store.update_certificate(&cert).await.unwrap();
    let third = fastly_leaf(&w, &[NAME]);
    w.issue("checkout", &third, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let stored = fastly.certificates();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let third_id = stored[0].id.clone();
    assert_ne!(third_id, first_id);
    assert_eq!(stored[0].chain, third.chain_pem());
    let activations = fastly.activations();
    assert_eq!(activations.len(), 1, "{activations:?}");
    assert_eq!(
        (
            activations[0].domain.as_str(),
            activations[0].certificate.as_str()
        ),
        (NAME, third_id.as_str())
    );
    let calls = fastly.calls();
    let moved = calls
        .iter()
        .position(|c| c.starts_with("PATCH /tls/activations/"))
        .unwrap();
    let deleted = calls
        .iter()
        .position(|c| *c == format!("DELETE /tls/certificates/{first_id}"))
        .unwrap();
    assert!(moved < deleted, "moved, then deleted: {calls:?}");
    assert_eq!(fastly.keys().len(), 1);
    assert!(
        record(&w)
            .await
            .state
            .handle
            .unwrap()
            .starts_with(&third_id)
    );

    // The outage: Fastly takes the fourth, the edge keeps the third. Not served: the third
    // is put back through the API, in place, and the record holds it.
    fastly.stick(true);
    let fourth = fastly_leaf(&w, &[NAME]);
    w.issue("checkout", &fourth, KeyType::EcdsaP256).await;
    let rec = deploy_not_served(&w).await;
    let stored = fastly.certificates();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, third_id);
    assert_eq!(
        stored[0].chain,
        third.chain_pem(),
        "Fastly holds the third again"
    );
    assert_eq!(
        rec.state.holding.as_deref(),
        Some(third.fingerprint().as_str())
    );
    assert_eq!(fastly.keys().len(), 1, "the fourth's key is gone with it");
    // And the owning team is told.
    let findings = findings(&w).await;
    let kinds: Vec<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
    assert!(kinds.contains(&"not_serving"), "{findings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fastly_error_is_reported_in_its_words_and_no_key_is_left_behind() {
    let (w, fastly) = fastly_world("fastly-error", &[NAME]).await;
    let first = fastly_leaf(&w, &[NAME]);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    // The key is taken; the certificate is refused.
    fastly.fail_next(
        "POST /tls/certificates",
        400,
        "Invalid certificate",
        "The certificate chain is incomplete",
    );
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(!report.is_verified());
    let rec = record(&w).await;
    assert_eq!(rec.state.status, DeploymentStatus::Failed, "{rec:?}");
    let detail = rec.state.detail.unwrap();
    assert!(
        detail.contains("Fastly said: Invalid certificate: The certificate chain is incomplete"),
        "{detail}"
    );
    assert!(
        fastly
            .calls()
            .contains(&"POST /tls/private_keys".to_owned())
    );
    assert!(fastly.certificates().is_empty());
    assert!(
        fastly.keys().is_empty(),
        "the key uploaded for it is deleted again"
    );
    // The owning team hears of it with Fastly's words.
    let findings = findings(&w).await;
    let failed = findings
        .iter()
        .find(|f| f.kind.as_str() == "deploy_failed")
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert!(
        failed
            .public_json()
            .to_string()
            .contains("The certificate chain is incomplete"),
        "{}",
        failed.public_json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastlys_rate_limit_stops_writes_until_its_reset_and_the_run_after_it_finishes() {
    let (w, fastly) = fastly_world("fastly-limit", &[NAME]).await;
    let first = fastly_leaf(&w, &[NAME]);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    // Two writes left this hour: the key and the certificate; the activation must wait.
    fastly.rate_limit(2, Duration::from_secs(3600));
    let started = std::time::Instant::now();
    w.service.deploy("checkout", None, false).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no sleeping until the reset"
    );
    let rec = record(&w).await;
    assert_eq!(
        rec.state.status,
        DeploymentStatus::InProgress,
        "{:?}",
        fastly.calls()
    );
    let after = rec.state.check_after.unwrap();
    assert!(
        after > time::OffsetDateTime::now_utc() + time::Duration::minutes(59),
        "{after}"
    );
    let writes = |calls: &[String]| calls.iter().filter(|c| !c.starts_with("GET ")).count();
    assert_eq!(
        writes(&fastly.calls()),
        2,
        "no write sent once none remain: {:?}",
        fastly.calls()
    );
    assert!(fastly.activations().is_empty());

    // Before the reset a run leaves it alone; after it, the deploy resumes where it stopped.
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let later = w.service.with_clock(clock.clone());
    later.deploy("checkout", None, false).await.unwrap();
    assert_eq!(record(&w).await.state.status, DeploymentStatus::InProgress);
    assert_eq!(writes(&fastly.calls()), 2);
    fastly.reset_window();
    clock.advance(time::Duration::minutes(61));
    let report = later.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let calls = fastly.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| *c == "POST /tls/certificates")
            .count(),
        1,
        "resumed, not uploaded twice: {calls:?}"
    );
    assert_eq!(fastly.activations().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_fastly_reset_is_sat_out_within_the_run() {
    let (w, fastly) = fastly_world("fastly-short", &[NAME]).await;
    let first = fastly_leaf(&w, &[NAME]);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    fastly.rate_limit(1, Duration::from_secs(2));
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    assert_eq!(fastly.certificates().len(), 1);
}

#[test]
fn a_key_fastly_does_not_take_is_refused_when_the_certificate_is_added() {
    let mut d = certpilot_core::model::deploy::Deployment::new("edge", "fastly")
        .with_endpoint(format!("{NAME}:443").parse().unwrap());
    d.settings = serde_json::json!({"token-secret": "deploy/fastly"})
        .as_object()
        .cloned()
        .unwrap();
    let mut spec = certpilot_e2e::deploy_world::spec_for(NAME, vec![d]);
    let kinds = certpilot_app::deploy_kinds();
    for accepted in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048] {
        spec.key_type = accepted;
        kinds.check_spec(&spec).unwrap();
    }
    for refused in [KeyType::Rsa3072, KeyType::Rsa4096] {
        spec.key_type = refused;
        let e = kinds.check_spec(&spec).unwrap_err().to_string();
        assert!(
            e.contains("fastly accepts ecdsa-p256, ecdsa-p384, rsa2048 keys only"),
            "{e}"
        );
    }
}

/// A receiver that serves what it is sent: the key goes over HTTPS (its private CA trusted
/// through `ca-pem`), the handshake with its edge proves the certificate served, and when it
/// accepts but keeps serving the old one, the deploy ends `not_serving` and the previous
/// certificate (with its key) is delivered back as a rollback and served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receiver_that_serves_gets_the_key_over_https_and_is_proven_by_handshake() {
    use certpilot_testkit::webhook_receiver::WebhookReceiver;
    let w = World::new("webhook-serving");
    let receiver = WebhookReceiver::start_serving(&w.ca).await;
    w.secrets
        .put_current(
            "deploy/hook",
            &SecretValue::new(receiver.secret.clone().into_bytes()),
        )
        .await
        .unwrap();
    let settings = serde_json::json!({
        "url": receiver.url(), "secret": "deploy/hook", "send-key": true,
        "ca-pem": w.ca.root_pem(),
    });
    assert!(receiver.url().starts_with("https://"));
    w.add(
        "checkout",
        vec![deployment(
            "inhouse",
            ("webhook", settings),
            &receiver.edge_target(),
        )],
    )
    .await;
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let delivered = receiver.deliveries();
    assert_eq!(delivered[0].body["key_pem"], first.key_pem());

    // Accepted but not installed: not served, and the first goes back, key and all.
    receiver.stick(true);
    let second = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &second, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(!report.is_verified());
    let rec = record(&w).await;
    assert_eq!(rec.state.status, DeploymentStatus::NotServing, "{rec:?}");
    assert_eq!(
        rec.state.holding.as_deref(),
        Some(first.fingerprint().as_str())
    );
    let last = receiver.deliveries().pop().unwrap();
    assert_eq!(last.body["type"], "rollback");
    assert_eq!(last.body["key_pem"], first.key_pem());

    // A CA that does not parse is refused when the deployment is added.
    let mut bad = certpilot_core::model::deploy::Deployment::new("inhouse", "webhook");
    bad.settings = serde_json::json!({"url": receiver.url(), "secret": "deploy/hook", "ca-pem": "not a certificate"})
        .as_object()
        .cloned()
        .unwrap();
    let refused = certpilot_app::deploy_kinds()
        .check_deployment(&bad, &[])
        .unwrap_err();
    assert!(refused.to_string().contains("ca-pem"), "{refused}");
}

/// Akamai through the functions (cargo lambda watch, moto, Pebble over DNS-01 in Route 53):
/// the renew function starts the enrollment's change, then has Pebble sign Akamai's two
/// CSRs (no key generated, none in Secrets Manager); the deploy function, tick after tick,
/// uploads both certificates, proves staging, acknowledges change management and proves
/// production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_issue_from_akamais_csrs_and_follow_the_change_to_production() {
    use certpilot_core::model::certificate::{
        AcmeIssuer as IssuerConfig, ChallengeConfig, DnsProviderConfig, ManagedCertificate,
    };
    use certpilot_core::model::deploy::Deployment;
    use certpilot_core::ports::{SecretStore as _, SecretVersion};
    use certpilot_testkit::akamai::MockAkamai;
    let moto = certpilot_testkit::procs::shared_moto();
    let aws = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let run = std::process::id();
    let table = format!("akamai-fn-{run}");
    let store = certpilot_dynamodb::DynamoStore::new(certpilot_dynamodb::Client::new(&aws), &table);
    store.create_table().await.unwrap();
    let prefix = format!("akamai-fn-{run}/");
    let secrets = certpilot_aws::SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        prefix.clone(),
        None,
    );
    let route53 = aws_sdk_route53::Client::new(&aws);
    let domain = format!("cps-{run}.certpilot.test");
    let zone = certpilot_e2e::route53_zone(&route53, &domain).await;
    let nameserver = certpilot_e2e::route53_nameserver(&route53, &zone).await;
    let (pebble, _dir, ca_file) = certpilot_e2e::pebble_resolving_through(nameserver.addr);

    let akamai = MockAkamai::start(&[&domain], true, true).await;
    akamai.rate_limit(1000, Duration::from_secs(60));
    secrets
        .put_current(
            "deploy/akamai",
            &SecretValue::new(akamai.edgerc().into_bytes()),
        )
        .await
        .unwrap();
    let mut d = Deployment::new("akamai", "akamai-cps")
        .with_endpoint(akamai.production_target().parse().unwrap());
    d.settings = serde_json::json!({
        "enrollment-id": "10002", "credentials-secret": "deploy/akamai", "api-url": akamai.api_url(),
        "staging-endpoints": akamai.staging_target(), "poll-interval": "1s",
        "requests-per-minute": "1000",
    })
    .as_object()
    .cloned()
    .unwrap();
    d.verify_deadline = Some(10);
    let mut spec = certpilot_e2e::deploy_world::spec_for(&domain, vec![d]);
    spec.key_type = KeyType::Rsa2048;
    spec.issuer = IssuerConfig {
        directory: pebble.directory_url.clone(),
        contact: vec!["mailto:ops@certpilot.test".into()],
        eab: None,
        profile: None,
        account_secret: None,
    };
    spec.challenge = ChallengeConfig::Dns01 {
        provider: DnsProviderConfig::Route53 { zone_id: None },
    };
    certpilot_app::deploy_kinds().check_spec(&spec).unwrap();
    store
        .add_certificate(&ManagedCertificate::new(
            "shop".into(),
            spec,
            time::OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();

    let watch = certpilot_e2e::LambdaWatch::start(
        &moto.endpoint_url,
        &[
            ("CERTPILOT_TABLE", table.clone()),
            ("CERTPILOT_SECRETS_PREFIX", prefix),
            ("CERTPILOT_ACME_CA_FILE", ca_file.display().to_string()),
            ("CERTPILOT_ACME_TIMEOUT", "30s".into()),
            ("CERTPILOT_VERIFY_INTERVAL", "200ms".into()),
            ("CERTPILOT_VERIFY_MAX_DEADLINE", "5s".into()),
        ],
    );
    let tick: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            certpilot_testkit::procs::workspace_root().join("infra/events/scheduled.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let first = watch.invoke("renew", &tick).await;
    assert_eq!(first["results"][0]["outcome"], "deferred", "{first}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = watch.invoke("renew", &tick).await;
    assert_eq!(second["issued"], 1, "{second}");
    let cert = store.certificate("shop").await.unwrap().unwrap();
    let current = cert.current.clone().unwrap();
    assert!(current.key_holder.is_some() && current.key_version.is_empty());
    assert_eq!(
        current.stacked.len(),
        1,
        "the ECDSA certificate beside the RSA one"
    );
    assert!(
        secrets
            .get("certificate-key/shop", &SecretVersion::Current)
            .await
            .unwrap()
            .is_none(),
        "no key in Secrets Manager"
    );

    let mut status = None;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        watch.invoke("deploy", &tick).await;
        let cert = store.certificate("shop").await.unwrap().unwrap();
        let s = cert.deployments.first().map(|r| r.state.status);
        if s.is_some_and(|s| s != DeploymentStatus::InProgress) {
            status = s;
            break;
        }
    }
    assert_eq!(
        status,
        Some(DeploymentStatus::Verified),
        "{:?}",
        store
            .certificate("shop")
            .await
            .unwrap()
            .unwrap()
            .deployments
    );
    assert_eq!(akamai.acknowledged(), ["change-management"]);
    let production: Vec<String> = akamai
        .production_uploads()
        .iter()
        .map(|u| certpilot_testkit::certs::fingerprint_of(&u.certificate))
        .collect();
    assert_eq!(
        production,
        [
            current.fingerprint.clone(),
            current.stacked[0].fingerprint.clone()
        ]
    );
}

/// NetScaler through the deploy service: the certkey updated (the virtual server follows),
/// the outage (NITRO accepts, the virtual server keeps the old one) ending `not_serving`
/// with the previous files put back, and a refusal in NetScaler's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netscaler_updates_the_certkey_and_rolls_back_what_the_vserver_does_not_serve() {
    use certpilot_testkit::netscaler::MockNetScaler;
    let w = World::new("netscaler");
    let before = w.leaf(KeyKind::EcdsaP256);
    let ns = MockNetScaler::start("shop", &before).await;
    w.secrets
        .put_current(
            "deploy/ns",
            &SecretValue::new(format!("{}:{}", ns.user, ns.password).into_bytes()),
        )
        .await
        .unwrap();
    let settings = serde_json::json!({"nitro-url": ns.url(), "credentials-secret": "deploy/ns", "certkey": "shop"});
    w.add(
        "checkout",
        vec![deployment(
            "adc",
            ("netscaler", settings),
            &ns.vserver_target(),
        )],
    )
    .await;
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let first_file = format!("certpilot-{}.pem", &first.fingerprint()[..16]);
    assert_eq!(ns.certkey_cert("shop").unwrap(), first_file);

    ns.stick(true);
    let second = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &second, KeyType::EcdsaP256).await;
    let rec = deploy_not_served(&w).await;
    assert_eq!(
        ns.certkey_cert("shop").unwrap(),
        first_file,
        "the certkey points at the first again"
    );
    assert_eq!(
        rec.state.holding.as_deref(),
        Some(first.fingerprint().as_str())
    );
    assert!(
        ns.calls()
            .iter()
            .any(|c| c == "POST /nitro/v1/config/nsconfig?action=save")
    );

    // Wrong credentials: refused in NetScaler's words, nothing changed.
    ns.stick(false);
    w.secrets
        .put_current("deploy/ns", &SecretValue::new(b"certpilot:wrong".to_vec()))
        .await
        .unwrap();
    let third = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &third, KeyType::EcdsaP256).await;
    w.service.deploy("checkout", None, false).await.unwrap();
    let rec = record(&w).await;
    assert_eq!(rec.state.status, DeploymentStatus::Failed, "{rec:?}");
    let detail = rec.state.detail.unwrap();
    assert!(
        detail.contains("the NITRO user is refused")
            && detail.contains("Invalid username or password, errorcode 354"),
        "{detail}"
    );
    assert_eq!(ns.certkey_cert("shop").unwrap(), first_file);
}
