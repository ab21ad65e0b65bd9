//! The CDN targets through the CLI: the tokens stored with `certpilot secrets set` (from a
//! file, never printed), certificates issued by Pebble and deployed to Cloudflare, to Fastly
//! (the mocks, with their TLS edges) and to a signed webhook whose receiver serves what it
//! gets by `certpilot renew`, proven by handshake, renewed, and rolled back by `certpilot
//! rollback` through the vendors' APIs and the webhook.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Env, json_lines, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_deploys_to_cloudflare_fastly_and_a_webhook_proves_it_and_rollback_puts_the_previous_back()
 {
    let env = Env::start();
    let cf = certpilot_testkit::cloudflare::MockCloudflare::start("certpilot.test").await;
    let fastly = certpilot_testkit::fastly::MockFastly::start("fastly.certpilot.test").await;
    let token_file = env.path("cf-token");
    std::fs::write(&token_file, format!("{}\n", cf.token)).unwrap();
    let fastly_token_file = env.path("fastly-token");
    std::fs::write(&fastly_token_file, &fastly.token).unwrap();

    // Secrets come from files, are named deploy/…, and are never printed.
    let bad = env
        .run(&[
            "secrets",
            "set",
            "certificate-key/shop",
            "--from-file",
            token_file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("name a secret under deploy/"));
    let set = env
        .run(&[
            "secrets",
            "set",
            "deploy/cf",
            "--from-file",
            token_file.to_str().unwrap(),
        ])
        .await;
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(!stderr(&set).contains(&cf.token) && set.stdout.is_empty());
    let set = env
        .run(&[
            "secrets",
            "set",
            "deploy/fastly",
            "--from-file",
            fastly_token_file.to_str().unwrap(),
        ])
        .await;
    assert!(set.status.success(), "{}", stderr(&set));
    // Fastly takes no RSA 4096 key: refused when added, before anything is issued.
    let fastly_spec = format!(
        "fastly:token-secret=deploy/fastly,api-url={}",
        fastly.api_url()
    );
    let fastly_edge = fastly.edge_target();
    let refused = env
        .add(
            &["fastly.certpilot.test"],
            &[
                "--deploy",
                &fastly_spec,
                "--endpoint",
                &fastly_edge,
                "--key-type",
                "rsa4096",
            ],
        )
        .await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("fastly accepts ecdsa-p256, ecdsa-p384, rsa2048 keys only"),
        "{}",
        stderr(&refused)
    );
    let added = env
        .add(
            &["fastly.certpilot.test"],
            &["--deploy", &fastly_spec, "--endpoint", &fastly_edge],
        )
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    // A webhook receiver that serves what it gets: the key over HTTPS, its private CA
    // trusted through ca-pem, the deployment from a file (a PEM does not fit a spec line).
    let receiver_ca = certpilot_testkit::certs::Ca::new("In-house CA");
    let receiver =
        certpilot_testkit::webhook_receiver::WebhookReceiver::start_serving(&receiver_ca).await;
    let hook_secret = env.path("hook-secret");
    std::fs::write(&hook_secret, &receiver.secret).unwrap();
    let set = env
        .run(&[
            "secrets",
            "set",
            "deploy/hook",
            "--from-file",
            hook_secret.to_str().unwrap(),
        ])
        .await;
    assert!(set.status.success(), "{}", stderr(&set));
    let hook_file = env.path("hook.json");
    std::fs::write(
        &hook_file,
        serde_json::json!({
            "name": "inhouse", "kind": "webhook", "endpoints": [receiver.edge_target()],
            "settings": {"url": receiver.url(), "secret": "deploy/hook", "send-key": true,
                "ca-pem": receiver_ca.root_pem()},
        })
        .to_string(),
    )
    .unwrap();
    let added = env
        .add(
            &["hook.certpilot.test"],
            &["--deploy-file", hook_file.to_str().unwrap()],
        )
        .await;
    assert!(added.status.success(), "{}", stderr(&added));

    let spec = format!(
        "cloudflare:zone-id={},token-secret=deploy/cf,api-url={}",
        cf.zone_id,
        cf.api_url()
    );
    let edge = cf.edge_target();
    let added = env
        .add(
            &["cdn.certpilot.test"],
            &["--deploy", &spec, "--endpoint", &edge],
        )
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    let renew = |force: Option<&'static str>| {
        let env = &env;
        async move {
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
            } else {
                args.push("--due");
            }
            env.run(&args).await
        }
    };
    let first = renew(None).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let rows = json_lines(&first);
    let deployed = rows
        .iter()
        .find(|r| r["name"] == "cloudflare" || r["kind"] == "cloudflare");
    assert!(
        deployed.is_some_and(|r| r["status"] == "verified"),
        "{rows:?}"
    );
    let fastly_row = rows.iter().find(|r| r["kind"] == "fastly");
    assert!(
        fastly_row.is_some_and(|r| r["status"] == "verified"),
        "{rows:?}"
    );
    let fp_of = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["fingerprint"].as_str())
            .unwrap_or_else(|| panic!("{id}: {rows:?}"))
            .to_owned()
    };
    let hook_row = rows.iter().find(|r| r["kind"] == "webhook");
    assert!(
        hook_row.is_some_and(|r| r["status"] == "verified"),
        "{rows:?}"
    );
    let hook_first_fp = fp_of("hook.certpilot.test");
    let first_fp = fp_of("cdn.certpilot.test");
    let fastly_first_fp = fp_of("fastly.certpilot.test");
    let second = renew(Some("cdn.certpilot.test")).await;
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(cf.certificates().len(), 1, "replaced in place");
    let fastly_id = fastly.certificates()[0].id.clone();
    let second = renew(Some("fastly.certpilot.test")).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let stored = fastly.certificates();
    assert_eq!(
        (stored.len(), stored[0].id.as_str()),
        (1, fastly_id.as_str()),
        "replaced in place"
    );

    // Rolled back by hand: the first certificate goes back through Cloudflare's API.
    let rolled = env
        .run(&["rollback", "cdn.certpilot.test", "--format", "json"])
        .await;
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    let stored = cf.certificates();
    assert_eq!(stored.len(), 1);
    let served = env
        .run(&["scan", &edge, "--format", "json", "--no-record"])
        .await;
    let rows = json_lines(&served);
    assert_eq!(
        rows[0]["certificate"]["fingerprint_sha256"], first_fp,
        "{rows:?}"
    );

    // And at Fastly: the first certificate is PATCHed back in place and served again.
    let rolled = env
        .run(&["rollback", "fastly.certpilot.test", "--format", "json"])
        .await;
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    assert_eq!(fastly.certificates()[0].id, fastly_id);
    let served = env
        .run(&["scan", &fastly_edge, "--format", "json", "--no-record"])
        .await;
    let rows = json_lines(&served);
    assert_eq!(
        rows[0]["certificate"]["fingerprint_sha256"], fastly_first_fp,
        "{rows:?}"
    );

    // And through the webhook: renewed, then the first delivered back as a rollback, with
    // its key, and served again.
    let second = renew(Some("hook.certpilot.test")).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let rolled = env
        .run(&["rollback", "hook.certpilot.test", "--format", "json"])
        .await;
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    let last = receiver.deliveries().pop().unwrap();
    assert_eq!(
        (
            last.body["type"].as_str(),
            last.body["fingerprint"].as_str()
        ),
        (Some("rollback"), Some(hook_first_fp.as_str()))
    );
    let served = env
        .run(&[
            "scan",
            &receiver.edge_target(),
            "--format",
            "json",
            "--no-record",
        ])
        .await;
    let rows = json_lines(&served);
    assert_eq!(
        rows[0]["certificate"]["fingerprint_sha256"], hook_first_fp,
        "{rows:?}"
    );
}
