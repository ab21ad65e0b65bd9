//! DNS-01 through RFC 2136: certpilot sends TSIG-signed updates to a real Knot DNS server,
//! checks that it answers them, and Pebble (30% of nonces rejected) validates against that
//! same server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use certpilot_acme::rfc2136::Rfc2136Dns;
use certpilot_acme::{AcmeIssuer, AcmeSettings};
use certpilot_core::Tags;
use certpilot_core::model::certificate::{
    AcmeIssuer as IssuerConfig, CertificateSpec, ChallengeConfig, DnsProviderConfig, KeyType,
    ManagedCertificate, RenewalPolicy,
};
use certpilot_core::ports::{
    CertificateStore, DnsProvider, IssueError, SecretStore, SecretValue, SystemClock, TxtRecord,
};
use certpilot_core::services::renew::{RenewError, RenewOutcome, RenewService, RenewSettings};
use certpilot_files::FileSecretStore;
use certpilot_sqlite::SqliteStore;
use certpilot_testkit::procs::Knot;

const ZONE: &str = "rfc2136.certpilot.test";

fn provider(knot: &Knot) -> DnsProviderConfig {
    DnsProviderConfig::Rfc2136 {
        server: knot.dns.to_string(),
        zone: knot.zone.clone(),
        key_name: knot.key_name.clone(),
        key_secret: "tsig/certpilot-test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_certificate_is_issued_through_signed_dynamic_updates() {
    let knot = Knot::start(ZONE);
    let (pebble, dir, ca_file) = certpilot_e2e::pebble_resolving_through(knot.dns);
    let secrets = Arc::new(FileSecretStore::new(dir.path().join("secrets")));
    secrets
        .put_current(
            "tsig/certpilot-test",
            &SecretValue::new(knot.key_secret.clone().into_bytes()),
        )
        .await
        .unwrap();
    let dns = Arc::new(Rfc2136Dns::new(
        secrets.clone(),
        Duration::from_secs(5),
        Duration::from_secs(20),
    ));
    // The provider's own round trip: published values are answered, withdrawn ones are not,
    // and values someone else put at the name stay.
    let server = knot.dns.to_string();
    let at = format!("_acme-challenge.probe.{ZONE}");
    let record = |value: &str| TxtRecord {
        name: at.clone(),
        value: value.into(),
    };
    dns.publish(&provider(&knot), &[record("theirs")])
        .await
        .unwrap();
    dns.publish(&provider(&knot), &[record("ours-1"), record("ours-2")])
        .await
        .unwrap();
    let mut seen = dns.txt_values(&server, &at).await.unwrap();
    seen.sort();
    assert_eq!(seen, ["ours-1", "ours-2", "theirs"]);
    dns.withdraw(&provider(&knot), &[record("ours-1"), record("ours-2")])
        .await
        .unwrap();
    assert_eq!(dns.txt_values(&server, &at).await.unwrap(), ["theirs"]);

    let issuer = AcmeIssuer::new(
        secrets.clone(),
        AcmeSettings {
            timeout: Duration::from_secs(30),
            ca_file: Some(ca_file),
        },
    )
    .with_dns("rfc2136", dns.clone());
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let spec = CertificateSpec {
        names: vec![
            format!("*.{ZONE}").parse().unwrap(),
            ZONE.parse().unwrap(),
            format!("api.{ZONE}").parse().unwrap(),
        ],
        key_type: KeyType::Rsa2048,
        issuer: IssuerConfig {
            directory: pebble.directory_url.clone(),
            contact: vec![],
            eab: None,
            profile: None,
            account_secret: None,
        },
        challenge: ChallengeConfig::Dns01 {
            provider: provider(&knot),
        },
        renewal: RenewalPolicy::Auto,
        tags: Tags::new(),
        endpoints: vec![],
        deployments: Vec::new(),
        acm: None,
    };
    spec.validate().unwrap();
    store
        .add_certificate(&ManagedCertificate::new(
            "wildcard".into(),
            spec.clone(),
            time::OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();
    let renew = RenewService::new(
        store.clone(),
        secrets.clone(),
        Arc::new(issuer),
        None,
        Arc::new(SystemClock),
        "rfc2136-test",
        RenewSettings::default(),
    );
    let outcome = renew.renew("wildcard", false).await.unwrap();
    assert!(
        matches!(outcome, RenewOutcome::Issued { .. }),
        "{outcome:?}"
    );
    let chain = store
        .certificate("wildcard")
        .await
        .unwrap()
        .unwrap()
        .current
        .unwrap()
        .chain_pem;
    let der: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_slice(chain.as_bytes()).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert_eq!(san.value.general_names.len(), 3);
    // The challenge records are gone once the order is validated.
    for owner in [
        format!("_acme-challenge.{ZONE}"),
        format!("_acme-challenge.api.{ZONE}"),
    ] {
        assert!(
            dns.txt_values(&server, &owner).await.unwrap().is_empty(),
            "{owner}"
        );
    }

    // A wrong TSIG secret is refused by the server and named in the error, and no order
    // is validated with records that were never published.
    secrets
        .put_current(
            "tsig/certpilot-test",
            &SecretValue::new(b"d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZyE=".to_vec()),
        )
        .await
        .unwrap();
    let err = renew.renew("wildcard", true).await.unwrap_err();
    let RenewError::Issue {
        error: IssueError::Config(text),
        step,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(step.starts_with("publish challenges at https://"), "{step}");
    assert!(text.contains("certpilot-test"), "{text}");
    assert!(
        !text.contains("d3Jvbmcg"),
        "the secret is not in the error: {text}"
    );
}
