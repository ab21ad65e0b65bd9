//! Installing the current certificate at every deployment, proving each one serves it, and
//! putting the previous certificate back where one does not.
//!
//! The order for one deployment is: install ([`DeployTarget::deploy`]), handshake with its
//! endpoints until they serve the new fingerprint ([`VerifyService`]), then drop what the
//! install replaced ([`DeployTarget::finish`]). A target that refuses, or whose endpoints
//! keep serving something else past the deadline, is rolled back and recorded as
//! `failed`/`not_serving`: the certificate is then not deployed, which is what keeps a renewal
//! from counting as done.

use crate::services::lease::{LeaseError, Leases};
use std::sync::Arc;

use futures::future::join_all;
use serde::Serialize;
use tracing::{info, warn};

use crate::model::certificate::{IssuedCertificate, ManagedCertificate};
use crate::model::deploy::{DeployProblem, Deployment, DeploymentRecord, DeploymentStatus};
use crate::model::target::ScanRequest;
use crate::ports::{
    CertificateStore, Clock, DeployError, DeployMaterial, DeployRequest, DeployTargets,
    SecretStore, SecretVersion, StoreError,
};
use crate::services::verify::{EndpointCheck, VerifyService, VerifySettings};

/// How verification runs.
#[derive(Clone, Copy, Debug)]
pub struct DeploySettings {
    /// Time between two rounds of handshakes.
    pub interval: std::time::Duration,
    /// Caps every deployment's own deadline (a Lambda invocation cannot wait 25 minutes for
    /// CloudFront; the next delivery checks again).
    pub max_deadline: Option<std::time::Duration>,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            interval: std::time::Duration::from_secs(5),
            max_deadline: None,
        }
    }
}

/// What happened at one deployment.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    /// The deployment's name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Where it stands now.
    pub status: DeploymentStatus,
    /// Whether this run changed nothing because it already served the certificate.
    pub unchanged: bool,
    /// What went wrong, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What went wrong, as a kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<DeployProblem>,
    /// Whether the previous certificate was put back (absent when nothing was rolled back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<bool>,
    /// Every endpoint check.
    pub checks: Vec<EndpointCheck>,
}

impl TargetReport {
    /// Whether the deployment serves the certificate.
    pub fn is_verified(&self) -> bool {
        self.status == DeploymentStatus::Verified
    }
}

/// The result of deploying one certificate.
#[derive(Clone, Debug, Serialize)]
pub struct DeployReport {
    /// The certificate's id.
    pub id: String,
    /// The fingerprint deployed.
    pub fingerprint: String,
    /// One report per deployment, in the spec's order.
    pub targets: Vec<TargetReport>,
}

impl DeployReport {
    /// Whether every deployment serves the certificate.
    pub fn is_verified(&self) -> bool {
        self.targets.iter().all(TargetReport::is_verified)
    }
}

/// Why a deploy could not even start, or its outcome could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum DeployServiceError {
    /// No such certificate.
    #[error("{0}: no such certificate")]
    NotFound(String),
    /// Nothing has been issued yet.
    #[error("{0}: nothing issued yet, so there is nothing to deploy")]
    NotIssued(String),
    /// No previous certificate to roll back to.
    #[error("{0}: no previous certificate to roll back to")]
    NoPrevious(String),
    /// A deployment name that the certificate does not have.
    #[error("{id}: no deployment named {name:?}")]
    NoDeployment {
        /// The certificate.
        id: String,
        /// The name asked for.
        name: String,
    },
    /// Reading the keys or the store failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another worker is renewing or deploying this certificate now.
    #[error(
        "{id}: being renewed or deployed by {owner} (lease until {until}); try again once it ends"
    )]
    Busy {
        /// The certificate.
        id: String,
        /// The other worker.
        owner: String,
        /// Until when its lease runs unless extended.
        until: time::OffsetDateTime,
    },
}

impl From<LeaseError> for DeployServiceError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::Busy { id, owner, until } => DeployServiceError::Busy { id, owner, until },
            LeaseError::NotFound(id) => DeployServiceError::NotFound(id),
            LeaseError::Store(e) => DeployServiceError::Store(e),
            LeaseError::Lost(id) => DeployServiceError::Store(StoreError::Conflict {
                what: format!("the lease on {id}"),
                expected: 0,
            }),
        }
    }
}

/// The deploy use case.
#[derive(Clone)]
pub struct DeployService {
    certificates: Arc<dyn CertificateStore>,
    secrets: Arc<dyn SecretStore>,
    targets: Arc<dyn DeployTargets>,
    verifier: VerifyService,
    clock: Arc<dyn Clock>,
    settings: DeploySettings,
    leases: Option<Leases>,
}

impl DeployService {
    /// Deploys and rolls back only under the certificate's lease, extended while it works
    /// (CloudFront takes up to 25 minutes to verify), so that no two workers — a renewal, the
    /// deploy function, a person's `certpilot deploy` — push to the same targets at once.
    pub fn with_leases(mut self, leases: Leases) -> Self {
        self.leases = Some(leases);
        self
    }

    /// Runs `work` on `id` under the lease, when leases are on.
    async fn under_lease<T>(
        &self,
        id: &str,
        work: impl std::future::Future<Output = Result<T, DeployServiceError>>,
    ) -> Result<T, DeployServiceError> {
        let Some(leases) = &self.leases else {
            return work.await;
        };
        let cert = self.load(id).await?;
        leases.take(cert, |_, _| {}).await?;
        let result = leases.heartbeat(id, work).await;
        if let Err(e) = leases.release(id).await {
            // It lapses on its own; the work itself is recorded.
            tracing::warn!(id, error = %e, "could not release the deploy lease");
        }
        result
    }

    /// Wires the use case.
    pub fn new(
        certificates: Arc<dyn CertificateStore>,
        secrets: Arc<dyn SecretStore>,
        targets: Arc<dyn DeployTargets>,
        verifier: VerifyService,
        clock: Arc<dyn Clock>,
        settings: DeploySettings,
    ) -> Self {
        DeployService {
            certificates,
            secrets,
            targets,
            verifier,
            clock,
            settings,
            leases: None,
        }
    }

    /// The same service, with verification capped at `max_deadline` (what is left of a
    /// Lambda invocation).
    pub fn with_max_deadline(&self, max_deadline: std::time::Duration) -> Self {
        let mut service = self.clone();
        service.settings.max_deadline = Some(
            self.settings
                .max_deadline
                .map_or(max_deadline, |cap| cap.min(max_deadline)),
        );
        service
    }

    /// Deploys `id`'s current certificate wherever it is not yet verified (everywhere with
    /// `force`), concurrently across deployments, and records the outcome. `expected` is the
    /// fingerprint a message announced: when a newer certificate was issued since, the newer
    /// one is deployed (an older one is never put back by a late message).
    pub async fn deploy(
        &self,
        id: &str,
        expected: Option<&str>,
        force: bool,
    ) -> Result<DeployReport, DeployServiceError> {
        self.under_lease(id, self.deploy_now(id, expected, force))
            .await
    }

    async fn deploy_now(
        &self,
        id: &str,
        expected: Option<&str>,
        force: bool,
    ) -> Result<DeployReport, DeployServiceError> {
        let cert = self.load(id).await?;
        let current = cert
            .current
            .clone()
            .ok_or_else(|| DeployServiceError::NotIssued(id.to_owned()))?;
        if expected.is_some_and(|f| f != current.fingerprint) {
            info!(%id, expected = ?expected, current = %current.fingerprint, "deploy: a newer certificate was issued since; deploying that one");
        }
        let material = self.material(&cert, &current).await?;
        let previous = match &cert.previous {
            Some(p) => Some(self.material(&cert, p).await?),
            None => None,
        };
        let runs = cert.spec.deployments.iter().map(|d| {
            let record = cert.deployment_record(&d.name);
            let done = record.is_some_and(|r| {
                r.status == DeploymentStatus::Verified && r.fingerprint == current.fingerprint
            });
            let request = DeployRequest {
                id,
                certificate: &material,
                previous: previous.as_ref(),
                record,
            };
            let cert = &cert;
            async move {
                if done && !force {
                    return (
                        TargetReport {
                            name: d.name.clone(),
                            kind: d.target.kind().to_owned(),
                            status: DeploymentStatus::Verified,
                            unchanged: true,
                            detail: None,
                            problem: None,
                            rolled_back: None,
                            checks: Vec::new(),
                        },
                        None,
                    );
                }
                let (report, record) = self.deploy_one(cert, d, request).await;
                (report, Some(record))
            }
        });
        let results = join_all(runs).await;
        let records: Vec<DeploymentRecord> =
            results.iter().filter_map(|(_, r)| r.clone()).collect();
        self.record(id, records).await?;
        Ok(DeployReport {
            id: id.to_owned(),
            fingerprint: current.fingerprint,
            targets: results.into_iter().map(|(r, _)| r).collect(),
        })
    }

    /// Puts the previous certificate back at every deployment (or the one named `only`) and
    /// records them as rolled back by hand, so that scheduled deploys leave them alone.
    pub async fn roll_back(
        &self,
        id: &str,
        only: Option<&str>,
    ) -> Result<Vec<TargetReport>, DeployServiceError> {
        self.under_lease(id, self.roll_back_now(id, only)).await
    }

    async fn roll_back_now(
        &self,
        id: &str,
        only: Option<&str>,
    ) -> Result<Vec<TargetReport>, DeployServiceError> {
        let cert = self.load(id).await?;
        let current = cert
            .current
            .clone()
            .ok_or_else(|| DeployServiceError::NotIssued(id.to_owned()))?;
        let previous_cert = cert
            .previous
            .clone()
            .ok_or_else(|| DeployServiceError::NoPrevious(id.to_owned()))?;
        if let Some(name) = only
            && !cert.spec.deployments.iter().any(|d| d.name == name)
        {
            return Err(DeployServiceError::NoDeployment {
                id: id.to_owned(),
                name: name.to_owned(),
            });
        }
        let material = self.material(&cert, &current).await?;
        let previous = self.material(&cert, &previous_cert).await?;
        let mut reports = Vec::new();
        let mut records = Vec::new();
        for d in cert
            .spec
            .deployments
            .iter()
            .filter(|d| only.is_none_or(|n| n == d.name))
        {
            let record = cert.deployment_record(&d.name);
            let request = DeployRequest {
                id,
                certificate: &material,
                previous: Some(&previous),
                record,
            };
            let outcome = match self.targets.target(d).await {
                Ok(target) => target.roll_back(request, None).await,
                Err(e) => Err(e),
            };
            let (status, detail, problem, holding) = match &outcome {
                Ok(()) => (
                    DeploymentStatus::RolledBack,
                    None,
                    None,
                    Some(previous.fingerprint.clone()),
                ),
                Err(e) => (
                    DeploymentStatus::Failed,
                    Some(format!("rollback failed: {e}")),
                    Some(DeployProblem::of(e)),
                    record.and_then(|r| r.holding.clone()),
                ),
            };
            warn!(%id, deployment = %d.name, status = status.as_str(), "deploy: rolled back by hand");
            records.push(DeploymentRecord {
                name: d.name.clone(),
                fingerprint: current.fingerprint.clone(),
                status,
                at: self.clock.now(),
                detail: detail.clone(),
                problem,
                holding,
                certificate_arn: record.and_then(|r| r.certificate_arn.clone()),
                key_type: record.and_then(|r| r.key_type),
            });
            reports.push(TargetReport {
                name: d.name.clone(),
                kind: d.target.kind().to_owned(),
                status,
                unchanged: false,
                detail,
                problem,
                rolled_back: Some(outcome.is_ok()),
                checks: Vec::new(),
            });
        }
        self.record(id, records).await?;
        Ok(reports)
    }

    /// The certificates whose current certificate is not yet served everywhere (excluding
    /// deployments rolled back by hand), for a scheduled run to deploy again.
    pub async fn pending(&self) -> Result<Vec<String>, DeployServiceError> {
        Ok(self
            .certificates
            .certificates()
            .await?
            .into_iter()
            .filter(|c| c.current.is_some() && !c.is_deployed())
            .filter(|c| {
                !c.deployments
                    .iter()
                    .any(|r| r.status == DeploymentStatus::RolledBack)
            })
            .map(|c| c.id)
            .collect())
    }

    async fn deploy_one(
        &self,
        cert: &ManagedCertificate,
        deployment: &Deployment,
        request: DeployRequest<'_>,
    ) -> (TargetReport, DeploymentRecord) {
        let fingerprint = request.certificate.fingerprint.clone();
        let mut record = DeploymentRecord {
            name: deployment.name.clone(),
            fingerprint: fingerprint.clone(),
            status: DeploymentStatus::Failed,
            at: self.clock.now(),
            detail: None,
            problem: None,
            holding: request.record.and_then(|r| r.holding.clone()),
            certificate_arn: request.record.and_then(|r| r.certificate_arn.clone()),
            key_type: request.record.and_then(|r| r.key_type),
        };
        let mut report = TargetReport {
            name: deployment.name.clone(),
            kind: deployment.target.kind().to_owned(),
            status: DeploymentStatus::Failed,
            unchanged: false,
            detail: None,
            problem: None,
            rolled_back: None,
            checks: Vec::new(),
        };
        let target = match self.targets.target(deployment).await {
            Ok(t) => t,
            Err(e) => {
                record.detail = Some(e.to_string());
                record.problem = Some(DeployProblem::of(&e));
                report.detail = record.detail.clone();
                report.problem = record.problem;
                return (report, record);
            }
        };
        let deployed = match target.deploy(request).await {
            Ok(d) => d,
            Err(e) => {
                warn!(id = %cert.id, deployment = %deployment.name, error = %e, "deploy: target refused; rolling back");
                let undo = target.roll_back(request, None).await;
                record.detail = Some(with_rollback(format!("deploy failed: {e}"), &undo));
                record.problem = Some(DeployProblem::of(&e));
                report.rolled_back = Some(undo.is_ok());
                report.detail = record.detail.clone();
                report.problem = record.problem;
                return (report, record);
            }
        };
        record.certificate_arn = deployed.certificate_arn.clone().or(record.certificate_arn);
        record.key_type = Some(request.certificate.key_type);
        record.holding = Some(fingerprint.clone());

        let checks = self.verify(cert, deployment, &fingerprint, &*target).await;
        let served = match &checks {
            Ok(c) => c.iter().all(EndpointCheck::is_verified),
            Err(_) => false,
        };
        if served {
            if let Err(e) = target.finish(&deployed).await {
                // The new certificate is served; a leftover old SNI entry is only untidy.
                warn!(id = %cert.id, deployment = %deployment.name, error = %e, "deploy: could not remove the replaced certificate");
                record.detail = Some(format!(
                    "served, but the replaced certificate is still bound: {e}"
                ));
                record.problem = Some(DeployProblem::ReplacedStillBound);
            }
            record.status = DeploymentStatus::Verified;
            info!(id = %cert.id, deployment = %deployment.name, %fingerprint, "deploy: verified");
        } else {
            let (problem, what) = match &checks {
                Ok(c) => (DeployProblem::NotServing, not_serving_summary(c)),
                Err((problem, what)) => (*problem, what.clone()),
            };
            warn!(id = %cert.id, deployment = %deployment.name, %what, "deploy: not serving the new certificate; rolling back");
            let undo = target.roll_back(request, Some(&deployed)).await;
            if undo.is_ok() {
                record.holding = request.previous.map(|p| p.fingerprint.clone());
            }
            record.status = DeploymentStatus::NotServing;
            record.detail = Some(with_rollback(what, &undo));
            record.problem = Some(problem);
            report.rolled_back = Some(undo.is_ok());
        }
        report.status = record.status;
        report.detail = record.detail.clone();
        report.problem = record.problem;
        report.checks = checks.unwrap_or_default();
        (report, record)
    }

    /// Handshakes with the deployment's endpoints; with none (a plain ACM import), checks
    /// that the target's API holds the fingerprint.
    async fn verify(
        &self,
        cert: &ManagedCertificate,
        deployment: &Deployment,
        fingerprint: &str,
        target: &dyn crate::ports::DeployTarget,
    ) -> Result<Vec<EndpointCheck>, (DeployProblem, String)> {
        let endpoints = if deployment.endpoints.is_empty() {
            &cert.spec.endpoints
        } else {
            &deployment.endpoints
        };
        if endpoints.is_empty() {
            let bound = target
                .bound()
                .await
                .map_err(|e| (DeployProblem::of(&e), e.to_string()))?;
            return if bound.fingerprints.iter().any(|f| f == fingerprint) {
                Ok(Vec::new())
            } else {
                Err((
                    DeployProblem::NotHeld,
                    format!(
                        "the target holds {}, not {fingerprint}",
                        if bound.fingerprints.is_empty() {
                            "no certificate".to_owned()
                        } else {
                            bound.fingerprints.join(", ")
                        }
                    ),
                ))
            };
        }
        let mut deadline = deployment.verify_deadline();
        if let Some(cap) = self.settings.max_deadline {
            deadline = deadline.min(cap);
        }
        let requests = endpoints
            .iter()
            .map(|t| {
                let mut r = ScanRequest::new(t.clone());
                r.tags = cert.spec.tags.clone();
                r
            })
            .collect();
        Ok(self
            .verifier
            .verify(
                fingerprint,
                requests,
                VerifySettings {
                    deadline,
                    interval: self.settings.interval,
                },
            )
            .await)
    }

    async fn load(&self, id: &str) -> Result<ManagedCertificate, DeployServiceError> {
        self.certificates
            .certificate(id)
            .await?
            .ok_or_else(|| DeployServiceError::NotFound(id.to_owned()))
    }

    async fn material(
        &self,
        cert: &ManagedCertificate,
        issued: &IssuedCertificate,
    ) -> Result<DeployMaterial, DeployServiceError> {
        if cert.spec.acm.is_some() {
            // ACM keeps the key; the certificate is bound by its ARN.
            return Ok(DeployMaterial {
                fingerprint: issued.fingerprint.clone(),
                key_type: cert.spec.key_type,
                chain_pem: issued.chain_pem.clone(),
                key: crate::ports::SecretValue::new(Vec::new()),
                acm_arn: Some(issued.order_url.clone()),
            });
        }
        let name = cert.key_secret_name();
        let (_, key) = self
            .secrets
            .get(&name, &SecretVersion::Id(issued.key_version.clone()))
            .await
            .map_err(DeployError::from)?
            .ok_or_else(|| {
                DeployError::Config(format!(
                    "{}: key version {} of {name} is missing from the secret store",
                    cert.id, issued.key_version
                ))
            })?;
        Ok(DeployMaterial {
            fingerprint: issued.fingerprint.clone(),
            key_type: cert.spec.key_type,
            chain_pem: issued.chain_pem.clone(),
            key,
            acm_arn: None,
        })
    }

    /// Writes `records` over the stored ones, retrying when a renewal wrote in between.
    async fn record(
        &self,
        id: &str,
        records: Vec<DeploymentRecord>,
    ) -> Result<(), DeployServiceError> {
        if records.is_empty() {
            return Ok(());
        }
        for _ in 0..5 {
            let mut cert = self.load(id).await?;
            for r in &records {
                match cert.deployments.iter_mut().find(|x| x.name == r.name) {
                    Some(slot) => *slot = r.clone(),
                    None => cert.deployments.push(r.clone()),
                }
            }
            let names: Vec<&str> = cert
                .spec
                .deployments
                .iter()
                .map(|d| d.name.as_str())
                .collect();
            cert.deployments
                .retain(|r| names.contains(&r.name.as_str()));
            match self.certificates.update_certificate(&cert).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict {
            what: format!("deployment records of {id}"),
            expected: 0,
        }
        .into())
    }
}

fn with_rollback(what: String, undo: &Result<(), DeployError>) -> String {
    match undo {
        Ok(()) => format!("{what}; the previous certificate was put back"),
        Err(e) => format!("{what}; putting the previous certificate back failed too: {e}"),
    }
}

/// One line naming each endpoint that does not serve the certificate and what it serves.
fn not_serving_summary(checks: &[EndpointCheck]) -> String {
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.is_verified())
        .map(|c| {
            let at = c.address.as_deref().unwrap_or("unresolved");
            match &c.verdict {
                crate::services::verify::Verdict::NotServing {
                    serving,
                    error,
                    since,
                } => {
                    let what = serving
                        .as_ref()
                        .map(|f| format!("serves {f}"))
                        .or_else(|| error.as_ref().map(|e| format!("failed: {e}")))
                        .unwrap_or_default();
                    format!("{} ({at}) {what} since {since}", c.target)
                }
                crate::services::verify::Verdict::Verified => String::new(),
            }
        })
        .collect();
    format!("not serving the new certificate: {}", bad.join("; "))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;
    use crate::model::certificate::{CertificateSpec, IssuedCertificate, KeyType};
    use crate::model::deploy::TargetConfig;
    use crate::model::observation::{ProbeError, Served};
    use crate::ports::{Bound, DeployTarget, Deployed, Prober, ScanLimits, SecretValue};
    use crate::services::scan::ScanService;
    use crate::services::test_support::{FixedClock, MemoryCertificates, MemorySecrets, served};

    /// A load balancer: its API binds what it is given; its data plane (what `Prober` sees)
    /// follows the binding unless frozen, which is the outage certpilot exists for.
    #[derive(Default)]
    struct Balancer {
        serving: Mutex<String>,
        frozen: bool,
        refuse: bool,
        calls: Mutex<Vec<String>>,
    }

    struct Listener(Arc<Balancer>);

    #[async_trait]
    impl DeployTarget for Listener {
        async fn bound(&self) -> Result<Bound, DeployError> {
            Ok(Bound::default())
        }
        async fn deploy(&self, r: DeployRequest<'_>) -> Result<Deployed, DeployError> {
            self.0
                .calls
                .lock()
                .expect("lock")
                .push(format!("deploy {}", r.certificate.fingerprint));
            if self.0.refuse {
                return Err(DeployError::Target("CertificateNotFound".into()));
            }
            if !self.0.frozen {
                *self.0.serving.lock().expect("lock") = r.certificate.fingerprint.clone();
            }
            Ok(Deployed {
                certificate_arn: Some("arn:acm:new".into()),
                replaced: Some("arn:acm:old".into()),
                added: false,
            })
        }
        async fn finish(&self, d: &Deployed) -> Result<(), DeployError> {
            self.0
                .calls
                .lock()
                .expect("lock")
                .push(format!("finish {:?}", d.replaced));
            Ok(())
        }
        async fn roll_back(
            &self,
            r: DeployRequest<'_>,
            d: Option<&Deployed>,
        ) -> Result<(), DeployError> {
            let to = r
                .previous
                .map(|p| p.fingerprint.clone())
                .unwrap_or_default();
            self.0
                .calls
                .lock()
                .expect("lock")
                .push(format!("roll_back to {to} after {}", d.is_some()));
            *self.0.serving.lock().expect("lock") = to;
            Ok(())
        }
    }

    struct Estate(BTreeMap<String, Arc<Balancer>>);

    #[async_trait]
    impl DeployTargets for Estate {
        async fn target(&self, d: &Deployment) -> Result<Box<dyn DeployTarget>, DeployError> {
            Ok(Box::new(Listener(self.0[&d.name].clone())))
        }
    }

    #[async_trait]
    impl Prober for Estate {
        async fn resolve(&self, _r: &ScanRequest) -> Result<Vec<SocketAddr>, ProbeError> {
            Ok(vec![SocketAddr::from(([10, 0, 0, 1], 443))])
        }
        async fn probe(
            &self,
            r: &ScanRequest,
            _a: SocketAddr,
            now: OffsetDateTime,
        ) -> Result<Served, ProbeError> {
            let lb = &self.0[&r.target.host.to_string().replace(".example.com", "")];
            Ok(served(now, &lb.serving.lock().expect("lock")))
        }
    }

    fn issued(fingerprint: &str, key_version: &str) -> IssuedCertificate {
        IssuedCertificate {
            fingerprint: fingerprint.into(),
            serial: "01".into(),
            not_before: datetime!(2026-11-01 0:00 UTC),
            not_after: datetime!(2027-01-30 0:00 UTC),
            issued_at: datetime!(2026-11-01 0:00 UTC),
            ari_id: None,
            profile: None,
            chain_pem: format!("PEM of {fingerprint}"),
            key_version: key_version.into(),
            order_url: "https://ca/order/1".into(),
        }
    }

    /// A certificate renewed from `old` to `new`, deployed to `lbs` (each served by
    /// `<lb>.example.com`, currently serving `old`).
    async fn setup(
        lbs: &[(&str, bool, bool)],
    ) -> (DeployService, Arc<MemoryCertificates>, Arc<Estate>) {
        let store = Arc::new(MemoryCertificates::default());
        let secrets = Arc::new(MemorySecrets::default());
        let old_key = secrets
            .put_pending("certificate-key/shop", &SecretValue::new(b"old".to_vec()))
            .await
            .expect("put");
        let new_key = secrets
            .put_pending("certificate-key/shop", &SecretValue::new(b"new".to_vec()))
            .await
            .expect("put");
        let deployments = lbs
            .iter()
            .map(|(name, _, _)| Deployment {
                name: (*name).into(),
                target: TargetConfig::Elbv2Listener {
                    listener_arn: "arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/x/1/2"
                        .into(),
                    sni: true,
                },
                certificate_arn: None,
                role_arn: None,
                endpoints: vec![format!("{name}.example.com").parse().expect("target")],
                verify_deadline_secs: Some(0),
            })
            .collect();
        let spec = CertificateSpec {
            key_type: KeyType::EcdsaP256,
            ..crate::services::test_support::spec(&["shop.example.com"], deployments)
        };
        let mut cert = ManagedCertificate::new("shop".into(), spec, datetime!(2026-11-01 0:00 UTC));
        cert.previous = Some(issued("old", &old_key));
        cert.current = Some(issued("new", &new_key));
        store.add_certificate(&cert).await.expect("add");
        let estate = Arc::new(Estate(
            lbs.iter()
                .map(|(name, frozen, refuse)| {
                    let lb = Balancer {
                        frozen: *frozen,
                        refuse: *refuse,
                        ..Balancer::default()
                    };
                    *lb.serving.lock().expect("lock") = "old".into();
                    ((*name).to_owned(), Arc::new(lb))
                })
                .collect(),
        ));
        let clock = Arc::new(FixedClock(datetime!(2026-11-22 12:00 UTC)));
        let scanner = ScanService::new(
            estate.clone(),
            clock.clone(),
            ScanLimits {
                concurrency: 4,
                target_timeout: Duration::from_secs(1),
            },
        );
        let service = DeployService::new(
            store.clone(),
            secrets,
            estate.clone(),
            VerifyService::new(scanner),
            clock,
            DeploySettings {
                interval: Duration::from_millis(1),
                max_deadline: None,
            },
        );
        (service, store, estate)
    }

    fn calls(estate: &Estate, lb: &str) -> Vec<String> {
        estate.0[lb].calls.lock().expect("lock").clone()
    }

    #[tokio::test]
    async fn a_deploy_runs_under_the_certificates_lease_and_a_second_worker_is_told_busy() {
        let (service, store, estate) = setup(&[("alb", false, false)]).await;
        let clock = Arc::new(FixedClock(datetime!(2026-11-22 12:00 UTC)));
        let lease = |owner: &str| {
            Leases::new(
                store.clone(),
                clock.clone(),
                owner,
                Duration::from_secs(600),
            )
        };
        // Another worker (a renewal, the deploy function) holds the certificate.
        let other = lease("lambda:other");
        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        other.take(cert, |_, _| {}).await.expect("taken");
        let ours = service.clone().with_leases(lease("cli:here:1:1"));
        let busy = ours.deploy("shop", Some("new"), false).await;
        assert!(
            matches!(&busy, Err(DeployServiceError::Busy { owner, .. }) if owner == "lambda:other"),
            "{busy:?}"
        );
        assert!(calls(&estate, "alb").is_empty(), "nothing pushed meanwhile");
        // Once it is released, the deploy runs and gives the lease up when done.
        assert!(other.release("shop").await.expect("release"));
        let report = ours
            .deploy("shop", Some("new"), false)
            .await
            .expect("deploy");
        assert!(report.is_verified(), "{report:?}");
        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        assert!(cert.renewal.lease.is_none(), "{:?}", cert.renewal.lease);
    }

    #[tokio::test]
    async fn a_served_deploy_is_verified_finished_and_not_repeated() {
        let (service, store, estate) = setup(&[("alb", false, false)]).await;
        let report = service
            .deploy("shop", Some("new"), false)
            .await
            .expect("deploy");
        assert!(report.is_verified(), "{report:?}");
        assert_eq!(
            calls(&estate, "alb"),
            ["deploy new", "finish Some(\"arn:acm:old\")"]
        );
        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        assert!(cert.is_deployed());
        assert_eq!(
            cert.deployments[0].certificate_arn.as_deref(),
            Some("arn:acm:new")
        );
        assert!(service.pending().await.expect("pending").is_empty());

        // A redelivered message changes nothing.
        let again = service
            .deploy("shop", Some("new"), false)
            .await
            .expect("deploy");
        assert!(again.targets[0].unchanged);
        assert_eq!(calls(&estate, "alb").len(), 2);
    }

    #[tokio::test]
    async fn an_endpoint_that_keeps_the_old_certificate_is_not_serving_and_rolled_back() {
        let (service, store, estate) =
            setup(&[("alb", false, false), ("stuck", true, false)]).await;
        let report = service.deploy("shop", None, false).await.expect("deploy");
        assert!(!report.is_verified());
        let stuck = &report.targets[1];
        assert_eq!(stuck.status, DeploymentStatus::NotServing);
        assert_eq!(stuck.rolled_back, Some(true));
        let detail = stuck.detail.as_deref().expect("detail");
        assert!(
            detail.contains("stuck.example.com:443 (10.0.0.1:443) serves old"),
            "{detail}"
        );
        assert_eq!(
            calls(&estate, "stuck"),
            ["deploy new", "roll_back to old after true"]
        );
        assert_eq!(report.targets[0].status, DeploymentStatus::Verified);

        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        assert!(
            !cert.is_deployed(),
            "a renewal that is not served is not done"
        );
        let rec = cert.deployment_record("stuck").expect("record");
        assert_eq!(rec.holding.as_deref(), Some("old"));
        assert_eq!(service.pending().await.expect("pending"), ["shop"]);
    }

    #[tokio::test]
    async fn a_refused_deploy_fails_and_puts_the_previous_back() {
        let (service, store, estate) = setup(&[("alb", false, true)]).await;
        let report = service.deploy("shop", None, false).await.expect("deploy");
        assert_eq!(report.targets[0].status, DeploymentStatus::Failed);
        assert!(
            report.targets[0]
                .detail
                .as_deref()
                .expect("detail")
                .contains("CertificateNotFound")
        );
        assert_eq!(
            calls(&estate, "alb"),
            ["deploy new", "roll_back to old after false"]
        );
        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        assert_eq!(cert.deployments[0].status, DeploymentStatus::Failed);
    }

    #[tokio::test]
    async fn a_rollback_by_hand_is_recorded_and_left_alone_by_scheduled_deploys() {
        let (service, store, estate) = setup(&[("alb", false, false)]).await;
        service.deploy("shop", None, false).await.expect("deploy");
        let reports = service.roll_back("shop", None).await.expect("rollback");
        assert_eq!(reports[0].status, DeploymentStatus::RolledBack);
        assert_eq!(*estate.0["alb"].serving.lock().expect("lock"), "old");
        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        assert_eq!(cert.deployments[0].holding.as_deref(), Some("old"));
        assert!(service.pending().await.expect("pending").is_empty());
        assert!(matches!(
            service.roll_back("shop", Some("cdn")).await,
            Err(DeployServiceError::NoDeployment { .. })
        ));
    }
}
