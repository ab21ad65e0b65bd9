//! The renewal benchmark, against a local Pebble (no validation sleep, no nonce rejection)
//! with pebble-challtestsrv resolving every name to loopback:
//!
//! 1. one issuance with `certpilot renew --due`, wall time of the whole command: the first
//!    (it creates the ACME account) and the median of five more;
//! 2. 50 certificates issued in one `certpilot renew --due`, then the same 50 renewed in one
//!    `certpilot renew --force ID…` (ARI `replaces`);
//! 3. a sequential loop of `lego run` over the same 50 names, against the same Pebble.
//!
//! ```text
//! scripts/bench-renew.sh                 # builds in release mode, installs lego, runs this
//! renew-bench --certpilot target/release/certpilot --lego /usr/bin/lego --count 50
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use certpilot_testkit::procs::{ChallTestSrv, Pebble, PebbleOptions, free_port};

fn value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

struct Bench {
    certpilot: PathBuf,
    dir: PathBuf,
    pebble: Pebble,
    http_port: u16,
}

impl Bench {
    fn certpilot(&self, args: &[&str]) -> Duration {
        let started = Instant::now();
        let out = Command::new(&self.certpilot)
            .args(args)
            .env(
                "CERTPILOT_STORE",
                format!("sqlite:{}", self.dir.join("state/certpilot.db").display()),
            )
            .env("CERTPILOT_ACME_DIRECTORY", &self.pebble.directory_url)
            .env("CERTPILOT_ACME_CA_FILE", self.dir.join("pebble-ca.pem"))
            .env_remove("CERTPILOT_SECRETS")
            .output()
            .expect("certpilot runs");
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "certpilot {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("\"failed\""),
            "certpilot {args:?} reported a failure: {text}"
        );
        took
    }

    fn add(&self, name: &str) {
        let listen = format!("127.0.0.1:{}", self.http_port);
        self.certpilot(&[
            "certificates",
            "add",
            name,
            "--http-listen",
            &listen,
            "--contact",
            "mailto:bench@certpilot.test",
        ]);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn lego_loop(lego: &Path, bench: &Bench, names: &[String]) -> Duration {
    let path = bench.dir.join("lego");
    let http = format!("127.0.0.1:{}", bench.http_port);
    let started = Instant::now();
    for name in names {
        let out = Command::new(lego)
            .args(["--accept-tos", "--email", "bench@certpilot.test"])
            .args(["--server", &bench.pebble.directory_url])
            .args(["--http", "--http.port", &http])
            .arg("--path")
            .arg(&path)
            .args(["--domains", name, "run"])
            .env("LEGO_CA_CERTIFICATES", bench.dir.join("pebble-ca.pem"))
            .output()
            .expect("lego runs");
        assert!(
            out.status.success(),
            "lego {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    started.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let certpilot = value(&args, "--certpilot")
        .map_or_else(|| PathBuf::from("target/release/certpilot"), PathBuf::from);
    let lego = value(&args, "--lego").map_or_else(|| PathBuf::from("lego"), PathBuf::from);
    let count: usize = value(&args, "--count").map_or(50, |c| c.parse().expect("a number"));
    assert!(certpilot.is_file(), "{} is not built", certpilot.display());

    let dns = ChallTestSrv::start();
    let http_port = free_port();
    let pebble = Pebble::start_with(&PebbleOptions {
        http_port,
        tls_port: free_port(),
        dns_server: Some(dns.dns),
        ..PebbleOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pebble-ca.pem"), &pebble.tls_ca_pem).unwrap();
    let bench = Bench {
        certpilot,
        dir: dir.path().to_owned(),
        pebble,
        http_port,
    };

    println!("renew-bench: Pebble on loopback, no validation sleep, HTTP-01");
    let mut singles = Vec::new();
    for i in 0..6 {
        bench.add(&format!("single-{i}.bench.certpilot.test"));
        singles.push(bench.certpilot(&["renew", "--due", "--format", "json"]));
    }
    let first = singles.remove(0);
    println!(
        "one issuance (`certpilot renew --due`, whole command): first {:.0} ms (creates the account), then median {:.0} ms of {}",
        first.as_secs_f64() * 1000.0,
        median(singles.clone()).as_secs_f64() * 1000.0,
        singles.len()
    );

    let names: Vec<String> = (0..count)
        .map(|i| format!("site-{i}.bench.certpilot.test"))
        .collect();
    for n in &names {
        bench.add(n);
    }
    let issued = bench.certpilot(&["renew", "--due", "--format", "json"]);
    let mut force = vec!["renew", "--force", "--format", "json"];
    force.extend(names.iter().map(String::as_str));
    let renewed = bench.certpilot(&force);
    let lego_names: Vec<String> = (0..count)
        .map(|i| format!("lego-{i}.bench.certpilot.test"))
        .collect();
    let lego_took = lego_loop(&lego, &bench, &lego_names);
    println!(
        "{count} certificates in one run: issued in {:.2} s, renewed in {:.2} s (concurrency 16)",
        issued.as_secs_f64(),
        renewed.as_secs_f64()
    );
    println!(
        "sequential `lego run` loop over {count} names: {:.2} s",
        lego_took.as_secs_f64()
    );
    println!(
        "speed-up over lego: {:.1}x (renewal), {:.1}x (issuance)",
        lego_took.as_secs_f64() / renewed.as_secs_f64(),
        lego_took.as_secs_f64() / issued.as_secs_f64()
    );
}
