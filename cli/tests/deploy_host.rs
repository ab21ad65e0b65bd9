//! The host kinds through the CLI: a certificate issued by Pebble and installed in a real
//! HAProxy (Debian's) through its Runtime API — proven by handshake with no reload, renewed,
//! rolled back — and still served after HAProxy restarts from its files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use certpilot_testkit::procs::HaProxy;
use support::{Env, json_lines, stderr};

const NAME: &str = "lb.certpilot.test";

/// `certpilot renew --format json`, proving quickly; `--force ID` when `force` names one.
async fn renew_quickly(env: &Env, force: Option<&str>) -> std::process::Output {
    let mut args = vec![
        "renew",
        "--format",
        "json",
        "--verify-interval",
        "200ms",
        "--verify-max-deadline",
        "10s",
    ];
    if let Some(id) = force {
        args.extend(["--force", id]);
    }
    env.run(&args).await
}

/// The fingerprint `certpilot scan` sees at `target`.
async fn served_at(env: &Env, target: String) -> String {
    served(
        &env.run(&["scan", &target, "--format", "json", "--no-record"])
            .await,
    )
}

fn served(out: &std::process::Output) -> String {
    json_lines(out)[0]["certificate"]["fingerprint_sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_installs_in_haproxy_without_a_reload_and_rollback_puts_the_previous_back() {
    let env = Env::start();
    let before = certpilot_testkit::certs::LeafBuilder::self_signed(&[NAME]).build();
    let mut haproxy = HaProxy::start(&before);
    let pid = haproxy.pid();
    let spec = format!(
        "haproxy:cert-file={},socket={}",
        haproxy.cert_file().display(),
        haproxy.socket().display()
    );
    let added = env
        .add(
            &[NAME],
            &["--deploy", &spec, "--endpoint", &haproxy.target()],
        )
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    let renew = |force: bool| renew_quickly(&env, force.then_some(NAME));
    let first = renew(false).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let rows = json_lines(&first);
    let row = rows.iter().find(|r| r["kind"] == "haproxy").unwrap();
    assert_eq!(row["status"], "verified", "{rows:?}");
    let first_fp = rows[0]["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(served_at(&env, haproxy.target()).await, first_fp);

    let second = renew(true).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let second_fp = json_lines(&second)[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(served_at(&env, haproxy.target()).await, second_fp);
    assert_eq!(haproxy.pid(), pid, "no reload, no restart");

    // Rolled back by hand: the first goes back through the Runtime API and into the file.
    let rolled = env.run(&["rollback", NAME, "--format", "json"]).await;
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    assert_eq!(served_at(&env, haproxy.target()).await, first_fp);
    haproxy.restart();
    assert_eq!(
        served_at(&env, haproxy.target()).await,
        first_fp,
        "the file holds it too"
    );

    // Without a socket or a reload, HAProxy would never load it: refused when added.
    let refused = env
        .add(
            &["other.certpilot.test"],
            &[
                "--deploy",
                &format!("haproxy:cert-file={}", haproxy.cert_file().display()),
            ],
        )
        .await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("give socket="),
        "{}",
        stderr(&refused)
    );
}

/// The seeds' "issue once, sync everywhere": one renewal installs the certificate in three
/// clusters × two namespaces and an HAProxy, proven at every ingress; an ingress that keeps
/// the old certificate is `not_serving` in its namespace alone and rolled back there alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_renewal_reaches_three_clusters_two_namespaces_each_and_haproxy_and_an_outage_stays_in_its_namespace()
 {
    use certpilot_testkit::kube_api::MockKubeApi;
    const SHOP: &str = "shop.certpilot.test";
    const NAMESPACES: [&str; 2] = ["shop", "payments"];
    let env = Env::start();
    let before = certpilot_testkit::certs::LeafBuilder::self_signed(&[SHOP]).build();
    let mut clusters = Vec::new();
    for context in ["prod-eu", "prod-us", "prod-ap"] {
        clusters.push(MockKubeApi::start(context, &NAMESPACES, "shop-tls", &before).await);
    }
    let haproxy = HaProxy::start(&before);
    let kubeconfig = env.path("kubeconfig");
    std::fs::write(
        &kubeconfig,
        MockKubeApi::kubeconfig_of(&clusters.iter().collect::<Vec<_>>()),
    )
    .unwrap();
    let units: Vec<serde_json::Value> = clusters
        .iter()
        .flat_map(|c| {
            NAMESPACES.iter().map(move |ns| {
                serde_json::json!({"name": format!("{}.{ns}", c.context),
                    "settings": {"context": c.context, "namespace": ns},
                    "endpoints": [c.ingress(ns)]})
            })
        })
        .collect();
    env.add_deployments(
        &[SHOP],
        serde_json::json!([
            {"name": "clusters", "kind": "kubernetes-secret", "units": units,
             "settings": {"secret-name": "shop-tls", "kubeconfig": kubeconfig}},
            {"name": "edge-lb", "kind": "haproxy", "endpoints": [haproxy.target()],
             "settings": {"cert-file": haproxy.cert_file(), "socket": haproxy.socket()}},
        ]),
    )
    .await;
    let renew = |force: bool| renew_quickly(&env, force.then_some(SHOP));
    let serves = |target: String| served_at(&env, target);
    let secret_holds = |c: &MockKubeApi, ns: &str| {
        c.secret(ns, "shop-tls").unwrap()["metadata"]["annotations"]["certpilot.io/fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Issued once, installed and proven everywhere.
    let first = renew(false).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let rows = json_lines(&first);
    let first_fp = rows[0]["fingerprint"].as_str().unwrap().to_owned();
    let k8s = rows.iter().find(|r| r["name"] == "clusters").unwrap();
    assert_eq!(k8s["status"], "verified", "{rows:?}");
    assert_eq!(k8s["units"].as_array().unwrap().len(), 6, "{k8s}");
    for c in &clusters {
        for ns in NAMESPACES {
            assert_eq!(serves(c.ingress(ns)).await, first_fp, "{}/{ns}", c.context);
            assert_eq!(secret_holds(c, ns), first_fp);
        }
    }
    assert_eq!(serves(haproxy.target()).await, first_fp);

    // The next renewal, with prod-us/payments' ingress stuck on what it serves.
    clusters[1].stick("payments", true);
    let second = renew(true).await;
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    let rows = json_lines(&second);
    let second_fp = rows[0]["fingerprint"].as_str().unwrap().to_owned();
    assert_ne!(second_fp, first_fp);
    let k8s = rows.iter().find(|r| r["name"] == "clusters").unwrap();
    assert_eq!(k8s["status"], "not_serving", "{k8s}");
    for unit in k8s["units"].as_array().unwrap() {
        if unit["name"] == "prod-us.payments" {
            assert_eq!(unit["status"], "not_serving", "{unit}");
            assert_eq!(unit["rolled_back"], true, "{unit}");
        } else {
            assert_eq!(unit["status"], "verified", "{unit}");
            assert!(unit.get("rolled_back").is_none(), "{unit}");
        }
    }
    let lb = rows.iter().find(|r| r["name"] == "edge-lb").unwrap();
    assert_eq!(lb["status"], "verified", "{rows:?}");
    for c in &clusters {
        for ns in NAMESPACES {
            let expected = if (c.context.as_str(), ns) == ("prod-us", "payments") {
                &first_fp
            } else {
                &second_fp
            };
            assert_eq!(&secret_holds(c, ns), expected, "{}/{ns}", c.context);
            if (c.context.as_str(), ns) != ("prod-us", "payments") {
                assert_eq!(serves(c.ingress(ns)).await, second_fp, "{}/{ns}", c.context);
            }
        }
    }
    assert_eq!(serves(haproxy.target()).await, second_fp);
    // `certpilot rollback` puts the first back in every namespace and at HAProxy.
    clusters[1].stick("payments", false);
    let rolled = env.run(&["rollback", SHOP, "--format", "json"]).await;
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    for c in &clusters {
        for ns in NAMESPACES {
            assert_eq!(secret_holds(c, ns), first_fp, "{}/{ns}", c.context);
            assert_eq!(serves(c.ingress(ns)).await, first_fp, "{}/{ns}", c.context);
        }
    }
    assert_eq!(serves(haproxy.target()).await, first_fp);
    // Each cluster was written to in its own namespaces only.
    for c in &clusters {
        assert!(
            c.calls().iter().all(|call| NAMESPACES
                .iter()
                .any(|ns| call.contains(&format!("/namespaces/{ns}/secrets/shop-tls")))),
            "{:?}",
            c.calls()
        );
    }
}

/// An EC2 fleet through SSM from the CLI: the tagged instances get the certificate Pebble
/// issued, each proven at its address; `rollback` puts the first back on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_installs_on_each_instance_of_an_ssm_fleet_and_rollback_puts_the_previous_back() {
    use certpilot_testkit::ssm_fleet::SsmFleet;
    const VMS: &str = "vms.certpilot.test";
    let mut env = Env::start();
    let moto = certpilot_testkit::procs::shared_moto();
    let before = certpilot_testkit::certs::LeafBuilder::self_signed(&[VMS]).build();
    let fleet = SsmFleet::start(
        &moto.endpoint_url,
        &[
            ("i-0e0e0e0e0e0e0e0e1", &[("Role", "vms")]),
            ("i-0e0e0e0e0e0e0e0e2", &[("Role", "vms")]),
        ],
        &before,
    )
    .await;
    env.extra_env = vec![
        ("AWS_ENDPOINT_URL".into(), fleet.endpoint_url()),
        ("AWS_REGION".into(), "eu-west-1".into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
    ];
    env.add_deployments(
        &[VMS],
        serde_json::json!({"name": "vms", "kind": "ssm-fleet", "settings": {
            "region": "eu-west-1", "tags": "Role=vms", "dir": fleet.dir_setting(),
            "reload": fleet.reload_setting(), "port": fleet.port().to_string(),
            "bundle-prefix": format!("cli-{}/", std::process::id())}}),
    )
    .await;
    let renew = |force: bool| renew_quickly(&env, force.then_some(VMS));
    let serves = |target: String| served_at(&env, target);
    let first = renew(false).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let rows = json_lines(&first);
    let first_fp = rows[0]["fingerprint"].as_str().unwrap().to_owned();
    let vms = rows.iter().find(|r| r["name"] == "vms").unwrap();
    assert_eq!(vms["status"], "verified", "{vms}");
    assert_eq!(vms["units"].as_array().unwrap().len(), 2, "{vms}");
    for vm in fleet.instances() {
        assert_eq!(serves(fleet.target(&vm.id)).await, first_fp, "{}", vm.id);
    }
    let second = renew(true).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let second_fp = json_lines(&second)[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    for vm in fleet.instances() {
        assert_eq!(serves(fleet.target(&vm.id)).await, second_fp, "{}", vm.id);
    }
    let rolled = env.run(&["rollback", VMS, "--format", "json"]).await;
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    for vm in fleet.instances() {
        assert_eq!(serves(fleet.target(&vm.id)).await, first_fp, "{}", vm.id);
    }
}
