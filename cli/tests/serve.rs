//! `certpilot serve` end to end: the API router over the embedded store, behind bearer
//! tokens (or `--no-auth` on loopback only), plain HTTP on loopback and HTTPS elsewhere,
//! with the refusals a person sees when they ask for something unsafe.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use certpilot_testkit::certs::Ca;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A running `certpilot serve`, killed on drop.
struct Serve {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn serve(dir: &std::path::Path, args: &[&str]) -> Serve {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
        .arg("serve")
        .args(args)
        .env(
            "CERTPILOT_STORE",
            format!("sqlite:{}", dir.join("inventory.db").display()),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
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
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Serve { child, url }
}

/// One HTTP/1.1 exchange on `stream`: the status and the JSON body.
async fn exchange<S>(
    stream: &mut S,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = certpilot_e2e::exchange(stream, &request).await;
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {response:?}"));
    let json = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .filter(|b| !b.is_empty())
        .map_or(Value::Null, |b| {
            serde_json::from_str(b).unwrap_or_else(|_| panic!("not JSON: {b:?}"))
        });
    (status, json)
}

async fn http(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    exchange(&mut stream, method, path, token, body).await
}

fn sha256_hex(token: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_registers_endpoints_for_token_holders_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# callers\nops {}\n", sha256_hex("s3cret-ops")),
    )
    .unwrap();
    let server = serve(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            tokens.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );

    // Nothing without a token, nor with a wrong one; the document is public.
    let (status, err) = http(&server.url, "GET", "/endpoints", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(err["code"], "unauthenticated");
    let (status, _) = http(&server.url, "GET", "/endpoints", Some("guess"), None).await;
    assert_eq!(status, 401);
    let (status, doc) = http(&server.url, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/endpoints"].is_object());

    // A public literal address registers; loopback is refused (the server itself!).
    let token = Some("s3cret-ops");
    let (status, ep) = http(
        &server.url,
        "POST",
        "/endpoints",
        token,
        Some(&json!({"target": "93.184.215.14:443", "tags": {"owner": "payments"}})),
    )
    .await;
    assert_eq!(status, 201, "{ep}");
    let (status, err) = http(
        &server.url,
        "POST",
        "/endpoints",
        token,
        Some(&json!({"target": server.url.trim_start_matches("http://")})),
    )
    .await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["code"], "address_not_allowed");

    // What the API stored is what the CLI lists.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
        .args(["endpoints", "list", "--format", "json"])
        .env(
            "CERTPILOT_STORE",
            format!("sqlite:{}", dir.path().join("inventory.db").display()),
        )
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("93.184.215.14:443"), "{listed}");
    assert!(!listed.contains("127.0.0.1"), "{listed}");

    let id = ep["id"].as_str().unwrap();
    let (status, _) = http(
        &server.url,
        "DELETE",
        &format!("/endpoints/{id}"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_unsafe_setups_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: Vec<&str>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"));
        cmd.arg("serve").args(args).env(
            "CERTPILOT_STORE",
            format!("sqlite:{}", dir.path().join("inventory.db").display()),
        );
        async move { cmd.output().await.unwrap() }
    };
    for (args, words) in [
        (
            vec!["--listen", "0.0.0.0:0", "--no-auth"],
            "is not loopback: give --tls-cert and --tls-key",
        ),
        (vec!["--listen", "127.0.0.1:0"], "give --token-file"),
        (vec!["--listen", "nowhere"], "--listen \"nowhere\""),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--no-auth",
                "--allow-network",
                "10.0.0.0/99",
            ],
            "--allow-network",
        ),
    ] {
        let out = run(args.clone()).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
    let bad = dir.path().join("tokens");
    std::fs::write(&bad, "ops not-a-hash\n").unwrap();
    let out = run(vec!["--token-file", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1: the hash must be 64 hex digits"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Serve Root");
    let leaf = ca.leaf(&["127.0.0.1"]).build();
    std::fs::write(dir.path().join("cert.pem"), leaf.chain_pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), leaf.key_pem()).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("ci {}\n", sha256_hex("t0ken"))).unwrap();
    let server = serve(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            tokens.to_str().unwrap(),
            "--tls-cert",
            dir.path().join("cert.pem").to_str().unwrap(),
            "--tls-key",
            dir.path().join("key.pem").to_str().unwrap(),
        ],
    )
    .await;
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // A client that never finishes its handshake holds up nobody.
    let _stalled = tokio::net::TcpStream::connect(server.url.trim_start_matches("https://"))
        .await
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(server.url.trim_start_matches("https://"))
        .await
        .unwrap();
    let mut tls = tokio::time::timeout(
        Duration::from_secs(5),
        connector.connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        ),
    )
    .await
    .expect("handshake while another client stalls")
    .unwrap();
    let (status, page) = exchange(&mut tls, "GET", "/endpoints", Some("t0ken"), None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"], json!([]));
}
