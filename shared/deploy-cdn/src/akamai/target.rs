//! The `akamai-cps` target: a third-party enrollment's pending change, followed across runs.
//!
//! Akamai keeps the key, so the certificate was issued from the change's CSR (see
//! [`super::Kind`]'s `csrs`). Each run looks at where the change stands and does the one
//! thing it waits for — upload the certificates, acknowledge the warnings policy allows —
//! or ends `in_progress` until the next look; nothing waits inside a run while Akamai works.
//! When the change waits for change management, staging serves the certificate: the
//! service proves that by handshake, and only then is the acknowledgement sent that takes
//! the change to production. Not served on staging, the change is cancelled. Once
//! production serves it nothing can be put back (the descriptor says so).
//!
//! The handle is `enrollment#change#fingerprint`.

use async_trait::async_trait;
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::target::ScanRequest;
use certpilot_core::ports::{
    Bound, DeployError, DeployMaterial, DeployRequest, DeployTarget, Deployed, Stage,
};
use time::OffsetDateTime;
use tracing::info;

use super::client::Cps;
use crate::http::{CallError, patiently};

/// One enrollment.
pub struct AkamaiTarget {
    pub(crate) cps: Cps,
    pub(crate) staging: Vec<ScanRequest>,
    pub(crate) allow_warnings: Vec<String>,
    pub(crate) poll: time::Duration,
}

/// Akamai's name for a key type's algorithm.
pub(crate) fn algorithm(key_type: KeyType) -> &'static str {
    if key_type.is_rsa() { "RSA" } else { "ECDSA" }
}

/// The leaf and the intermediates of a PEM chain (Akamai's trust chain, unterminated).
fn split_chain(chain: &str) -> (String, String) {
    match certpilot_core::model::certificate::split_chain(chain) {
        Some((leaf, rest)) => (leaf, rest.trim_end().to_owned()),
        None => (chain.to_owned(), String::new()),
    }
}

/// SHA-256 of the first certificate of `pem`, hex.
pub(crate) fn fingerprint(pem: &str) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &block.contents);
    Some(data_encoding::HEXLOWER.encode(digest.as_ref()))
}

fn change_of(handle: &str) -> Option<u64> {
    handle.split('#').nth(1)?.parse().ok()
}

impl AkamaiTarget {
    fn handle(&self, change: u64, fingerprint: &str) -> String {
        format!("{}#{change}#{fingerprint}", self.cps.enrollment)
    }

    fn later(&self, change: u64, material: &DeployMaterial) -> Deployed {
        Deployed {
            handle: Some(self.handle(change, &material.fingerprint)),
            check_after: Some(OffsetDateTime::now_utc() + self.poll),
            ..Deployed::default()
        }
    }

    /// The fingerprints of what production serves, the primary first.
    async fn served_in_production(&self) -> Result<Vec<String>, CallError> {
        Ok(self
            .cps
            .production()
            .await?
            .iter()
            .filter_map(|p| fingerprint(p))
            .collect())
    }

    /// Acknowledges a review step when every warning is one policy allows.
    async fn review(
        &self,
        change: u64,
        which: &str,
        material: &DeployMaterial,
    ) -> Result<Deployed, CallError> {
        let warnings = self.cps.warnings(change, which).await?;
        let refused: Vec<&String> = warnings
            .iter()
            .filter(|w| {
                let w = w.to_ascii_lowercase();
                !self
                    .allow_warnings
                    .iter()
                    .any(|a| w.contains(&a.to_ascii_lowercase()))
            })
            .collect();
        if !refused.is_empty() {
            return Err(CallError::Failed(DeployError::Target(format!(
                "Akamai's {which} of change {change} need a person: {}; acknowledge them in \
                 Control Center, or allow them with allow-warnings=",
                refused
                    .iter()
                    .map(|w| format!("{w:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))));
        }
        self.cps.acknowledge(change, which).await?;
        info!(
            enrollment = self.cps.enrollment,
            change,
            which,
            count = warnings.len(),
            "akamai: warnings acknowledged"
        );
        Ok(self.later(change, material))
    }

    /// One look at the change, doing what it waits for.
    async fn step(
        &self,
        material: &DeployMaterial,
        recorded: Option<&str>,
    ) -> Result<Deployed, CallError> {
        let enrollment = self.cps.enrollment().await?;
        let Some(change) = Cps::pending_change(&enrollment) else {
            let served = self.served_in_production().await?;
            if served.contains(&material.fingerprint) {
                // Done: the handle the change had, when this deploy followed it.
                let handle = recorded
                    .filter(|h| h.ends_with(&format!("#{}", material.fingerprint)))
                    .map_or_else(|| self.handle(0, &material.fingerprint), str::to_owned);
                return Ok(Deployed {
                    handle: Some(handle),
                    ..Deployed::default()
                });
            }
            return Err(CallError::Failed(DeployError::Target(format!(
                "Akamai enrollment {} has no pending change, and production serves {}: this \
                 certificate never reached it (the change was cancelled or replaced); \
                 `certpilot renew --force` starts a new change",
                self.cps.enrollment,
                if served.is_empty() {
                    "nothing".to_owned()
                } else {
                    served.join(", ")
                }
            ))));
        };
        let status = self.cps.change(change).await?;
        if status.state == "error" {
            self.cps.cancel(change).await?;
            return Err(CallError::Failed(DeployError::Target(format!(
                "Akamai's change {change} failed ({}); it was cancelled, and the next renewal \
                 starts another",
                status.error.unwrap_or(status.status)
            ))));
        }
        match status.status.as_str() {
            "wait-upload-third-party" => {
                let mut certificates = vec![];
                let (leaf, chain) = split_chain(&material.chain_pem);
                certificates.push((algorithm(material.key_type).to_owned(), leaf, chain));
                for s in &material.stacked {
                    let (leaf, chain) = split_chain(&s.chain_pem);
                    certificates.push((algorithm(s.key_type).to_owned(), leaf, chain));
                }
                self.cps.upload(change, &certificates).await?;
                info!(
                    enrollment = self.cps.enrollment,
                    change,
                    count = certificates.len(),
                    "akamai: certificates uploaded"
                );
                Ok(self.later(change, material))
            }
            "wait-review-third-party-cert" => {
                self.review(change, "post-verification-warnings", material)
                    .await
            }
            "wait-review-pre-verification-safety-checks" => {
                self.review(change, "pre-verification-warnings", material)
                    .await
            }
            "wait-ack-change-management" => {
                if self.staging.is_empty() {
                    return Err(CallError::Failed(DeployError::Config(format!(
                        "Akamai enrollment {} tests on staging first, but the deployment names \
                         no staging-endpoints to prove it there",
                        self.cps.enrollment
                    ))));
                }
                Ok(Deployed {
                    handle: Some(self.handle(change, &material.fingerprint)),
                    prove_first: Some(Stage {
                        name: "Akamai's staging network".into(),
                        endpoints: self.staging.clone(),
                    }),
                    ..Deployed::default()
                })
            }
            // Akamai is working (verifying, deploying): look again later.
            _ => Ok(self.later(change, material)),
        }
    }
}

#[async_trait]
impl DeployTarget for AkamaiTarget {
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError> {
        let served = self
            .served_in_production()
            .await
            .map_err(CallError::into_deploy)?;
        Ok(Bound {
            certificates: recorded.map(str::to_owned).into_iter().collect(),
            fingerprints: served,
        })
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        let recorded = request.record.and_then(|r| r.state.handle.clone());
        patiently(recorded.clone(), || {
            self.step(request.certificate, recorded.as_deref())
        })
        .await
    }

    async fn promote(
        &self,
        request: DeployRequest<'_>,
        deployed: &Deployed,
    ) -> Result<Deployed, DeployError> {
        let change = deployed
            .handle
            .as_deref()
            .and_then(change_of)
            .ok_or_else(|| DeployError::Config("akamai: the handle names no change".into()))?;
        self.cps
            .acknowledge_change_management(change)
            .await
            .map_err(CallError::into_deploy)?;
        info!(
            enrollment = self.cps.enrollment,
            change, "akamai: proven on staging; change management acknowledged, on to production"
        );
        Ok(self.later(change, request.certificate))
    }

    async fn finish(&self, _deployed: &Deployed) -> Result<(), DeployError> {
        Ok(())
    }

    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        deployed: Option<&Deployed>,
    ) -> Result<Option<String>, DeployError> {
        let enrollment = self
            .cps
            .enrollment()
            .await
            .map_err(CallError::into_deploy)?;
        // Before production, withdrawing is cancelling the change: Akamai's production keeps
        // what it serves, and the next renewal starts a new change.
        if let Some(change) = Cps::pending_change(&enrollment) {
            self.cps
                .cancel(change)
                .await
                .map_err(CallError::into_deploy)?;
            info!(
                enrollment = self.cps.enrollment,
                change, "akamai: change cancelled before production"
            );
            return Ok(None);
        }
        let served = self
            .served_in_production()
            .await
            .map_err(CallError::into_deploy)?;
        if served.contains(&request.certificate.fingerprint) {
            return Err(DeployError::Target(format!(
                "Akamai enrollment {}: production already serves the certificate, and CPS \
                 cannot put the previous one back (a new change with another certificate can)",
                self.cps.enrollment
            )));
        }
        let _ = deployed;
        Ok(None)
    }
}
