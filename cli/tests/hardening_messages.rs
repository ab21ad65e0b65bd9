//! Hardening II, items 8 and 10, through the CLI: failures said in words that name the input
//! and the fix, and inputs that were accepted but wrong (or refused but fine).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Output;

use certpilot_testkit::certs::Ca;
use certpilot_testkit::hostile_ca::{Act, HostileCa};
use certpilot_testkit::servers;
use support::{Env, json_lines, stderr};

const SHOP: &str = "shop.certpilot.test";

/// Rust `Debug` output that must never reach a person.
fn assert_no_debug(text: &str) {
    for leak in [
        "Some(",
        "Other(",
        "OtherError",
        "UnknownIssuer",
        "Error {",
        "Dns(\"",
    ] {
        assert!(!text.contains(leak), "{leak} in: {text}");
    }
}

fn all(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_ca_and_dns_failures_are_said_in_words_with_the_fix() {
    let env = Env::start();

    // http:// is decided at add, not at the first renewal.
    let out = env
        .add(&[SHOP], &["--directory", "http://acme.certpilot.test/dir"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));

    // The CA's HTTPS certificate is not trusted: words, and the flag that fixes it.
    let out = env.add(&[SHOP], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stranger = env.path("stranger.pem");
    std::fs::write(&stranger, Ca::new("Stranger Root").root_pem()).unwrap();
    let out = env
        .command(&["renew", SHOP, "--force"])
        .env("CERTPILOT_ACME_CA_FILE", &stranger)
        .output()
        .await
        .unwrap();
    let text = all(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("does not trust"), "{text}");
    assert!(text.contains("--acme-ca-file"), "{text}");
    assert!(
        text.contains(&env.pebble.directory_url),
        "names the CA: {text}"
    );
    assert!(!text.contains("rustls"), "no verifier log line: {text}");
    assert_no_debug(&text);

    // A wrong directory URL that answers 404 says 404.
    let ca = HostileCa::start(env.pebble.listen, &env.pebble.tls_ca_pem, |_, _| {
        Act::Status(404)
    })
    .await;
    let ca_file = env.path("hostile.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let out = env
        .add(&["www.certpilot.test"], &["--directory", &ca.directory_url])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .command(&["renew", "www.certpilot.test", "--force"])
        .env("CERTPILOT_ACME_CA_FILE", &ca_file)
        .output()
        .await
        .unwrap();
    let text = all(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("HTTP 404 Not Found"), "{text}");
    assert!(text.contains("is the directory URL right?"), "{text}");
    assert_no_debug(&text);

    // A DNS server that does not answer is the DNS provider, not the CA.
    let secret = env.path("tsig.key");
    std::fs::write(&secret, "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=").unwrap();
    let dead = format!("127.0.0.1:{}", certpilot_testkit::procs::free_port());
    let out = env
        .add(
            &["dns.certpilot.test"],
            &[
                "--dns",
                "rfc2136",
                "--rfc2136-server",
                &dead,
                "--rfc2136-zone",
                "certpilot.test",
                "--tsig-key-name",
                "certpilot",
                "--tsig-secret-file",
                &secret.display().to_string(),
            ],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .run(&["renew", "dns.certpilot.test", "--force", "--format", "json"])
        .await;
    let text = all(&out);
    assert_eq!(out.status.code(), Some(75), "{text}");
    assert!(text.contains("DNS provider unavailable"), "{text}");
    assert!(!text.contains("CA unavailable"), "{text}");
    assert_eq!(
        json_lines(&out)[0]["error_kind"],
        "dns_unavailable",
        "{text}"
    );
}

/// `certpilot` against a scratch store, with `stdin` piped in when given.
async fn run(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
        .args(args)
        .env(
            "CERTPILOT_STORE",
            format!("sqlite:{}", dir.join("db").display()),
        )
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .await
        .unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_inputs_accepted_but_wrong_are_refused_and_those_refused_but_fine_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let add = |names: &'static [&'static str], extra: &'static [&'static str]| {
        let mut args = vec!["certificates", "add"];
        args.extend_from_slice(names);
        args.extend_from_slice(&["--http-listen", "127.0.0.1:5002"]);
        args.extend_from_slice(extra);
        args
    };
    // Refused, each naming the input and what is wrong.
    let refused: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            add(&["shop_x.certpilot.test"], &[]),
            "shop_x.certpilot.test",
            "'_' is not allowed",
        ),
        (
            add(&["1.2.3.999"], &[]),
            "1.2.3.999",
            "not a valid IP address",
        ),
        (
            add(&["0177.0.0.1"], &[]),
            "0177.0.0.1",
            "not a valid IP address",
        ),
        (
            add(&["localhost..test.."], &[]),
            "localhost..test..",
            "1 to 63 characters",
        ),
        (add(&[SHOP], &["--id", "Shop"]), "Shop", "use \"shop\""),
        (
            add(
                &[SHOP],
                &["--deploy", "acm-import:region=eu-west-1,region=us-east-1"],
            ),
            "region",
            "given twice",
        ),
        (
            vec!["scan", "16909060", "--no-record"],
            "16909060",
            "not a valid IP address",
        ),
        (
            vec!["scan", "shop.example.com..:443", "--no-record"],
            "shop.example.com..",
            "empty label",
        ),
    ];
    for (args, input, why) in refused {
        let out = run(d, &args, None).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(input), "{args:?} names {input}: {err}");
        assert!(err.contains(why), "{args:?} says {why}: {err}");
    }
    let long = format!("owner={}", "x".repeat(300));
    let out = run(d, &["endpoints", "add", "shop.example.com", &long], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("longer than 256 characters"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).len() < 400,
        "the message does not echo 300 characters back"
    );

    // Fine: an IPv6 address as a name gets an id of its own.
    let out = run(d, &add(&["::1"], &[]), None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(d, &["certificates", "show", "ip---1"], None).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Fine: a targets file with a byte-order mark, and targets from standard input.
    let leaf = Ca::new("Input Root")
        .leaf(&["127.0.0.1"])
        .expiring_in_days(30)
        .build();
    let server = servers::tls_default(&leaf).await;
    let file = d.join("targets.txt");
    std::fs::write(&file, format!("\u{feff}{} owner=web\n", server.target())).unwrap();
    let out = run(
        d,
        &[
            "scan",
            "--targets",
            &file.display().to_string(),
            "--format",
            "json",
        ],
        None,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["tags"]["owner"], "web");
    let out = run(
        d,
        &["scan", "--targets", "-", "--format", "json"],
        Some(&format!("# from a pipe\n{} owner=pipe\n", server.target())),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["tags"]["owner"], "pipe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_rollback_without_deployments_says_so_without_asking_aws() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A stand-in for the instance metadata service that counts who knocks.
    let imds = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let imds_url = format!("http://{}", imds.local_addr().unwrap());
    let knocks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = knocks.clone();
    let _imds = tokio::spawn(async move {
        while let Ok((stream, _)) = imds.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let out = run(
        d,
        &[
            "certificates",
            "add",
            SHOP,
            "--http-listen",
            "127.0.0.1:5002",
        ],
        None,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
        .args(["rollback", SHOP])
        .env(
            "CERTPILOT_STORE",
            format!("sqlite:{}", d.join("db").display()),
        )
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds_url)
        .env("AWS_CONFIG_FILE", d.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", d.join("no-aws-credentials"))
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no deployments"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        knocks.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the instance metadata service was asked"
    );
}
