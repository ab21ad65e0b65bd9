//! Certificates issued by AWS Certificate Manager: requested with DNS validation, followed
//! from `PENDING_VALIDATION` to `ISSUED` across runs (never waited for), then watched.
//!
//! ACM renews its own certificates, but only while the validation CNAME records stay in
//! place: a removed record makes the managed renewal fail without a sound. Each check
//! therefore looks for the records (writing back any that are gone) and for a managed
//! renewal in trouble, and records both as problems on the certificate. A new certificate
//! from ACM (the first, or a managed renewal) becomes `current` and is announced like an ACME
//! issuance, so it is deployed and verified the same way.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::model::certificate::{
    AcmProblem, AcmProblemKind, AcmState, ChallengeConfig, DnsProviderConfig, IssuedCertificate,
    ManagedCertificate,
};
use crate::ports::{
    AcmCertificates, CertificateStore, Clock, CnameProvider, IssueError, IssuedSink,
};
use crate::services::renew::{RenewError, RenewOutcome};

/// How soon to look again while ACM validates.
const PENDING_RECHECK: Duration = Duration::from_secs(5 * 60);
/// How often to watch an issued certificate (ACM starts renewing 60 days before expiry).
const WATCH_RECHECK: Duration = Duration::from_secs(12 * 3600);

/// The ACM issuance use case.
#[derive(Clone)]
pub struct AcmService {
    certificates: Arc<dyn CertificateStore>,
    acm: Arc<dyn AcmCertificates>,
    dns: Arc<dyn CnameProvider>,
    sink: Option<Arc<dyn IssuedSink>>,
    clock: Arc<dyn Clock>,
}

impl AcmService {
    /// Wires the use case.
    pub fn new(
        certificates: Arc<dyn CertificateStore>,
        acm: Arc<dyn AcmCertificates>,
        dns: Arc<dyn CnameProvider>,
        sink: Option<Arc<dyn IssuedSink>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        AcmService {
            certificates,
            acm,
            dns,
            sink,
            clock,
        }
    }

    /// Requests, follows or watches `cert` (whose spec names ACM), one step per call.
    pub async fn check(&self, mut cert: ManagedCertificate) -> Result<RenewOutcome, RenewError> {
        let id = cert.id.clone();
        let issue = |step: &str, error: IssueError| RenewError::Issue {
            id: id.clone(),
            step: step.to_owned(),
            error,
        };
        let region = cert
            .spec
            .acm
            .as_ref()
            .map(|a| a.region.clone())
            .ok_or_else(|| issue("acm", IssueError::Config("not an ACM certificate".into())))?;
        let ChallengeConfig::Dns01 {
            provider: dns @ DnsProviderConfig::Route53 { .. },
        } = cert.spec.challenge.clone()
        else {
            return Err(issue(
                "acm",
                IssueError::Config("ACM validation records need --dns route53".into()),
            ));
        };
        let now = self.clock.now();
        if cert.acm.is_none() {
            let arn = self
                .acm
                .request(
                    &region,
                    &cert.spec.name_set(),
                    cert.spec.key_type,
                    // A new token per attempt: ACM answers a reused token with the same
                    // (failed) request for an hour.
                    &token(&cert.id, cert.renewal.failures),
                )
                .await
                .map_err(|e| issue("acm request", e))?;
            info!(%id, %arn, "acm: certificate requested");
            // Stored before anything else: a crash from here on never requests twice.
            cert.acm = Some(AcmState {
                arn,
                status: "PENDING_VALIDATION".into(),
                checked_at: now,
                validation: Vec::new(),
                problems: Vec::new(),
            });
            cert = self.certificates.update_certificate(&cert).await?;
        }
        let mut state = cert.acm.clone().expect("set above");
        let described = self
            .acm
            .describe(&region, &state.arn)
            .await
            .map_err(|e| issue("acm describe", e))?;
        let records = described.validation.clone();
        let mut problems = Vec::new();
        let mut issued_now = None;
        let next = match described.status.as_str() {
            "PENDING_VALIDATION" => {
                if !records.is_empty() {
                    self.dns
                        .publish_cnames(&dns, &records)
                        .await
                        .map_err(|e| issue("acm validation records", e))?;
                }
                now + PENDING_RECHECK
            }
            "ISSUED" => {
                let missing = self
                    .dns
                    .missing_cnames(&dns, &records)
                    .await
                    .map_err(|e| issue("acm validation records", e))?;
                for r in &missing {
                    problems.push(AcmProblem {
                        kind: AcmProblemKind::ValidationRecordMissing,
                        detail: format!(
                            "validation record {} CNAME {} was missing: ACM cannot renew without it; written again",
                            r.name, r.value
                        ),
                    });
                }
                if !missing.is_empty() {
                    self.dns
                        .publish_cnames(&dns, &missing)
                        .await
                        .map_err(|e| issue("acm validation records", e))?;
                }
                if let Some(status) = described
                    .renewal_status
                    .as_deref()
                    .filter(|s| matches!(*s, "FAILED" | "PENDING_VALIDATION"))
                {
                    problems.push(AcmProblem {
                        kind: AcmProblemKind::ManagedRenewalStuck,
                        detail: format!(
                            "ACM managed renewal is {status}: {}",
                            described
                                .renewal_reason
                                .as_deref()
                                .unwrap_or("no reason given")
                        ),
                    });
                }
                let got = described.issued.clone().ok_or_else(|| {
                    issue(
                        "acm describe",
                        IssueError::Check("ISSUED without a certificate".into()),
                    )
                })?;
                if cert.current.as_ref().map(|c| c.fingerprint.as_str()) != Some(&got.fingerprint) {
                    if cert.current.is_some() {
                        cert.previous = cert.current.take();
                    }
                    cert.current = Some(IssuedCertificate {
                        fingerprint: got.fingerprint.clone(),
                        serial: got.serial,
                        not_before: got.not_before,
                        not_after: got.not_after,
                        issued_at: now,
                        ari_id: None,
                        profile: None,
                        chain_pem: got.chain_pem,
                        // ACM keeps the key: there is no secret version.
                        key_version: String::new(),
                        order_url: state.arn.clone(),
                        key_holder: None,
                        stacked: vec![],
                    });
                    issued_now = Some((got.fingerprint, got.not_after));
                }
                now + WATCH_RECHECK
            }
            other => {
                // FAILED, VALIDATION_TIMED_OUT, REVOKED, EXPIRED, INACTIVE: a new request is
                // needed; the next run makes it.
                let reason = described.failure_reason.clone().unwrap_or_default();
                problems.push(AcmProblem {
                    kind: AcmProblemKind::RequestFailed,
                    detail: format!("ACM status {other} {reason}"),
                });
                warn!(%id, arn = %state.arn, status = other, %reason, "acm: request failed; requesting again next run");
                cert.acm = None;
                cert.renewal.failures = cert.renewal.failures.saturating_add(1);
                cert.renewal.next_check_at = now + PENDING_RECHECK;
                self.certificates.update_certificate(&cert).await?;
                return Err(issue(
                    "acm",
                    IssueError::Rejected {
                        detail: format!("ACM status {other}: {reason}"),
                        problem: None,
                    },
                ));
            }
        };
        for p in &problems {
            warn!(%id, arn = %state.arn, problem = %p, "acm: problem");
        }
        state.status = described.status.clone();
        state.checked_at = now;
        state.validation = records
            .iter()
            .map(|r| (r.name.clone(), r.value.clone()))
            .collect();
        state.problems = problems.clone();
        cert.acm = Some(state);
        cert.renewal.next_check_at = next;
        let cert = self.certificates.update_certificate(&cert).await?;
        if let Some((fingerprint, not_after)) = issued_now {
            if let Some(sink) = &self.sink {
                sink.issued(&cert)
                    .await
                    .map_err(|error| RenewError::Announce {
                        id: id.clone(),
                        error,
                    })?;
            }
            info!(%id, %fingerprint, %not_after, "acm: issued");
            return Ok(RenewOutcome::Issued {
                fingerprint,
                not_after,
            });
        }
        if described.status == "PENDING_VALIDATION" {
            return Ok(RenewOutcome::Deferred {
                until: next,
                reason: "ACM is validating the names; its CNAME records are in place".into(),
            });
        }
        if !problems.is_empty() {
            return Ok(RenewOutcome::Deferred {
                until: next,
                reason: problems
                    .iter()
                    .map(|p| p.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        Ok(RenewOutcome::NotDue {
            next_check_at: next,
        })
    }
}

/// ACM's idempotency token: up to 32 word characters, stable per certificate and attempt
/// (a retry after a crash gets the same request back; a new attempt after a failed
/// request gets a new one).
fn token(id: &str, attempt: u32) -> String {
    format!(
        "cp{:016x}a{attempt}",
        crate::model::certificate::fnv1a64(id.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::*;
    use crate::model::certificate::{AcmIssuance, CertificateSpec, DnsProviderConfig, KeyType};
    use crate::ports::{AcmDescription, CnameRecord};
    use crate::services::test_support::FixedClock;
    use crate::services::test_support::MemoryCertificates;

    /// ACM as documented: a token reused within an hour returns the earlier request's ARN
    /// whatever became of it. The first request fails validation.
    #[derive(Default)]
    struct Acm {
        tokens: Mutex<Vec<(String, String)>>,
    }

    #[async_trait]
    impl AcmCertificates for Acm {
        async fn request(
            &self,
            _: &str,
            _: &[String],
            _: KeyType,
            token: &str,
        ) -> Result<String, IssueError> {
            let mut tokens = self.tokens.lock().unwrap();
            if let Some((_, arn)) = tokens.iter().find(|(t, _)| t == token) {
                return Ok(arn.clone());
            }
            let arn = format!("arn:aws:acm:eu-west-1:1:certificate/{}", tokens.len());
            tokens.push((token.to_owned(), arn.clone()));
            Ok(arn)
        }

        async fn describe(&self, _: &str, arn: &str) -> Result<AcmDescription, IssueError> {
            Ok(AcmDescription {
                status: if arn.ends_with("/0") {
                    "FAILED".into()
                } else {
                    "PENDING_VALIDATION".into()
                },
                failure_reason: Some("CAA_ERROR".into()),
                validation: Vec::new(),
                renewal_status: None,
                renewal_reason: None,
                issued: None,
            })
        }
    }

    struct NoDns;

    #[async_trait]
    impl CnameProvider for NoDns {
        async fn publish_cnames(
            &self,
            _: &DnsProviderConfig,
            _: &[CnameRecord],
        ) -> Result<(), IssueError> {
            Ok(())
        }

        async fn missing_cnames(
            &self,
            _: &DnsProviderConfig,
            _: &[CnameRecord],
        ) -> Result<Vec<CnameRecord>, IssueError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_failed_request_is_followed_by_a_new_one_not_by_the_same_one_again() {
        let store = Arc::new(MemoryCertificates::default());
        let now = datetime!(2026-12-02 12:00 UTC);
        let spec = CertificateSpec {
            challenge: ChallengeConfig::Dns01 {
                provider: DnsProviderConfig::Route53 { zone_id: None },
            },
            acm: Some(AcmIssuance {
                region: "eu-west-1".into(),
            }),
            ..crate::services::test_support::spec(&["shop.example.com"], Vec::new())
        };
        let cert = store
            .add_certificate(&ManagedCertificate::new("shop".into(), spec, now))
            .await
            .unwrap();
        let service = AcmService::new(
            store.clone(),
            Arc::new(Acm::default()),
            Arc::new(NoDns),
            None,
            Arc::new(FixedClock(now)),
        );
        let failed = service.check(cert).await.unwrap_err();
        assert!(failed.to_string().contains("FAILED"), "{failed}");
        // The next run, minutes later: a new request, not the failed one handed back.
        let cert = store.certificate("shop").await.unwrap().unwrap();
        let outcome = service.check(cert).await.unwrap();
        assert!(
            matches!(outcome, RenewOutcome::Deferred { .. }),
            "{outcome:?}"
        );
        let cert = store.certificate("shop").await.unwrap().unwrap();
        assert_eq!(
            cert.acm.unwrap().arn,
            "arn:aws:acm:eu-west-1:1:certificate/1"
        );
    }

    #[test]
    fn tokens_are_stable_and_short_enough_for_acm() {
        assert_eq!(token("shop", 0), token("shop", 0));
        assert_ne!(token("shop", 0), token("shop2", 0));
        assert_ne!(token("shop", 0), token("shop", 1));
        assert!(token("a-very-long-certificate-id.example.com", u32::MAX).len() <= 32);
    }
}
