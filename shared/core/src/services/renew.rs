//! Renewing managed certificates: a crash-safe state machine under a lease.
//!
//! A renewal walks [`RenewalStep`]s — key generated and stored, order created, challenges
//! published, validated, finalized, certificate stored — and persists the record after each
//! one, with the order URL and the pending key's SecretStore version. Every write is
//! conditional on the record's version and made while holding the record's lease, so:
//!
//! - killing the process at any point and running again resumes the same order with the same
//!   key (the steps are idempotent at the CA);
//! - two renewals started together take the lease once: the loser sees the winner's lease and
//!   reports [`RenewOutcome::Busy`], and only one order exists.
//!
//! Whether to renew at all is [`crate::policy::renewal`]: ARI when the CA offers it, else a
//! share of the lifetime, with exponential backoff after failures and a budget that keeps
//! automatic retries from spending the CA's duplicate-certificate limit.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::model::certificate::{
    FailureKind, IssuedCertificate, ManagedCertificate, RenewalFailure, RenewalJob, RenewalStep,
};
use crate::model::certificate::{StackedCertificate, TargetCsr};
use crate::model::deploy::Unit;
use crate::policy::renewal;
use crate::ports::{
    CertificateStore, Clock, DeployTargets, DownloadedCertificate, IssueError, IssuedSink, Issuer,
    KeySource, Liveness, SecretError, SecretStore, SecretVersion, StoreError, TargetCsrs,
};
use crate::services::lease::{LeaseError, Leases};

/// Settings of the renew service.
#[derive(Clone, Copy, Debug)]
pub struct RenewSettings {
    /// How long a lease lasts without being extended. Each persisted step extends it, and so
    /// does a heartbeat every third of it while a step runs, so only a worker that stopped
    /// (killed, hung, cut off from the store) loses it.
    pub lease: Duration,
    /// Renewals run at once by [`RenewService::renew_due`].
    pub concurrency: usize,
    /// Time one renewal may need to finish: [`RenewService::renew_due_until`] starts no
    /// renewal with less than this left before its deadline.
    pub renewal_budget: Duration,
    /// How long one renewal may spend with the CA, from the new key to the downloaded
    /// certificate. A CA that stalls mid-order fails the step in flight when it runs out: the
    /// failure is recorded, the lease released, and the next run resumes from the last step
    /// completed. (Announcing the certificate, a deploy hook, is bounded by its own timeout.)
    pub deadline: Duration,
}

impl Default for RenewSettings {
    fn default() -> Self {
        RenewSettings {
            lease: Duration::from_secs(600),
            concurrency: 16,
            renewal_budget: Duration::from_secs(180),
            deadline: Duration::from_secs(600),
        }
    }
}

/// What a renewal did. It serializes as every front prints it: `outcome` in snake_case and
/// the facts beside it (see [`report`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RenewOutcome {
    /// A new certificate was issued, stored and announced.
    Issued {
        /// Its fingerprint.
        fingerprint: String,
        /// Its expiry.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// Not time yet.
    NotDue {
        /// When it will be looked at again.
        #[serde(rename = "next_check", with = "time::serde::rfc3339")]
        next_check_at: OffsetDateTime,
    },
    /// Renewal is due but waits (the duplicate-certificate budget is spent).
    Deferred {
        /// Until when.
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
        /// Why.
        reason: String,
    },
    /// Not started: too little time was left before the caller's deadline. It stays due.
    Postponed,
    /// The last attempt failed; the next waits until `until` (exponential backoff, or the
    /// CA's `Retry-After`). `--force` tries again now.
    BackingOff {
        /// When the next attempt is due.
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
        /// Failed attempts in a row.
        failures: u32,
        /// What the last attempt said.
        last_error: String,
    },
    /// Another worker holds the lease.
    Busy {
        /// The other worker.
        owner: String,
        /// Until when its lease runs.
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
}

impl RenewOutcome {
    /// The outcome's snake_case name (`issued`, `not_due`…).
    pub fn name(&self) -> &'static str {
        match self {
            RenewOutcome::Issued { .. } => "issued",
            RenewOutcome::NotDue { .. } => "not_due",
            RenewOutcome::Deferred { .. } => "deferred",
            RenewOutcome::Postponed => "postponed",
            RenewOutcome::BackingOff { .. } => "backing_off",
            RenewOutcome::Busy { .. } => "busy",
        }
    }

    /// The outcome in words, with what to do next where there is something.
    pub fn describe(&self, id: &str) -> String {
        let at = |t: &OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        match self {
            RenewOutcome::Issued {
                fingerprint,
                not_after,
            } => format!("expires {}, sha256 {fingerprint}", at(not_after)),
            RenewOutcome::NotDue { next_check_at } => format!("next check {}", at(next_check_at)),
            RenewOutcome::Deferred { until, reason } => format!("until {}: {reason}", at(until)),
            RenewOutcome::Postponed => "not started: too little time left".to_owned(),
            RenewOutcome::BackingOff {
                until,
                failures,
                last_error,
            } => format!(
                "{failures} failed attempt(s); next try {}; last: {last_error}; `certpilot renew {id} --force` tries now",
                at(until)
            ),
            RenewOutcome::Busy { owner, until } => format!(
                "being renewed by {owner} (lease until {}); run again once it ends",
                at(until)
            ),
        }
    }
}

/// One certificate's renewal result as every front prints it (the CLI's JSON rows, the
/// renew function's answer): `id`, `outcome` and its facts, or for a failure `error`,
/// `error_kind`, `error_class` and the CA's `problem` document.
pub fn report(id: &str, result: &Result<RenewOutcome, RenewError>) -> serde_json::Value {
    let mut value = match result {
        Ok(outcome) => serde_json::to_value(outcome).unwrap_or_default(),
        Err(e) => serde_json::json!({
            "outcome": "failed",
            "error": e.to_string(),
            "error_kind": e.kind(),
            "error_class": crate::error::Classify::class(e),
            "problem": match e {
                RenewError::Issue { error, .. } => error.problem().cloned(),
                _ => None,
            },
        }),
    };
    if let Some(object) = value.as_object_mut() {
        object.insert("id".into(), serde_json::Value::String(id.to_owned()));
    }
    value
}

/// Why a renewal failed. The record keeps the failure too (`renewal.last_error`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenewError {
    /// No certificate has this id.
    #[error("no managed certificate {0:?}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The secret store failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The CA failed at a step.
    #[error("{id}: {step}: {error}")]
    Issue {
        /// The certificate.
        id: String,
        /// The step that failed (`None`: before the first).
        step: String,
        /// What the CA said.
        error: IssueError,
    },
    /// Announcing the new certificate failed (it is stored; announcing is retried).
    #[error("{id}: announcing the new certificate failed: {error}")]
    Announce {
        /// The certificate.
        id: String,
        /// What failed.
        error: crate::ports::AnnounceError,
    },
    /// Another worker took the lease while this one was working (it was too slow).
    #[error("{0}: lost the lease to another worker")]
    LeaseLost(String),
}

impl From<LeaseError> for RenewError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::Store(e) => RenewError::Store(e),
            LeaseError::NotFound(id) => RenewError::NotFound(id),
            LeaseError::Lost(id) | LeaseError::Busy { id, .. } => RenewError::LeaseLost(id),
        }
    }
}

impl RenewError {
    /// The kind of failure, for records, JSON output and alerts.
    pub fn kind(&self) -> FailureKind {
        match self {
            RenewError::Issue { error, .. } => error.kind(),
            RenewError::Store(_) => FailureKind::Store,
            RenewError::Secret(_) => FailureKind::SecretStore,
            RenewError::Announce { .. } => FailureKind::Announce,
            RenewError::NotFound(_) => FailureKind::NotFound,
            RenewError::LeaseLost(_) => FailureKind::LeaseLost,
        }
    }
}

/// The renew use case.
#[derive(Clone)]
pub struct RenewService {
    certificates: Arc<dyn CertificateStore>,
    secrets: Arc<dyn SecretStore>,
    issuer: Arc<dyn Issuer>,
    sink: Option<Arc<dyn IssuedSink>>,
    clock: Arc<dyn Clock>,
    leases: Leases,
    settings: RenewSettings,
    acm: Option<crate::services::acm::AcmService>,
    targets: Option<Arc<DeployTargets>>,
}

impl RenewService {
    /// Reaches the deploy targets that keep keys (an Akamai enrollment) for their CSRs.
    pub fn with_targets(mut self, targets: Arc<DeployTargets>) -> Self {
        self.targets = Some(targets);
        self
    }

    /// Also renews certificates issued by ACM, through `acm`.
    pub fn with_acm(mut self, acm: crate::services::acm::AcmService) -> Self {
        self.acm = Some(acm);
        self
    }

    /// Checks the certificate ACM issued as `arn` now (an ACM expiry or renewal event);
    /// `Ok(None)` when certpilot does not manage it.
    ///
    /// The ARN may be one ACM issued for a certificate (checked at once), or one certpilot
    /// imports into at a deployment: ACM warns about those too as they near expiry, and the
    /// certificate is then checked on its own schedule (renewed if due).
    pub async fn renew_acm_arn(
        &self,
        arn: &str,
    ) -> Result<Option<(String, RenewOutcome)>, RenewError> {
        let certificates = self.certificates.certificates().await?;
        let issued = certificates
            .iter()
            .find(|c| c.acm.as_ref().is_some_and(|a| a.arn == arn));
        let imported = || {
            certificates.iter().find(|c| {
                c.deployments.iter().any(|d| d.handles().any(|h| h == arn))
                    || c.spec
                        .deployments
                        .iter()
                        .any(|d| d.settings.values().any(|v| v.as_str() == Some(arn)))
            })
        };
        let (id, force) = match (issued, imported()) {
            (Some(c), _) => (c.id.clone(), true),
            (None, Some(c)) => (c.id.clone(), false),
            (None, None) => return Ok(None),
        };
        let outcome = self.renew(&id, force).await?;
        Ok(Some((id, outcome)))
    }

    /// Wires the use case; `owner` identifies this worker in leases (unique per process or
    /// invocation).
    pub fn new(
        certificates: Arc<dyn CertificateStore>,
        secrets: Arc<dyn SecretStore>,
        issuer: Arc<dyn Issuer>,
        sink: Option<Arc<dyn IssuedSink>>,
        clock: Arc<dyn Clock>,
        owner: impl Into<String>,
        settings: RenewSettings,
    ) -> Self {
        let leases = Leases::new(certificates.clone(), clock.clone(), owner, settings.lease);
        RenewService {
            certificates,
            secrets,
            issuer,
            sink,
            clock,
            leases,
            settings,
            acm: None,
            targets: None,
        }
    }

    /// Lets the service take over at once a lease whose owner `liveness` knows to be gone (a
    /// killed process of this host), instead of waiting for the lease to lapse.
    pub fn with_liveness(mut self, liveness: Arc<dyn Liveness>) -> Self {
        self.leases = self.leases.with_liveness(liveness);
        self
    }

    /// The leases this service takes (a deploy after the renewal takes the same).
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Renews every certificate due now, `concurrency` at a time; one result per certificate.
    pub async fn renew_due(
        &self,
    ) -> Result<Vec<(String, Result<RenewOutcome, RenewError>)>, RenewError> {
        self.renew_due_until(None).await
    }

    /// Like [`RenewService::renew_due`], but starts no renewal once less than the renewal
    /// budget is left before `deadline` (a Lambda invocation's end): those are
    /// [`RenewOutcome::Postponed`] and stay due for the next run. A renewal cut short anyway
    /// resumes from its last persisted step.
    pub async fn renew_due_until(
        &self,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<(String, Result<RenewOutcome, RenewError>)>, RenewError> {
        let due = self.certificates.certificates_due(self.clock.now()).await?;
        let ids = due.into_iter().map(|c| c.id).collect();
        Ok(self.renew_many(ids, false, deadline).await)
    }

    /// Renews each of `ids` (if due, or whatever the schedule with `force`), `concurrency` at
    /// a time; one result per id, in the order they finish.
    pub async fn renew_all(
        &self,
        ids: Vec<String>,
        force: bool,
    ) -> Vec<(String, Result<RenewOutcome, RenewError>)> {
        self.renew_many(ids, force, None).await
    }

    async fn renew_many(
        &self,
        ids: Vec<String>,
        force: bool,
        deadline: Option<tokio::time::Instant>,
    ) -> Vec<(String, Result<RenewOutcome, RenewError>)> {
        let budget = self.settings.renewal_budget;
        futures::stream::iter(ids.into_iter().map(|id| {
            let this = self.clone();
            async move {
                if deadline.is_some_and(|d| tokio::time::Instant::now() + budget > d) {
                    return (id, Ok(RenewOutcome::Postponed));
                }
                let result = this.renew_before(&id, force, deadline).await;
                (id, result)
            }
        }))
        .buffer_unordered(self.settings.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
    }

    /// Renews `id` if it is due (or resumes its renewal in flight); `force` renews now
    /// whatever the schedule, still within the CA's duplicate limit.
    pub async fn renew(&self, id: &str, force: bool) -> Result<RenewOutcome, RenewError> {
        self.renew_before(id, force, None).await
    }

    /// [`RenewService::renew`], with the CA steps ending by `deadline` at the latest.
    async fn renew_before(
        &self,
        id: &str,
        force: bool,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<RenewOutcome, RenewError> {
        let mut cert = self.load(id).await?;
        let now = self.clock.now();
        // A live worker's renewal is never reported as "not due": it is running.
        if let Some(lease) = self.leases.held_elsewhere(&cert) {
            return Ok(RenewOutcome::Busy {
                owner: lease.owner.clone(),
                until: lease.until,
            });
        }
        if !force && cert.renewal.next_check_at > now {
            // A failed attempt (even of a renewal in flight) waits out its backoff.
            if let Some(failure) = &cert.renewal.last_error {
                return Ok(RenewOutcome::BackingOff {
                    until: cert.renewal.next_check_at,
                    failures: cert.renewal.failures,
                    last_error: failure.message.clone(),
                });
            }
            // An unfinished renewal is always due: it was interrupted, not failed.
            if cert.renewal.job.is_none() {
                return Ok(RenewOutcome::NotDue {
                    next_check_at: cert.renewal.next_check_at,
                });
            }
        }
        if cert.spec.acm.is_some() {
            return match &self.acm {
                Some(acm) => acm.check(cert).await,
                None => Err(RenewError::Issue {
                    id: id.to_owned(),
                    step: "acm".into(),
                    error: IssueError::Config(
                        "this certificate is issued by ACM, which this runner is not set up to reach"
                            .into(),
                    ),
                }),
            };
        }
        if cert.renewal.job.is_none() {
            if !force && let Some(next) = self.not_yet(&mut cert, now).await? {
                return Ok(RenewOutcome::NotDue {
                    next_check_at: next,
                });
            }
            let counted = self.issuances_of(&cert, now).await?;
            if let Err(until) = renewal::may_order(&counted, now, force) {
                cert.renewal.next_check_at = until;
                self.certificates.update_certificate(&cert).await?;
                let reason = renewal::deferral_reason(counted.len(), force);
                warn!(id, %until, "renewal deferred: {reason}");
                return Ok(RenewOutcome::Deferred { until, reason });
            }
        }
        let cert = match self.take_lease(cert).await? {
            Ok(cert) => cert,
            Err(busy) => return Ok(busy),
        };
        let own = tokio::time::Instant::now() + self.settings.deadline;
        self.run(cert, deadline.map_or(own, |d| d.min(own))).await
    }

    /// Issuances the CA's duplicate limit counts for `cert`'s names: every certificate
    /// issued for exactly this name set in the window, under any id, before or after a
    /// `remove` and `add` — the CA counts per name set, not per record.
    async fn issuances_of(
        &self,
        cert: &ManagedCertificate,
        now: OffsetDateTime,
    ) -> Result<Vec<OffsetDateTime>, RenewError> {
        let names = cert.spec.name_set();
        let mut counted = self
            .certificates
            .issuances(&names, now - renewal::DUPLICATE_WINDOW)
            .await?;
        // Records written before the log existed keep their own history.
        counted.extend(renewal::recent_issuances(
            &cert.renewal.recent_issuances,
            now,
        ));
        counted.sort();
        counted.dedup();
        Ok(counted)
    }

    /// Gives up every lease this worker holds (on SIGINT or SIGTERM), so that the next run
    /// resumes those renewals at once; they stay due. Returns their ids.
    pub async fn release_leases(&self) -> Result<Vec<String>, RenewError> {
        Ok(self.leases.release_all().await?)
    }

    async fn load(&self, id: &str) -> Result<ManagedCertificate, RenewError> {
        self.certificates
            .certificate(id)
            .await?
            .ok_or_else(|| RenewError::NotFound(id.to_owned()))
    }

    /// With a current certificate, asks ARI and the policy; `Some(next)` when renewal is not
    /// due yet (the record is updated with the next check).
    async fn not_yet(
        &self,
        cert: &mut ManagedCertificate,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, RenewError> {
        let Some(current) = cert.current.clone() else {
            return Ok(None);
        };
        let ari = match self.issuer.renewal_info(&cert.spec, &current).await {
            Ok(ari) => ari,
            Err(e) => {
                // ARI is advice: without it the lifetime policy still protects the cert.
                warn!(id = %cert.id, error = %e, "renewal information unavailable");
                None
            }
        };
        let window = ari.map(|(w, _)| w);
        let renew_at = renewal::renew_at(&current, cert.spec.renewal, window.as_ref(), &cert.id);
        if renew_at <= now {
            return Ok(None);
        }
        cert.renewal.ari_window = window;
        cert.renewal.next_check_at =
            renewal::next_check_at(now, renew_at, ari.is_some(), ari.map(|(_, r)| r));
        *cert = self.certificates.update_certificate(cert).await?;
        Ok(Some(cert.renewal.next_check_at))
    }

    /// Takes the lease with a conditional write; `Err(Busy)` when another worker holds it.
    /// A renewal under a lease is due now, so that if this worker dies the next routine run
    /// resumes it (a forced renewal's record may say "not before next month").
    async fn take_lease(
        &self,
        cert: ManagedCertificate,
    ) -> Result<Result<ManagedCertificate, RenewOutcome>, RenewError> {
        let taken = self
            .leases
            .take(cert, |c, now| {
                c.renewal.next_check_at = c.renewal.next_check_at.min(now);
            })
            .await;
        match taken {
            Ok(cert) => Ok(Ok(cert)),
            Err(LeaseError::Busy { owner, until, .. }) => {
                Ok(Err(RenewOutcome::Busy { owner, until }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Persists `cert`, extending the lease. An edit made meanwhile by someone else (tags,
    /// endpoints) is kept: the renewal state and current certificate are re-applied on top,
    /// as long as the lease is still ours.
    async fn save(&self, cert: &mut ManagedCertificate) -> Result<(), RenewError> {
        for _ in 0..3 {
            if cert.renewal.lease.is_some() {
                cert.renewal.lease = Some(self.leases.from(self.clock.now()));
            }
            match self.certificates.update_certificate(cert).await {
                Ok(stored) => {
                    *cert = stored;
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => {
                    let mut fresh = self.load(&cert.id).await?;
                    if !self.leases.holds(&fresh) {
                        return Err(RenewError::LeaseLost(cert.id.clone()));
                    }
                    fresh.renewal = cert.renewal.clone();
                    fresh.current = cert.current.clone();
                    *cert = fresh;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RenewError::LeaseLost(cert.id.clone()))
    }

    async fn run(
        &self,
        mut cert: ManagedCertificate,
        deadline: tokio::time::Instant,
    ) -> Result<RenewOutcome, RenewError> {
        let mut published_here = false;
        let mut new_orders = 0;
        loop {
            let step = cert.renewal.job.as_ref().map(|j| j.step);
            let id = cert.id.clone();
            let directory = crate::model::certificate::redact_url(&cert.spec.issuer.directory);
            let work = self.step(&mut cert, &mut published_here);
            let done = if step == Some(RenewalStep::CertificateStored) {
                // The CA is done; the announcement (a hook) has its own bound.
                self.leases.heartbeat(&id, work).await
            } else {
                let bounded = async {
                    tokio::time::timeout_at(deadline, work)
                        .await
                        .unwrap_or_else(|_| Err(self.out_of_time(&id, &directory, step)))
                };
                self.leases.heartbeat(&id, bounded).await
            };
            match done {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => {}
                Err(RenewError::Issue {
                    error: IssueError::OrderGone(why),
                    ..
                }) if new_orders < 2 => {
                    // The CA dropped the order (expired, deactivated): same key, new order.
                    warn!(id = %cert.id, %why, "order gone; creating a new one");
                    new_orders += 1;
                    published_here = false;
                    if let Some(job) = cert.renewal.job.as_mut() {
                        job.step = RenewalStep::KeyStored;
                        job.order_url = None;
                    }
                    self.save(&mut cert).await?;
                }
                Err(e) => return Err(self.fail(cert, step, e).await),
            }
        }
    }

    /// Runs the step after the last one completed; `Some` when the renewal is finished.
    async fn step(
        &self,
        cert: &mut ManagedCertificate,
        published_here: &mut bool,
    ) -> Result<Option<RenewOutcome>, RenewError> {
        // The directory is named: an estate may use several CAs.
        let directory = crate::model::certificate::redact_url(&cert.spec.issuer.directory);
        let issue = |step: &str, error: IssueError| RenewError::Issue {
            id: cert.id.clone(),
            step: format!("{step} at {directory}"),
            error,
        };
        let key_name = cert.key_secret_name();
        let Some(job) = cert.renewal.job.clone() else {
            if let Some(unit) = self.key_holding_unit(cert)? {
                return self.start_keyless(cert, &unit).await;
            }
            let key = self
                .issuer
                .generate_key(cert.spec.key_type)
                .await
                .map_err(|e| issue("generate key", e))?;
            // The key is safe in the SecretStore before the CA ever sees a CSR for it.
            let key_version = self.secrets.put_pending(&key_name, &key).await?;
            cert.renewal.job = Some(RenewalJob {
                step: RenewalStep::KeyStored,
                started_at: self.clock.now(),
                key_version,
                order_url: None,
                profile: None,
                replaces: None,
                csrs: vec![],
                issued: vec![],
            });
            self.save(cert).await?;
            info!(id = %cert.id, "renewal: key stored");
            return Ok(None);
        };
        // For a target's CSRs, the one being issued now (each gets its own order).
        let csr = job.csrs.get(job.issued.len()).cloned();
        let order_url = job.order_url.clone().unwrap_or_default();
        let next = match job.step {
            RenewalStep::KeyStored => {
                let replaces = match job.issued.len() {
                    0 => cert.current.as_ref().and_then(|c| c.ari_id.clone()),
                    // A stacked certificate replaces the one of its key algorithm.
                    _ => cert.current.as_ref().and_then(|c| {
                        let key_type = csr.as_ref().map(|c| c.key_type)?;
                        c.stacked
                            .iter()
                            .find(|s| s.key_type == key_type)
                            .and_then(|s| s.ari_id.clone())
                    }),
                };
                let created = match self
                    .issuer
                    .create_order(&cert.spec, replaces.as_deref())
                    .await
                {
                    // `replaces` is advice to the CA (it exempts the renewal from some rate
                    // limits); an order naming it that fails for any reason but a rate limit
                    // is tried once without it rather than failing the renewal. Pebble, for
                    // one, cannot always look the replaced certificate up under load.
                    Err(e)
                        if replaces.is_some() && !matches!(e, IssueError::RateLimited { .. }) =>
                    {
                        warn!(id = %cert.id, error = %e, "ordering without `replaces`");
                        self.issuer.create_order(&cert.spec, None).await
                    }
                    other => other,
                }
                .map_err(|e| issue("create order", e))?;
                let job = cert.renewal.job.as_mut().expect("job exists");
                job.order_url = Some(created.url);
                job.profile = created.profile;
                job.replaces = created.replaces;
                RenewalStep::OrderCreated
            }
            RenewalStep::OrderCreated => {
                self.issuer
                    .publish_challenges(&cert.spec, &order_url)
                    .await
                    .map_err(|e| issue("publish challenges", e))?;
                *published_here = true;
                RenewalStep::ChallengesPublished
            }
            RenewalStep::ChallengesPublished => {
                if !*published_here {
                    // Resumed: the responses died with the previous process.
                    self.issuer
                        .publish_challenges(&cert.spec, &order_url)
                        .await
                        .map_err(|e| issue("publish challenges", e))?;
                }
                self.issuer
                    .await_ready(&cert.spec, &order_url)
                    .await
                    .map_err(|e| issue("validate", e))?;
                RenewalStep::Validated
            }
            RenewalStep::Validated => {
                let key = self.own_key(&key_name, &job, csr.as_ref()).await?;
                let source = key_source(csr.as_ref(), key.as_ref());
                self.issuer
                    .finalize(&cert.spec, &order_url, source)
                    .await
                    .map_err(|e| issue("finalize", e))?;
                RenewalStep::Finalized
            }
            RenewalStep::Finalized => {
                let key = self.own_key(&key_name, &job, csr.as_ref()).await?;
                let source = key_source(csr.as_ref(), key.as_ref());
                let got = self
                    .issuer
                    .download(&cert.spec, &order_url, source)
                    .await
                    .map_err(|e| issue("download", e))?;
                if let Some(asked) = &job.profile
                    && got.profile.as_ref().is_some_and(|p| p != asked)
                {
                    return Err(issue(
                        "download",
                        IssueError::Check(format!(
                            "asked for profile {asked:?}, the CA issued {}",
                            got.profile.as_deref().unwrap_or("no profile")
                        )),
                    ));
                }
                let now = self.clock.now();
                if let Some(c) = &csr
                    && job.issued.len() + 1 < job.csrs.len()
                {
                    // One of several CSRs issued: keep it, and order for the next.
                    self.certificates
                        .record_issuance(&cert.spec.name_set(), &cert.id, now)
                        .await?;
                    let job = cert.renewal.job.as_mut().expect("job exists");
                    job.issued.push(stacked(c, got));
                    job.step = RenewalStep::KeyStored;
                    job.order_url = None;
                    job.profile = None;
                    job.replaces = None;
                    self.save(cert).await?;
                    info!(id = %cert.id, issued = cert.renewal.job.as_ref().map_or(0, |j| j.issued.len()), "renewal: one of the target's CSRs issued");
                    return Ok(None);
                }
                let (primary, others) = match &csr {
                    None => (got, vec![]),
                    Some(c) => {
                        let mut all = job.issued.clone();
                        let profile = got.profile.clone();
                        all.push(stacked(c, got));
                        let first = all.remove(0);
                        (
                            DownloadedCertificate {
                                chain_pem: first.chain_pem,
                                fingerprint: first.fingerprint,
                                serial: first.serial,
                                not_before: first.not_before,
                                not_after: first.not_after,
                                ari_id: first.ari_id,
                                profile,
                            },
                            all,
                        )
                    }
                };
                let key_holder = match &csr {
                    Some(_) => self
                        .key_holding_unit(cert)?
                        .map(|u| format!("{} ({})", u.name, u.kind)),
                    None => None,
                };
                if cert.current.is_some() {
                    cert.previous = cert.current.take();
                }
                cert.current = Some(IssuedCertificate {
                    fingerprint: primary.fingerprint,
                    serial: primary.serial,
                    not_before: primary.not_before,
                    not_after: primary.not_after,
                    issued_at: now,
                    ari_id: primary.ari_id,
                    profile: primary.profile.or(job.profile.clone()),
                    chain_pem: primary.chain_pem,
                    key_version: job.key_version.clone(),
                    order_url: order_url.clone(),
                    key_holder,
                    stacked: others,
                });
                let mut recent = renewal::recent_issuances(&cert.renewal.recent_issuances, now);
                recent.push(now);
                cert.renewal.recent_issuances = recent;
                // Logged per name set before the record moves on: a crash between the two
                // counts an issuance twice, which errs on the side of the CA's limit.
                self.certificates
                    .record_issuance(&cert.spec.name_set(), &cert.id, now)
                    .await?;
                RenewalStep::CertificateStored
            }
            RenewalStep::CertificateStored => {
                // Idempotent: promoting the current version again changes nothing. A key a
                // target keeps has no version here.
                if job.csrs.is_empty() {
                    self.secrets.promote(&key_name, &job.key_version).await?;
                }
                if let Some(sink) = &self.sink {
                    sink.issued(cert)
                        .await
                        .map_err(|error| RenewError::Announce {
                            id: cert.id.clone(),
                            error,
                        })?;
                }
                let now = self.clock.now();
                let current = cert.current.clone().expect("stored before this step");
                let renew_at = renewal::renew_at(&current, cert.spec.renewal, None, &cert.id);
                cert.renewal.job = None;
                cert.renewal.lease = None;
                cert.renewal.failures = 0;
                cert.renewal.last_error = None;
                cert.renewal.ari_window = None;
                // Ask ARI within hours: the CA may want it sooner than the lifetime policy.
                cert.renewal.next_check_at = renewal::next_check_at(now, renew_at, true, None);
                self.save(cert).await?;
                info!(id = %cert.id, fingerprint = %current.fingerprint, not_after = %current.not_after, "renewal: issued");
                return Ok(Some(RenewOutcome::Issued {
                    fingerprint: current.fingerprint,
                    not_after: current.not_after,
                }));
            }
        };
        if let Some(job) = cert.renewal.job.as_mut() {
            job.step = next;
        }
        self.save(cert).await?;
        info!(id = %cert.id, step = %next, "renewal: step done");
        Ok(None)
    }

    /// certpilot's own key of `job`, unless the job signs a target's CSR.
    async fn own_key(
        &self,
        name: &str,
        job: &RenewalJob,
        csr: Option<&TargetCsr>,
    ) -> Result<Option<crate::ports::SecretValue>, RenewError> {
        match csr {
            Some(_) => Ok(None),
            None => Ok(Some(self.key(name, &job.key_version).await?)),
        }
    }

    /// The unit of `cert`'s deployment whose target keeps the key, if it has one.
    fn key_holding_unit(&self, cert: &ManagedCertificate) -> Result<Option<Unit>, RenewError> {
        let holder = |kind: &str| {
            self.targets
                .as_ref()
                .and_then(|t| t.kinds().descriptor(kind).ok())
                .is_some_and(|d| {
                    d.key_delivery == crate::model::deploy_kind::KeyDelivery::HeldByTarget
                })
        };
        let Some(deployment) = cert.spec.deployments.iter().find(|d| holder(&d.kind)) else {
            return Ok(None);
        };
        Ok(deployment
            .resolved_units(&cert.spec.endpoints)
            .into_iter()
            .next())
    }

    /// Starts a renewal whose key a target keeps: its CSRs, once it has them, become the job;
    /// until then the renewal waits (the vendor may take hours to prepare them).
    async fn start_keyless(
        &self,
        cert: &mut ManagedCertificate,
        unit: &Unit,
    ) -> Result<Option<RenewOutcome>, RenewError> {
        let targets = self
            .targets
            .as_ref()
            .expect("a key-holding unit implies the targets");
        let csrs = targets
            .csrs(&cert.id, unit)
            .await
            .map_err(|e| RenewError::Issue {
                id: cert.id.clone(),
                step: format!("fetch the CSR from {} ({})", unit.name, unit.kind),
                error: match e {
                    crate::ports::DeployError::Unavailable(m) => IssueError::Unavailable(m),
                    crate::ports::DeployError::Config(m) => IssueError::Config(m),
                    other => IssueError::Rejected {
                        detail: other.to_string(),
                        problem: None,
                    },
                },
            })?;
        match csrs {
            TargetCsrs::NotYet {
                check_after,
                detail,
            } => {
                cert.renewal.next_check_at = check_after;
                cert.renewal.lease = None;
                self.save(cert).await?;
                info!(id = %cert.id, %check_after, %detail, "renewal: waiting for the target's CSR");
                Ok(Some(RenewOutcome::Deferred {
                    until: check_after,
                    reason: detail,
                }))
            }
            TargetCsrs::Ready(mut csrs) => {
                if csrs.is_empty() {
                    return Err(RenewError::Issue {
                        id: cert.id.clone(),
                        step: format!("fetch the CSR from {}", unit.name),
                        error: IssueError::Config(format!("{} offered no CSR", unit.kind)),
                    });
                }
                // The certificate's own key algorithm first: it becomes `current`.
                let own = cert.spec.key_type.is_rsa();
                csrs.sort_by_key(|c| (c.key_type.is_rsa() != own, c.key_type.as_str()));
                cert.renewal.job = Some(RenewalJob {
                    step: RenewalStep::KeyStored,
                    started_at: self.clock.now(),
                    key_version: String::new(),
                    order_url: None,
                    profile: None,
                    replaces: None,
                    csrs,
                    issued: vec![],
                });
                self.save(cert).await?;
                info!(id = %cert.id, unit = %unit.name, "renewal: the target's CSRs taken (no key is generated)");
                Ok(None)
            }
        }
    }

    /// The failure of a renewal that ran out of its deadline during the step after `done`.
    fn out_of_time(&self, id: &str, directory: &str, done: Option<RenewalStep>) -> RenewError {
        let step = match done {
            None => "generate key",
            Some(RenewalStep::KeyStored) => "create order",
            Some(RenewalStep::OrderCreated) => "publish challenges",
            Some(RenewalStep::ChallengesPublished) => "validate",
            Some(RenewalStep::Validated) => "finalize",
            Some(RenewalStep::Finalized | RenewalStep::CertificateStored) => "download",
        };
        RenewError::Issue {
            id: id.to_owned(),
            step: format!("{step} at {directory}"),
            error: IssueError::Unavailable(format!(
                "the renewal did not finish within its deadline of {}s; the CA stopped \
                 answering, and the next run resumes from this step",
                self.settings.deadline.as_secs()
            )),
        }
    }

    async fn key(
        &self,
        name: &str,
        version: &str,
    ) -> Result<crate::ports::SecretValue, RenewError> {
        let found = self
            .secrets
            .get(name, &SecretVersion::Id(version.to_owned()))
            .await?;
        found.map(|(_, key)| key).ok_or_else(|| {
            RenewError::Secret(SecretError::NotFound(format!("{name} version {version}")))
        })
    }

    /// Records a failure on the record (backoff, the CA's problem document) and releases the
    /// lease; returns the error for the caller.
    async fn fail(
        &self,
        mut cert: ManagedCertificate,
        step: Option<RenewalStep>,
        error: RenewError,
    ) -> RenewError {
        if matches!(error, RenewError::LeaseLost(_)) {
            return error;
        }
        let now = self.clock.now();
        let kind = error.kind();
        let (problem, retry_after) = match &error {
            RenewError::Issue { error, .. } => (error.problem().cloned(), error.retry_after()),
            _ => (None, None),
        };
        if let RenewError::Issue {
            error: IssueError::Validation { .. },
            ..
        } = &error
        {
            // A failed validation invalidates the order: the next attempt orders again,
            // with the same key.
            if let Some(job) = cert.renewal.job.as_mut() {
                job.step = RenewalStep::KeyStored;
                job.order_url = None;
            }
        }
        cert.renewal.failures = cert.renewal.failures.saturating_add(1);
        cert.renewal.last_error = Some(RenewalFailure {
            at: now,
            step,
            kind,
            message: error.to_string(),
            problem,
        });
        cert.renewal.next_check_at = now + renewal::backoff(cert.renewal.failures, retry_after);
        cert.renewal.lease = None;
        warn!(id = %cert.id, failures = cert.renewal.failures, next = %cert.renewal.next_check_at, error = %error, "renewal failed");
        if let Err(e) = self.save(&mut cert).await {
            warn!(id = %cert.id, error = %e, "could not record the failure");
        }
        error
    }
}

/// What the order is finalized with: the target's CSR, or certpilot's key.
fn key_source<'a>(
    csr: Option<&'a TargetCsr>,
    key: Option<&'a crate::ports::SecretValue>,
) -> KeySource<'a> {
    match (csr, key) {
        (Some(c), _) => KeySource::Csr(&c.csr_pem),
        (None, Some(k)) => KeySource::Key(k),
        (None, None) => unreachable!("own_key reads the key whenever there is no CSR"),
    }
}

/// A downloaded certificate as issued for `csr`.
fn stacked(csr: &TargetCsr, got: DownloadedCertificate) -> StackedCertificate {
    StackedCertificate {
        key_type: csr.key_type,
        fingerprint: got.fingerprint,
        serial: got.serial,
        not_before: got.not_before,
        not_after: got.not_after,
        ari_id: got.ari_id,
        chain_pem: got.chain_pem,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;
    use crate::model::certificate::KeyType;
    use crate::model::deploy::Deployment;
    use crate::model::deploy_kind::{KeyDelivery, KindDescriptor, RunsIn};
    use crate::ports::{DeployError, DeployTarget, NewOrderInfo, SecretValue, TargetFactory};
    use crate::services::test_support::{FixedClock, MemoryCertificates, MemorySecrets, spec};

    const NOW: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);

    /// A CA that signs whatever CSR it is given, remembering each order's `replaces`.
    #[derive(Default)]
    struct Ca {
        replaces: Mutex<Vec<Option<String>>>,
        finalized: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Issuer for Ca {
        async fn generate_key(&self, _: KeyType) -> Result<SecretValue, IssueError> {
            panic!("no key is generated when a target keeps it")
        }
        async fn renewal_info(
            &self,
            _: &crate::model::certificate::CertificateSpec,
            _: &IssuedCertificate,
        ) -> Result<Option<(crate::model::certificate::RenewalWindow, Duration)>, IssueError>
        {
            Ok(None)
        }
        async fn create_order(
            &self,
            _: &crate::model::certificate::CertificateSpec,
            replaces: Option<&str>,
        ) -> Result<NewOrderInfo, IssueError> {
            let mut all = self.replaces.lock().unwrap();
            all.push(replaces.map(str::to_owned));
            Ok(NewOrderInfo {
                url: format!("https://acme.test/order/{}", all.len()),
                profile: None,
                replaces: replaces.map(str::to_owned),
            })
        }
        async fn publish_challenges(
            &self,
            _: &crate::model::certificate::CertificateSpec,
            _: &str,
        ) -> Result<(), IssueError> {
            Ok(())
        }
        async fn await_ready(
            &self,
            _: &crate::model::certificate::CertificateSpec,
            _: &str,
        ) -> Result<(), IssueError> {
            Ok(())
        }
        async fn finalize(
            &self,
            _: &crate::model::certificate::CertificateSpec,
            _: &str,
            key: KeySource<'_>,
        ) -> Result<(), IssueError> {
            let KeySource::Csr(csr) = key else {
                panic!("the target's CSR is sent, not a key of certpilot's")
            };
            self.finalized.lock().unwrap().push(csr.to_owned());
            Ok(())
        }
        async fn download(
            &self,
            _: &crate::model::certificate::CertificateSpec,
            order: &str,
            key: KeySource<'_>,
        ) -> Result<DownloadedCertificate, IssueError> {
            let KeySource::Csr(csr) = key else {
                panic!("checked against the CSR")
            };
            Ok(DownloadedCertificate {
                chain_pem: format!("chain of {csr}"),
                fingerprint: format!("{csr} from {order}"),
                serial: "01".into(),
                not_before: NOW,
                not_after: NOW + time::Duration::days(90),
                ari_id: Some(format!("ari {csr} from {order}")),
                profile: None,
            })
        }
    }

    /// A target that keeps keys: not ready at first, then an ECDSA and an RSA CSR.
    #[derive(Default)]
    struct Holder(Mutex<u32>);

    #[async_trait]
    impl TargetFactory for Holder {
        async fn target(&self, _: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
            Err(DeployError::Config("not deployed here".into()))
        }
        async fn csrs(&self, _: &str, _: &Unit) -> Result<TargetCsrs, DeployError> {
            let mut asked = self.0.lock().unwrap();
            *asked += 1;
            if *asked == 1 {
                return Ok(TargetCsrs::NotYet {
                    check_after: NOW + time::Duration::minutes(5),
                    detail: "the vendor is making its key".into(),
                });
            }
            Ok(TargetCsrs::Ready(vec![
                TargetCsr {
                    key_type: KeyType::EcdsaP256,
                    csr_pem: format!("ecdsa csr {asked}"),
                },
                TargetCsr {
                    key_type: KeyType::Rsa2048,
                    csr_pem: format!("rsa csr {asked}"),
                },
            ]))
        }
    }

    #[tokio::test]
    async fn a_key_kept_by_a_target_is_never_generated_and_each_csr_renews_its_own_certificate() {
        let certificates = Arc::new(MemoryCertificates::default());
        let secrets = Arc::new(MemorySecrets::default());
        let ca = Arc::new(Ca::default());
        let mut targets = DeployTargets::new();
        targets.register(
            KindDescriptor {
                kind: "holder",
                family: "test",
                summary: "keeps keys",
                settings: vec![],
                default_verify_deadline: Duration::from_secs(60),
                permissions: vec![],
                key_types: KeyType::ALL.to_vec(),
                key_delivery: KeyDelivery::HeldByTarget,
                runs_in: RunsIn::Anywhere,
                binds: true,
                can_roll_back: false,
                serves_only_with: None,
                check: None,
            },
            Arc::new(Holder::default()),
        );
        let mut s = spec(&["shop.example"], vec![Deployment::new("edge", "holder")]);
        s.key_type = KeyType::Rsa2048;
        certificates
            .add_certificate(&ManagedCertificate::new("shop".into(), s, NOW))
            .await
            .unwrap();
        let service = RenewService::new(
            certificates.clone(),
            secrets.clone(),
            ca.clone(),
            None,
            Arc::new(FixedClock(NOW)),
            "test",
            RenewSettings::default(),
        )
        .with_targets(Arc::new(targets));

        // Not ready: the renewal waits, holding no lease.
        let waited = service.renew("shop", true).await.unwrap();
        assert!(
            matches!(&waited, RenewOutcome::Deferred { reason, .. } if reason.contains("making its key")),
            "{waited:?}"
        );
        let cert = certificates.certificate("shop").await.unwrap().unwrap();
        assert!(cert.renewal.lease.is_none() && cert.renewal.job.is_none());

        // Ready: one order per CSR, the certificate's own algorithm (RSA) first.
        let issued = service.renew("shop", true).await.unwrap();
        assert!(matches!(issued, RenewOutcome::Issued { .. }), "{issued:?}");
        let cert = certificates.certificate("shop").await.unwrap().unwrap();
        let current = cert.current.clone().unwrap();
        assert_eq!(
            current.fingerprint,
            "rsa csr 2 from https://acme.test/order/1"
        );
        assert_eq!(current.stacked.len(), 1);
        assert_eq!(current.stacked[0].key_type, KeyType::EcdsaP256);
        assert_eq!(current.key_version, "");
        assert_eq!(current.key_holder.as_deref(), Some("edge (holder)"));
        assert!(secrets.0.lock().unwrap().is_empty(), "no key stored");
        assert_eq!(*ca.finalized.lock().unwrap(), ["rsa csr 2", "ecdsa csr 2"]);

        // Renewed: each order replaces the certificate of its own algorithm (ARI).
        let again = service.renew("shop", true).await.unwrap();
        assert!(matches!(again, RenewOutcome::Issued { .. }), "{again:?}");
        assert_eq!(
            *ca.replaces.lock().unwrap(),
            [
                None,
                None,
                Some("ari rsa csr 2 from https://acme.test/order/1".to_owned()),
                Some("ari ecdsa csr 2 from https://acme.test/order/2".to_owned()),
            ]
        );
        let cert = certificates.certificate("shop").await.unwrap().unwrap();
        assert_eq!(cert.previous.unwrap().fingerprint, current.fingerprint);
    }
}
