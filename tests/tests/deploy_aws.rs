//! Deploying to every AWS target kind on moto (ACM import, ELBv2 default and SNI listeners,
//! CloudFront, REST and HTTP API domains, one through an assumed role), with real TLS servers
//! standing in for each data plane, and the outage itself: the API takes the new certificate,
//! the endpoint keeps serving the old one. And the `files` kind, end to end on a directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::{Deployment, DeploymentStatus};
use certpilot_core::ports::CertificateStore;
use certpilot_core::services::verify::Verdict;
use certpilot_e2e::deploy_world::{World, deployment};
use certpilot_testkit::certs::KeyKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_kind_ends_up_serving_each_renewal_and_keeps_its_settings() {
    let w = World::new("kinds");
    let run = std::process::id();
    let legacy = w.leaf(KeyKind::EcdsaP256);
    let legacy_arn = w.estate.import(&legacy).await;
    // API Gateway domains already name an imported certificate, which certpilot adopts.
    let rest_arn = w.estate.import(&legacy).await;
    let http_arn = w.estate.import(&legacy).await;

    let default_listener = w.estate.listener(&format!("shop-{run}"), &legacy_arn).await;
    let sni_listener = w
        .estate
        .listener(&format!("shop-sni-{run}"), &legacy_arn)
        .await;
    let distribution = w
        .estate
        .distribution(&legacy_arn, &format!("cf-{run}"))
        .await;
    let (rest, http) = (
        format!("api-{run}.example.test"),
        format!("http-{run}.example.test"),
    );
    w.estate.rest_domain(&rest, &rest_arn).await;
    w.estate.http_domain(&http, &http_arn).await;
    let config_before = w.estate.distribution_config(&distribution).await;

    let planes = [
        w.estate.follow_listener(&default_listener, false).await,
        w.estate.follow_listener(&sni_listener, true).await,
        w.estate.follow_distribution(&distribution).await,
        w.estate.follow_rest_domain(&rest).await,
        w.estate.follow_http_domain(&http).await,
    ];
    let mut deployments = vec![
        deployment(
            "alb",
            (
                "elbv2-listener",
                serde_json::json!({"listener-arn": default_listener.clone(), "sni": false}),
            ),
            &planes[0].endpoint(),
        ),
        deployment(
            "alb-sni",
            (
                "elbv2-listener",
                serde_json::json!({"listener-arn": sni_listener.clone(), "sni": true}),
            ),
            &planes[1].endpoint(),
        ),
        deployment(
            "cdn",
            (
                "cloudfront",
                serde_json::json!({"distribution-id": distribution.clone()}),
            ),
            &planes[2].endpoint(),
        ),
        deployment(
            "rest-api",
            (
                "api-gateway",
                serde_json::json!({"domain-name": rest.clone(), "region": "us-east-1", "api": "rest"}),
            ),
            &planes[3].endpoint(),
        ),
        deployment(
            "http-api",
            (
                "api-gateway",
                serde_json::json!({"domain-name": http.clone(), "region": "us-east-1", "api": "http"}),
            ),
            &planes[4].endpoint(),
        ),
        Deployment {
            endpoints: vec![],
            ..deployment(
                "acm",
                ("acm-import", serde_json::json!({"region": "eu-west-1"})),
                "unused:443",
            )
        },
    ];
    deployments[2].settings.insert(
        "role-arn".into(),
        "arn:aws:iam::123456789012:role/cdn-deployer".into(),
    );
    deployments[3]
        .settings
        .insert("certificate-arn".into(), rest_arn.clone().into());
    deployments[4]
        .settings
        .insert("certificate-arn".into(), http_arn.clone().into());
    w.add("checkout", deployments).await;

    // First issuance: every target moves from the team's certificate to certpilot's.
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    for t in &report.targets {
        assert!(
            t.checks.iter().all(|c| c.verdict == Verdict::Verified),
            "{t:?}"
        );
    }
    let cert = w.store.certificate("checkout").await.unwrap().unwrap();
    assert!(cert.is_deployed());
    let arn_of = |name: &str| {
        cert.deployment_record(name)
            .unwrap()
            .state
            .handle
            .clone()
            .unwrap()
    };
    let alb_arn = arn_of("alb");
    assert_ne!(alb_arn, legacy_arn, "certpilot imports its own certificate");
    assert!(arn_of("acm").contains(":eu-west-1:"), "{}", arn_of("acm"));
    assert_eq!(
        arn_of("rest-api"),
        rest_arn,
        "the adopted ARN is re-imported"
    );
    assert_eq!(
        w.estate.acm_fingerprint(&rest_arn).await,
        first.fingerprint()
    );
    // SNI: certpilot's certificate was added beside the team's, which stays: only what
    // certpilot put in the list is ever removed from it.
    let sni = w
        .estate
        .elb
        .describe_listener_certificates()
        .listener_arn(&sni_listener)
        .send()
        .await
        .unwrap();
    let sni_arns: Vec<_> = sni
        .certificates()
        .iter()
        .filter_map(|c| c.certificate_arn.clone())
        .collect();
    assert!(sni_arns.contains(&arn_of("alb-sni")), "{sni_arns:?}");
    let config_after = w.estate.distribution_config(&distribution).await;
    let viewer = config_after.viewer_certificate.clone().unwrap();
    assert_eq!(
        viewer.acm_certificate_arn.as_deref(),
        Some(arn_of("cdn").as_str())
    );
    assert_eq!(
        viewer.minimum_protocol_version,
        config_before
            .viewer_certificate
            .as_ref()
            .unwrap()
            .minimum_protocol_version,
        "every other viewer setting is kept"
    );
    assert_eq!(config_after.comment, config_before.comment);
    assert_eq!(config_after.origins, config_before.origins);

    // A redelivered deploy of the same certificate changes nothing.
    let again = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(again.targets.iter().all(|t| t.unchanged), "{again:?}");

    // Renewal: re-imported over the same ARNs, so no target needed rebinding; SNI ends
    // with only certpilot's current entry beside the team's.
    let second = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &second, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let cert = w.store.certificate("checkout").await.unwrap().unwrap();
    for name in ["alb", "alb-sni", "cdn", "rest-api", "http-api", "acm"] {
        let rec = cert.deployment_record(name).unwrap();
        assert_eq!(rec.state.status, DeploymentStatus::Verified, "{name}");
        assert_eq!(
            rec.state.holding.as_deref(),
            Some(second.fingerprint().as_str())
        );
    }
    assert_eq!(
        cert.deployment_record("alb").unwrap().state.handle,
        Some(alb_arn.clone())
    );
    assert_eq!(
        w.estate.acm_fingerprint(&alb_arn).await,
        second.fingerprint()
    );

    // A key-type change: ACM cannot re-import over a different key algorithm, so a new ARN
    // is imported and the listener rebound to it.
    let rsa = w.leaf(KeyKind::Rsa2048);
    w.issue("checkout", &rsa, KeyType::Rsa2048).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let cert = w.store.certificate("checkout").await.unwrap().unwrap();
    let rsa_arn = cert
        .deployment_record("alb")
        .unwrap()
        .state
        .handle
        .clone()
        .unwrap();
    assert_ne!(rsa_arn, alb_arn);
    assert_eq!(
        w.estate.acm_fingerprint(&alb_arn).await,
        second.fingerprint(),
        "the old ARN is untouched"
    );
    let listener = w
        .estate
        .elb
        .describe_listeners()
        .listener_arns(&default_listener)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listener.listeners()[0].certificates()[0]
            .certificate_arn
            .as_deref(),
        Some(rsa_arn.as_str())
    );
    drop(planes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_keeps_the_old_certificate_is_not_serving_and_the_previous_is_put_back() {
    let w = World::new("outage");
    let run = std::process::id();
    let legacy = w.leaf(KeyKind::EcdsaP256);
    let legacy_arn = w.estate.import(&legacy).await;
    let listener = w
        .estate
        .listener(&format!("outage-{run}"), &legacy_arn)
        .await;
    let distribution = w
        .estate
        .distribution(&legacy_arn, &format!("outage-cf-{run}"))
        .await;
    let alb = w.estate.follow_listener(&listener, false).await;
    let cdn = w.estate.follow_distribution(&distribution).await;
    w.add(
        "checkout",
        vec![
            deployment(
                "alb",
                (
                    "elbv2-listener",
                    serde_json::json!({"listener-arn": listener.clone(), "sni": false}),
                ),
                &alb.endpoint(),
            ),
            deployment(
                "cdn",
                (
                    "cloudfront",
                    serde_json::json!({"distribution-id": distribution.clone()}),
                ),
                &cdn.endpoint(),
            ),
        ],
    )
    .await;
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    assert!(
        w.service
            .deploy("checkout", None, false)
            .await
            .unwrap()
            .is_verified()
    );
    let alb_arn = w
        .store
        .certificate("checkout")
        .await
        .unwrap()
        .unwrap()
        .deployment_record("alb")
        .unwrap()
        .state
        .handle
        .clone()
        .unwrap();

    // The renewal succeeds and the load balancer's API takes it, but its nodes never pick it up.
    alb.freeze();
    let renewed = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &renewed, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(!report.is_verified());
    let bad = &report.targets[0];
    assert_eq!(bad.state.status, DeploymentStatus::NotServing);
    assert_eq!(bad.rolled_back, Some(true));
    let check = &bad.checks[0];
    match &check.verdict {
        Verdict::NotServing { serving, .. } => {
            assert_eq!(serving.as_deref(), Some(first.fingerprint().as_str()))
        }
        other => panic!("expected not_serving, got {other:?}"),
    }
    let detail = bad.state.detail.as_deref().unwrap();
    assert!(
        detail.contains(&alb.endpoint()) && detail.contains(&first.fingerprint()),
        "{detail}"
    );
    assert!(
        detail.contains("previous certificate was put back"),
        "{detail}"
    );
    // ACM cannot roll back a re-import: the previous certificate was imported over it again.
    assert_eq!(
        w.estate.acm_fingerprint(&alb_arn).await,
        first.fingerprint()
    );
    assert_eq!(report.targets[1].state.status, DeploymentStatus::Verified);

    let cert = w.store.certificate("checkout").await.unwrap().unwrap();
    assert!(
        !cert.is_deployed(),
        "a renewal not served everywhere is not done"
    );
    assert_eq!(w.service.pending().await.unwrap(), ["checkout"]);

    // Once the nodes follow again, the next deploy finishes the job.
    alb.thaw();
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    assert!(report.targets[1].unchanged);
    assert_eq!(
        w.estate.acm_fingerprint(&alb_arn).await,
        renewed.fingerprint()
    );

    // By hand: everything back to the previous certificate, and left there.
    let rolled = w.service.roll_back("checkout", None).await.unwrap();
    assert!(
        rolled
            .iter()
            .all(|t| t.state.status == DeploymentStatus::RolledBack),
        "{rolled:?}"
    );
    assert_eq!(
        w.estate.acm_fingerprint(&alb_arn).await,
        first.fingerprint()
    );
    assert!(w.service.pending().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sni_certificate_that_is_not_served_is_taken_off_the_listener_again() {
    let w = World::new("sni-outage");
    let run = std::process::id();
    let legacy = w.leaf(KeyKind::EcdsaP256);
    let legacy_arn = w.estate.import(&legacy).await;
    let listener = w
        .estate
        .listener(&format!("sni-out-{run}"), &legacy_arn)
        .await;
    let plane = w.estate.follow_listener(&listener, true).await;
    plane.freeze();
    w.add(
        "checkout",
        vec![deployment(
            "alb-sni",
            (
                "elbv2-listener",
                serde_json::json!({"listener-arn": listener.clone(), "sni": true}),
            ),
            &plane.endpoint(),
        )],
    )
    .await;
    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("checkout", &first, KeyType::EcdsaP256).await;
    let report = w.service.deploy("checkout", None, false).await.unwrap();
    assert_eq!(report.targets[0].state.status, DeploymentStatus::NotServing);
    assert_eq!(report.targets[0].rolled_back, Some(true));
    let listed = w
        .estate
        .elb
        .describe_listener_certificates()
        .listener_arn(&listener)
        .send()
        .await
        .unwrap();
    let arns: Vec<_> = listed
        .certificates()
        .iter()
        .filter_map(|c| c.certificate_arn.clone())
        .collect();
    assert_eq!(arns, [legacy_arn], "only the team's certificate is left");
}

/// The `files` kind end to end: a server on a VM reading a directory certbot used to fill,
/// taken over, proven by handshake, rolled back when the reload does not take, and pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_a_vm_are_switched_reloaded_proven_and_rolled_back_when_not_served() {
    use certpilot_testkit::servers::FilesServer;
    let w = World::new("files");
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("shop");
    let legacy = w.leaf(KeyKind::EcdsaP256);
    std::fs::create_dir(&live).unwrap();
    std::fs::write(live.join("fullchain.pem"), legacy.chain_pem()).unwrap();
    std::fs::write(live.join("privkey.pem"), legacy.key_pem()).unwrap();
    let server = FilesServer::start(&live, &root.path().join("reload-requested")).await;
    let files = |reload: &str| {
        deployment(
            "web",
            (
                "files",
                serde_json::json!({"dir": live.to_str().unwrap(), "reload": reload}),
            ),
            &server.server().target(),
        )
    };
    w.add("shop", vec![files(&server.reload_command())]).await;

    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("shop", &first, KeyType::EcdsaP256).await;
    let report = w.service.deploy("shop", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    assert!(std::fs::symlink_metadata(&live).unwrap().is_symlink());
    let versions = root.path().join("shop.versions");
    assert!(
        versions.join("before-certpilot/fullchain.pem").is_file(),
        "what certbot left is kept to roll back to"
    );

    // A reload that does not reload (a typo'd unit name that exits 0): the endpoint keeps
    // the first certificate, so the second is not served and the files are switched back.
    let mut cert = w.store.certificate("shop").await.unwrap().unwrap();
    cert.spec.deployments = vec![files("true")];
    w.store.update_certificate(&cert).await.unwrap();
    let second = w.leaf(KeyKind::EcdsaP256);
    w.issue("shop", &second, KeyType::EcdsaP256).await;
    let report = w.service.deploy("shop", None, false).await.unwrap();
    let web = &report.targets[0];
    assert_eq!(
        web.state.status,
        DeploymentStatus::NotServing,
        "{report:#?}"
    );
    assert_eq!(web.rolled_back, Some(true), "{report:#?}");
    let read = |f: &str| std::fs::read_to_string(live.join(f)).unwrap();
    assert_eq!(
        read("fullchain.pem"),
        std::fs::read_to_string(
            versions
                .join(certpilot_deploy_local::files::layout::version_of(
                    &first.fingerprint()
                ))
                .join("fullchain.pem")
        )
        .unwrap()
    );

    // The reload fixed: the second certificate is served, and only it and the first are
    // kept on disk (the pre-certpilot files, with their key, are gone).
    cert = w.store.certificate("shop").await.unwrap().unwrap();
    cert.spec.deployments = vec![files(&server.reload_command())];
    w.store.update_certificate(&cert).await.unwrap();
    let report = w.service.deploy("shop", None, true).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");
    let mut left: Vec<String> = std::fs::read_dir(&versions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut kept = vec![
        certpilot_deploy_local::files::layout::version_of(&first.fingerprint()),
        certpilot_deploy_local::files::layout::version_of(&second.fingerprint()),
    ];
    kept.sort();
    assert_eq!(left, kept);
}

/// An SSM fleet: every instance the tags choose gets the certificate (through a Secrets
/// Manager version it reads, never in the command) and is proven at its own address; an
/// instance whose reload fails is reported alone, with what it printed, and the others
/// keep the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssm_fleet_installs_on_each_tagged_instance_and_reports_a_failing_one_alone() {
    use certpilot_testkit::ssm_fleet::SsmFleet;
    const WEB: &[(&str, &str)] = &[("Role", "web"), ("Env", "prod")];
    let before = certpilot_testkit::certs::Ca::new("Old CA")
        .leaf(&[certpilot_e2e::deploy_world::NAME])
        .build();
    let moto = certpilot_testkit::procs::shared_moto();
    let fleet = SsmFleet::start(
        &moto.endpoint_url,
        &[
            ("i-0a1b2c3d4e5f60001", WEB),
            ("i-0a1b2c3d4e5f60002", WEB),
            ("i-0a1b2c3d4e5f60003", WEB),
            ("i-0a1b2c3d4e5f60004", &[("Role", "db"), ("Env", "prod")]),
        ],
        &before,
    )
    .await;
    let w = World::with_endpoint("ssm", &fleet.endpoint_url());
    let mut d = Deployment::new("web-fleet", "ssm-fleet");
    d.settings = serde_json::json!({"region": "eu-west-1", "tags": "Role=web;Env=prod",
        "dir": fleet.dir_setting(), "reload": fleet.reload_setting(),
        "port": fleet.port().to_string(), "bundle-prefix": format!("ssm-{}/", std::process::id())})
    .as_object()
    .cloned()
    .unwrap();
    d.verify_deadline = Some(5);
    certpilot_app::deploy_kinds()
        .check_spec(&certpilot_e2e::deploy_world::spec_for(
            certpilot_e2e::deploy_world::NAME,
            vec![d.clone()],
        ))
        .unwrap();
    w.add("fleet", vec![d]).await;
    let serves = |id: &str, fp: String| {
        let (w, target) = (&w, fleet.target(id));
        async move { certpilot_e2e::serves(&w.ca, &target, &fp).await }
    };

    let first = w.leaf(KeyKind::EcdsaP256);
    w.issue("fleet", &first, KeyType::EcdsaP256).await;
    let report = w.service.deploy("fleet", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:?}");
    let units = &report.targets[0].units;
    assert_eq!(
        units.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        [
            "i-0a1b2c3d4e5f60001",
            "i-0a1b2c3d4e5f60002",
            "i-0a1b2c3d4e5f60003"
        ],
        "the db instance is not chosen"
    );
    for i in 1..=3 {
        assert!(serves(&format!("i-0a1b2c3d4e5f6000{i}"), first.fingerprint()).await);
    }
    assert!(!serves("i-0a1b2c3d4e5f60004", first.fingerprint()).await);
    // The key never travels in a command (SSM keeps them in its history).
    for (_, invocation) in fleet.invocations() {
        let key_line = first.key_pem().lines().nth(1).unwrap().to_owned();
        assert!(
            !invocation.script.contains(&key_line),
            "{}",
            invocation.script
        );
        assert!(
            !invocation
                .script
                .contains(first.chain_pem().lines().nth(1).unwrap())
        );
        assert_eq!(invocation.status, "Success", "{invocation:?}");
    }
    // Laid out as the files kind does, what was there before kept aside.
    let live = fleet.root().join("i-0a1b2c3d4e5f60001/live");
    assert!(std::fs::symlink_metadata(&live).unwrap().is_symlink());
    assert!(
        fleet
            .root()
            .join("i-0a1b2c3d4e5f60001/live.versions/before-certpilot/fullchain.pem")
            .exists()
    );

    // The renewal: instance 2's reload fails; it alone is reported, in its own words.
    fleet.break_reload("i-0a1b2c3d4e5f60002", true);
    let second = w.leaf(KeyKind::EcdsaP256);
    w.issue("fleet", &second, KeyType::EcdsaP256).await;
    let report = w.service.deploy("fleet", None, false).await.unwrap();
    assert!(!report.is_verified());
    for unit in &report.targets[0].units {
        if unit.name == "i-0a1b2c3d4e5f60002" {
            assert_eq!(unit.state.status, DeploymentStatus::Failed, "{unit:?}");
            let detail = unit.state.detail.as_deref().unwrap();
            assert!(
                detail.contains("i-0a1b2c3d4e5f60002")
                    && detail.contains("configuration test failed")
                    && detail.contains("exit 4"),
                "{detail}"
            );
        } else {
            assert_eq!(unit.state.status, DeploymentStatus::Verified, "{unit:?}");
        }
    }
    assert!(serves("i-0a1b2c3d4e5f60001", second.fingerprint()).await);
    assert!(serves("i-0a1b2c3d4e5f60002", first.fingerprint()).await);

    // Fixed, the next run finishes it there; then a rollback puts the first back everywhere.
    fleet.break_reload("i-0a1b2c3d4e5f60002", false);
    let report = w.service.deploy("fleet", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:?}");
    assert!(serves("i-0a1b2c3d4e5f60002", second.fingerprint()).await);
    let rolled = w.service.roll_back("fleet", None).await.unwrap();
    assert!(
        rolled[0].units.iter().all(|u| u.rolled_back == Some(true)),
        "{rolled:?}"
    );
    for i in 1..=3 {
        assert!(serves(&format!("i-0a1b2c3d4e5f6000{i}"), first.fingerprint()).await);
    }
}
