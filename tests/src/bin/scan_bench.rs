//! The scan benchmark: starts N loopback TLS endpoints and prints, for each N, the throughput,
//! wall time and peak RSS of `certpilot scan`, beside a bare handshake loop on the same
//! endpoints (connect, handshake, parse notAfter, nothing else) and a sequential
//! `openssl s_client` loop on the first 200.
//!
//! ```text
//! scripts/bench-scan.sh                  # builds in release mode and runs N = 1000, 10000
//! scan-bench --certpilot target/release/certpilot --sizes 1000 --concurrency 128
//! scan-bench bare --targets FILE --concurrency 128     # the baseline, run as a child
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]
// wait4(2) is the only way to read one child's peak RSS; it is called on our own child.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use certpilot_testkit::certs::Ca;
use certpilot_testkit::servers;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::FromDer;

struct Options {
    certpilot: PathBuf,
    sizes: Vec<usize>,
    concurrency: usize,
    openssl_sample: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bare") {
        let targets = value(&args, "--targets").expect("bare needs --targets FILE");
        let concurrency = value(&args, "--concurrency").map_or(128, |c| c.parse().expect("number"));
        bare_loop(Path::new(&targets), concurrency);
        return;
    }
    let options = Options {
        certpilot: value(&args, "--certpilot")
            .map_or_else(|| PathBuf::from("target/release/certpilot"), PathBuf::from),
        sizes: value(&args, "--sizes").map_or_else(
            || vec![1000, 10_000],
            |s| {
                s.split(',')
                    .map(|n| n.trim().parse().expect("sizes are numbers"))
                    .collect()
            },
        ),
        concurrency: value(&args, "--concurrency").map_or(128, |c| c.parse().expect("number")),
        openssl_sample: value(&args, "--openssl-sample")
            .map_or(200, |c| c.parse().expect("number")),
    };
    assert!(
        options.certpilot.is_file(),
        "{} not found: build it with `cargo build --release -p certpilot-cli` or pass --certpilot",
        options.certpilot.display()
    );
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(options));
}

fn value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Each endpoint is a listening socket: 10,000 of them need more than the default 1,024 fds.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

struct Measured {
    ok: usize,
    lines: usize,
    wall: Duration,
    peak_rss_kib: i64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `cmd`, counting stdout lines (and those containing `ok_marker`), and reads its peak
/// RSS from wait4(2).
// The child is reaped by wait4 below, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn measure(mut cmd: Command, ok_marker: &str) -> Measured {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("piped stdout");
    let marker = ok_marker.to_owned();
    let counter = std::thread::spawn(move || {
        let (mut lines, mut ok) = (0, 0);
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            lines += 1;
            if line.contains(&marker) {
                ok += 1;
            }
        }
        (lines, ok)
    });
    let pid = i32::try_from(child.id()).expect("pid fits");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both out-pointers are valid for the call.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    let (lines, ok) = counter.join().expect("counter thread");
    Measured {
        ok,
        lines,
        wall,
        peak_rss_kib: usage.ru_maxrss,
    }
}

async fn run(options: Options) {
    let ca = Ca::new("Bench Root");
    let leaf = ca.leaf(&["127.0.0.1", "bench.test"]).build();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.root_pem()).unwrap();
    let exe = std::env::current_exe().unwrap();
    println!(
        "scan benchmark: {} cores, concurrency {}, certpilot {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        options.concurrency,
        options.certpilot.display()
    );

    for &n in &options.sizes {
        let servers = servers::tls_many(&leaf, n, 12_000).await;
        let targets = dir.path().join(format!("targets-{n}.txt"));
        let mut file = std::fs::File::create(&targets).unwrap();
        for s in &servers {
            writeln!(file, "{} env=bench", s.target()).unwrap();
        }
        drop(file);
        println!("\nN = {n} endpoints");

        let store = format!(
            "sqlite:{}",
            dir.path().join(format!("bench-{n}.db")).display()
        );
        let mut cmd = Command::new(&options.certpilot);
        cmd.args([
            "--store",
            &store,
            "scan",
            "--format",
            "json",
            "--concurrency",
        ])
        .arg(options.concurrency.to_string())
        .arg("--targets")
        .arg(&targets)
        .arg("--ca-file")
        .arg(&ca_file);
        let scan = tokio::task::spawn_blocking(move || measure(cmd, "\"status\":\"ok\""))
            .await
            .unwrap();
        println!(
            "  certpilot scan        {:>6} ok of {:>6} in {:>7.2} s = {:>7.0} endpoints/s, peak RSS {:>6.1} MB",
            scan.ok,
            scan.lines,
            scan.wall.as_secs_f64(),
            scan.rate(),
            scan.peak_rss_kib as f64 / 1024.0
        );

        let mut cmd = Command::new(&exe);
        cmd.args([
            "bare",
            "--concurrency",
            &options.concurrency.to_string(),
            "--targets",
        ])
        .arg(&targets);
        let bare = tokio::task::spawn_blocking(move || measure(cmd, "ok"))
            .await
            .unwrap();
        println!(
            "  bare handshake loop   {:>6} ok of {:>6} in {:>7.2} s = {:>7.0} endpoints/s, peak RSS {:>6.1} MB",
            bare.ok,
            bare.lines,
            bare.wall.as_secs_f64(),
            bare.rate(),
            bare.peak_rss_kib as f64 / 1024.0
        );

        let sample: Vec<String> = servers
            .iter()
            .take(options.openssl_sample)
            .map(|s| s.target())
            .collect();
        let openssl = tokio::task::spawn_blocking(move || openssl_loop(&sample))
            .await
            .unwrap();
        match openssl {
            Some((done, wall)) => {
                let rate = done as f64 / wall.as_secs_f64();
                println!(
                    "  openssl s_client loop {:>6} ok of {:>6} in {:>7.2} s = {:>7.0} endpoints/s (sequential)",
                    done,
                    options.openssl_sample.min(n),
                    wall.as_secs_f64(),
                    rate
                );
                println!(
                    "  certpilot / bare = {:.2} (target >= 0.50), certpilot / openssl = {:.0}x (target >= 50x)",
                    scan.rate() / bare.rate(),
                    scan.rate() / rate
                );
            }
            None => println!(
                "  openssl not found; certpilot / bare = {:.2} (target >= 0.50)",
                scan.rate() / bare.rate()
            ),
        }
        drop(servers);
        // Let the last connections leave TIME_WAIT's accept queue before the next size.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    hostile(&options, dir.path()).await;
}

/// Tarpits and drips: every one must come back as `timeout` within its deadline, and the run
/// within (targets / concurrency) x deadline.
async fn hostile(options: &Options, dir: &Path) {
    const EACH: usize = 128;
    const CONCURRENCY: usize = 64;
    const DEADLINE_S: u64 = 2;
    let mut hostile = Vec::new();
    for _ in 0..EACH {
        hostile.push(servers::tarpit().await);
        hostile.push(servers::drip().await);
    }
    let targets = dir.join("hostile.txt");
    let lines: String = hostile
        .iter()
        .map(|s| format!("{}\n", s.target()))
        .collect();
    std::fs::write(&targets, lines).unwrap();
    let store = format!("sqlite:{}", dir.join("hostile.db").display());
    let mut cmd = Command::new(&options.certpilot);
    cmd.args([
        "--store",
        &store,
        "scan",
        "--format",
        "json",
        "--concurrency",
    ])
    .arg(CONCURRENCY.to_string())
    .args(["--timeout", &format!("{DEADLINE_S}s"), "--targets"])
    .arg(&targets);
    let run = tokio::task::spawn_blocking(move || measure(cmd, "\"kind\":\"timeout\""))
        .await
        .unwrap();
    let bound = (hostile.len() as f64 / CONCURRENCY as f64).ceil() * DEADLINE_S as f64;
    println!(
        "\nhostile: {} tarpits + {} drips, concurrency {CONCURRENCY}, --timeout {DEADLINE_S}s",
        EACH, EACH
    );
    println!(
        "  {} of {} classified timeout in {:.2} s (bound (targets / concurrency) x deadline = {:.0} s)",
        run.ok,
        run.lines,
        run.wall.as_secs_f64(),
        bound
    );
}

fn openssl_loop(targets: &[String]) -> Option<(usize, Duration)> {
    let started = Instant::now();
    let mut done = 0;
    for target in targets {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", target, "-servername", "bench.test"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE") {
            done += 1;
        }
    }
    Some((done, started.elapsed()))
}

/// Accepts anything: the baseline does no validation at all.
#[derive(Debug)]
struct AcceptAll(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAll {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// The baseline: connect, handshake, parse notAfter; print "ok <not_after>" per endpoint.
fn bare_loop(targets: &Path, concurrency: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let schemes = provider
            .signature_verification_algorithms
            .supported_schemes();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAll(schemes)))
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let text = std::fs::read_to_string(targets).unwrap();
        let addrs: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let failures = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(concurrency * 2);
        let printer = tokio::spawn(async move {
            let mut out = std::io::BufWriter::new(std::io::stdout());
            while let Some(line) = rx.recv().await {
                writeln!(out, "{line}").unwrap();
            }
            out.flush().unwrap();
        });
        for addr in addrs {
            let permit = semaphore.clone().acquire_owned().await.unwrap();
            let (connector, tx, failures) = (connector.clone(), tx.clone(), failures.clone());
            tasks.spawn(async move {
                let result = async {
                    let tcp = tokio::net::TcpStream::connect(&addr).await.ok()?;
                    let name = ServerName::try_from("bench.test").ok()?;
                    let tls = connector.connect(name, tcp).await.ok()?;
                    let der = tls.get_ref().1.peer_certificates()?.first()?.clone();
                    let (_, cert) =
                        x509_parser::certificate::X509Certificate::from_der(&der).ok()?;
                    Some(cert.validity().not_after.to_string())
                }
                .await;
                drop(permit);
                match result {
                    Some(not_after) => {
                        let _ = tx.send(format!("ok {addr} {not_after}")).await;
                    }
                    None => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(format!("failed {addr}")).await;
                    }
                }
            });
            while let Some(done) = tasks.try_join_next() {
                done.unwrap();
            }
        }
        drop(tx);
        while tasks.join_next().await.is_some() {}
        printer.await.unwrap();
    });
}
