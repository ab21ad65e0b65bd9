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
use crate::model::deploy::{
    DeployProblem, Deployment, DeploymentRecord, DeploymentStatus, Unit, UnitRecord, UnitState,
};
use crate::model::deploy_kind::RunsIn;
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
    /// Whether this process runs on the host a host-only kind (`files`) writes to: the CLI
    /// does, the deploy function does not, and leaves those deployments to the host.
    pub on_host: bool,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            interval: std::time::Duration::from_secs(5),
            max_deadline: None,
            on_host: true,
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
    /// Where it stands now, as recorded (its worst unit).
    #[serde(flatten)]
    pub state: UnitState,
    /// Whether this run changed nothing because it already served the certificate (or is
    /// waiting for its `check_after`).
    pub unchanged: bool,
    /// Whether the previous certificate was put back (absent when nothing was rolled back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<bool>,
    /// Every endpoint check, of every unit.
    pub checks: Vec<EndpointCheck>,
    /// Each unit, when the deployment has more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<UnitReport>,
}

/// What happened at one unit of a deployment.
#[derive(Clone, Debug, Serialize)]
pub struct UnitReport {
    /// The unit's name.
    pub name: String,
    /// Where it stands now, as recorded.
    #[serde(flatten)]
    pub state: UnitState,
    /// Whether this run left it alone.
    pub unchanged: bool,
    /// Whether the previous certificate was put back there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<bool>,
    /// Its endpoint checks.
    pub checks: Vec<EndpointCheck>,
}

impl TargetReport {
    /// Whether the deployment serves the certificate.
    pub fn is_verified(&self) -> bool {
        self.state.status == DeploymentStatus::Verified
    }

    /// The report of a deployment from its record and its units' reports.
    fn of(deployment: &Deployment, record: &DeploymentRecord, units: Vec<UnitReport>) -> Self {
        let unchanged = units.iter().all(|u| u.unchanged);
        let rolled_back = units
            .iter()
            .filter_map(|u| u.rolled_back)
            .reduce(|a, b| a && b);
        TargetReport {
            name: deployment.name.clone(),
            kind: deployment.kind.clone(),
            state: record.state.clone(),
            unchanged,
            rolled_back,
            checks: units.iter().flat_map(|u| u.checks.clone()).collect(),
            units: if units.len() > 1 { units } else { Vec::new() },
        }
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
    targets: Arc<DeployTargets>,
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
        targets: Arc<DeployTargets>,
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

    /// The same service reading time from `clock`.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        let mut service = self.clone();
        service.clock = clock;
        service
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
        let now = self.clock.now();
        let fingerprint = current.fingerprint.as_str();
        let runs = cert.spec.deployments.iter().map(|d| {
            let record = cert.deployment_record(&d.name);
            let cert = &cert;
            let (material, previous) = (&material, previous.as_ref());
            async move {
                if !self.runs_here(d) {
                    // Left to the host: the record stays as the host wrote it.
                    let mut report = self.unchanged(d, record);
                    report.state.detail = Some(format!(
                        "{} deployments change files and sockets on their own host, which this runner cannot reach: they run there (`certpilot deploy {id}` on it, or through SSM), not here",
                        d.kind
                    ));
                    return (report, None);
                }
                let units = match self.targets.units(d, &cert.spec.endpoints).await {
                    Ok(units) => units,
                    Err(e) => {
                        // Its units could not be found (a fleet's inventory unreachable):
                        // each listed unit fails with the reason.
                        warn!(%id, deployment = %d.name, error = %e, "deploy: finding the units failed");
                        let unit_records: Vec<UnitRecord> = d
                            .resolved_units(&cert.spec.endpoints)
                            .iter()
                            .map(|u| {
                                let mut r = record
                                    .and_then(|r| r.unit(&u.name))
                                    .unwrap_or_else(|| fresh_record(u));
                                r.state.status = DeploymentStatus::Failed;
                                r.state.detail = Some(format!("finding its units failed: {e}"));
                                r.state.problem = Some(DeployProblem::of(&e));
                                r
                            })
                            .collect();
                        let reports = unit_records
                            .iter()
                            .map(|r| UnitReport {
                                name: r.name.clone(),
                                state: r.state.clone(),
                                unchanged: false,
                                rolled_back: None,
                                checks: Vec::new(),
                            })
                            .collect();
                        let record = DeploymentRecord::of_units(
                            &d.name,
                            fingerprint,
                            self.clock.now(),
                            unit_records,
                        );
                        return (TargetReport::of(d, &record, reports), Some(record));
                    }
                };
                let unit_runs = units.iter().map(|unit| {
                    let last = record.and_then(|r| r.unit(&unit.name));
                    async move {
                        let done = last.as_ref().is_some_and(|r| {
                            r.state.status == DeploymentStatus::Verified
                                && record.is_some_and(|d| d.fingerprint == fingerprint)
                        });
                        let waiting = last.as_ref().is_some_and(|r| {
                            r.state.status == DeploymentStatus::InProgress
                                && record.is_some_and(|d| d.fingerprint == fingerprint)
                                && r.state.check_after.is_some_and(|t| t > now)
                        });
                        if (done || waiting) && !force {
                            let last = last.unwrap_or_else(|| fresh_record(unit));
                            let report = UnitReport {
                                name: unit.name.clone(),
                                state: last.state.clone(),
                                unchanged: true,
                                rolled_back: None,
                                checks: Vec::new(),
                            };
                            return (report, last);
                        }
                        let key = self.key_for(d, material);
                        let previous_key = previous.map(|p| self.key_for(d, p));
                        let request = DeployRequest {
                            id,
                            unit,
                            certificate: &key,
                            previous: previous_key.as_ref(),
                            record: last.as_ref(),
                        };
                        self.deploy_unit(cert, d, request).await
                    }
                });
                let (reports, unit_records): (Vec<UnitReport>, Vec<UnitRecord>) =
                    join_all(unit_runs).await.into_iter().unzip();
                let record = DeploymentRecord::of_units(
                    &d.name,
                    fingerprint,
                    self.clock.now(),
                    unit_records,
                );
                (TargetReport::of(d, &record, reports), Some(record))
            }
        });
        let results = join_all(runs).await;
        let records: Vec<DeploymentRecord> = results
            .iter()
            .filter(|(r, _)| !r.unchanged)
            .filter_map(|(_, r)| r.clone())
            .collect();
        self.record(id, records).await?;
        Ok(DeployReport {
            id: id.to_owned(),
            fingerprint: current.fingerprint.clone(),
            targets: results.into_iter().map(|(r, _)| r).collect(),
        })
    }

    /// Whether `d`'s kind can run in this process.
    fn runs_here(&self, d: &Deployment) -> bool {
        self.settings.on_host
            || self
                .targets
                .kinds()
                .get(&d.kind)
                .is_none_or(|k| k.runs_in != RunsIn::Host)
    }

    /// A report of a deployment this run left alone.
    fn unchanged(&self, d: &Deployment, record: Option<&DeploymentRecord>) -> TargetReport {
        TargetReport {
            name: d.name.clone(),
            kind: d.kind.clone(),
            state: record.map_or_else(
                || UnitState::new(DeploymentStatus::InProgress),
                |r| r.state.clone(),
            ),
            unchanged: true,
            rolled_back: None,
            checks: Vec::new(),
            units: Vec::new(),
        }
    }

    /// The material as `d`'s kind receives it: with the private key only when its
    /// descriptor says it takes the key.
    fn key_for(&self, d: &Deployment, material: &DeployMaterial) -> DeployMaterial {
        let needs_key = self
            .targets
            .kinds()
            .get(&d.kind)
            .is_some_and(|k| k.needs_key());
        let mut m = material.clone();
        if !needs_key {
            m.key = None;
        }
        m
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
            .filter(|d| self.runs_here(d))
        {
            let record = cert.deployment_record(&d.name);
            let (key, previous_key) = (self.key_for(d, &material), self.key_for(d, &previous));
            let mut unit_reports = Vec::new();
            let mut unit_records = Vec::new();
            let (units, not_found) = match self.targets.units(d, &cert.spec.endpoints).await {
                Ok(units) => (units, None),
                Err(e) => (
                    d.resolved_units(&cert.spec.endpoints),
                    Some(format!("finding its units failed: {e}")),
                ),
            };
            for unit in units {
                let last = record.and_then(|r| r.unit(&unit.name));
                let request = DeployRequest {
                    id,
                    unit: &unit,
                    certificate: &key,
                    previous: Some(&previous_key),
                    record: last.as_ref(),
                };
                let outcome = match (&not_found, self.targets.target(&unit).await) {
                    (Some(why), _) => Err(DeployError::Unavailable(why.clone())),
                    (None, Ok(target)) => target.roll_back(request, None).await,
                    (None, Err(e)) => Err(e),
                };
                let mut r = last.clone().unwrap_or_else(|| fresh_record(&unit));
                match &outcome {
                    Ok(handle) => {
                        if let Some(h) = handle {
                            r.state.handle = Some(h.clone());
                        }
                        r.state.status = DeploymentStatus::RolledBack;
                        r.state.detail = None;
                        r.state.problem = None;
                        r.state.holding = Some(previous.fingerprint.clone());
                        r.state.check_after = None;
                    }
                    Err(e) => {
                        r.state.status = DeploymentStatus::Failed;
                        r.state.detail = Some(format!("rollback failed: {e}"));
                        r.state.problem = Some(DeployProblem::of(e));
                    }
                }
                warn!(%id, deployment = %d.name, unit = %unit.name, status = r.state.status.as_str(), "deploy: rolled back by hand");
                unit_reports.push(UnitReport {
                    name: unit.name.clone(),
                    state: r.state.clone(),
                    unchanged: false,
                    rolled_back: Some(outcome.is_ok()),
                    checks: Vec::new(),
                });
                unit_records.push(r);
            }
            let rec = DeploymentRecord::of_units(
                &d.name,
                &current.fingerprint,
                self.clock.now(),
                unit_records,
            );
            reports.push(TargetReport::of(d, &rec, unit_reports));
            records.push(rec);
        }
        self.record(id, records).await?;
        Ok(reports)
    }

    /// The certificates whose current certificate is not yet served everywhere this process
    /// can deploy (excluding deployments rolled back by hand, and those in progress until
    /// their `check_after`), for a scheduled run to deploy again.
    pub async fn pending(&self) -> Result<Vec<String>, DeployServiceError> {
        let now = self.clock.now();
        Ok(self
            .certificates
            .certificates()
            .await?
            .into_iter()
            .filter(|c| {
                let Some(current) = &c.current else {
                    return false;
                };
                if c.deployments
                    .iter()
                    .any(|r| r.state.status == DeploymentStatus::RolledBack)
                {
                    return false;
                }
                c.spec
                    .deployments
                    .iter()
                    .filter(|d| self.runs_here(d))
                    .any(|d| match c.deployment_record(&d.name) {
                        None => true,
                        Some(r) if r.fingerprint != current.fingerprint => true,
                        Some(r) => match r.state.status {
                            DeploymentStatus::Verified | DeploymentStatus::RolledBack => false,
                            DeploymentStatus::InProgress => {
                                r.state.check_after.is_none_or(|t| t <= now)
                            }
                            DeploymentStatus::NotServing | DeploymentStatus::Failed => true,
                        },
                    })
            })
            .map(|c| c.id)
            .collect())
    }

    async fn deploy_unit(
        &self,
        cert: &ManagedCertificate,
        deployment: &Deployment,
        request: DeployRequest<'_>,
    ) -> (UnitReport, UnitRecord) {
        let unit = request.unit;
        let fingerprint = request.certificate.fingerprint.clone();
        let mut record = UnitRecord {
            name: unit.name.clone(),
            state: UnitState {
                holding: request.record.and_then(|r| r.state.holding.clone()),
                handle: request.record.and_then(|r| r.state.handle.clone()),
                key_type: request.record.and_then(|r| r.state.key_type),
                ..UnitState::new(DeploymentStatus::Failed)
            },
        };
        let mut report = UnitReport {
            name: unit.name.clone(),
            state: record.state.clone(),
            unchanged: false,
            rolled_back: None,
            checks: Vec::new(),
        };
        let done = |mut report: UnitReport, record: UnitRecord| {
            report.state = record.state.clone();
            (report, record)
        };
        let target = match self.targets.target(unit).await {
            Ok(t) => t,
            Err(e) => {
                record.state.detail = Some(e.to_string());
                record.state.problem = Some(DeployProblem::of(&e));
                return done(report, record);
            }
        };
        let deployed = match target.deploy(request).await {
            Ok(d) => d,
            Err(e) => {
                warn!(id = %cert.id, deployment = %deployment.name, unit = %unit.name, error = %e, "deploy: target refused; rolling back");
                let undo = target.roll_back(request, None).await;
                if let Ok(Some(h)) = &undo {
                    record.state.handle = Some(h.clone());
                }
                record.state.detail = Some(with_rollback(format!("deploy failed: {e}"), &undo));
                record.state.problem = Some(DeployProblem::of(&e));
                report.rolled_back = Some(undo.is_ok());
                return done(report, record);
            }
        };
        let deployed = match &deployed.prove_first {
            None => deployed,
            Some(stage) => match self
                .prove_stage(cert, deployment, &fingerprint, stage)
                .await
            {
                Ok(()) => match target.promote(request, &deployed).await {
                    Ok(promoted) => {
                        info!(id = %cert.id, deployment = %deployment.name, unit = %unit.name, stage = %stage.name, "deploy: proven on the stage; promoted");
                        promoted
                    }
                    Err(e) => {
                        record.state.handle = deployed.handle.clone().or(record.state.handle);
                        record.state.detail = Some(format!(
                            "served on {}, but going on from there failed: {e}",
                            stage.name
                        ));
                        record.state.problem = Some(DeployProblem::of(&e));
                        return done(report, record);
                    }
                },
                Err(what) => {
                    warn!(id = %cert.id, deployment = %deployment.name, unit = %unit.name, stage = %stage.name, %what, "deploy: not served on the stage; withdrawing");
                    let undo = target.roll_back(request, Some(&deployed)).await;
                    record.state.detail = Some(format!(
                        "not served on {}: {what}; {}",
                        stage.name,
                        match &undo {
                            Ok(_) => "it went no further and the change was withdrawn".to_owned(),
                            Err(e) => format!("withdrawing the change failed: {e}"),
                        }
                    ));
                    record.state.status = DeploymentStatus::NotServing;
                    record.state.problem = Some(DeployProblem::NotServing);
                    report.rolled_back = Some(undo.is_ok());
                    return done(report, record);
                }
            },
        };
        record.state.handle = deployed.handle.clone().or(record.state.handle);
        record.state.key_type = Some(request.certificate.key_type);
        if let Some(after) = deployed.check_after {
            // Accepted, not yet in place: the next run resumes it (nothing sleeps here).
            info!(id = %cert.id, deployment = %deployment.name, unit = %unit.name, %after, "deploy: in progress");
            record.state.status = DeploymentStatus::InProgress;
            record.state.check_after = Some(after);
            record.state.detail = Some(format!(
                "the target is still installing; looking again after {after}"
            ));
            return done(report, record);
        }
        record.state.holding = Some(fingerprint.clone());

        let checks = self
            .verify(
                cert,
                deployment,
                unit,
                &fingerprint,
                &*target,
                deployed.handle.as_deref(),
            )
            .await;
        let served = match &checks {
            Ok(c) => c.iter().all(EndpointCheck::is_verified),
            Err(_) => false,
        };
        if served {
            if let Err(e) = target.finish(&deployed).await {
                // The new certificate is served; a leftover old SNI entry is only untidy.
                warn!(id = %cert.id, deployment = %deployment.name, error = %e, "deploy: could not remove the replaced certificate");
                record.state.detail = Some(format!(
                    "served, but the replaced certificate is still bound: {e}"
                ));
                record.state.problem = Some(DeployProblem::ReplacedStillBound);
            }
            record.state.status = DeploymentStatus::Verified;
            info!(id = %cert.id, deployment = %deployment.name, unit = %unit.name, %fingerprint, "deploy: verified");
        } else {
            let (problem, what) = match &checks {
                Ok(c) => (DeployProblem::NotServing, not_serving_summary(c)),
                Err((problem, what)) => (*problem, what.clone()),
            };
            warn!(id = %cert.id, deployment = %deployment.name, unit = %unit.name, %what, "deploy: not serving the new certificate; rolling back");
            let can_roll_back = self
                .targets
                .kinds()
                .get(&deployment.kind)
                .is_none_or(|k| k.can_roll_back);
            if can_roll_back {
                let undo = target.roll_back(request, Some(&deployed)).await;
                if let Ok(handle) = &undo {
                    record.state.holding = request.previous.map(|p| p.fingerprint.clone());
                    if let Some(h) = handle {
                        record.state.handle = Some(h.clone());
                    }
                }
                record.state.detail = Some(with_rollback(what, &undo));
                report.rolled_back = Some(undo.is_ok());
            } else {
                record.state.detail = Some(format!("{what}; this kind cannot roll back"));
            }
            record.state.status = DeploymentStatus::NotServing;
            record.state.problem = Some(problem);
        }
        report.checks = checks.unwrap_or_default();
        done(report, record)
    }

    /// How long `deployment`'s endpoints may take to serve a new certificate: its own
    /// deadline, or its kind's, within the runner's cap.
    fn deadline(&self, deployment: &Deployment) -> std::time::Duration {
        let deadline = self.targets.kinds().verify_deadline(deployment);
        self.settings
            .max_deadline
            .map_or(deadline, |cap| deadline.min(cap))
    }

    /// Handshakes with a stage's endpoints within the deployment's deadline; `Err` says
    /// what they serve instead.
    async fn prove_stage(
        &self,
        cert: &ManagedCertificate,
        deployment: &Deployment,
        fingerprint: &str,
        stage: &crate::ports::Stage,
    ) -> Result<(), String> {
        if stage.endpoints.is_empty() {
            return Err(format!("no {} endpoints to prove it at", stage.name));
        }
        let deadline = self.deadline(deployment);
        let requests = stage
            .endpoints
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.tags = cert.spec.tags.clone();
                r
            })
            .collect();
        let checks = self
            .verifier
            .verify(
                fingerprint,
                requests,
                VerifySettings {
                    deadline,
                    interval: self.settings.interval,
                },
            )
            .await;
        if checks.iter().all(EndpointCheck::is_verified) {
            Ok(())
        } else {
            Err(not_serving_summary(&checks))
        }
    }

    /// Handshakes with the unit's endpoints; with none (a plain ACM import), checks that
    /// the target's API holds the fingerprint.
    async fn verify(
        &self,
        cert: &ManagedCertificate,
        deployment: &Deployment,
        unit: &Unit,
        fingerprint: &str,
        target: &dyn crate::ports::DeployTarget,
        handle: Option<&str>,
    ) -> Result<Vec<EndpointCheck>, (DeployProblem, String)> {
        if unit.endpoints.is_empty() {
            let bound = target
                .bound(handle)
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
        let deadline = self.deadline(deployment);
        let requests = unit
            .endpoints
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
                names: cert.spec.name_set(),
                not_after: issued.not_after,
                key_type: cert.spec.key_type,
                chain_pem: issued.chain_pem.clone(),
                key: None,
                acm_arn: Some(issued.order_url.clone()),
                stacked: vec![],
            });
        }
        if issued.is_keyless() {
            // The target keeps the key; it takes the certificates alone.
            return Ok(DeployMaterial {
                fingerprint: issued.fingerprint.clone(),
                names: cert.spec.name_set(),
                not_after: issued.not_after,
                key_type: cert.spec.key_type,
                chain_pem: issued.chain_pem.clone(),
                key: None,
                acm_arn: None,
                stacked: issued.stacked.clone(),
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
            names: cert.spec.name_set(),
            not_after: issued.not_after,
            key_type: cert.spec.key_type,
            chain_pem: issued.chain_pem.clone(),
            key: Some(key),
            acm_arn: None,
            stacked: issued.stacked.clone(),
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

/// The record of a unit never deployed before (what a rollback by hand starts from).
fn fresh_record(unit: &Unit) -> UnitRecord {
    UnitRecord {
        name: unit.name.clone(),
        state: UnitState::new(DeploymentStatus::Failed),
    }
}

fn with_rollback<T>(what: String, undo: &Result<T, DeployError>) -> String {
    match undo {
        Ok(_) => format!("{what}; the previous certificate was put back"),
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
    use crate::model::deploy_kind::{KeyDelivery, KindDescriptor};
    use crate::model::observation::{ProbeError, Served};
    use crate::ports::{
        Bound, DeployTarget, Deployed, Prober, ScanLimits, SecretValue, TargetFactory,
    };
    use crate::services::scan::ScanService;
    use crate::services::test_support::{FixedClock, MemoryCertificates, MemorySecrets, served};

    /// A load balancer: its API binds what it is given; its data plane (what `Prober` sees)
    /// follows the binding unless frozen, which is the outage certpilot exists for.
    #[derive(Default)]
    struct Balancer {
        serving: Mutex<String>,
        frozen: bool,
        refuse: bool,
        slow: bool,
        accepted: std::sync::atomic::AtomicBool,
        calls: Mutex<Vec<String>>,
    }

    struct Listener(Arc<Balancer>);

    #[async_trait]
    impl DeployTarget for Listener {
        async fn bound(&self, _: Option<&str>) -> Result<Bound, DeployError> {
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
            if self.0.slow
                && !self
                    .0
                    .accepted
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                // A CDN rollout: accepted now, in place by the next run.
                return Ok(Deployed {
                    handle: Some("arn:acm:new".into()),
                    check_after: Some(datetime!(2026-11-22 12:30 UTC)),
                    ..Deployed::default()
                });
            }
            Ok(Deployed {
                handle: Some("arn:acm:new".into()),
                replaced: Some("arn:acm:old".into()),
                added: false,
                check_after: None,
                prove_first: None,
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
        ) -> Result<Option<String>, DeployError> {
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
            Ok(None)
        }
    }

    struct Estate(BTreeMap<String, Arc<Balancer>>);

    #[async_trait]
    impl TargetFactory for Estate {
        async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
            Ok(Box::new(Listener(self.0[&unit.name].clone())))
        }
    }

    /// A load-balancer kind, as a descriptor says.
    fn lb_kind() -> KindDescriptor {
        KindDescriptor {
            kind: "test-lb",
            family: "test",
            summary: "a load balancer",
            settings: Vec::new(),
            default_verify_deadline: Duration::from_millis(0),
            permissions: Vec::new(),
            key_types: KeyType::ALL.to_vec(),
            key_delivery: KeyDelivery::InRequest,
            runs_in: RunsIn::Anywhere,
            binds: true,
            can_roll_back: true,
            serves_only_with: None,
            check: None,
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
            key_holder: None,
            stacked: vec![],
        }
    }

    /// A certificate renewed from `old` to `new`, deployed to `lbs` (each served by
    /// `<lb>.example.com`, currently serving `old`).
    async fn setup(
        lbs: &[(&str, bool, bool)],
    ) -> (DeployService, Arc<MemoryCertificates>, Arc<Estate>) {
        setup_with(lbs, |_| {}).await
    }

    async fn setup_with(
        lbs: &[(&str, bool, bool)],
        tune: impl Fn(&mut Balancer),
    ) -> (DeployService, Arc<MemoryCertificates>, Arc<Estate>) {
        setup_in(lbs, tune, true).await
    }

    /// `setup_with`, in the CLI on the host (`on_host`) or in the deploy function. A
    /// deployment whose name starts with `vm` is of a host-only kind.
    async fn setup_in(
        lbs: &[(&str, bool, bool)],
        tune: impl Fn(&mut Balancer),
        on_host: bool,
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
            .map(|(name, _, _)| {
                let kind = if name.starts_with("vm") {
                    "test-host"
                } else {
                    "test-lb"
                };
                Deployment::new(name, kind)
                    .with_endpoint(format!("{name}.example.com").parse().expect("target"))
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
                    let mut lb = Balancer {
                        frozen: *frozen,
                        refuse: *refuse,
                        ..Balancer::default()
                    };
                    tune(&mut lb);
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
        let mut targets = DeployTargets::new();
        targets.register(lb_kind(), estate.clone());
        targets.register(
            KindDescriptor {
                kind: "test-host",
                runs_in: RunsIn::Host,
                key_delivery: KeyDelivery::File,
                ..lb_kind()
            },
            estate.clone(),
        );
        let service = DeployService::new(
            store.clone(),
            secrets,
            Arc::new(targets),
            VerifyService::new(scanner),
            clock,
            DeploySettings {
                interval: Duration::from_millis(1),
                max_deadline: None,
                on_host,
            },
        );
        (service, store, estate)
    }

    fn calls(estate: &Estate, lb: &str) -> Vec<String> {
        estate.0[lb].calls.lock().expect("lock").clone()
    }

    #[tokio::test]
    async fn the_deploy_function_leaves_host_only_kinds_to_the_cli_on_the_host() {
        let lbs = [("alb", false, false), ("vm", false, false)];
        let (service, store, estate) = setup_in(&lbs, |_| {}, false).await;
        let report = service.deploy("shop", None, false).await.expect("deploy");
        let vm = report.targets.iter().find(|t| t.name == "vm").expect("vm");
        assert!(vm.unchanged, "{report:#?}");
        assert!(
            vm.state
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("which this runner cannot reach")),
            "the report says why: {vm:?}"
        );
        assert!(calls(&estate, "vm").is_empty(), "nothing ran for the VM");
        assert!(
            report
                .targets
                .iter()
                .any(|t| t.name == "alb" && t.is_verified())
        );
        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("cert");
        assert!(
            cert.deployment_record("vm").is_none(),
            "no failure recorded"
        );

        // On the host the same deployment is installed.
        let (service, _, estate) = setup_in(&lbs, |_| {}, true).await;
        let report = service.deploy("shop", None, false).await.expect("deploy");
        assert!(report.is_verified(), "{report:#?}");
        assert_eq!(calls(&estate, "vm").len(), 2, "deployed and finished");
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
            cert.deployments[0].state.handle.as_deref(),
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
        assert_eq!(stuck.state.status, DeploymentStatus::NotServing);
        assert_eq!(stuck.rolled_back, Some(true));
        let detail = stuck.state.detail.as_deref().expect("detail");
        assert!(
            detail.contains("stuck.example.com:443 (10.0.0.1:443) serves old"),
            "{detail}"
        );
        assert_eq!(
            calls(&estate, "stuck"),
            ["deploy new", "roll_back to old after true"]
        );
        assert_eq!(report.targets[0].state.status, DeploymentStatus::Verified);

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
        assert_eq!(rec.state.holding.as_deref(), Some("old"));
        assert_eq!(service.pending().await.expect("pending"), ["shop"]);
    }

    #[tokio::test]
    async fn a_refused_deploy_fails_and_puts_the_previous_back() {
        let (service, store, estate) = setup(&[("alb", false, true)]).await;
        let report = service.deploy("shop", None, false).await.expect("deploy");
        assert_eq!(report.targets[0].state.status, DeploymentStatus::Failed);
        assert!(
            report.targets[0]
                .state
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
        assert_eq!(cert.deployments[0].state.status, DeploymentStatus::Failed);
    }

    #[tokio::test]
    async fn a_rollback_by_hand_is_recorded_and_left_alone_by_scheduled_deploys() {
        let (service, store, estate) = setup(&[("alb", false, false)]).await;
        service.deploy("shop", None, false).await.expect("deploy");
        let reports = service.roll_back("shop", None).await.expect("rollback");
        assert_eq!(reports[0].state.status, DeploymentStatus::RolledBack);
        assert_eq!(*estate.0["alb"].serving.lock().expect("lock"), "old");
        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        assert_eq!(cert.deployments[0].state.holding.as_deref(), Some("old"));
        assert!(service.pending().await.expect("pending").is_empty());
        assert!(matches!(
            service.roll_back("shop", Some("cdn")).await,
            Err(DeployServiceError::NoDeployment { .. })
        ));
    }

    #[tokio::test]
    async fn an_outage_in_one_unit_is_rolled_back_there_alone() {
        let (service, store, estate) =
            setup(&[("alb", false, false), ("stuck", true, false)]).await;
        let mut cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        let mut fleet = Deployment::new("fleet", "test-lb");
        fleet.units = ["alb", "stuck"]
            .iter()
            .map(|name| crate::model::deploy::UnitSpec {
                name: (*name).into(),
                settings: Default::default(),
                endpoints: vec![format!("{name}.example.com").parse().expect("target")],
            })
            .collect();
        cert.spec.deployments = vec![fleet];
        store.update_certificate(&cert).await.expect("update");

        let report = service.deploy("shop", None, false).await.expect("deploy");
        let fleet = &report.targets[0];
        assert_eq!(fleet.state.status, DeploymentStatus::NotServing);
        assert_eq!(fleet.units.len(), 2);
        assert_eq!(fleet.units[0].state.status, DeploymentStatus::Verified);
        assert_eq!(fleet.units[1].state.status, DeploymentStatus::NotServing);
        assert_eq!(
            calls(&estate, "alb"),
            ["deploy new", "finish Some(\"arn:acm:old\")"]
        );
        assert_eq!(
            calls(&estate, "stuck"),
            ["deploy new", "roll_back to old after true"]
        );
        assert_eq!(*estate.0["alb"].serving.lock().expect("lock"), "new");

        // The next run leaves the verified unit alone and tries the other again.
        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        let rec = cert.deployment_record("fleet").expect("record");
        assert_eq!(rec.units.len(), 2);
        assert!(
            rec.state
                .detail
                .as_deref()
                .expect("detail")
                .starts_with("stuck: "),
            "{rec:?}"
        );
        service.deploy("shop", None, false).await.expect("again");
        assert_eq!(calls(&estate, "alb").len(), 2, "verified unit untouched");
        assert_eq!(calls(&estate, "stuck").len(), 4);
    }

    #[tokio::test]
    async fn a_slow_target_is_in_progress_and_the_run_after_check_after_resumes_it() {
        let (service, store, estate) =
            setup_with(&[("cdn", false, false)], |lb| lb.slow = true).await;
        let report = service.deploy("shop", None, false).await.expect("deploy");
        assert_eq!(report.targets[0].state.status, DeploymentStatus::InProgress);
        assert_eq!(
            report.targets[0].state.check_after,
            Some(datetime!(2026-11-22 12:30 UTC))
        );
        assert!(
            report.targets[0].checks.is_empty(),
            "nothing waited for the rollout"
        );
        // Before check_after: not pending, and a deploy leaves it alone.
        assert!(service.pending().await.expect("pending").is_empty());
        let again = service.deploy("shop", None, false).await.expect("deploy");
        assert!(again.targets[0].unchanged);
        assert_eq!(calls(&estate, "cdn").len(), 1);

        // After check_after, the next run resumes and proves it.
        let later = service.with_clock(Arc::new(FixedClock(datetime!(2026-11-22 12:31 UTC))));
        assert_eq!(later.pending().await.expect("pending"), ["shop"]);
        let done = later.deploy("shop", None, false).await.expect("deploy");
        assert!(done.is_verified(), "{done:?}");
        let cert = store
            .certificate("shop")
            .await
            .expect("load")
            .expect("there");
        assert!(cert.is_deployed());
        assert_eq!(cert.deployments[0].state.check_after, None);
    }

    #[tokio::test]
    async fn the_key_reaches_only_kinds_that_take_it() {
        let (service, _store, _estate) = setup(&[("alb", false, false)]).await;
        let cert = service.load("shop").await.expect("load");
        let material = service
            .material(&cert, cert.current.as_ref().expect("current"))
            .await
            .expect("material");
        let d = &cert.spec.deployments[0];
        assert!(service.key_for(d, &material).key.is_some());
        let mut kind = lb_kind();
        kind.kind = "webhook-like";
        kind.key_delivery = KeyDelivery::None;
        let mut targets = DeployTargets::new();
        targets.register(kind, Arc::new(Estate(BTreeMap::new())));
        let mut without = service.clone();
        without.targets = Arc::new(targets);
        let hook = Deployment::new("hook", "webhook-like");
        assert!(without.key_for(&hook, &material).key.is_none());
    }
}
