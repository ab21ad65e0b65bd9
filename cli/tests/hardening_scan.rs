//! Hardening I, through the CLI: a scan loses no observation to SIGTERM, SIGKILL, a second
//! scan on the same store, a reader that closes the pipe, or a low open-file limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Output, Stdio};
use std::time::Duration;

use certpilot_testkit::certs::Ca;
use certpilot_testkit::servers::{self, Server};
use rustix::process::{Pid, Signal};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// A scratch store and CA file; every command runs against them.
struct Scratch {
    dir: tempfile::TempDir,
    ca_file: String,
}

impl Scratch {
    fn new(ca: &Ca) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.root_pem()).unwrap();
        Scratch {
            ca_file: ca_file.display().to_string(),
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"));
        c.args(args)
            .env(
                "CERTPILOT_STORE",
                format!("sqlite:{}", self.dir.path().join("inventory.db").display()),
            )
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }

    /// The recorded inventory's targets, sorted.
    async fn recorded(&self) -> Vec<String> {
        let out = self.run(&["inventory", "--format", "json"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let mut targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["target"].as_str().unwrap().to_owned()
            })
            .collect();
        targets.sort();
        targets
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn signal(child: &tokio::process::Child, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// Starts a scan of a healthy server and a tarpit (which holds the scan for `--timeout`),
/// and returns once the healthy result is on stdout.
async fn scan_held_by_a_tarpit(
    scratch: &Scratch,
    healthy: &Server,
    tarpit: &Server,
) -> tokio::process::Child {
    let (good, slow) = (healthy.target(), tarpit.target());
    let mut child = scratch
        .command(&[
            "scan",
            &good,
            &slow,
            "--ca-file",
            &scratch.ca_file,
            "--format",
            "json",
            "--timeout",
            "60s",
            "--connect-timeout",
            "60s",
            "--handshake-timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the healthy result arrives")
        .unwrap()
        .unwrap();
    assert!(first.contains(&good), "{first}");
    // Keep draining stdout so the child never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_sigterm_during_a_scan_records_what_was_seen_and_exits_130() {
    let ca = Ca::new("hardening test CA");
    let leaf = ca.leaf(&["localhost"]).expiring_in_days(60).build();
    let healthy = servers::tls_default(&leaf).await;
    let tarpit = servers::tarpit().await;
    let scratch = Scratch::new(&ca);

    let child = scan_held_by_a_tarpit(&scratch, &healthy, &tarpit).await;
    signal(&child, Signal::TERM);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("SIGTERM ends the scan promptly")
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert_eq!(scratch.recorded().await, vec![healthy.target()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_sigkill_during_a_scan_loses_at_most_a_second_of_observations() {
    let ca = Ca::new("hardening test CA");
    let leaf = ca.leaf(&["localhost"]).expiring_in_days(60).build();
    let healthy = servers::tls_default(&leaf).await;
    let tarpit = servers::tarpit().await;
    let scratch = Scratch::new(&ca);

    let mut child = scan_held_by_a_tarpit(&scratch, &healthy, &tarpit).await;
    // The healthy observation waits in a batch for at most a second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&child, Signal::KILL);
    let _ = child.wait().await;
    assert_eq!(scratch.recorded().await, vec![healthy.target()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_two_concurrent_scans_on_one_store_both_record_every_target() {
    let ca = Ca::new("hardening test CA");
    let scratch = Scratch::new(&ca);
    // 1,000 loopback ports, nearly all closed: answered at once, so the two runs spend their
    // time writing five batches each into the same file at the same moments.
    let targets: Vec<String> = (31000..32000).map(|p| format!("127.0.0.1:{p}")).collect();
    let file = scratch.dir.path().join("targets.txt");
    std::fs::write(&file, targets.join("\n")).unwrap();
    let file = file.display().to_string();
    // Create the store first, as a user's first scan would have.
    let first = scratch.run(&["scan", &targets[0], "--timeout", "2s"]).await;
    assert!(first.status.success(), "{}", stderr(&first));

    let args = [
        "scan",
        "--targets",
        &file,
        "--format",
        "json",
        "--timeout",
        "2s",
    ];
    for round in 0..3 {
        let (a, b) = tokio::join!(scratch.run(&args), scratch.run(&args));
        for out in [&a, &b] {
            assert_eq!(out.status.code(), Some(0), "round {round}: {}", stderr(out));
            assert!(!stderr(out).contains("locked"), "{}", stderr(out));
        }
    }
    let mut expected = targets.clone();
    expected.sort();
    assert_eq!(scratch.recorded().await, expected);
}

/// Runs `command` with its stdout a pipe whose reading end is already closed, as
/// `| head -1` leaves it. (`output()` would replace the pipe with its own.)
async fn with_closed_stdout(mut command: tokio::process::Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_a_closed_stdout_stops_the_output_not_the_work() {
    let ca = Ca::new("hardening test CA");
    let leaf = ca.leaf(&["localhost"]).expiring_in_days(60).build();
    let servers = servers::tls_many(&leaf, 3, 21100).await;
    let targets: Vec<String> = servers.iter().map(Server::target).collect();
    let scratch = Scratch::new(&ca);

    let mut args = vec!["scan", "--ca-file", &scratch.ca_file, "--format", "json"];
    args.extend(targets.iter().map(String::as_str));
    let out = with_closed_stdout(scratch.command(&args)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The findings the scan opened are told on stderr (these servers' names do not match).
    let said: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| !l.contains("created a new store") && !l.starts_with("certpilot: opened "))
        .map(str::to_owned)
        .collect();
    assert!(said.is_empty(), "nothing printed about the pipe: {said:?}");
    let mut expected = targets.clone();
    expected.sort();
    assert_eq!(scratch.recorded().await, expected, "the scan was recorded");

    for target in &targets {
        let out = scratch.run(&["endpoints", "add", target]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for listing in [
        &["inventory", "--format", "table"][..],
        &["inventory", "--format", "json"],
        &["inventory", "--format", "csv"],
        &["endpoints", "list", "--format", "json"],
        &["endpoints", "list", "--format", "table"],
    ] {
        let out = with_closed_stdout(scratch.command(listing)).await;
        assert_eq!(out.status.code(), Some(0), "{listing:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{listing:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_a_low_open_file_limit_lowers_concurrency_and_records_no_local_failure() {
    let ca = Ca::new("hardening test CA");
    let scratch = Scratch::new(&ca);
    let tarpit = servers::tarpit().await;
    // 150 distinct targets, all held by the tarpit for the whole --timeout: at 200 in flight
    // they need far more sockets than a 128-descriptor limit allows.
    let port = tarpit.port();
    let mut args: Vec<String> = [
        "scan",
        "--format",
        "json",
        "--concurrency",
        "200",
        "--timeout",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    for i in 0..150 {
        args.push(format!("host-{i}.test:{port}"));
        args.push("--resolve".into());
        args.push(format!("host-{i}.test:{port}:127.0.0.1"));
    }
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -n 128 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_certpilot"))
        .args(&args)
        .env(
            "CERTPILOT_STORE",
            format!(
                "sqlite:{}",
                scratch.dir.path().join("inventory.db").display()
            ),
        )
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--concurrency 200 lowered to"),
        "{}",
        stderr(&out)
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 150);
    for row in &rows {
        assert_eq!(row["error"]["kind"], "timeout", "{row}");
    }
    assert_eq!(scratch.recorded().await.len(), 150);
}
