//! The real scan function under `cargo lambda watch`, invoked with the sample scheduled event,
//! against moto server (DynamoDB) and TLS servers on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use certpilot_core::ports::{InventoryQuery, Store};
use certpilot_core::services::endpoints::register;
use certpilot_core::{Tags, Target};
use certpilot_dynamodb::DynamoStore;
use certpilot_testkit::certs::Ca;
use certpilot_testkit::procs::{free_port, locate, shared_moto, workspace_root};
use certpilot_testkit::servers;

/// `cargo lambda watch` and the function it runs, killed as a process group on drop.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn aws_env(cmd: &mut Command, endpoint: &str) {
    // The standard AWS configuration, exactly as a deployed function gets it.
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_function_records_observations_in_dynamodb() {
    let moto = shared_moto();
    let config = certpilot_e2e::moto_dynamodb_config(&moto.endpoint_url).build();
    let table = format!("lambda-{}", std::process::id());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), &table);
    store.create_table().await.unwrap();

    let ca = Ca::new("Lambda Root");
    let leaf = ca.leaf(&["127.0.0.1"]).expiring_in_days(12).build();
    let server = servers::tls_default(&leaf).await;
    let closed = servers::closed_port().await;
    for t in [server.target(), closed.to_string()] {
        let target: Target = t.parse().unwrap();
        register(
            &store,
            &target,
            &Tags::from([("owner".into(), "payments".into())]),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    }

    let cargo_lambda = locate("CERTPILOT_CARGO_LAMBDA", "cargo-lambda");
    let port = free_port().to_string();
    let mut watch = Command::new(&cargo_lambda);
    watch
        .args([
            "lambda",
            "watch",
            "--invoke-port",
            &port,
            "--ignore-changes",
            "--quiet",
        ])
        .args(["--env-var", &format!("CERTPILOT_TABLE={table}")])
        .args([
            "--env-var",
            &format!("AWS_ENDPOINT_URL={}", moto.endpoint_url),
        ])
        .args([
            "--env-var",
            "AWS_ACCESS_KEY_ID=testing",
            "--env-var",
            "AWS_SECRET_ACCESS_KEY=testing",
        ])
        .args([
            "--env-var",
            "AWS_REGION=us-east-1",
            "--env-var",
            "CERTPILOT_TARGET_TIMEOUT=5s",
        ])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    aws_env(&mut watch, &moto.endpoint_url);
    watch.env("CERTPILOT_TABLE", &table);
    let _watch = Watch(watch.spawn().expect("cargo lambda watch starts"));

    // The first invoke compiles the function; later ones are quick.
    let started = Instant::now();
    let output = loop {
        let out = tokio::process::Command::new(&cargo_lambda)
            .args([
                "lambda",
                "invoke",
                "scan",
                "--invoke-port",
                &port,
                "--data-file",
            ])
            .arg(workspace_root().join("infra/events/scheduled.json"))
            .current_dir(workspace_root())
            .output()
            .await
            .unwrap();
        if out.status.success() {
            break out;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "invoke kept failing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON summary ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(summary["due"], 2, "{summary}");
    assert_eq!(summary["scanned"], 2, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");

    let inventory = store.inventory(&InventoryQuery::default()).await.unwrap();
    assert_eq!(inventory.len(), 2);
    let served = inventory
        .iter()
        .find(|e| e.observation.target == server.target())
        .unwrap();
    assert_eq!(
        served.observation.fingerprint(),
        Some(leaf.fingerprint().as_str())
    );
    assert_eq!(
        served.tags.get("owner").map(String::as_str),
        Some("payments")
    );
    let refused = inventory
        .iter()
        .find(|e| e.observation.target == closed.to_string())
        .unwrap();
    assert_eq!(
        refused.observation.error.as_ref().unwrap().kind,
        certpilot_core::ErrorKind::Refused
    );
    // Both endpoints went back to their slots (nothing explicit left due), and the run moved
    // the tick marker, so the next run sweeps on from here.
    let tick = store.last_tick().await.unwrap();
    assert!(tick.is_some(), "the run advanced the schedule");
    for e in store.endpoints().await.unwrap() {
        assert_eq!(e.due_at, None, "{}", e.key());
    }
}
