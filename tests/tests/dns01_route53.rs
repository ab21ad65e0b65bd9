//! DNS-01 through Route 53: the Route 53 provider writes to moto; a DNS server standing in for
//! Route 53's nameservers answers Pebble from moto's records at the moment it asks. Pebble
//! rejects 30% of nonces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::types::{ChangeAction, RrType};
use certpilot_acme::{AcmeIssuer, AcmeSettings};
use certpilot_aws::Route53Dns;
use certpilot_core::Tags;
use certpilot_core::model::certificate::{
    AcmeIssuer as IssuerConfig, CertificateSpec, ChallengeConfig, DnsProviderConfig, KeyType,
    ManagedCertificate, RenewalPolicy,
};
use certpilot_core::ports::{CertificateStore, SystemClock};
use certpilot_core::services::renew::{RenewOutcome, RenewService, RenewSettings};
use certpilot_files::FileSecretStore;
use certpilot_sqlite::SqliteStore;
use certpilot_testkit::procs::shared_moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_certificate_is_issued_through_route53_and_the_records_are_cleaned_up() {
    let config = certpilot_e2e::moto_sdk_config(&shared_moto().endpoint_url);
    let route53 = aws_sdk_route53::Client::new(&config);
    let domain = format!("r53-{}.certpilot.test", std::process::id());
    let zone = certpilot_e2e::route53_zone(&route53, &domain).await;
    // Someone else's record at the same name must survive our publish and withdraw.
    let challenge_name = format!("_acme-challenge.{domain}");
    certpilot_e2e::route53_change(
        &route53,
        &zone,
        ChangeAction::Create,
        &challenge_name,
        RrType::Txt,
        "\"keep-me\"",
    )
    .await;

    let nameserver = certpilot_e2e::route53_nameserver(&route53, &zone).await;
    let (pebble, dir, ca_file) = certpilot_e2e::pebble_resolving_through(nameserver.addr);

    let secrets = Arc::new(FileSecretStore::new(dir.path().join("secrets")));
    let issuer = AcmeIssuer::new(
        secrets.clone(),
        AcmeSettings {
            timeout: Duration::from_secs(30),
            ca_file: Some(ca_file),
        },
    )
    .with_dns(
        "route53",
        Arc::new(Route53Dns::new(route53.clone(), Duration::from_secs(30))),
    );
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let spec = CertificateSpec {
        names: vec![
            format!("*.{domain}").parse().unwrap(),
            domain.parse().unwrap(),
        ],
        key_type: KeyType::EcdsaP384,
        issuer: IssuerConfig {
            directory: pebble.directory_url.clone(),
            contact: vec![],
            eab: None,
            profile: None,
            account_secret: None,
        },
        // The zone is found from the names.
        challenge: ChallengeConfig::Dns01 {
            provider: DnsProviderConfig::Route53 { zone_id: None },
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
            spec,
            time::OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();
    let renew = RenewService::new(
        store.clone(),
        secrets,
        Arc::new(issuer),
        None,
        Arc::new(SystemClock),
        "dns-test",
        RenewSettings::default(),
    );
    let outcome = renew.renew("wildcard", false).await.unwrap();
    assert!(
        matches!(outcome, RenewOutcome::Issued { .. }),
        "{outcome:?}"
    );

    let cert = store.certificate("wildcard").await.unwrap().unwrap();
    let chain = cert.current.unwrap().chain_pem;
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(chain.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c)
        .unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(sans.contains(&format!("DNSName(*.{domain})")), "{sans:?}");
    assert!(sans.contains(&format!("DNSName({domain})")), "{sans:?}");

    // Our challenge values are gone; the other value stayed.
    assert_eq!(
        certpilot_e2e::route53_txt_values(&route53, &zone, &challenge_name).await,
        ["keep-me"]
    );
}
