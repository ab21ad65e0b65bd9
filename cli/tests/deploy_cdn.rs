//! The CDN targets through the CLI: the token stored with `certpilot secrets set` (from a
//! file, never printed), a certificate issued by Pebble and deployed to Cloudflare (the
//! mock, with its TLS edge) by `certpilot renew`, proven by handshake, and rolled back by
//! `certpilot rollback` through Cloudflare's API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Env, json_lines, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_deploys_to_cloudflare_proves_it_and_rollback_puts_the_previous_back() {
    let env = Env::start();
    let cf = certpilot_testkit::cloudflare::MockCloudflare::start("certpilot.test").await;
    let token_file = env.path("cf-token");
    std::fs::write(&token_file, format!("{}\n", cf.token)).unwrap();

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
    let renew = |force: bool| {
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
            if force {
                args.extend(["--force", "cdn.certpilot.test"]);
            } else {
                args.push("--due");
            }
            env.run(&args).await
        }
    };
    let first = renew(false).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let rows = json_lines(&first);
    let deployed = rows
        .iter()
        .find(|r| r["name"] == "cloudflare" || r["kind"] == "cloudflare");
    assert!(
        deployed.is_some_and(|r| r["status"] == "verified"),
        "{rows:?}"
    );
    let first_fp = rows[0]["fingerprint"].as_str().unwrap().to_owned();
    let second = renew(true).await;
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(cf.certificates().len(), 1, "replaced in place");

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
}
