//! `certpilot serve` end to end: the API router over the embedded store, behind bearer
//! tokens (or `--no-auth` on loopback only), plain HTTP on loopback and HTTPS elsewhere,
//! with the refusals a person sees when they ask for something unsafe.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use certpilot_testkit::certs::Ca;

mod support;
use serde_json::{Value, json};

async fn serve(dir: &std::path::Path, args: &[&str]) -> support::Serve {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"));
    command
        .arg("serve")
        .args(args)
        .env(
            "CERTPILOT_STORE",
            format!("sqlite:{}", dir.join("inventory.db").display()),
        )
        .env("NO_COLOR", "1");
    support::spawn(command).await.0
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_registers_endpoints_for_token_holders_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# callers\nops {}\n", support::sha256_hex("s3cret-ops")),
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
    std::fs::write(&tokens, format!("ci {}\n", support::sha256_hex("t0ken"))).unwrap();
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

/// The issue's whole path under `certpilot serve`: a team asks for a certificate through the
/// API; the policy allows it; the background worker has Pebble issue it, installs it with
/// the `files` kind, and proves by handshake that the endpoint serves it; `GET` shows it
/// verified and the audit trail who asked. A request outside the policy stores nothing, and
/// a request that needs approval waits for an approver who is not the requester.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_requested_through_serve_is_issued_deployed_verified_and_audited() {
    use certpilot_testkit::servers::FilesServer;
    let env = support::Env::start();
    let live = env.path("web");
    let server = FilesServer::start(&live, &env.path("reload")).await;
    let endpoint = server.server().target();
    let policy = env.path("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            r#"
issuers:
  pebble: {{directory: "{directory}", contact: ["mailto:pki@certpilot.test"]}}
challenges:
  http: {{type: http01-listen, listen: "127.0.0.1:{http_port}"}}
rules:
  - name: web
    callers: [token:web]
    suffixes: [certpilot.test]
    issuers: [pebble]
    deploy_kinds: [files]
  - name: vault
    callers: ["token:*"]
    suffixes: [vault.certpilot.test]
    issuers: [pebble]
    approval: {{approvers: [token:security]}}
"#,
            directory = env.pebble.directory_url,
            http_port = env.http_port
        ),
    )
    .unwrap();
    let tokens = env.path("tokens");
    std::fs::write(
        &tokens,
        format!(
            "web {}\nsecurity {}\n",
            support::sha256_hex("web-token"),
            support::sha256_hex("security-token")
        ),
    )
    .unwrap();
    let (api, mut log) = support::spawn(env.command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        tokens.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        // The test's endpoint is on loopback: the operator allows it, knowingly.
        "--allow-network",
        "127.0.0.0/8",
        "--verify-interval",
        "200ms",
        "--verify-max-deadline",
        "20s",
    ]))
    .await;
    let url = api.url.clone();
    let call = |method: &'static str, path: String, token: &'static str, body: Option<Value>| {
        let url = url.clone();
        async move { http(&url, method, &path, Some(token), body.as_ref()).await }
    };

    // Outside the policy: refused, nothing stored.
    let (status, err) = call(
        "POST",
        "/certificates".into(),
        "web-token",
        Some(json!({"names": ["web.example.org"], "issuer": "pebble", "challenge": "http", "tags": {"owner": "web"}})),
    )
    .await;
    assert_eq!(status, 403, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("rule web"),
        "{err}"
    );
    let (_, listed) = call("GET", "/certificates".into(), "web-token", None).await;
    assert_eq!(listed["items"], json!([]));

    let (status, accepted) = call(
        "POST",
        "/certificates".into(),
        "web-token",
        Some(json!({
            "names": ["web.certpilot.test"],
            "issuer": "pebble",
            "challenge": "http",
            "tags": {"owner": "web", "environment": "prod"},
            "endpoints": [endpoint],
            "deployments": [{
                "name": "disk",
                "kind": "files",
                "settings": {"dir": live.to_str().unwrap(), "reload": server.reload_command()},
            }],
        })),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["state"], "pending");

    // The worker issues, deploys and proves it; the API shows it verified.
    let shown = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let (_, shown) = call(
                "GET",
                "/certificates/web.certpilot.test".into(),
                "web-token",
                None,
            )
            .await;
            let deployed = &shown["certificate"]["deployments"][0];
            if deployed["status"] == "verified" {
                return shown;
            }
            while let Ok(line) = log.try_recv() {
                eprintln!("serve: {line}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await
    .expect("issued, deployed and verified within 120 s");
    assert_eq!(shown["state"], "issued", "{shown}");
    let fingerprint = shown["certificate"]["current"]["fingerprint"]
        .as_str()
        .unwrap();
    assert!(!shown.to_string().contains("PRIVATE KEY"), "never a key");
    // Its endpoint is watched, and what it serves is what was issued.
    let (status, endpoints) = call("GET", "/endpoints".into(), "web-token", None).await;
    assert_eq!(status, 200);
    assert_eq!(endpoints["items"][0]["target"], endpoint);
    assert_eq!(
        shown["certificate"]["deployments"][0]["fingerprint"], fingerprint,
        "the deployment verified is of the certificate issued"
    );

    // The audit trail says who asked, from where.
    let (_, audit) = call("GET", "/audit".into(), "security-token", None).await;
    let asked = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == 202)
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(asked["principal"], "token:web");
    assert_eq!(asked["action"], "POST /certificates");
    assert_eq!(asked["subject"], "web.certpilot.test");
    assert_eq!(asked["source"], "127.0.0.1");
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == 403)
    );

    // Every later scan holds the API's endpoint to the address policy again: a scan that
    // was not told the operator allows loopback does not connect.
    let mut scan = env.command(&["scan", "--format", "json", "--no-notify"]);
    scan.env_remove("CERTPILOT_ALLOW_NETWORKS");
    let refused = scan.output().await.unwrap();
    let rows = String::from_utf8_lossy(&refused.stdout).to_string();
    assert!(
        rows.contains("not scanned") && rows.contains("a loopback address"),
        "{rows}"
    );
    let mut scan = env.command(&["scan", "--format", "json", "--no-notify"]);
    scan.env("CERTPILOT_ALLOW_NETWORKS", "127.0.0.0/8");
    let allowed = scan.output().await.unwrap();
    let rows = String::from_utf8_lossy(&allowed.stdout).to_string();
    assert!(rows.contains(fingerprint), "{rows}");

    // An approval flow: the requester cannot approve; the approver can.
    let (status, pending) = call(
        "POST",
        "/certificates".into(),
        "security-token",
        Some(json!({"names": ["vault.certpilot.test"], "issuer": "pebble", "challenge": "http", "tags": {"owner": "vault"}})),
    )
    .await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["state"], "pending_approval");
    let (status, _) = call(
        "POST",
        "/certificates/vault.certpilot.test/approve".into(),
        "security-token",
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        "POST",
        "/certificates/vault.certpilot.test/approve".into(),
        "web-token",
        None,
    )
    .await;
    assert_eq!(status, 403, "web is not an approver");
    drop(api);
}

/// Schemathesis (from PyPI) against `/openapi.json` on `certpilot serve`, behind a token and
/// with a request policy, so that every route is reached: no 5xx, every response within the
/// documented schema, status codes and content types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("fuzzer {}\n", support::sha256_hex("fuzz-token")),
    )
    .unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        r#"
issuers:
  ca: {directory: "https://127.0.0.1:9/dir"}
challenges:
  http: {type: http01-listen, listen: "127.0.0.1:9"}
rules:
  - callers: ["token:fuzzer"]
    suffixes: [example.com]
    issuers: [ca]
"#,
    )
    .unwrap();
    let server = serve(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            tokens.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
    )
    .await;
    let st = certpilot_testkit::procs::locate("CERTPILOT_SCHEMATHESIS", "st");
    let out = tokio::process::Command::new(st)
        .current_dir(dir.path())
        .args([
            "run",
            &format!("{}/openapi.json", server.url),
            "--header",
            "Authorization: Bearer fuzz-token",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance",
            "--max-examples",
            "25",
            "--request-timeout",
            "10",
        ])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("17/17"),
        "every operation was tested: {report}"
    );
}
