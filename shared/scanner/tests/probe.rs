//! The scanner against real TLS servers on loopback: every certificate problem, every error
//! kind, both TLS versions, client-certificate demands, IPv6, and each STARTTLS protocol.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use certpilot_core::model::target::ScanRequest;
use certpilot_core::ports::Prober;
use certpilot_core::{ErrorKind, ProbeError, Problem, Served};
use certpilot_scanner::{Deadlines, TlsProber, TrustStore};
use certpilot_testkit::certs::{Ca, KeyKind, LeafBuilder};
use certpilot_testkit::servers::{self, Options, StartTls, Versions};
use time::OffsetDateTime;

const FAST: Deadlines = Deadlines {
    connect: Duration::from_secs(2),
    handshake: Duration::from_secs(2),
};

fn prober_trusting(ca: &Ca) -> TlsProber {
    let mut trust = TrustStore::mozilla();
    trust.add_der(&ca.der()).unwrap();
    TlsProber::new(trust, FAST)
}

/// A request for `host` on the server's port, connecting to the server's address (what
/// `--resolve host:port:addr` does).
fn request(host: &str, server: SocketAddr) -> ScanRequest {
    let target = format!("{host}:{}", server.port()).parse().unwrap();
    let mut r = ScanRequest::new(target);
    r.connect_to = vec![server.ip()];
    r
}

fn url_request(scheme: &str, host: &str, server: SocketAddr) -> ScanRequest {
    let target = format!("{scheme}://{host}:{}", server.port())
        .parse()
        .unwrap();
    let mut r = ScanRequest::new(target);
    r.connect_to = vec![server.ip()];
    r
}

async fn probe(
    prober: &TlsProber,
    req: &ScanRequest,
    addr: SocketAddr,
) -> Result<Served, ProbeError> {
    // Guards the test against a hang: the prober's own deadlines must end every probe first.
    tokio::time::timeout(
        Duration::from_secs(30),
        prober.probe(req, addr, OffsetDateTime::now_utc()),
    )
    .await
    .expect("the probe stalled past every deadline")
}

async fn served(prober: &TlsProber, host: &str, server: &servers::Server) -> Served {
    probe(prober, &request(host, server.addr()), server.addr())
        .await
        .unwrap_or_else(|e| panic!("no certificate from {host}: {e}"))
}

async fn failed(prober: &TlsProber, host: &str, addr: SocketAddr) -> ProbeError {
    match probe(prober, &request(host, addr), addr).await {
        Ok(s) => panic!("expected an error, got {:?}", s.certificate.subject),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_good_chain_is_reported_in_full_and_trusted() {
    let root = Ca::new("Good Root");
    let issuing = root.intermediate("Good Issuing CA");
    let leaf = issuing
        .leaf(&["shop.test", "www.shop.test"])
        .expiring_in_days(45)
        .build();
    let server = servers::tls_default(&leaf).await;
    let s = served(&prober_trusting(&root), "shop.test", &server).await;

    assert_eq!(s.validation.problems, Vec::<Problem>::new());
    assert!(s.validation.trusted);
    let c = &s.certificate;
    assert_eq!(c.subject, "CN=shop.test");
    assert_eq!(c.issuer, "CN=Good Issuing CA, O=certpilot tests");
    assert_eq!(c.sans, vec!["shop.test", "www.shop.test"]);
    assert_eq!(c.fingerprint_sha256, leaf.fingerprint());
    assert_eq!(c.key.kind, "EC");
    assert_eq!(c.key.curve.as_deref(), Some("P-256"));
    assert_eq!(c.signature_algorithm, "ecdsa-with-SHA256");
    assert!(
        !c.serial.is_empty()
            && c.serial
                .chars()
                .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())
    );
    let days = (c.not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((44..=45).contains(&days), "{days}");
    assert_eq!(s.chain.len(), 2);
    assert_eq!(s.chain[1].subject, "CN=Good Issuing CA, O=certpilot tests");
    assert_eq!(s.tls.version, "TLSv1.3");
    assert!(s.tls.cipher.starts_with("TLS13_"), "{}", s.tls.cipher);
}

#[tokio::test]
async fn each_certificate_problem_is_named() {
    let root = Ca::new("Problem Root");
    let issuing = root.intermediate("Problem Issuing CA");
    let stranger = Ca::new("Unknown Root");
    let stranger_issuing = stranger.intermediate("Unknown Issuing CA");
    // Root -> policy CA allowing no CA below it -> an issuing CA anyway.
    let too_deep = root
        .constrained_intermediate("Policy CA, path length 0", 0)
        .intermediate("Issuing CA below the limit");
    let prober = prober_trusting(&root);

    let cases: Vec<(&str, LeafBuilder<'_>, Vec<Problem>)> = vec![
        (
            "expired",
            issuing.leaf(&["shop.test"]).expired(),
            vec![Problem::Expired],
        ),
        (
            "not yet valid",
            issuing.leaf(&["shop.test"]).not_yet_valid(),
            vec![Problem::NotYetValid],
        ),
        (
            "wrong name",
            issuing.leaf(&["other.test"]),
            vec![Problem::HostnameMismatch],
        ),
        (
            "self-signed",
            LeafBuilder::self_signed(&["shop.test"]),
            vec![Problem::SelfSigned],
        ),
        (
            "unknown root, sent",
            stranger_issuing.leaf(&["shop.test"]).with_root(),
            vec![Problem::UntrustedRoot],
        ),
        (
            // A complete chain from a CA this machine does not know: the root is not sent,
            // as it should not be, and it is untrusted, not missing.
            "unknown root, not sent",
            stranger_issuing.leaf(&["shop.test"]),
            vec![Problem::UntrustedRoot],
        ),
        (
            "path length constraint broken",
            too_deep.leaf(&["shop.test"]),
            vec![Problem::InvalidChain],
        ),
        (
            "intermediate missing",
            issuing.leaf(&["shop.test"]).without_intermediates(),
            vec![Problem::IncompleteChain],
        ),
        (
            "1024-bit RSA",
            issuing.leaf(&["shop.test"]).weak_rsa_1024(),
            vec![Problem::WeakKey],
        ),
        (
            "SHA-1 signature",
            LeafBuilder::self_signed(&["shop.test"]).sha1_signature(),
            vec![Problem::SelfSigned, Problem::WeakSignature],
        ),
        (
            "expired, wrong name and self-signed at once",
            LeafBuilder::self_signed(&["other.test"]).expired(),
            vec![
                Problem::Expired,
                Problem::HostnameMismatch,
                Problem::SelfSigned,
            ],
        ),
    ];
    for (what, builder, want) in cases {
        let leaf = builder.build();
        let server = servers::tls_default(&leaf).await;
        let s = served(&prober, "shop.test", &server).await;
        assert_eq!(s.validation.problems, want, "{what}");
        assert!(!s.validation.trusted, "{what} must not be trusted");
        assert_eq!(
            s.certificate.fingerprint_sha256,
            leaf.fingerprint(),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_self_signed_certificate_in_the_ca_file_is_pinned_not_a_problem() {
    let leaf = LeafBuilder::self_signed(&["pinned.test"]).build();
    let server = servers::tls_default(&leaf).await;
    let mut trust = TrustStore::mozilla();
    trust.add_der(&leaf.der()).unwrap();
    let pinned = TlsProber::new(trust, FAST);
    let s = served(&pinned, "pinned.test", &server).await;
    assert_eq!(s.validation.problems, Vec::<Problem>::new());
    assert!(s.validation.trusted);
    // Pinning does not excuse a wrong name.
    let s = served(&pinned, "other.test", &server).await;
    assert_eq!(s.validation.problems, vec![Problem::HostnameMismatch]);
    // Without the pin it is self-signed.
    let unpinned = TlsProber::new(TrustStore::mozilla(), FAST);
    let s = served(&unpinned, "pinned.test", &server).await;
    assert_eq!(s.validation.problems, vec![Problem::SelfSigned]);
}

#[tokio::test]
async fn weak_certificates_report_their_algorithms() {
    let root = Ca::new("Weak Root");
    let prober = prober_trusting(&root);
    let leaf = root.leaf(&["shop.test"]).weak_rsa_1024().build();
    let server = servers::tls_default(&leaf).await;
    let s = served(&prober, "shop.test", &server).await;
    assert_eq!(
        (s.certificate.key.kind.as_str(), s.certificate.key.bits),
        ("RSA", 1024)
    );

    let leaf = LeafBuilder::self_signed(&["shop.test"])
        .sha1_signature()
        .build();
    let server = servers::tls_default(&leaf).await;
    let s = served(&prober, "shop.test", &server).await;
    assert_eq!(s.certificate.signature_algorithm, "sha1WithRSAEncryption");
}

#[tokio::test]
async fn versions_keys_long_chains_and_many_names() {
    let root = Ca::new("Shape Root");
    let prober = prober_trusting(&root);

    for (versions, want) in [(Versions::Tls12, "TLSv1.2"), (Versions::Tls13, "TLSv1.3")] {
        let leaf = root.leaf(&["shop.test"]).build();
        let server = servers::tls(
            &leaf,
            Options {
                versions,
                ..Options::default()
            },
        )
        .await;
        let s = served(&prober, "shop.test", &server).await;
        assert_eq!(s.tls.version, want);
        assert!(s.validation.trusted);
    }

    let leaf = root.leaf(&["shop.test"]).key(KeyKind::Rsa4096).build();
    let server = servers::tls_default(&leaf).await;
    let s = served(&prober, "shop.test", &server).await;
    assert_eq!(
        (s.certificate.key.kind.as_str(), s.certificate.key.bits),
        ("RSA", 4096)
    );
    assert_eq!(s.certificate.signature_algorithm, "ecdsa-with-SHA256");
    assert!(s.validation.trusted);

    let deep = root
        .intermediate("Level 1")
        .intermediate("Level 2")
        .intermediate("Level 3");
    let leaf = deep.leaf(&["shop.test"]).build();
    let server = servers::tls_default(&leaf).await;
    let s = served(&prober, "shop.test", &server).await;
    let subjects: Vec<_> = s.chain.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec![
            "CN=shop.test",
            "CN=Level 3, O=certpilot tests",
            "CN=Level 2, O=certpilot tests",
            "CN=Level 1, O=certpilot tests"
        ]
    );
    assert!(s.validation.trusted, "{:?}", s.validation);

    let names: Vec<String> = (0..300).map(|i| format!("host{i}.shop.test")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let leaf = root.leaf(&refs).build();
    let server = servers::tls_default(&leaf).await;
    let s = served(&prober, "host299.shop.test", &server).await;
    assert_eq!(s.certificate.sans.len(), 300);
    assert!(s.validation.trusted);
}

#[tokio::test]
async fn a_server_demanding_a_client_certificate_still_shows_its_own() {
    let root = Ca::new("mTLS Root");
    let prober = prober_trusting(&root);
    for versions in [Versions::Tls12, Versions::Tls13] {
        let leaf = root.leaf(&["mtls.test"]).build();
        let options = Options {
            versions,
            require_client_cert: true,
            ..Options::default()
        };
        let server = servers::tls(&leaf, options).await;
        let s = served(&prober, "mtls.test", &server).await;
        assert_eq!(
            s.certificate.fingerprint_sha256,
            leaf.fingerprint(),
            "{versions:?}"
        );
        assert!(s.validation.trusted, "{versions:?}");
    }
}

#[tokio::test]
async fn ipv6_loopback_and_ip_address_targets() {
    let root = Ca::new("v6 Root");
    let prober = prober_trusting(&root);
    let leaf = root.leaf(&["::1"]).build();
    let server = servers::tls(
        &leaf,
        Options {
            ipv6: true,
            ..Options::default()
        },
    )
    .await;
    let req = ScanRequest::new(server.target().parse().unwrap());
    assert_eq!(req.known_addresses().unwrap(), vec![server.addr()]);
    let s = probe(&prober, &req, server.addr()).await.unwrap();
    assert_eq!(s.certificate.sans, vec!["::1"]);
    assert!(s.validation.trusted, "{:?}", s.validation);

    // The same certificate does not cover 127.0.0.1.
    let leaf = root.leaf(&["::1"]).build();
    let server = servers::tls_default(&leaf).await;
    let req = ScanRequest::new(server.target().parse().unwrap());
    let s = probe(&prober, &req, server.addr()).await.unwrap();
    assert_eq!(s.validation.problems, vec![Problem::HostnameMismatch]);
}

#[tokio::test]
async fn every_starttls_protocol_upgrades() {
    let root = Ca::new("Mail Root");
    let prober = prober_trusting(&root);
    let protocols = [
        ("smtp", StartTls::Smtp),
        ("imap", StartTls::Imap),
        ("pop3", StartTls::Pop3),
        ("ftp", StartTls::Ftp),
        ("postgres", StartTls::Postgres),
        ("ldap", StartTls::Ldap),
    ];
    for (scheme, protocol) in protocols {
        let leaf = root.leaf(&["mail.test"]).build();
        let options = Options {
            starttls: Some(protocol),
            ..Options::default()
        };
        let server = servers::tls(&leaf, options).await;
        let req = url_request(scheme, "mail.test", server.addr());
        let s = probe(&prober, &req, server.addr())
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        assert_eq!(
            s.certificate.fingerprint_sha256,
            leaf.fingerprint(),
            "{scheme}"
        );
        assert!(s.validation.trusted, "{scheme}");

        let refusing = servers::tls(
            &leaf,
            Options {
                starttls: Some(protocol),
                refuse_starttls: true,
                ..Options::default()
            },
        )
        .await;
        let req = url_request(scheme, "mail.test", refusing.addr());
        let e = probe(&prober, &req, refusing.addr()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::StarttlsRefused, "{scheme}: {e}");
        assert!(e.message.starts_with(scheme), "{scheme}: {e}");
    }
}

#[tokio::test]
async fn implicit_tls_schemes_handshake_at_once() {
    let root = Ca::new("Implicit Root");
    let prober = prober_trusting(&root);
    let leaf = root.leaf(&["mail.test"]).build();
    let server = servers::tls_default(&leaf).await;
    for scheme in ["smtps", "imaps", "pop3s", "ftps", "ldaps", "https"] {
        let req = url_request(scheme, "mail.test", server.addr());
        let s = probe(&prober, &req, server.addr()).await.unwrap();
        assert!(s.validation.trusted, "{scheme}");
    }
}

#[tokio::test]
async fn every_failure_gets_one_kind() {
    let prober = TlsProber::new(TrustStore::mozilla(), FAST);

    let closed = servers::closed_port().await;
    assert_eq!(
        failed(&prober, "shop.test", closed).await.kind,
        ErrorKind::Refused
    );

    let reset = servers::reset().await;
    assert_eq!(
        failed(&prober, "shop.test", reset.addr()).await.kind,
        ErrorKind::Reset
    );

    let garbage = servers::garbage().await;
    let e = failed(&prober, "shop.test", garbage.addr()).await;
    assert_eq!(e.kind, ErrorKind::NotTls);
    assert!(e.message.contains("SSH-2.0"), "{e}");

    let alert = servers::alert(40).await;
    let e = failed(&prober, "shop.test", alert.addr()).await;
    assert_eq!(e.kind, ErrorKind::TlsAlert);
    assert_eq!(e.alert.as_deref(), Some("handshake_failure"));

    let broken = servers::broken_tls().await;
    assert_eq!(
        failed(&prober, "shop.test", broken.addr()).await.kind,
        ErrorKind::TlsProtocol
    );

    let tarpit = servers::tarpit().await;
    let e = failed(&prober, "shop.test", tarpit.addr()).await;
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(e.message.contains("handshake"), "{e}");

    let drip = servers::drip().await;
    let e = failed(&prober, "shop.test", drip.addr()).await;
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");

    // A STARTTLS server that never greets is cut off by the same deadline.
    let req = url_request("smtp", "mail.test", tarpit.addr());
    let e = probe(&prober, &req, tarpit.addr()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(e.message.contains("STARTTLS"), "{e}");

    // A plaintext server where TLS was expected.
    let smtp_banner = servers::garbage().await;
    let req = url_request("smtp", "mail.test", smtp_banner.addr());
    let e = probe(&prober, &req, smtp_banner.addr()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::StarttlsRefused, "{e}");
}

#[tokio::test]
async fn names_that_do_not_resolve_are_dns_errors() {
    let prober = TlsProber::new(TrustStore::mozilla(), FAST);
    let req = ScanRequest::new("no-such-host.invalid:443".parse().unwrap());
    let e = prober.resolve(&req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Dns, "{e}");
    assert!(e.message.contains("no-such-host.invalid"), "{e}");
}

#[tokio::test]
async fn localhost_resolves_to_its_addresses() {
    let prober = TlsProber::new(TrustStore::mozilla(), FAST);
    let req = ScanRequest::new("localhost:8443".parse().unwrap());
    let addrs = prober.resolve(&req).await.unwrap();
    assert!(
        addrs.contains(&SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 8443)),
        "{addrs:?}"
    );
    let mut unique = addrs.clone();
    unique.dedup();
    assert_eq!(unique.len(), addrs.len());
}

#[tokio::test]
async fn a_ca_file_that_is_not_pem_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bogus.pem");
    std::fs::write(&path, "not a certificate").unwrap();
    let err = TrustStore::mozilla()
        .add_pem_file(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bogus.pem") && err.contains("no PEM certificate"),
        "{err}"
    );
    let err = TrustStore::mozilla()
        .add_pem_file(&dir.path().join("missing.pem"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
}
