//! The verification benchmark: N loopback TLS endpoints all serving one certificate; prints
//! the wall time of one scan of them and of verifying that every one serves the certificate
//! (what `certpilot verify` and, later, every deployment run), in the same process and with
//! the same prober and concurrency.
//!
//! ```text
//! cargo run --release -p certpilot-e2e --bin verify-bench -- --count 1000 --concurrency 128
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use certpilot_core::ScanRequest;
use certpilot_core::ports::{ScanLimits, SystemClock};
use certpilot_core::services::scan::ScanService;
use certpilot_core::services::verify::{VerifyService, VerifySettings};
use certpilot_scanner::{Deadlines, TlsProber, TrustStore};
use certpilot_testkit::certs::Ca;
use certpilot_testkit::servers;

fn value(args: &[String], flag: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = value(&args, "--count").unwrap_or(1000);
    let concurrency = value(&args, "--concurrency").unwrap_or(128);
    let ca = Ca::new("Verify Bench Root");
    let leaf = ca.leaf(&["127.0.0.1"]).build();
    let endpoints = servers::tls_many(&leaf, count, 14_000).await;
    let requests: Vec<ScanRequest> = endpoints
        .iter()
        .map(|s| ScanRequest::new(s.target().parse().unwrap()))
        .collect();
    let mut trust = TrustStore::mozilla();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca.root_pem()).unwrap();
    trust.add_pem_file(ca_file.path()).unwrap();
    let scanner = ScanService::new(
        Arc::new(TlsProber::new(trust, Deadlines::default())),
        Arc::new(SystemClock),
        ScanLimits {
            concurrency,
            target_timeout: Duration::from_secs(15),
        },
    );

    let started = Instant::now();
    let mut run = scanner.start(requests.clone());
    let mut scanned = 0;
    while run.next().await.is_some() {
        scanned += 1;
    }
    let scan_took = started.elapsed();

    let started = Instant::now();
    let checks = VerifyService::new(scanner)
        .verify(
            &leaf.fingerprint(),
            requests,
            VerifySettings {
                deadline: Duration::from_secs(60),
                interval: Duration::from_secs(2),
            },
        )
        .await;
    let verify_took = started.elapsed();
    let verified = checks.iter().filter(|c| c.is_verified()).count();
    assert_eq!(verified, count, "every endpoint serves the certificate");
    println!(
        "{count} endpoints, concurrency {concurrency}: one scan {:.2} s ({scanned} results); verification {:.2} s ({verified} verified); ratio {:.2}",
        scan_took.as_secs_f64(),
        verify_took.as_secs_f64(),
        verify_took.as_secs_f64() / scan_took.as_secs_f64()
    );
}
