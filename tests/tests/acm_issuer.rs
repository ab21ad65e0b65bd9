//! ACM as the issuer, on moto (ACM, Route 53): the request is followed from
//! `PENDING_VALIDATION` to `ISSUED` across runs without waiting, its validation CNAME records
//! are written to Route 53, a removed record is found and written back, and ACM's events reach
//! the certificate by ARN.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use certpilot_acme::{AcmeIssuer, AcmeSettings};
use certpilot_aws::Route53Dns;
use certpilot_core::Tags;
use certpilot_core::model::certificate::{
    AcmIssuance, AcmeIssuer as IssuerConfig, CertificateSpec, ChallengeConfig, DnsProviderConfig,
    KeyType, ManagedCertificate, RenewalPolicy,
};
use certpilot_core::ports::{CertificateStore, IssuedSink, SystemClock};
use certpilot_core::services::acm::AcmService;
use certpilot_core::services::renew::{RenewOutcome, RenewService, RenewSettings};
use certpilot_deploy_aws::acm::{AcmIssuer, pem_fingerprint};
use certpilot_files::FileSecretStore;
use certpilot_sqlite::SqliteStore;
use certpilot_testkit::procs::shared_moto;

/// What the deploy queue would have been told.
#[derive(Default)]
struct Announced(Mutex<Vec<String>>);

#[async_trait]
impl IssuedSink for Announced {
    async fn issued(
        &self,
        cert: &ManagedCertificate,
    ) -> Result<(), certpilot_core::ports::AnnounceError> {
        let fp = cert.current.as_ref().unwrap().fingerprint.clone();
        self.0.lock().unwrap().push(fp);
        Ok(())
    }
}

fn spec(domain: &str, zone: &str, challenge_dns: bool) -> CertificateSpec {
    CertificateSpec {
        names: vec![
            domain.parse().unwrap(),
            format!("*.{domain}").parse().unwrap(),
        ],
        key_type: KeyType::EcdsaP256,
        issuer: IssuerConfig {
            directory: "https://acme.invalid/directory".into(),
            contact: vec![],
            eab: None,
            profile: None,
            account_secret: None,
        },
        challenge: if challenge_dns {
            ChallengeConfig::Dns01 {
                provider: DnsProviderConfig::Route53 {
                    zone_id: Some(zone.into()),
                },
            }
        } else {
            ChallengeConfig::Http01Listen {
                listen: "0.0.0.0:80".into(),
            }
        },
        renewal: RenewalPolicy::Auto,
        tags: Tags::new(),
        endpoints: vec![],
        deployments: Vec::new(),
        acm: Some(AcmIssuance {
            region: "us-east-1".into(),
        }),
    }
}

async fn cname(route53: &aws_sdk_route53::Client, zone: &str, name: &str) -> Option<String> {
    let out = route53
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap();
    out.resource_record_sets()
        .iter()
        .find(|s| {
            s.name().trim_end_matches('.') == name
                && *s.r#type() == aws_sdk_route53::types::RrType::Cname
        })
        .map(|s| s.resource_records()[0].value().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acm_certificate_is_requested_validated_through_route53_issued_and_watched() {
    let moto = shared_moto();
    let aws = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let route53 = aws_sdk_route53::Client::new(&aws);
    let domain = format!("acm-{}.certpilot.test", std::process::id());
    let zone = certpilot_e2e::route53_zone(&route53, &domain).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("acm.db")).unwrap());
    let secrets = Arc::new(FileSecretStore::new(dir.path().join("secrets")));
    let announced = Arc::new(Announced::default());
    let acm = AcmService::new(
        store.clone(),
        Arc::new(AcmIssuer::new(aws.clone())),
        Arc::new(Route53Dns::new(route53.clone(), Duration::from_secs(30))),
        Some(announced.clone()),
        Arc::new(SystemClock),
    );
    let renew = RenewService::new(
        store.clone(),
        secrets.clone(),
        Arc::new(AcmeIssuer::new(secrets, AcmeSettings::default())),
        None,
        Arc::new(SystemClock),
        "test",
        RenewSettings::default(),
    )
    .with_acm(acm);

    // ACM needs DNS validation through Route 53: anything else is refused up front.
    let err = spec(&domain, &zone, false).validate().unwrap_err();
    assert!(err.reason.contains("--dns route53"), "{err}");

    let spec = spec(&domain, &zone, true);
    spec.validate().unwrap();
    store
        .add_certificate(&ManagedCertificate::new(
            "shop".into(),
            spec,
            time::OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();

    // First run: requested, validation records written, nothing waited for.
    let started = std::time::Instant::now();
    let outcome = renew.renew("shop", false).await.unwrap();
    assert!(
        matches!(&outcome, RenewOutcome::Deferred { reason, .. } if reason.contains("validating")),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let cert = store.certificate("shop").await.unwrap().unwrap();
    let state = cert.acm.clone().unwrap();
    assert_eq!(state.status, "PENDING_VALIDATION");
    assert!(cert.current.is_none());
    assert!(!state.validation.is_empty());
    let (record_name, record_value) = state.validation[0].clone();
    assert_eq!(
        cname(&route53, &zone, &record_name)
            .await
            .map(|v| v.trim_end_matches('.').to_owned()),
        Some(record_value.clone()),
        "the validation CNAME is in Route 53"
    );
    // Not due again for a while; forced, it looks again without requesting again.
    assert!(matches!(
        renew.renew("shop", false).await.unwrap(),
        RenewOutcome::NotDue { .. }
    ));

    // Once ACM has validated (moto: after 2 seconds), the next run takes the certificate.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outcome = renew.renew("shop", true).await.unwrap();
    let RenewOutcome::Issued { fingerprint, .. } = outcome else {
        panic!("expected issued, got {outcome:?}");
    };
    let cert = store.certificate("shop").await.unwrap().unwrap();
    let state = cert.acm.clone().unwrap();
    assert_eq!(state.status, "ISSUED");
    assert_eq!(cert.current.as_ref().unwrap().order_url, state.arn);
    let from_acm = aws_sdk_acm::Client::new(&aws)
        .get_certificate()
        .certificate_arn(&state.arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        pem_fingerprint(&from_acm.certificate.unwrap()).unwrap(),
        fingerprint
    );
    assert_eq!(
        *announced.0.lock().unwrap(),
        std::slice::from_ref(&fingerprint)
    );
    assert!(state.problems.is_empty(), "{:?}", state.problems);

    // Someone deletes the validation record: ACM's own renewal would fail silently. The
    // next check finds it, says so, and writes it back.
    certpilot_e2e::route53_change(
        &route53,
        &zone,
        aws_sdk_route53::types::ChangeAction::Delete,
        &record_name,
        aws_sdk_route53::types::RrType::Cname,
        &record_value,
    )
    .await;
    assert_eq!(cname(&route53, &zone, &record_name).await, None);
    let outcome = renew.renew("shop", true).await.unwrap();
    assert!(
        matches!(&outcome, RenewOutcome::Deferred { reason, .. } if reason.contains("was missing")),
        "{outcome:?}"
    );
    assert!(cname(&route53, &zone, &record_name).await.is_some());
    let cert = store.certificate("shop").await.unwrap().unwrap();
    assert!(
        cert.acm.as_ref().unwrap().problems[0]
            .detail
            .contains(&record_name)
    );

    // An ACM event names the ARN: it reaches the certificate, and no other.
    let (id, outcome) = renew.renew_acm_arn(&state.arn).await.unwrap().unwrap();
    assert_eq!(id, "shop");
    assert!(
        matches!(outcome, RenewOutcome::NotDue { .. }),
        "{outcome:?}"
    );
    assert!(
        renew
            .renew_acm_arn("arn:aws:acm:us-east-1:123456789012:certificate/not-ours")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        announced.0.lock().unwrap().len(),
        1,
        "nothing new was issued"
    );
}
