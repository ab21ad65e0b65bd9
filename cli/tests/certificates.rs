//! `certpilot certificates …` and `certpilot renew` end to end: the real binary, a real
//! Pebble (rejecting 30% of nonces) with pebble-challtestsrv as its DNS, the built-in HTTP-01
//! responder, a SQLite file and 0600 key files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use certpilot_testkit::procs::free_port;
use serde_json::Value;
use support::{Env, json_lines, mode, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_then_renew_due_issues_exports_and_runs_the_deploy_hook() {
    let env = Env::start();
    let added = env
        .add(
            &["shop.certpilot.test", "127.0.0.1"],
            &["--tag", "owner=payments"],
        )
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(stderr(&added).contains("added shop.certpilot.test"));

    let live = env.path("live");
    let hook_log = env.path("hook.log");
    let hook = format!(
        "echo \"$CERTPILOT_ID|$CERTPILOT_NAMES|$CERTPILOT_FINGERPRINT|$CERTPILOT_LIVE_DIR\" >> {}",
        hook_log.display()
    );
    let live_arg = live.display().to_string();
    let renewed = env
        .run(&[
            "renew",
            "--due",
            "--format",
            "json",
            "--live-dir",
            &live_arg,
            "--deploy-hook",
            &hook,
        ])
        .await;
    assert!(renewed.status.success(), "{}", stderr(&renewed));
    let rows = json_lines(&renewed);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], "shop.certpilot.test");
    assert_eq!(rows[0]["outcome"], "issued", "{rows:?}");
    let fingerprint = rows[0]["fingerprint"].as_str().unwrap().to_owned();

    // The live directory holds the chain and the key, the key readable by its owner only.
    let dir = live.join("shop.certpilot.test");
    let fullchain = std::fs::read_to_string(dir.join("fullchain.pem")).unwrap();
    assert!(
        fullchain.matches("BEGIN CERTIFICATE").count() >= 2,
        "leaf and intermediate"
    );
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    let key = std::fs::read_to_string(dir.join("privkey.pem")).unwrap();
    assert!(key.contains("PRIVATE KEY"));

    // The hook ran once, after the export, with the facts in its environment.
    let log = std::fs::read_to_string(&hook_log).unwrap();
    assert_eq!(
        log.trim(),
        format!(
            "shop.certpilot.test|127.0.0.1 shop.certpilot.test|{fingerprint}|{}",
            dir.display()
        )
    );

    // The record is listed as issued, shows no key, and nothing is due any more.
    let list = env.run(&["certificates", "list", "--format", "json"]).await;
    let listed = json_lines(&list);
    assert_eq!(listed[0]["state"], "issued");
    let shown = env
        .run(&["certificates", "show", "shop.certpilot.test"])
        .await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains(&fingerprint));
    assert!(!text.contains("PRIVATE KEY"), "no key in the record");
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!text.contains(&key_body));
    let again = env.run(&["renew", "--due", "--format", "json"]).await;
    assert!(again.status.success());
    assert!(json_lines(&again).is_empty());
    assert!(stderr(&again).contains("nothing due"));

    // An explicit export writes the same certificate and key elsewhere.
    let exported = env.path("exported");
    let exported_arg = exported.display().to_string();
    let out = env
        .run(&[
            "certificates",
            "export",
            "shop.certpilot.test",
            "--dir",
            &exported_arg,
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(exported.join("fullchain.pem")).unwrap(),
        fullchain
    );
    assert_eq!(mode(&exported.join("privkey.pem")), 0o600);
    // Keys at rest are 0600 files in 0700 directories beside the database.
    let secrets = env.path("state/secrets/certificate-key/shop.certpilot.test");
    assert_eq!(mode(&secrets), 0o700);
    for entry in std::fs::read_dir(&secrets).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "secret") {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_deploy_hook_is_reported_and_retried_without_a_new_order() {
    let env = Env::start();
    assert!(env.add(&["api.certpilot.test"], &[]).await.status.success());
    let marker = env.path("hook-may-succeed");
    let hook = format!("test -e {}", marker.display());

    let failed = env
        .run(&["renew", "--due", "--format", "json", "--deploy-hook", &hook])
        .await;
    assert_eq!(failed.status.code(), Some(2), "{}", stderr(&failed));
    let rows = json_lines(&failed);
    assert_eq!(rows[0]["outcome"], "failed");
    assert!(
        rows[0]["error"].as_str().unwrap().contains("deploy hook"),
        "{rows:?}"
    );
    let shown: Value = serde_json::from_slice(
        &env.run(&["certificates", "show", "api.certpilot.test"])
            .await
            .stdout,
    )
    .unwrap();
    let issued = shown["current"]["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(shown["renewal"]["last_error"]["kind"], "announce");

    // Once the hook can succeed, a forced run finishes the same renewal: same certificate.
    std::fs::write(&marker, "").unwrap();
    let retried = env
        .run(&[
            "renew",
            "api.certpilot.test",
            "--force",
            "--format",
            "json",
            "--deploy-hook",
            &hook,
        ])
        .await;
    assert!(retried.status.success(), "{}", stderr(&retried));
    let rows = json_lines(&retried);
    assert_eq!(rows[0]["outcome"], "issued");
    assert_eq!(rows[0]["fingerprint"], issued.as_str(), "no second order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_input_is_named_and_nothing_is_stored() {
    let env = Env::start();
    let tsig = env.path("tsig.key");
    std::fs::write(&tsig, "c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n").unwrap();
    let tsig = tsig.display().to_string();
    let cases: &[(&[&str], &[&str], &str)] = &[
        (
            &["*.certpilot.test"],
            &[],
            "wildcard names can only be validated with DNS-01",
        ),
        (&["shop..test"], &[], "shop..test"),
        (&["shop.certpilot.test"], &["--contact", "ops@x"], "mailto:"),
        (&["shop.certpilot.test"], &["--id", "../etc"], "--id"),
        (
            &["shop.certpilot.test"],
            &["--dns", "rfc2136", "--rfc2136-server", "127.0.0.1:53"],
            "--dns rfc2136 also needs --rfc2136-zone, --tsig-key-name, --tsig-secret-file",
        ),
        (
            &["shop.certpilot.test"],
            &["--eab-kid", "kid-1", "--eab-hmac-file", "/nonexistent/hmac"],
            "--eab-hmac-file /nonexistent/hmac",
        ),
        (
            &["shop.certpilot.test"],
            &[
                "--acm-region",
                "us-east-1",
                "--dns",
                "rfc2136",
                "--rfc2136-server",
                "127.0.0.1:53",
                "--rfc2136-zone",
                "certpilot.test",
                "--tsig-key-name",
                "k",
                "--tsig-secret-file",
                &tsig,
            ],
            "ACM validates by DNS: its CNAME records are written through Route 53",
        ),
        (
            &["shop.certpilot.test"],
            &["--deploy", "elbv2-listener:listener-arn=shop-lb"],
            "--deploy \"elbv2-listener:listener-arn=shop-lb\": not an ARN",
        ),
    ];
    for (names, extra, expected) in cases {
        let out = env.add(names, extra).await;
        assert_eq!(out.status.code(), Some(1), "{names:?} {extra:?}");
        assert!(
            stderr(&out).contains(expected),
            "{names:?} {extra:?}: {}",
            stderr(&out)
        );
    }
    let list = env.run(&["certificates", "list", "--format", "json"]).await;
    assert!(json_lines(&list).is_empty(), "nothing half-stored");
    assert!(
        env.add(&["shop.certpilot.test"], &[])
            .await
            .status
            .success()
    );
    let twice = env.add(&["shop.certpilot.test"], &[]).await;
    assert_eq!(twice.status.code(), Some(1));
    assert!(stderr(&twice).contains("already managed"));
    let missing = env.run(&["renew", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no managed certificate \"nope\""));
    let unissued = env
        .run(&[
            "certificates",
            "export",
            "shop.certpilot.test",
            "--dir",
            "/tmp/x",
        ])
        .await;
    assert!(stderr(&unissued).contains("has not been issued yet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_an_endpoint_still_serving_the_old_certificate_and_then_the_fix() {
    use certpilot_testkit::certs::{Ca, Leaf};
    use certpilot_testkit::servers;

    let env = Env::start();
    // The endpoint: a name that resolves nowhere, pinned to loopback with --resolve, so the
    // handshake sends SNI shop.certpilot.test like a client would.
    let port = free_port();
    let endpoint = format!("shop.certpilot.test:{port}");
    assert!(
        env.add(&["shop.certpilot.test"], &["--endpoint", &endpoint])
            .await
            .status
            .success()
    );
    let live = env.path("live");
    let live_arg = live.display().to_string();
    let renewed = env
        .run(&[
            "renew",
            "--due",
            "--format",
            "json",
            "--live-dir",
            &live_arg,
        ])
        .await;
    assert!(renewed.status.success(), "{}", stderr(&renewed));
    let fingerprint = json_lines(&renewed)[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let resolve = format!("shop.certpilot.test:{port}:127.0.0.1");
    // Alerts go to Slack too.
    let slack = certpilot_testkit::slack::MockSlack::start().await;
    std::fs::write(env.path("slack-url"), slack.url()).unwrap();
    let hook_file = env.path("slack-url").display().to_string();
    let added = env
        .run(&[
            "channels",
            "add",
            "oncall",
            "--slack-webhook-file",
            &hook_file,
        ])
        .await;
    assert!(added.status.success(), "{}", stderr(&added));

    // The outage: the renewal succeeded, but the endpoint still serves the old certificate.
    let old = Ca::new("Old CA").leaf(&["shop.certpilot.test"]).build();
    let stale = servers::tls_on_ports(&old, 1, [port]).await;
    let out = env
        .run(&[
            "verify",
            "shop.certpilot.test",
            "--resolve",
            &resolve,
            "--deadline",
            "3s",
            "--interval",
            "1s",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["verdict"], "not_serving");
    assert_eq!(rows[0]["target"], endpoint.as_str());
    assert_eq!(rows[0]["address"], format!("127.0.0.1:{port}").as_str());
    assert_eq!(rows[0]["serving"], old.fingerprint().as_str());
    assert_eq!(rows[0]["expected"], fingerprint.as_str());
    assert!(rows[0]["since"].is_string());
    assert!(stderr(&out).contains("do not serve shop.certpilot.test"));
    // One critical not_serving finding for the address, on Slack once, naming what is served.
    let said = slack.messages();
    assert_eq!(said.len(), 1, "{said:?}");
    let text = said[0].to_string();
    assert!(
        said[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("New critical: "),
        "{text}"
    );
    assert!(
        text.contains("not serving") && text.contains(&old.fingerprint()),
        "{text}"
    );
    let listed = env
        .run(&["findings", "--kind", "not_serving", "--format", "json"])
        .await;
    let found = json_lines(&listed);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0]["subject"]["address"],
        format!("127.0.0.1:{port}").as_str()
    );
    drop(stale);
    // The old server's listener closes once its task is gone.
    for _ in 0..100 {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Installed: the endpoint serves the files certpilot wrote, and verify says so.
    let dir = live.join("shop.certpilot.test");
    let issued = Leaf::from_pem(
        &std::fs::read_to_string(dir.join("fullchain.pem")).unwrap(),
        &std::fs::read_to_string(dir.join("privkey.pem")).unwrap(),
    );
    let _fixed = servers::tls_on_ports(&issued, 1, [port]).await;
    let out = env
        .run(&[
            "verify",
            "shop.certpilot.test",
            "--resolve",
            &resolve,
            "--format",
            "json",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["verdict"], "verified");
    let said = slack.messages();
    assert_eq!(said.len(), 2, "the fix, said once: {said:?}");
    assert!(
        said[1]["text"].as_str().unwrap().starts_with("Resolved: "),
        "{}",
        said[1]
    );
    // What verify saw is in the inventory.
    let inventory = env.run(&["inventory", "--format", "json"]).await;
    let seen = json_lines(&inventory);
    assert_eq!(
        seen[0]["certificate"]["fingerprint_sha256"],
        fingerprint.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_deploys_to_aws_targets_proves_them_and_rolls_back_an_endpoint_that_keeps_the_old_one()
 {
    use certpilot_e2e::estate::Estate;
    use certpilot_testkit::certs::Ca;

    let mut env = Env::start();
    let moto = certpilot_testkit::procs::shared_moto();
    env.extra_env = vec![
        ("AWS_ENDPOINT_URL".into(), moto.endpoint_url.clone()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
    ];
    let estate = Estate::new(&moto.endpoint_url);
    estate.keyring.watch_keys(&env.path("state"));
    let legacy = Ca::new("Team CA").leaf(&["pay.certpilot.test"]).build();
    let legacy_arn = estate.import(&legacy).await;
    let run = std::process::id();
    let listener = estate.listener(&format!("cli-{run}"), &legacy_arn).await;
    let distribution = estate
        .distribution(&legacy_arn, &format!("cli-cf-{run}"))
        .await;
    let sni_listener = estate
        .listener(&format!("cli-sni-{run}"), &legacy_arn)
        .await;
    let (rest, http) = (
        format!("api-{run}.certpilot.test"),
        format!("http-{run}.certpilot.test"),
    );
    let (rest_arn, http_arn) = (estate.import(&legacy).await, estate.import(&legacy).await);
    estate.rest_domain(&rest, &rest_arn).await;
    estate.http_domain(&http, &http_arn).await;
    let alb = estate.follow_listener(&listener, false).await;
    let cdn = estate.follow_distribution(&distribution).await;
    let sni = estate.follow_listener(&sni_listener, true).await;
    let rest_plane = estate.follow_rest_domain(&rest).await;
    let http_plane = estate.follow_http_domain(&http).await;
    // Every kind: the default and an SNI listener certificate, a distribution, REST and HTTP
    // API domains (bound to ARNs certpilot adopts), and a plain import.
    let more_specs = [
        format!(
            "elbv2-listener:name=alb-sni,listener-arn={sni_listener},sni=true,endpoint={},verify-deadline=15s",
            sni.endpoint()
        ),
        format!(
            "api-gateway:name=rest,domain-name={rest},region=us-east-1,certificate-arn={rest_arn},endpoint={},verify-deadline=15s",
            rest_plane.endpoint()
        ),
        format!(
            "api-gateway:name=http,domain-name={http},region=us-east-1,api=http,certificate-arn={http_arn},endpoint={},verify-deadline=15s",
            http_plane.endpoint()
        ),
        "acm-import:name=acm,region=eu-west-1".to_owned(),
    ];

    let alb_spec = format!(
        "elbv2-listener:name=alb,listener-arn={listener},endpoint={},verify-deadline=15s",
        alb.endpoint()
    );
    let cdn_spec = format!(
        "cloudfront:name=cdn,distribution-id={distribution},endpoint={},verify-deadline=15s",
        cdn.endpoint()
    );
    let mut deploy_args = vec!["--deploy", &alb_spec, "--deploy", &cdn_spec];
    for spec in &more_specs {
        deploy_args.extend_from_slice(&["--deploy", spec]);
    }
    let added = env.add(&["pay.certpilot.test"], &deploy_args).await;
    assert!(added.status.success(), "{}", stderr(&added));
    let bad = env
        .add(
            &["bad.certpilot.test"],
            &["--deploy", "cloudfront:distribution=E1"],
        )
        .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("cloudfront has no setting \"distribution\""),
        "{}",
        stderr(&bad)
    );

    let renew = |extra: &'static [&'static str]| {
        let mut args = vec!["renew", "--format", "json", "--verify-interval", "200ms"];
        args.extend_from_slice(extra);
        args
    };
    // Issued by Pebble, installed on both targets, served by both: done.
    let out = env.run(&renew(&["--due"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_lines(&out);
    assert_eq!(rows[0]["outcome"], "issued", "{rows:?}");
    let first = rows[0]["fingerprint"].as_str().unwrap().to_owned();
    let deployed: Vec<_> = rows.iter().filter(|r| r.get("name").is_some()).collect();
    assert_eq!(deployed.len(), 6, "{rows:?}");
    for r in &deployed {
        assert_eq!(r["status"], "verified", "{r}");
        assert_eq!(r["fingerprint"], first.as_str());
    }

    // The outage: renewed, the listener's API takes it, its nodes keep the old one.
    alb.freeze();
    let out = env.run(&renew(&["pay.certpilot.test", "--force"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let rows = json_lines(&out);
    let second = rows[0]["fingerprint"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let alb_row = rows.iter().find(|r| r["name"] == "alb").unwrap();
    assert_eq!(alb_row["status"], "not_serving", "{alb_row}");
    assert_eq!(alb_row["rolled_back"], true);
    assert_eq!(alb_row["checks"][0]["serving"], first.as_str());
    assert!(
        alb_row["detail"]
            .as_str()
            .unwrap()
            .contains(&alb.endpoint())
    );
    assert!(
        stderr(&out).contains("do not serve the new certificate"),
        "{}",
        stderr(&out)
    );
    // The outage is a critical finding, said once at the end of the run.
    assert_eq!(
        stderr(&out)
            .matches("certpilot: opened critical not_serving: alb does not serve the renewed pay.certpilot.test")
            .count(),
        1,
        "{}",
        stderr(&out)
    );
    let cdn_row = rows.iter().find(|r| r["name"] == "cdn").unwrap();
    assert_eq!(cdn_row["status"], "verified");
    let listed = env.run(&["certificates", "list", "--format", "json"]).await;
    let listed = json_lines(&listed);
    assert_eq!(listed[0]["state"], "not_deployed", "{listed:?}");
    assert!(
        listed[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("alb: not serving"),
        "{listed:?}"
    );

    // Fixed: the next run deploys what is not yet served, without a new order.
    alb.thaw();
    let out = env.run(&renew(&["--due"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_lines(&out);
    let alb_row = rows.iter().find(|r| r["name"] == "alb").unwrap();
    assert_eq!(alb_row["status"], "verified", "{rows:?}");
    assert_eq!(alb_row["fingerprint"], second.as_str());
    assert!(
        stderr(&out).contains("certpilot: resolved critical not_serving: alb"),
        "{}",
        stderr(&out)
    );
    assert!(
        rows.iter()
            .all(|r| r.get("outcome") != Some(&serde_json::json!("issued")))
    );

    // `deploy` has nothing left to do; `rollback` puts the first certificate back.
    let out = env
        .run(&["deploy", "pay.certpilot.test", "--format", "json"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json_lines(&out).iter().all(|r| r["unchanged"] == true));
    let out = env
        .run(&["rollback", "pay.certpilot.test", "--format", "json"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        json_lines(&out)
            .iter()
            .all(|r| r["status"] == "rolled_back")
    );
    let bound = estate
        .elb
        .describe_listeners()
        .listener_arns(&listener)
        .send()
        .await
        .unwrap();
    let arn = bound.listeners()[0].certificates()[0]
        .certificate_arn
        .clone()
        .unwrap();
    assert_eq!(estate.acm_fingerprint(&arn).await, first);
}

/// After the deploy hook, `renew` proves by handshake that the certificate's endpoints
/// serve it, and says so plainly when the hook exited 0 without the server taking the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_proves_the_hook_took_and_says_so_when_it_did_not() {
    use certpilot_testkit::certs::LeafBuilder;
    use certpilot_testkit::servers::{FilesServer, tls_default};
    let env = Env::start();
    let live = env.path("live");
    let server = FilesServer::start(&live.join("web.certpilot.test"), &env.path("reload")).await;
    let web_endpoint = server.server().target();
    let added = env
        .add(&["web.certpilot.test"], &["--endpoint", &web_endpoint])
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    let live_arg = live.display().to_string();
    let renew = |hook: String| {
        let live_arg = live_arg.clone();
        let env = &env;
        async move {
            env.run(&[
                "renew",
                "--due",
                "--format",
                "json",
                "--live-dir",
                &live_arg,
                "--deploy-hook",
                &hook,
                "--verify-max-deadline",
                "5s",
                "--verify-interval",
                "200ms",
            ])
            .await
        }
    };
    let took = renew(server.reload_command()).await;
    assert!(took.status.success(), "{}", stderr(&took));
    assert!(
        stderr(&took).contains("web.certpilot.test: every endpoint serves the new certificate"),
        "{}",
        stderr(&took)
    );

    // A hook that reloads nothing, in front of a server that keeps its own certificate.
    let stale = tls_default(&LeafBuilder::self_signed(&["api.certpilot.test"]).build()).await;
    let added = env
        .add(&["api.certpilot.test"], &["--endpoint", &stale.target()])
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    let missed = renew("true".into()).await;
    assert_eq!(missed.status.code(), Some(2), "{}", stderr(&missed));
    let text = stderr(&missed);
    assert!(
        text.contains("api.certpilot.test: after the deploy hook, 1 of 1 endpoint addresses still do not serve the new certificate")
            && text.contains(&stale.target()),
        "{text}"
    );
    // The issuance itself succeeded and is not redone.
    assert_eq!(json_lines(&missed)[0]["outcome"], "issued");
}
