//! The test environment itself: the Pebble and moto server that `scripts/test.sh` installs
//! start, answer, and are what later tests rely on (Pebble with ARI and profiles).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use certpilot_core::ScanRequest;
use certpilot_core::ports::Prober;
use certpilot_e2e::exchange;
use certpilot_scanner::{Deadlines, TlsProber, TrustStore};
use certpilot_testkit::procs::{Moto, Pebble, free_port};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

#[tokio::test]
async fn pebble_serves_an_acme_directory_with_ari_and_profiles() {
    let pebble = Pebble::start(free_port(), free_port());

    // The scanner sees Pebble's HTTPS certificate and trusts it through the test CA.
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pebble.tls_ca_pem).unwrap();
    let mut trust = TrustStore::mozilla();
    trust.add_pem_file(&ca_path).unwrap();
    let prober = TlsProber::new(trust, Deadlines::default());
    let target = format!("localhost:{}", pebble.listen.port())
        .parse()
        .unwrap();
    let mut request = ScanRequest::new(target);
    request.connect_to = vec![pebble.listen.ip()];
    let served = prober
        .probe(&request, pebble.listen, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(served.validation.trusted, "{:?}", served.validation);

    // The directory lists ARI (renewalInfo) and profiles: Pebble is 2.5 or newer.
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pebble.tls_ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(pebble.listen).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let response = exchange(
        &mut tls,
        "GET /dir HTTP/1.1\r\nHost: localhost\r\nUser-Agent: certpilot-tests\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for field in ["newOrder", "renewalInfo", "profiles", "shortlived"] {
        assert!(
            response.contains(field),
            "directory lacks {field}: {response}"
        );
    }
}

#[tokio::test]
async fn moto_server_answers_aws_api_calls() {
    let moto = Moto::start();
    let mut tcp = tokio::net::TcpStream::connect(moto.addr).await.unwrap();
    // DynamoDB's ListTables, as the SDK would send it (moto accepts any credentials).
    let body = "{}";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n\
         Content-Type: application/x-amz-json-1.0\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20261122/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        moto.addr,
        body.len()
    );
    let response = tokio::time::timeout(Duration::from_secs(30), exchange(&mut tcp, &request))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("TableNames"), "{response}");
}
