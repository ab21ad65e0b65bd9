//! Findings as a use case: record what an evaluation found (each transition written once,
//! however many evaluations run at once), and tell people through the channels (each
//! transition sent once to each channel that wants it, retried until accepted).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::model::finding::{Finding, FindingKind, SubjectType, Transition, finding_key};
use crate::model::observation::{ErrorKind, Observation, Status};
use crate::policy::findings::{
    Condition, FindingsPolicy, endpoint_conditions, notified, reconcile,
};
use crate::ports::{
    CertificateStore, Clock, FindingStore, Notification, Notifier, NotifyError, StoreError,
};

/// How long a sender holds a transition it is sending before another may take it over.
pub const CLAIM: Duration = Duration::from_secs(5 * 60);

/// Attempts at one finding's write before giving up to the next run.
const ATTEMPTS: usize = 5;

/// What one round of notifications did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyReport {
    /// (finding key, transition, channel) accepted.
    pub sent: Vec<(String, Transition, String)>,
    /// (finding key, channel, error) not accepted: retried on the next run.
    pub failed: Vec<(String, String, NotifyError)>,
    /// Findings another sender is sending now.
    pub busy: usize,
}

/// Records findings and sends their transitions.
pub struct FindingsService {
    store: Arc<dyn FindingStore>,
    clock: Arc<dyn Clock>,
    policy: FindingsPolicy,
}

impl FindingsService {
    /// Findings in `store`, judged by `policy`.
    pub fn new(
        store: Arc<dyn FindingStore>,
        clock: Arc<dyn Clock>,
        policy: FindingsPolicy,
    ) -> Self {
        FindingsService {
            store,
            clock,
            policy,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &FindingsPolicy {
        &self.policy
    }

    /// Writes what `conditions` change among the stored findings that `in_scope` says this
    /// evaluation speaks for. Reads the active findings once; writes only changes. Returns
    /// the findings written, as stored.
    pub async fn record(
        &self,
        conditions: &[Condition],
        in_scope: &(dyn Fn(&Finding) -> bool + Send + Sync),
    ) -> Result<Vec<Finding>, StoreError> {
        let now = self.clock.now();
        let existing = self.store.active_findings().await?;
        let changed = reconcile(&existing, conditions, in_scope, now, &self.policy);
        let mut written = Vec::new();
        for f in changed {
            if let Some(stored) = self.write(f, conditions, in_scope).await? {
                written.push(stored);
            }
        }
        Ok(written)
    }

    /// Writes `f`; when someone else wrote that finding first (another evaluation, a
    /// sender, a resolved finding to reopen), decides again from what is stored now.
    async fn write(
        &self,
        mut f: Finding,
        conditions: &[Condition],
        in_scope: &(dyn Fn(&Finding) -> bool + Send + Sync),
    ) -> Result<Option<Finding>, StoreError> {
        for _ in 0..ATTEMPTS {
            match self.store.put_finding(&f).await {
                Ok(stored) => return Ok(Some(stored)),
                Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
            let key = f.key.clone();
            let stored: Vec<Finding> = self.store.finding(&key).await?.into_iter().collect();
            let relevant: Vec<Condition> = conditions
                .iter()
                .filter(|c| finding_key(c.kind, &c.subject) == key)
                .cloned()
                .collect();
            let scope = |x: &Finding| x.key == key && in_scope(x);
            match reconcile(&stored, &relevant, &scope, self.clock.now(), &self.policy)
                .into_iter()
                .next()
            {
                Some(next) => f = next,
                // What is stored already says it.
                None => return Ok(None),
            }
        }
        Err(StoreError::Conflict {
            what: format!("finding {:?}", f.key),
            expected: f.version,
        })
    }

    /// An evaluation of a scan's observations, fed one at a time as they stream in: reads
    /// which certificates certpilot manages (their endpoints speak of renewals, not of
    /// expiry) once.
    pub async fn scan_evaluation(
        &self,
        certificates: &dyn CertificateStore,
    ) -> Result<ScanEvaluation, StoreError> {
        let managed = certificates
            .certificates()
            .await?
            .into_iter()
            .filter_map(|c| c.current.map(|i| i.fingerprint))
            .collect();
        Ok(ScanEvaluation {
            managed,
            now: self.clock.now(),
            conditions: Vec::new(),
            served: HashSet::new(),
            scanned: HashSet::new(),
            failed: Vec::new(),
        })
    }

    /// Records the findings of `certificates` (expired, overdue, failed renewal or hook,
    /// each deployment's failure or outage, ACM's blocked renewal): this evaluation speaks
    /// for those certificates and their deployments only.
    pub async fn record_certificates(
        &self,
        certificates: &[crate::model::certificate::ManagedCertificate],
    ) -> Result<Vec<Finding>, StoreError> {
        let now = self.clock.now();
        let conditions: Vec<Condition> = certificates
            .iter()
            .flat_map(|c| crate::policy::findings::certificate_conditions(c, now, &self.policy))
            .collect();
        let ids: HashSet<String> = certificates.iter().map(|c| c.id.clone()).collect();
        let scope = move |f: &Finding| match f.subject.kind {
            SubjectType::Certificate => ids.contains(&f.subject.id),
            SubjectType::Deployment => f
                .subject
                .id
                .split_once('/')
                .is_some_and(|(id, _)| ids.contains(id)),
            SubjectType::Endpoint | SubjectType::Schedule => false,
        };
        self.record(&conditions, &scope).await
    }

    /// Records whether the scheduled scan fell silent, given when the last full sweep of the
    /// registered endpoints finished ([`Store::last_tick`](crate::ports::Store::last_tick)):
    /// opens `scan_stale` past twice the scan interval, resolves it once sweeps resume.
    /// Every run that does not sweep (renewals, deploys, verifications, the CLI's reports)
    /// checks it, so a stopped scanner is noticed by the jobs that still run.
    pub async fn record_schedule(
        &self,
        last_sweep: Option<time::OffsetDateTime>,
    ) -> Result<Vec<Finding>, StoreError> {
        let conditions: Vec<Condition> =
            crate::policy::findings::schedule_stale(last_sweep, self.clock.now(), &self.policy)
                .into_iter()
                .collect();
        let scope = |f: &Finding| {
            f.kind == FindingKind::ScanStale && f.subject.kind == SubjectType::Schedule
        };
        self.record(&conditions, &scope).await
    }

    /// Records what a verification of `cert` at its endpoints found: `not_serving` for each
    /// endpoint address in `not_served`, resolved for the others of its endpoints.
    pub async fn record_verification(
        &self,
        cert: &crate::model::certificate::ManagedCertificate,
        not_served: &[crate::policy::findings::NotServed<'_>],
    ) -> Result<Vec<Finding>, StoreError> {
        let conditions: Vec<Condition> = not_served
            .iter()
            .map(|n| crate::policy::findings::endpoint_not_serving(cert, n, &self.policy))
            .collect();
        let endpoints: HashSet<String> =
            cert.spec.endpoints.iter().map(|t| t.to_string()).collect();
        let scope = move |f: &Finding| {
            f.kind == FindingKind::NotServing
                && f.subject.kind == SubjectType::Endpoint
                && endpoints.contains(&f.subject.id)
        };
        self.record(&conditions, &scope).await
    }

    /// Acknowledges the finding `key` until `until`, for `reason`.
    pub async fn acknowledge(
        &self,
        key: &str,
        until: time::OffsetDateTime,
        reason: &str,
    ) -> Result<Finding, StoreError> {
        self.change(key, |f, now| {
            crate::policy::findings::acknowledge(f, until, reason, now)
        })
        .await
    }

    /// Withdraws the acknowledgement of `key`.
    pub async fn unacknowledge(&self, key: &str) -> Result<Finding, StoreError> {
        self.change(key, crate::policy::findings::unacknowledge)
            .await
    }

    async fn change(
        &self,
        key: &str,
        change: impl Fn(&Finding, time::OffsetDateTime) -> Finding,
    ) -> Result<Finding, StoreError> {
        for _ in 0..ATTEMPTS {
            let f = self
                .store
                .finding(key)
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("finding {key:?}"),
                })?;
            match self.store.put_finding(&change(&f, self.clock.now())).await {
                Err(StoreError::Conflict { .. }) => {}
                other => return other,
            }
        }
        Err(StoreError::Conflict {
            what: format!("finding {key:?}"),
            expected: 0,
        })
    }

    /// Sends every pending transition to each channel that wants it and has not accepted it
    /// yet. A transition is claimed first (a versioned write), so two senders at once send
    /// it once; it is marked notified only when every channel accepted it.
    pub async fn notify(&self, channels: &[Arc<dyn Notifier>]) -> Result<NotifyReport, StoreError> {
        let mut report = NotifyReport::default();
        for f in self.store.pending_findings().await? {
            let now = self.clock.now();
            if f.sending_until.is_some_and(|u| u > now) {
                report.busy += 1;
                continue;
            }
            let Some(transition) = f.pending else {
                continue;
            };
            let mut claim = f.clone();
            claim.sending_until = Some(now + CLAIM);
            let claimed = match self.store.put_finding(&claim).await {
                Ok(c) => c,
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                    report.busy += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut delivered = claimed.delivered_to.clone();
            let mut failed = false;
            for channel in channels {
                let name = channel.name().to_owned();
                if delivered.contains(&name) || !channel.wants(&claimed) {
                    continue;
                }
                let message = Notification {
                    transition,
                    finding: &claimed,
                    now,
                };
                match channel.notify(message).await {
                    Ok(()) => {
                        report
                            .sent
                            .push((claimed.key.clone(), transition, name.clone()));
                        delivered.push(name);
                    }
                    Err(e) => {
                        failed = true;
                        report.failed.push((claimed.key.clone(), name, e));
                    }
                }
            }
            self.settle(claimed, transition, delivered, failed).await?;
        }
        Ok(report)
    }

    /// Records what a send achieved: notified when every channel accepted, else which did
    /// (and the claim released). If the finding changed meanwhile (a new transition), what
    /// was delivered of the old one no longer matters.
    async fn settle(
        &self,
        claimed: Finding,
        transition: Transition,
        delivered: Vec<String>,
        failed: bool,
    ) -> Result<(), StoreError> {
        let mut current = claimed;
        for _ in 0..ATTEMPTS {
            if current.pending != Some(transition) {
                return Ok(());
            }
            let done = if failed {
                let mut d = current.clone();
                d.delivered_to.clone_from(&delivered);
                d.sending_until = None;
                d
            } else {
                notified(&current, self.clock.now())
            };
            match self.store.put_finding(&done).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => match self.store.finding(&current.key).await? {
                    Some(f) => current = f,
                    None => return Ok(()),
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What a scan found, gathered while it streams; [`ScanEvaluation::record`] writes it.
///
/// It speaks for the endpoints this scan reached: their `expired`, `expiring` and
/// `validation` findings open, change or resolve where a certificate was served; an address
/// that failed keeps what was found before (nothing is known of what it serves now), and is
/// `unreachable` once it failed [`FindingsPolicy::unreachable_after`] scans in a row, which
/// resolves when it serves again.
pub struct ScanEvaluation {
    managed: HashSet<String>,
    now: time::OffsetDateTime,
    conditions: Vec<Condition>,
    served: HashSet<String>,
    scanned: HashSet<(String, Option<String>)>,
    failed: Vec<Observation>,
}

impl ScanEvaluation {
    /// Takes one observation into account.
    pub fn push(&mut self, obs: &Observation, policy: &FindingsPolicy) {
        if obs
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Local)
        {
            // This machine failed, not the endpoint: nothing is known, nothing recorded.
            return;
        }
        // As a finding's subject names it: no address, rather than an empty one.
        let address = obs.address.clone().filter(|a| !a.is_empty());
        self.scanned.insert((obs.target.clone(), address));
        if obs.status != Status::Ok {
            self.failed.push(obs.clone());
            return;
        }
        self.served.insert(obs.target.clone());
        let managed = obs.fingerprint().is_some_and(|f| self.managed.contains(f));
        self.conditions
            .extend(endpoint_conditions(obs, 0, managed, self.now, policy));
    }

    /// Records what the scan found with `service`; `streaks` are the failure streaks the
    /// store counted while recording ([`Recorder::failure_streaks`](crate::services::scan::Recorder::failure_streaks)).
    pub async fn record(
        mut self,
        service: &FindingsService,
        streaks: &std::collections::HashMap<(String, Option<String>), u32>,
    ) -> Result<Vec<Finding>, StoreError> {
        for obs in &self.failed {
            let streak = streaks
                .get(&(obs.target.clone(), obs.address.clone()))
                .copied()
                .unwrap_or(0);
            self.conditions.extend(endpoint_conditions(
                obs,
                streak,
                false,
                self.now,
                &service.policy,
            ));
        }
        let served = self.served;
        let scanned = self.scanned;
        let scope = move |f: &Finding| {
            f.subject.kind == SubjectType::Endpoint
                && match f.kind {
                    FindingKind::Expired | FindingKind::Expiring | FindingKind::Validation => {
                        served.contains(&f.subject.id)
                    }
                    FindingKind::Unreachable => {
                        scanned.contains(&(f.subject.id.clone(), f.subject.address.clone()))
                    }
                    _ => false,
                }
        };
        service.record(&self.conditions, &scope).await
    }
}
