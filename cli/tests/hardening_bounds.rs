//! Hardening II, bounded inputs and waits: a CA that sends an endless body or stalls
//! mid-order, between the CLI and a real Pebble, and a tarpit among the endpoints to verify.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use certpilot_testkit::hostile_ca::{Act, HostileCa};
use support::{Env, json_lines, stderr};

const SHOP: &str = "shop.certpilot.test";

/// `certpilot` with `args` through `env`, killed if it runs past `limit`; also the peak
/// resident memory it reached, in MiB, sampled every 20 ms.
async fn run_bounded(
    env: &Env,
    args: &[&str],
    limit: Duration,
) -> (std::process::Output, u64, Duration) {
    let started = Instant::now();
    let child = env
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kb) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak.fetch_max(kb / 1024, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("certpilot {args:?} still ran after {limit:?}"))
        .unwrap();
    sampler.abort();
    (out, peak.load(Ordering::Relaxed), started.elapsed())
}

/// Adds the shop certificate with `directory`, trusting `ca_pem` for its HTTPS.
async fn add_with(env: &Env, directory: &str, ca_pem: &str) -> String {
    let ca = env.path("hostile-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let out = env.add(&[SHOP], &["--directory", directory]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    ca.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_an_endless_body_from_the_ca_is_cut_off_and_named() {
    let env = Env::start();
    let ca = HostileCa::start(env.pebble.listen, &env.pebble.tls_ca_pem, |_, path| {
        if path == "/dir" {
            Act::EndlessBody
        } else {
            Act::Forward
        }
    })
    .await;
    let ca_file = add_with(&env, &ca.directory_url, &ca.ca_pem).await;
    let (out, peak_mib, took) = run_bounded(
        &env,
        &["renew", SHOP, "--force", "--acme-ca-file", &ca_file],
        Duration::from_secs(60),
    )
    .await;
    // A figure for the record (`--nocapture`), not a timing assertion.
    eprintln!("endless body: refused after {took:?}, peak resident memory {peak_mib} MiB");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("larger than 1024 KiB"), "{err}");
    assert!(err.contains(&ca.directory_url), "the CA is named: {err}");
    assert!(peak_mib < 200, "peak memory {peak_mib} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_a_ca_that_stalls_mid_order_fails_the_step_in_time_and_the_renewal_resumes() {
    let env = Env::start();
    let stall = Arc::new(AtomicBool::new(true));
    let ca = {
        let stall = stall.clone();
        HostileCa::start(
            env.pebble.listen,
            &env.pebble.tls_ca_pem,
            move |method, path| {
                let stalling = stall.load(Ordering::SeqCst);
                if stalling && method == "POST" && path.starts_with("/finalize-order/") {
                    Act::Stall
                } else {
                    Act::Forward
                }
            },
        )
        .await
    };
    let ca_file = add_with(&env, &ca.directory_url, &ca.ca_pem).await;

    // Each call is bounded: the stalled finalize fails after --acme-timeout.
    let (out, _, took) = run_bounded(
        &env,
        &[
            "renew",
            SHOP,
            "--force",
            "--acme-ca-file",
            &ca_file,
            "--acme-timeout",
            "3s",
        ],
        Duration::from_secs(90),
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("finalize"), "{err}");
    assert!(err.contains("within 3s"), "{err}");
    assert!(took < Duration::from_secs(60), "took {took:?}");

    // The whole renewal is bounded too, even when each call may take long.
    let (out, _, took) = run_bounded(
        &env,
        &[
            "renew",
            SHOP,
            "--force",
            "--acme-ca-file",
            &ca_file,
            "--acme-timeout",
            "60s",
            "--renewal-timeout",
            "4s",
        ],
        Duration::from_secs(50),
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("deadline"), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let show: serde_json::Value =
        serde_json::from_slice(&env.run(&["certificates", "show", SHOP]).await.stdout).unwrap();
    assert!(show["renewal"]["lease"].is_null(), "lease released: {show}");
    assert_eq!(show["renewal"]["job"]["step"], "validated", "{show}");

    // Once the CA answers again, the renewal resumes from its last step.
    stall.store(false, Ordering::SeqCst);
    let out = env
        .run(&[
            "renew",
            SHOP,
            "--force",
            "--acme-ca-file",
            &ca_file,
            "--format",
            "json",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["outcome"], "issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_verify_deadline_bounds_the_handshakes_with_a_tarpit() {
    let env = Env::start();
    let tarpit = certpilot_testkit::servers::tarpit().await;
    let endpoint = format!("127.0.0.1:{}", tarpit.port());
    let out = env.add(&[SHOP], &["--endpoint", &endpoint]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["renew", SHOP, "--force", "--no-deploy"]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // The handshake timeout is 10s; the deadline the user gave is 3s.
    let (out, _, took) = run_bounded(
        &env,
        &["verify", SHOP, "--deadline", "3s", "--format", "json"],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let rows = json_lines(&out);
    assert_eq!(rows[0]["verdict"], "not_serving", "{rows:?}");
    assert!(
        rows[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("deadline")),
        "{rows:?}"
    );
    assert!(
        took < Duration::from_secs(6),
        "verify --deadline 3s took {took:?}"
    );
}
