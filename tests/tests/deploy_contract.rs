//! The deploy-target contract (`certpilot_testkit::deploy_contract`) against every kind the
//! registry holds: each AWS kind on moto, and `files` on a real directory. A kind added to
//! the registry without a case here fails the last test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::{Deployment, Unit};
use certpilot_core::ports::DeployMaterial;
use certpilot_e2e::estate::Estate;
use certpilot_testkit::certs::{Ca, KeyKind};
use certpilot_testkit::deploy_contract::{deploy_target_contract, material};
use certpilot_testkit::procs::shared_moto;

const NAME: &str = "contract.example.test";

fn unit(kind: &str, settings: serde_json::Value) -> Unit {
    let mut d =
        Deployment::new("contract", kind).with_endpoint(format!("{NAME}:443").parse().unwrap());
    d.settings = settings.as_object().cloned().unwrap_or_default();
    d.resolved_units(&[]).remove(0)
}

struct Case {
    estate: Estate,
    ca: Ca,
    run: String,
}

impl Case {
    fn new() -> Case {
        Case {
            estate: Estate::new(&shared_moto().endpoint_url),
            ca: Ca::new("Contract CA"),
            run: format!("{}-{}", std::process::id(), rand_suffix()),
        }
    }

    /// Two certificates for the same names, the second a renewal of the first, and one
    /// to stand for what the target held before certpilot.
    fn certificates(
        &self,
    ) -> (
        DeployMaterial,
        DeployMaterial,
        certpilot_testkit::certs::Leaf,
    ) {
        let leaf = || self.ca.leaf(&[NAME]).key(KeyKind::EcdsaP256).build();
        let (a, b) = (leaf(), leaf());
        (
            material(&a, KeyType::EcdsaP256, &[NAME]),
            material(&b, KeyType::EcdsaP256, &[NAME]),
            leaf(),
        )
    }

    async fn run(&self, unit: &Unit, first: &DeployMaterial, second: &DeployMaterial) {
        let targets = certpilot_app::App::registry_with(self.estate.aws.clone());
        deploy_target_contract(&targets, unit, first, second).await;
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_import_keeps_the_contract() {
    let c = Case::new();
    let (first, second, _) = c.certificates();
    let u = unit("acm-import", serde_json::json!({"region": "us-east-1"}));
    c.run(&u, &first, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elbv2_default_and_sni_listeners_keep_the_contract() {
    let c = Case::new();
    for sni in [false, true] {
        let (first, second, legacy) = c.certificates();
        let legacy_arn = c.estate.import(&legacy).await;
        let listener = c
            .estate
            .listener(&format!("contract-{}-{sni}", c.run), &legacy_arn)
            .await;
        let u = unit(
            "elbv2-listener",
            serde_json::json!({"listener-arn": listener, "sni": sni}),
        );
        c.run(&u, &first, &second).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudfront_keeps_the_contract() {
    let c = Case::new();
    let (first, second, legacy) = c.certificates();
    let legacy_arn = c.estate.import(&legacy).await;
    let id = c
        .estate
        .distribution(&legacy_arn, &format!("contract-{}", c.run))
        .await;
    let u = unit("cloudfront", serde_json::json!({"distribution-id": id}));
    c.run(&u, &first, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_gateway_rest_and_http_domains_keep_the_contract() {
    let c = Case::new();
    for api in ["rest", "http"] {
        let (first, second, legacy) = c.certificates();
        let legacy_arn = c.estate.import(&legacy).await;
        let domain = format!("{api}-{}.contract.example.test", c.run);
        match api {
            "rest" => c.estate.rest_domain(&domain, &legacy_arn).await,
            _ => c.estate.http_domain(&domain, &legacy_arn).await,
        }
        let mut settings =
            serde_json::json!({"domain-name": domain, "region": "us-east-1", "api": api});
        // moto 5.2.5 implements UpdateDomainName neither for REST (v1) nor for HTTP (v2)
        // APIs: each case adopts the domain's imported certificate (re-imported over, as a
        // team moving to certpilot does), and switching a domain to another ARN cannot be
        // exercised here.
        settings["certificate-arn"] = legacy_arn.clone().into();
        let u = unit("api-gateway", settings);
        c.run(&u, &first, &second).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_keeps_the_contract() {
    let c = Case::new();
    let (first, second, _) = c.certificates();
    let dir = tempfile::tempdir().unwrap();
    let u = unit(
        "files",
        serde_json::json!({"dir": dir.path().join("live").to_str().unwrap(), "reload": "true"}),
    );
    c.run(&u, &first, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_keeps_the_contract() {
    use certpilot_core::ports::{SecretStore as _, SecretValue};
    let c = Case::new();
    let (first, second, _) = c.certificates();
    let mock = certpilot_testkit::cloudflare::MockCloudflare::start("example.test").await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = std::sync::Arc::new(certpilot_files::FileSecretStore::new(
        dir.path().to_path_buf(),
    ));
    secrets
        .put_current(
            "deploy/cf",
            &SecretValue::new(mock.token.clone().into_bytes()),
        )
        .await
        .unwrap();
    let u = unit(
        "cloudflare",
        serde_json::json!({"zone-id": mock.zone_id, "token-secret": "deploy/cf", "api-url": mock.api_url()}),
    );
    let targets = certpilot_app::App::registry_with_secrets(c.estate.aws.clone(), secrets);
    deploy_target_contract(&targets, &u, &first, &second).await;
    // One certificate in the zone, holding the renewal, uploaded as sni_custom.
    let stored = mock.certificates();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].kind, "sni_custom");
    assert_eq!(stored[0].chain, second.chain_pem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastly_keeps_the_contract() {
    use certpilot_core::ports::{SecretStore as _, SecretValue};
    let c = Case::new();
    let (first, second, _) = c.certificates();
    let mock = certpilot_testkit::fastly::MockFastly::start(NAME).await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = std::sync::Arc::new(certpilot_files::FileSecretStore::new(
        dir.path().to_path_buf(),
    ));
    secrets
        .put_current(
            "deploy/fastly",
            &SecretValue::new(mock.token.clone().into_bytes()),
        )
        .await
        .unwrap();
    let u = unit(
        "fastly",
        serde_json::json!({"token-secret": "deploy/fastly", "api-url": mock.api_url()}),
    );
    let targets = certpilot_app::App::registry_with_secrets(c.estate.aws.clone(), secrets);
    deploy_target_contract(&targets, &u, &first, &second).await;
    // One certificate, replaced in place (one id throughout), activated on the name; the
    // renewal's key is the only one left.
    let stored = mock.certificates();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].chain, second.chain_pem);
    let activations = mock.activations();
    assert_eq!(activations.len(), 1, "{activations:?}");
    assert_eq!(activations[0].certificate, stored[0].id);
    assert_eq!(mock.keys().len(), 1, "the first key, unused, was deleted");
    let calls = mock.calls();
    let count = |prefix: &str| calls.iter().filter(|c| c.starts_with(prefix)).count();
    assert_eq!(count("POST /tls/certificates"), 1, "{calls:?}");
    assert!(
        count("PATCH /tls/certificates/") >= 2,
        "renewals replace in place: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_keeps_the_contract() {
    use certpilot_core::ports::{SecretStore as _, SecretValue};
    let c = Case::new();
    let (first, second, _) = c.certificates();
    let receiver = certpilot_testkit::webhook_receiver::WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = std::sync::Arc::new(certpilot_files::FileSecretStore::new(
        dir.path().to_path_buf(),
    ));
    secrets
        .put_current(
            "deploy/hook",
            &SecretValue::new(receiver.secret.clone().into_bytes()),
        )
        .await
        .unwrap();
    let u = unit(
        "webhook",
        serde_json::json!({"url": receiver.url(), "secret": "deploy/hook"}),
    );
    let targets = certpilot_app::App::registry_with_secrets(c.estate.aws.clone(), secrets);
    deploy_target_contract(&targets, &u, &first, &second).await;
    // Every delivery was signed and accepted; the last puts the renewal in place.
    assert!(receiver.refusals().is_empty(), "{:?}", receiver.refusals());
    let kinds: Vec<String> = receiver
        .deliveries()
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.body["type"].as_str().unwrap(),
                &d.body["fingerprint"].as_str().unwrap()[..8]
            )
        })
        .collect();
    assert_eq!(
        kinds.last().unwrap(),
        &format!("deploy {}", &second.fingerprint[..8]),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k.starts_with("rollback")), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_keeps_the_contract_without_a_reload_and_across_a_restart() {
    let c = Case::new();
    let (first, second, before) = c.certificates();
    let mut haproxy = certpilot_testkit::procs::HaProxy::start(&before);
    let pid = haproxy.pid();
    let u = unit(
        "haproxy",
        serde_json::json!({"cert-file": haproxy.cert_file(), "socket": haproxy.socket()}),
    );
    let targets = certpilot_app::App::registry_with(c.estate.aws.clone());
    deploy_target_contract(&targets, &u, &first, &second).await;
    assert_eq!(haproxy.pid(), pid, "changed without a reload or a restart");
    assert!(certpilot_e2e::serves(&c.ca, &haproxy.target(), &second.fingerprint).await);
    // The file holds it too: a restart serves it still.
    haproxy.restart();
    assert!(certpilot_e2e::serves(&c.ca, &haproxy.target(), &second.fingerprint).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netscaler_keeps_the_contract() {
    use certpilot_core::ports::{SecretStore as _, SecretValue};
    let c = Case::new();
    let (first, second, before) = c.certificates();
    let mock = certpilot_testkit::netscaler::MockNetScaler::start("shop", &before).await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = std::sync::Arc::new(certpilot_files::FileSecretStore::new(
        dir.path().to_path_buf(),
    ));
    secrets
        .put_current(
            "deploy/ns",
            &SecretValue::new(format!("{}:{}", mock.user, mock.password).into_bytes()),
        )
        .await
        .unwrap();
    let u = unit(
        "netscaler",
        serde_json::json!({"nitro-url": mock.url(), "credentials-secret": "deploy/ns", "certkey": "shop"}),
    );
    let targets = certpilot_app::App::registry_with_secrets(c.estate.aws.clone(), secrets);
    deploy_target_contract(&targets, &u, &first, &second).await;
    // The virtual server serves the renewal; the first's files (its key above all) are gone.
    assert!(certpilot_e2e::serves(&c.ca, &mock.vserver_target(), &second.fingerprint).await);
    let short = |f: &str| f[..16].to_owned();
    let files = mock.files();
    assert!(
        files
            .iter()
            .any(|f| f.contains(&short(&second.fingerprint))),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.contains(&short(&first.fingerprint))),
        "{files:?}"
    );
    assert!(
        mock.saves() >= 3,
        "the configuration is saved after each change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_secret_keeps_the_contract() {
    use certpilot_core::ports::{SecretStore as _, SecretValue};
    let c = Case::new();
    let (mut first, mut second, before) = c.certificates();
    // A chain past the leaf, for ca.crt.
    for m in [&mut first, &mut second] {
        m.chain_pem.push_str(&c.ca.root_pem());
    }
    let cluster =
        certpilot_testkit::kube_api::MockKubeApi::start("prod-eu", &["shop"], "shop-tls", &before)
            .await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = std::sync::Arc::new(certpilot_files::FileSecretStore::new(
        dir.path().to_path_buf(),
    ));
    secrets
        .put_current(
            "deploy/kubeconfig",
            &SecretValue::new(cluster.kubeconfig().into_bytes()),
        )
        .await
        .unwrap();
    let u = unit(
        "kubernetes-secret",
        serde_json::json!({"secret-name": "shop-tls", "context": "prod-eu", "namespace": "shop",
            "kubeconfig-secret": "deploy/kubeconfig", "ca-crt": true}),
    );
    let targets = certpilot_app::App::registry_with_secrets(c.estate.aws.clone(), secrets);
    deploy_target_contract(&targets, &u, &first, &second).await;
    let stored = cluster.secret("shop", "shop-tls").unwrap();
    assert_eq!(stored["type"], "kubernetes.io/tls");
    assert_eq!(
        stored["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "certpilot"
    );
    assert_eq!(
        stored["metadata"]["annotations"]["certpilot.io/fingerprint"],
        second.fingerprint
    );
    assert_eq!(
        stored["metadata"]["managedFields"][0]["manager"],
        "certpilot"
    );
    use base64::Engine as _;
    let ca_crt = base64::engine::general_purpose::STANDARD
        .decode(stored["data"]["ca.crt"].as_str().unwrap())
        .unwrap();
    let issuers = certpilot_core::model::certificate::split_chain(&second.chain_pem)
        .unwrap()
        .1;
    assert_eq!(String::from_utf8(ca_crt).unwrap(), issuers);
    assert_eq!(issuers.trim(), c.ca.root_pem().trim());
    assert!(certpilot_e2e::serves(&c.ca, &cluster.ingress("shop"), &second.fingerprint).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_fleet_keeps_the_contract() {
    use certpilot_testkit::ssm_fleet::SsmFleet;
    let c = Case::new();
    let (first, second, before) = c.certificates();
    let fleet = SsmFleet::start(
        &shared_moto().endpoint_url,
        &[("i-0c0c0c0c0c0c0c0c1", &[("Role", "web")])],
        &before,
    )
    .await;
    let u = unit(
        "ssm-fleet",
        serde_json::json!({"region": "eu-west-1", "instance-id": "i-0c0c0c0c0c0c0c0c1",
            "dir": fleet.dir_setting(), "reload": fleet.reload_setting(),
            "bundle-prefix": format!("contract-{}/", c.run)}),
    );
    let targets = certpilot_app::App::registry_with(Estate::new(&fleet.endpoint_url()).aws);
    deploy_target_contract(&targets, &u, &first, &second).await;
    assert!(
        certpilot_e2e::serves(
            &c.ca,
            &fleet.target("i-0c0c0c0c0c0c0c0c1"),
            &second.fingerprint
        )
        .await
    );
}

/// `namespace-selector`: every namespace whose labels match is a unit, listed again on each
/// run, so a namespace labelled later gets the secret on the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_secret_reaches_every_namespace_a_label_selector_matches() {
    use certpilot_e2e::deploy_world::{NAME as SHOP, World};
    use certpilot_testkit::kube_api::MockKubeApi;
    let w = World::new("k8s-selector");
    let before = Ca::new("Old CA").leaf(&[SHOP]).build();
    let cluster =
        MockKubeApi::start("prod-eu", &["shop", "payments", "dev"], "shop-tls", &before).await;
    cluster.label("shop", "certpilot", "sync");
    cluster.label("payments", "certpilot", "sync");
    cluster.label("dev", "tier", "dev");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).unwrap();
    let mut d = Deployment::new("clusters", "kubernetes-secret")
        .with_endpoint(cluster.ingress("shop").parse().unwrap())
        .with_endpoint(cluster.ingress("payments").parse().unwrap());
    d.settings = serde_json::json!({"secret-name": "shop-tls", "context": "prod-eu",
        "namespace-selector": "certpilot=sync,tier!=dev", "kubeconfig": kubeconfig})
    .as_object()
    .cloned()
    .unwrap();
    d.verify_deadline = Some(5);
    w.add("k8s", vec![d]).await;
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("k8s", &first, KeyType::EcdsaP256).await;
    let report = w.service.deploy("k8s", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:?}");
    assert_eq!(
        report.targets[0]
            .units
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["clusters.payments", "clusters.shop"]
    );
    assert!(cluster.secret("dev", "shop-tls").is_none());

    cluster.label("dev", "certpilot", "sync");
    cluster.label("dev", "tier", "staging");
    let report = w.service.deploy("k8s", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:?}");
    assert_eq!(report.targets[0].units.len(), 3, "{report:?}");
    assert_eq!(
        cluster.secret("dev", "shop-tls").unwrap()["metadata"]["annotations"]["certpilot.io/fingerprint"],
        first.fingerprint()
    );
}

/// A secret certpilot did not create is left alone unless the deployment says `adopt`; one
/// of another type is refused in words (Kubernetes cannot change a type); credentials the
/// cluster refuses name the RBAC verbs needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_secret_leaves_secrets_it_does_not_own_alone() {
    use certpilot_core::ports::{DeployError, DeployRequest};
    use certpilot_testkit::kube_api::MockKubeApi;
    let c = Case::new();
    let (first, _, before) = c.certificates();
    let cluster = MockKubeApi::start("prod-eu", &["shop", "payments"], "shop-tls", &before).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig()).unwrap();
    let targets = certpilot_app::App::registry_with(c.estate.aws.clone());
    let deploy = |ns: &str, extra: serde_json::Value| {
        let mut settings = serde_json::json!({"secret-name": "shop-tls", "context": "prod-eu",
            "namespace": ns, "kubeconfig": kubeconfig});
        settings
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let u = unit("kubernetes-secret", settings);
        let (targets, first) = (&targets, &first);
        async move {
            let target = targets.target(&u).await?;
            target
                .deploy(DeployRequest {
                    id: "shop",
                    unit: &u,
                    certificate: first,
                    previous: None,
                    record: None,
                })
                .await
        }
    };
    let opaque = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "shop-tls", "namespace": "shop"}, "data": {"password": "aHVudGVyMg=="}});
    cluster.put("shop", opaque.clone());
    let Err(DeployError::Target(words)) = deploy("shop", serde_json::json!({"adopt": true})).await
    else {
        panic!("an Opaque secret was overwritten");
    };
    assert!(
        words.contains("type Opaque") && words.contains("cannot change a secret's type"),
        "{words}"
    );
    assert_eq!(
        cluster.secret("shop", "shop-tls").unwrap()["data"],
        opaque["data"]
    );

    let theirs = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "shop-tls", "namespace": "payments", "labels": {"owner": "shop-team"}},
        "data": {"tls.crt": "", "tls.key": ""}});
    cluster.put("payments", theirs.clone());
    let Err(DeployError::Target(words)) = deploy("payments", serde_json::json!({})).await else {
        panic!("a secret certpilot did not create was taken over");
    };
    assert!(words.contains("adopt=true"), "{words}");
    assert_eq!(cluster.secret("payments", "shop-tls").unwrap(), theirs);
    deploy("payments", serde_json::json!({"adopt": true}))
        .await
        .unwrap();
    let adopted = cluster.secret("payments", "shop-tls").unwrap();
    assert_eq!(
        adopted["metadata"]["labels"],
        serde_json::json!({"owner": "shop-team", "app.kubernetes.io/managed-by": "certpilot"})
    );
    assert_eq!(
        adopted["metadata"]["annotations"]["certpilot.io/fingerprint"],
        first.fingerprint
    );

    std::fs::write(
        &kubeconfig,
        cluster.kubeconfig().replace(&cluster.token, "stolen-token"),
    )
    .unwrap();
    let Err(DeployError::Target(words)) = deploy("payments", serde_json::json!({})).await else {
        panic!("a refused token went unnoticed");
    };
    assert!(
        words.contains("did not accept certpilot's credentials"),
        "{words}"
    );
}

/// An EKS cluster reached as the deploy function reaches it: endpoint and CA from
/// DescribeCluster, a token presigned with the AWS credentials; the cluster (playing EKS's
/// authenticator) checks the signature, asks STS who signed, and maps that ARN through its
/// access entries.
#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_secret_reaches_an_eks_cluster_with_a_token_its_authenticator_accepts() {
    use certpilot_core::ports::{DeployError, DeployRequest};
    use certpilot_testkit::kube_api::{EksFront, MockKubeApi};
    let c = Case::new();
    let (first, second, before) = c.certificates();
    let name = format!("shop-{}", c.run);
    let cluster = MockKubeApi::start_eks(&name, &["shop"], "shop-tls", &before, "testing").await;
    let front = EksFront::start(&shared_moto().endpoint_url, &[&cluster]).await;
    let aws = certpilot_e2e::moto_sdk_config(&front.endpoint_url());
    certpilot_e2e::create_eks_cluster(&aws, &name).await;
    let targets = certpilot_app::App::registry_with(aws);
    let u = unit(
        "kubernetes-secret",
        serde_json::json!({"secret-name": "shop-tls", "eks-cluster": name, "namespace": "shop"}),
    );
    let deploy = || {
        let (targets, u, first) = (&targets, &u, &first);
        async move {
            targets
                .target(u)
                .await?
                .deploy(DeployRequest {
                    id: "shop",
                    unit: u,
                    certificate: first,
                    previous: None,
                    record: None,
                })
                .await
        }
    };
    // STS vouches for the caller, but no access entry maps it yet.
    let Err(DeployError::Target(words)) = deploy().await else {
        panic!("a caller without an access entry was let in");
    };
    assert!(words.contains("access entry"), "{words}");
    let callers = cluster.callers();
    assert!(
        !callers.is_empty(),
        "the token was not accepted as signed: {words}"
    );
    assert!(cluster.secret("shop", "shop-tls").is_none());
    cluster.grant(&callers[0]);
    deploy_target_contract(&targets, &u, &first, &second).await;
    let stored = cluster.secret("shop", "shop-tls").unwrap();
    assert_eq!(stored["type"], "kubernetes.io/tls");
    assert!(
        cluster
            .calls()
            .iter()
            .all(|call| call.contains("/namespaces/shop/secrets/shop-tls")),
        "{:?}",
        cluster.calls()
    );
}

/// The CSRs the enrollment's pending change offers (starting one when none is), signed by
/// `ca`: what a keyless renewal leaves for the deploy, with no key.
async fn cps_material(
    targets: &certpilot_core::ports::DeployTargets,
    unit: &Unit,
    ca: &Ca,
) -> DeployMaterial {
    use certpilot_core::ports::TargetCsrs;
    for _ in 0..5 {
        if let TargetCsrs::Ready(csrs) = targets.csrs("contract", unit).await.unwrap() {
            let chains: Vec<(KeyType, String)> = csrs
                .iter()
                .map(|c| (c.key_type, ca.sign_csr(&c.csr_pem)))
                .collect();
            let fingerprint = certpilot_testkit::certs::fingerprint_of;
            let (key_type, chain) = &chains[0];
            let mut m = material(
                &certpilot_testkit::certs::Leaf::from_pem(
                    chain,
                    &ca.leaf(&[NAME]).build().key_pem(),
                ),
                *key_type,
                &[NAME],
            );
            // The leaf's own fingerprint, and no key: Akamai holds it.
            m.fingerprint = fingerprint(chain);
            m.key = None;
            m.stacked = chains[1..]
                .iter()
                .map(
                    |(k, c)| certpilot_core::model::certificate::StackedCertificate {
                        key_type: *k,
                        fingerprint: fingerprint(c),
                        serial: String::new(),
                        not_before: time::OffsetDateTime::now_utc(),
                        not_after: time::OffsetDateTime::now_utc() + time::Duration::days(60),
                        ari_id: None,
                        chain_pem: c.clone(),
                    },
                )
                .collect();
            return m;
        }
    }
    panic!("the enrollment never offered its CSRs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn akamai_cps_keeps_the_contract_but_its_rollback_clause() {
    use certpilot_core::ports::{SecretStore as _, SecretValue};
    let c = Case::new();
    let mock = certpilot_testkit::akamai::MockAkamai::start(&[NAME], true, true).await;
    // The contract's many calls within a minute: an account granted more than 35.
    mock.rate_limit(1000, std::time::Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let secrets = std::sync::Arc::new(certpilot_files::FileSecretStore::new(
        dir.path().to_path_buf(),
    ));
    secrets
        .put_current(
            "deploy/akamai",
            &SecretValue::new(mock.edgerc().into_bytes()),
        )
        .await
        .unwrap();
    let u = unit(
        "akamai-cps",
        serde_json::json!({"enrollment-id": "10002", "credentials-secret": "deploy/akamai",
            "api-url": mock.api_url(), "staging-endpoints": mock.staging_target(),
            "requests-per-minute": "1000"}),
    );
    let targets = certpilot_app::App::registry_with_secrets(c.estate.aws.clone(), secrets);
    assert!(!targets.kinds().get("akamai-cps").unwrap().can_roll_back);
    let first = cps_material(&targets, &u, &c.ca).await;
    certpilot_testkit::deploy_contract::deploy_target_contract_renewing(
        &targets,
        &u,
        &first,
        async || cps_material(&targets, &u, &c.ca).await,
    )
    .await;
    // Production holds the renewal's pair, RSA first.
    let algorithms: Vec<String> = mock
        .production_uploads()
        .iter()
        .map(|p| p.key_algorithm.clone())
        .collect();
    assert_eq!(algorithms, ["RSA", "ECDSA"]);
    assert_eq!(
        mock.acknowledged()
            .iter()
            .filter(|a| *a == "change-management")
            .count(),
        2
    );
}

/// Every kind of the registry has a case above.
#[test]
fn every_registered_kind_is_run_against_the_contract() {
    let covered = [
        "akamai-cps",
        "acm-import",
        "elbv2-listener",
        "cloudfront",
        "api-gateway",
        "files",
        "haproxy",
        "kubernetes-secret",
        "ssm-fleet",
        "cloudflare",
        "fastly",
        "netscaler",
        "webhook",
    ];
    let registered: Vec<&str> = certpilot_app::deploy_kinds()
        .iter()
        .map(|k| k.kind)
        .collect();
    for kind in &registered {
        assert!(
            covered.contains(kind),
            "kind {kind} is registered but never run against the deploy contract here"
        );
    }
}
