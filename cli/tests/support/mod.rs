//! What the CLI's end-to-end tests share: a real Pebble with pebble-challtestsrv as its DNS,
//! a scratch directory with the SQLite store and secrets, and the binary run against them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use certpilot_testkit::procs::{ChallTestSrv, Pebble, PebbleOptions, free_port};
use serde_json::Value;

/// A Pebble, its DNS, and a scratch directory for the store and secrets.
pub struct Env {
    /// Extra environment for the binary (AWS settings for moto).
    pub extra_env: Vec<(String, String)>,
    _dns: ChallTestSrv,
    pub pebble: Pebble,
    pub http_port: u16,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn start() -> Env {
        Self::start_with(PebbleOptions {
            nonce_reject: 30,
            ..PebbleOptions::default()
        })
    }

    /// Pebble with `options` (its ports and DNS are filled in).
    pub fn start_with(options: PebbleOptions) -> Env {
        let dns = ChallTestSrv::start();
        let http_port = free_port();
        let pebble = Pebble::start_with(&PebbleOptions {
            http_port,
            tls_port: free_port(),
            dns_server: Some(dns.dns),
            ..options
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pebble-ca.pem"), &pebble.tls_ca_pem).unwrap();
        Env {
            extra_env: Vec::new(),
            _dns: dns,
            pebble,
            http_port,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("certpilot runs")
    }

    /// The binary with `args`, set up for this environment, to start as the test wants.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"));
        command
            .args(args)
            .env(
                "CERTPILOT_STORE",
                format!("sqlite:{}", self.path("state/certpilot.db").display()),
            )
            .env("CERTPILOT_ACME_DIRECTORY", &self.pebble.directory_url)
            .env("CERTPILOT_ACME_CA_FILE", self.path("pebble-ca.pem"))
            .env_remove("CERTPILOT_SECRETS")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .envs(self.extra_env.iter().cloned())
            .kill_on_drop(true);
        command
    }

    /// `certificates add NAMES --deploy-file` with `deployments` (one object or a list)
    /// written to a file, checked to succeed.
    pub async fn add_deployments(&self, names: &[&str], deployments: serde_json::Value) {
        let file = self.path("deployments.json");
        std::fs::write(&file, deployments.to_string()).unwrap();
        let added = self
            .add(names, &["--deploy-file", file.to_str().unwrap()])
            .await;
        assert!(added.status.success(), "{}", stderr(&added));
    }

    pub async fn add(&self, names: &[&str], extra: &[&str]) -> Output {
        let listen = format!("127.0.0.1:{}", self.http_port);
        let mut args = vec!["certificates", "add"];
        args.extend_from_slice(names);
        if !extra.contains(&"--dns") {
            args.extend_from_slice(&["--http-listen", &listen]);
        }
        args.extend_from_slice(&["--contact", "mailto:ops@certpilot.test"]);
        args.extend_from_slice(extra);
        self.run(&args).await
    }
}

/// Each stdout line as JSON.
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A file's permission bits.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A running `certpilot serve`, killed on drop.
pub struct Serve {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:PORT` (or `https://…`).
    pub url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts `command` (a `certpilot serve`), waits for the line saying where it listens, and
/// hands back its log lines from then on.
pub async fn spawn(
    mut command: tokio::process::Command,
) -> (Serve, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("certpilot: serving the API on ") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("certpilot serve stopped before it listened");
    })
    .await
    .expect("certpilot serve listens within 30 s");
    // Keep draining its log so it never blocks on a full pipe.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (Serve { child, url }, rx)
}

/// What a token file holds for `token`: its SHA-256, hex.
pub fn sha256_hex(token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
