//! Akamai CPS through the CLI, against the mock CPS with its staging and production
//! networks: Akamai makes the key and the CSRs (RSA and ECDSA, dual-stack), Pebble signs
//! them, certpilot uploads both certificates, acknowledges the warning policy allows, proves
//! the change on staging before acknowledging change management, and follows it to
//! production across runs — with no private key anywhere on this side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use certpilot_testkit::akamai::MockAkamai;
use support::{Env, json_lines, stderr};

const NAME: &str = "cps.certpilot.test";

async fn setup(env: &Env, akamai: &MockAkamai, key_type: &str) -> std::process::Output {
    let edgerc = env.path("edgerc");
    std::fs::write(&edgerc, akamai.edgerc()).unwrap();
    let set = env
        .run(&[
            "secrets",
            "set",
            "deploy/akamai",
            "--from-file",
            edgerc.to_str().unwrap(),
        ])
        .await;
    assert!(set.status.success(), "{}", stderr(&set));
    let spec = format!(
        "akamai-cps:enrollment-id=10002,credentials-secret=deploy/akamai,api-url={},staging-endpoints={},poll-interval=1s,allow-warnings=CERTIFICATE_ADDED_TO_TRUST_CHAIN",
        akamai.api_url(),
        akamai.staging_target()
    );
    env.add(
        &[NAME],
        &[
            "--deploy",
            &spec,
            "--endpoint",
            &akamai.production_target(),
            "--key-type",
            key_type,
        ],
    )
    .await
}

/// Runs `certpilot deploy` every second until the deployment settles; its last rows.
async fn deploy_until_settled(env: &Env) -> Vec<serde_json::Value> {
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let out = env
            .run(&[
                "deploy",
                NAME,
                "--format",
                "json",
                "--verify-interval",
                "200ms",
                "--verify-max-deadline",
                "5s",
            ])
            .await;
        let rows = json_lines(&out);
        if rows.iter().any(|r| r["status"] != "in_progress") {
            return rows;
        }
    }
    panic!("the deployment never settled");
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            out.push(text);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn akamai_issues_from_its_csrs_proves_staging_and_reaches_production_across_runs() {
    let env = Env::start();
    let akamai = MockAkamai::start(&[NAME], true, true).await;
    akamai.warnings(&["CERTIFICATE_ADDED_TO_TRUST_CHAIN: the intermediate was added"]);
    let added = setup(&env, &akamai, "rsa2048").await;
    assert!(added.status.success(), "{}", stderr(&added));

    // First run: no change pending, so one is started; Akamai makes its key and CSR.
    let first = env.run(&["renew", "--format", "json"]).await;
    let rows = json_lines(&first);
    assert_eq!(
        rows[0]["outcome"],
        "deferred",
        "{rows:?} {}",
        stderr(&first)
    );
    assert!(rows[0].to_string().contains("Akamai"), "{rows:?}");

    // Next run: both CSRs signed by Pebble (RSA current, ECDSA stacked), and uploaded.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = env
        .run(&[
            "renew",
            "--format",
            "json",
            "--verify-interval",
            "200ms",
            "--verify-max-deadline",
            "5s",
        ])
        .await;
    let rows = json_lines(&second);
    assert_eq!(rows[0]["outcome"], "issued", "{rows:?} {}", stderr(&second));
    let fingerprint = rows[0]["fingerprint"].as_str().unwrap().to_owned();
    let vendor_keys = akamai.vendor_keys();
    assert_eq!(vendor_keys.len(), 2);

    // Later runs follow the change: warnings acknowledged, staging proven, change
    // management acknowledged, production reached and proven.
    let rows = deploy_until_settled(&env).await;
    let row = rows.iter().find(|r| r["kind"] == "akamai-cps").unwrap();
    assert_eq!(row["status"], "verified", "{rows:?}");
    assert_eq!(
        akamai.acknowledged(),
        ["post-verification-warnings", "change-management"]
    );
    let production = akamai.production_uploads();
    let algorithms: Vec<&str> = production
        .iter()
        .map(|u| u.key_algorithm.as_str())
        .collect();
    assert_eq!(algorithms, ["RSA", "ECDSA"]);
    let served = env
        .run(&[
            "scan",
            &akamai.production_target(),
            "--format",
            "json",
            "--no-record",
        ])
        .await;
    assert_eq!(
        json_lines(&served)[0]["certificate"]["fingerprint_sha256"],
        fingerprint
    );

    // Akamai's keys are nowhere here, and no key was made for it: nothing to export.
    for text in files_under(env.dir.path()) {
        for key in &vendor_keys {
            assert!(
                !text.contains(key.trim()),
                "a vendor key leaked into a file"
            );
        }
    }
    assert!(
        env.path("state/secrets/deploy").is_dir(),
        "the secret store is where it is looked at"
    );
    assert!(
        !env.path("state/secrets/certificate-key")
            .join(NAME)
            .exists(),
        "no key version was stored for it"
    );
    let export = env
        .run(&[
            "certificates",
            "export",
            NAME,
            "--dir",
            env.path("out").to_str().unwrap(),
        ])
        .await;
    assert_eq!(export.status.code(), Some(1), "{}", stderr(&export));
    assert!(
        stderr(&export).contains("its private key is kept by"),
        "{}",
        stderr(&export)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_not_served_on_staging_is_cancelled_and_never_reaches_production() {
    let env = Env::start();
    let akamai = MockAkamai::start(&[NAME], false, true).await;
    akamai.stick_staging(true);
    let added = setup(&env, &akamai, "rsa2048").await;
    assert!(added.status.success(), "{}", stderr(&added));
    env.run(&["renew"]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let issued = env
        .run(&[
            "renew",
            "--format",
            "json",
            "--verify-interval",
            "200ms",
            "--verify-max-deadline",
            "2s",
        ])
        .await;
    assert_eq!(
        json_lines(&issued)[0]["outcome"],
        "issued",
        "{}",
        stderr(&issued)
    );
    let before = akamai.production_uploads()[0].certificate.clone();
    let rows = deploy_until_settled(&env).await;
    let row = rows.iter().find(|r| r["kind"] == "akamai-cps").unwrap();
    assert_eq!(row["status"], "not_serving", "{rows:?}");
    assert!(
        row.to_string()
            .contains("not served on Akamai's staging network"),
        "{row}"
    );
    assert_eq!(akamai.cancelled(), 1);
    assert!(akamai.status().is_none(), "the change is gone");
    assert!(
        !akamai
            .acknowledged()
            .contains(&"change-management".to_owned())
    );
    assert_eq!(
        akamai.production_uploads()[0].certificate,
        before,
        "production untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_type_akamai_does_not_make_and_a_second_deployment_are_refused_when_added() {
    let env = Env::start();
    let akamai = MockAkamai::start(&[NAME], false, true).await;
    let refused = setup(&env, &akamai, "rsa4096").await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("akamai-cps accepts rsa2048, ecdsa-p256 keys only"),
        "{}",
        stderr(&refused)
    );
    let spec = format!(
        "akamai-cps:enrollment-id=10002,credentials-secret=deploy/akamai,api-url={}",
        akamai.api_url()
    );
    let both = env
        .add(
            &[NAME],
            &[
                "--deploy",
                &spec,
                "--deploy",
                "files:dir=/tmp/x",
                "--endpoint",
                &akamai.production_target(),
                "--key-type",
                "rsa2048",
            ],
        )
        .await;
    assert_eq!(both.status.code(), Some(1), "{}", stderr(&both));
    assert!(
        stderr(&both).contains("must be the certificate's only deployment"),
        "{}",
        stderr(&both)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_rate_limit_defers_the_renewal_instead_of_hammering() {
    let env = Env::start();
    let akamai = MockAkamai::start(&[NAME], false, true).await;
    let added = setup(&env, &akamai, "rsa2048").await;
    assert!(added.status.success(), "{}", stderr(&added));
    // One request left this minute: the enrollment is read, starting the change is refused.
    akamai.rate_limit(1, Duration::from_secs(60));
    let started = std::time::Instant::now();
    let out = env.run(&["renew", "--format", "json"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "no sleeping through a minute"
    );
    let rows = json_lines(&out);
    assert_eq!(rows[0]["outcome"], "deferred", "{rows:?} {}", stderr(&out));
    assert!(rows[0].to_string().contains("rate limit"), "{rows:?}");
    let until = time::OffsetDateTime::parse(
        rows[0]["until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        until > time::OffsetDateTime::now_utc() + time::Duration::seconds(30),
        "{until}"
    );
    assert_eq!(akamai.calls().len(), 2, "{:?}", akamai.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_policy_does_not_allow_stops_the_deploy_with_a_finding_in_akamais_words() {
    let env = Env::start();
    let akamai = MockAkamai::start(&[NAME], false, true).await;
    akamai.warnings(&["CERTIFICATE_DATA_BLANK_OR_MISSING: the trust chain is empty"]);
    let added = setup(&env, &akamai, "rsa2048").await;
    assert!(added.status.success(), "{}", stderr(&added));
    env.run(&["renew"]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let issued = env.run(&["renew", "--format", "json"]).await;
    assert_eq!(
        json_lines(&issued)[0]["outcome"],
        "issued",
        "{}",
        stderr(&issued)
    );
    let rows = deploy_until_settled(&env).await;
    let row = rows.iter().find(|r| r["kind"] == "akamai-cps").unwrap();
    assert_eq!(row["status"], "failed", "{rows:?}");
    assert!(
        row.to_string()
            .contains("CERTIFICATE_DATA_BLANK_OR_MISSING: the trust chain is empty"),
        "{row}"
    );
    assert!(akamai.acknowledged().is_empty(), "nothing acknowledged");
    assert_eq!(
        akamai.cancelled(),
        1,
        "the change is withdrawn before production"
    );
    let findings = env.run(&["findings", "--format", "json"]).await;
    let text = String::from_utf8_lossy(&findings.stdout).to_string();
    assert!(
        text.contains("deploy_failed") && text.contains("CERTIFICATE_DATA_BLANK_OR_MISSING"),
        "{text} {}",
        stderr(&findings)
    );
}
