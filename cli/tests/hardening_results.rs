//! Hardening II, items 4 and 5, through the CLI: an untrusted verdict always names why with
//! the right kind, and `--fail-within` passes only when every result is healthy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_testkit::certs::{Ca, LeafBuilder};
use certpilot_testkit::servers;
use serde_json::Value;

/// Scans `server` with `root` trusted and `--fail-within 7d`; the exit code and the row.
async fn check(dir: &std::path::Path, root: &Ca, server: &servers::Server) -> (Option<i32>, Value) {
    let ca_file = dir.join("root.pem");
    std::fs::write(&ca_file, root.root_pem()).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
        .args([
            "scan",
            &server.target(),
            "--fail-within",
            "7d",
            "--format",
            "json",
        ])
        .arg("--ca-file")
        .arg(&ca_file)
        .env(
            "CERTPILOT_STORE",
            format!("sqlite:{}", dir.join("db").display()),
        )
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let row = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.code(), row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_untrusted_verdicts_name_why_and_fail_the_window_check() {
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::new("Estate Root");
    let issuing = root.intermediate("Estate Issuing CA");
    let stranger = Ca::new("Stranger Root").intermediate("Stranger Issuing CA");
    let too_deep = root
        .constrained_intermediate("Estate Policy CA, no CA below", 0)
        .intermediate("Issuing CA below the limit");
    let me = ["127.0.0.1"];

    let healthy = servers::tls_default(&issuing.leaf(&me).expiring_in_days(60).build()).await;
    let (code, row) = check(dir.path(), &root, &healthy).await;
    assert_eq!(code, Some(0), "{row}");
    assert_eq!(row["validation"]["trusted"], true, "{row}");

    let cases: Vec<(&str, LeafBuilder<'_>, &str)> = vec![
        ("path length broken", too_deep.leaf(&me), "invalid_chain"),
        (
            "complete chain, unknown CA",
            stranger.leaf(&me),
            "untrusted_root",
        ),
        (
            "leaf alone",
            issuing.leaf(&me).without_intermediates(),
            "incomplete_chain",
        ),
        ("self-signed", LeafBuilder::self_signed(&me), "self_signed"),
        (
            "not yet valid",
            issuing.leaf(&me).not_yet_valid(),
            "not_yet_valid",
        ),
        (
            "another name",
            issuing.leaf(&["other.test"]),
            "hostname_mismatch",
        ),
    ];
    for (what, leaf, kind) in cases {
        // Valid for months: only the validation problem can fail the check.
        let server = servers::tls_default(&leaf.build()).await;
        let (code, row) = check(dir.path(), &root, &server).await;
        assert_eq!(row["validation"]["trusted"], false, "{what}: {row}");
        assert_eq!(
            row["validation"]["problems"],
            serde_json::json!([kind]),
            "{what}: {row}"
        );
        assert_eq!(code, Some(2), "{what}: --fail-within must fail: {row}");
    }
}
