//! The scheduled scan: what the scan function does on each EventBridge Scheduler tick and for
//! each batch it hands itself through the work queue.
//!
//! Every endpoint has a fixed [slot](policy::scan_slot) in the scan interval, so nothing is
//! written to schedule an endpoint that was scanned as planned. A tick:
//!
//! 1. Reads when the previous tick ran and lists the endpoints whose slot lies between then and
//!    now ([`policy::due_slots`]), plus those with an explicit due time that has come (new
//!    endpoints, unfinished work).
//! 2. Few enough for one invocation: scans them within the time left and records what was
//!    observed. Endpoints not started before the time ran out get an explicit due time (now),
//!    so the next tick takes them first. An explicit due time is cleared once scanned.
//! 3. More than that: queues them in batches for other invocations (the queue redelivers a
//!    batch that fails, and parks a poison batch in its dead-letter queue).
//! 4. Advances the tick marker from what it read to now. A run that crashes before this leaves
//!    the marker where it was, and the next tick sweeps the same slots again: an endpoint may
//!    be scanned twice (recording is idempotent), never skipped. Two runs of one tick cannot
//!    both advance it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use crate::model::target::ScanRequest;
use crate::policy;
use crate::ports::{
    BatchEndpoint, Clock, DueQuery, DueUpdate, QueueError, ScanBatch, Store, StoreError, WorkQueue,
};
use crate::services::scan::{Recorder, ScanService};

/// Settings of the scheduled scan.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleSettings {
    /// Time between two scans of an endpoint.
    pub interval: Duration,
    /// Most endpoints one invocation scans itself; above this it fans out.
    pub max_inline: usize,
    /// Endpoints per queued batch.
    pub batch_size: usize,
    /// How far a queued endpoint's explicit due time is pushed out while its batch waits, so
    /// that the next tick does not queue it again.
    pub lease: Duration,
    /// Time kept back at the end of an invocation for recording and returning.
    pub margin: Duration,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            interval: Duration::from_secs(3600),
            max_inline: 500,
            batch_size: 200,
            lease: Duration::from_secs(900),
            margin: Duration::from_secs(5),
        }
    }
}

/// What one invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    /// Endpoints found due.
    pub due: usize,
    /// Endpoints scanned here.
    pub scanned: usize,
    /// Observations made (one per endpoint and address).
    pub observations: usize,
    /// Observations whose probe failed.
    pub failed: usize,
    /// Endpoints handed to other invocations.
    pub queued: usize,
    /// Batches queued.
    pub batches: usize,
    /// Endpoints left due because time ran out.
    pub left_for_next_run: usize,
    /// Whether another run of the same tick advanced the schedule first.
    pub superseded: bool,
    /// Findings opened, changed or resolved by this run.
    pub findings_changed: usize,
}

/// Why a scheduled run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduledError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The work queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The scheduled-scan use case.
#[derive(Clone)]
pub struct ScheduledScan {
    store: Arc<dyn Store>,
    scanner: ScanService,
    queue: Option<Arc<dyn WorkQueue>>,
    clock: Arc<dyn Clock>,
    settings: ScheduleSettings,
    target_timeout: Duration,
    findings: Option<(
        Arc<crate::services::findings::FindingsService>,
        Arc<dyn crate::ports::CertificateStore>,
    )>,
}

impl ScheduledScan {
    /// The same use case evaluating findings after each run (recorded, not sent: the
    /// channels' senders send what is pending). A run where nothing changed reads the
    /// managed certificates and the active findings once each, and writes nothing.
    pub fn with_findings(
        mut self,
        service: Arc<crate::services::findings::FindingsService>,
        certificates: Arc<dyn crate::ports::CertificateStore>,
    ) -> Self {
        self.findings = Some((service, certificates));
        self
    }

    /// Wires the use case. Without a queue every due endpoint is scanned inline.
    pub fn new(
        store: Arc<dyn Store>,
        scanner: ScanService,
        queue: Option<Arc<dyn WorkQueue>>,
        clock: Arc<dyn Clock>,
        settings: ScheduleSettings,
        target_timeout: Duration,
    ) -> Self {
        ScheduledScan {
            store,
            scanner,
            queue,
            clock,
            settings,
            target_timeout,
            findings: None,
        }
    }

    /// Handles a scheduler tick; `deadline` is when the invocation must have returned.
    pub async fn tick(&self, deadline: Instant) -> Result<RunSummary, ScheduledError> {
        let now = self.clock.now();
        let previous = self.store.last_tick().await?;
        let query = DueQuery {
            slots: policy::due_slots(previous, now, self.settings.interval),
            now,
        };
        let due = self.store.endpoints_due(&query).await?;
        let endpoints: Vec<BatchEndpoint> = due
            .into_iter()
            .map(|e| BatchEndpoint {
                clear_due: e.due_at.is_some(),
                target: e.target,
                tags: e.tags,
            })
            .collect();
        let count = endpoints.len();
        let mut summary = match &self.queue {
            Some(queue) if count > self.settings.max_inline => {
                // Only endpoints with an explicit due time would be listed again by the next
                // tick; the rest are in slots this tick sweeps.
                let leases: Vec<DueUpdate> = endpoints
                    .iter()
                    .filter(|e| e.clear_due)
                    .map(|e| DueUpdate {
                        target: e.target.to_string(),
                        due_at: Some(now + self.settings.lease),
                    })
                    .collect();
                self.store.set_due(&leases).await?;
                let batches: Vec<ScanBatch> = endpoints
                    .chunks(self.settings.batch_size.max(1))
                    .map(|c| ScanBatch {
                        endpoints: c.to_vec(),
                    })
                    .collect();
                queue.send(&batches).await?;
                RunSummary {
                    queued: count,
                    batches: batches.len(),
                    ..RunSummary::default()
                }
            }
            _ => self.scan(endpoints, deadline).await?,
        };
        summary.due = count;
        // A clock that went back must not move the schedule back.
        if previous.is_none_or(|p| p < now) {
            match self.store.advance_tick(previous, now).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => summary.superseded = true,
                Err(e) => return Err(e.into()),
            }
        }
        // After a silence `scan_stale` may be open: the schedule runs again, so resolve it
        // now rather than at the next renew run. Only then: the usual tick reads nothing more.
        if let Some((service, _)) = &self.findings
            && !summary.superseded
            && crate::policy::findings::schedule_stale(previous, now, service.policy()).is_some()
        {
            summary.findings_changed += service.record_schedule(Some(now)).await?.len();
        }
        info!(?summary, "scheduled scan finished");
        Ok(summary)
    }

    /// Scans a batch (a queued one, or a tick's) within `deadline` and records the
    /// observations. Endpoints it scanned lose their explicit due time; endpoints it could not
    /// start get one (now), so the next tick takes them.
    pub async fn scan(
        &self,
        endpoints: Vec<BatchEndpoint>,
        deadline: Instant,
    ) -> Result<RunSummary, ScheduledError> {
        let total = endpoints.len();
        let to_clear: std::collections::BTreeSet<String> = endpoints
            .iter()
            .filter(|e| e.clear_due)
            .map(|e| e.target.to_string())
            .collect();
        let mut unstarted: std::collections::BTreeSet<String> =
            endpoints.iter().map(|e| e.target.to_string()).collect();
        let requests: Vec<ScanRequest> = endpoints
            .into_iter()
            .map(|e| ScanRequest {
                target: e.target,
                tags: e.tags,
                connect_to: Vec::new(),
            })
            .collect();
        let mut run = self.scanner.start(requests);
        let mut recorder = Recorder::new(self.store.clone());
        let mut evaluation = match &self.findings {
            Some((service, certificates)) => {
                Some(service.scan_evaluation(certificates.as_ref()).await?)
            }
            None => None,
        };
        // Stop starting probes early enough for the ones in flight to finish and be recorded.
        let stop_at = deadline
            .checked_sub(self.target_timeout + self.settings.margin)
            .unwrap_or_else(Instant::now);
        let mut summary = RunSummary::default();
        let mut stopping = false;
        loop {
            let next = if stopping {
                run.next().await
            } else {
                tokio::select! {
                    obs = run.next() => obs,
                    _ = tokio::time::sleep_until(stop_at) => {
                        run.stop_starting();
                        stopping = true;
                        continue;
                    }
                }
            };
            let Some(obs) = next else { break };
            summary.observations += 1;
            if obs.error.is_some() {
                summary.failed += 1;
            }
            unstarted.remove(&obs.target);
            if let (Some(e), Some((service, _))) = (evaluation.as_mut(), &self.findings) {
                e.push(&obs, service.policy());
            }
            recorder.push(obs).await;
        }
        recorder.flush().await;
        let streaks = recorder.failure_streaks().clone();
        recorder.finish().await?;
        if let (Some(e), Some((service, _))) = (evaluation, &self.findings) {
            summary.findings_changed = e.record(service, &streaks).await?.len();
        }
        summary.left_for_next_run = unstarted.len();
        summary.scanned = total - unstarted.len();
        let now = self.clock.now();
        let updates: Vec<DueUpdate> = to_clear
            .iter()
            .filter(|t| !unstarted.contains(*t))
            .map(|t| DueUpdate {
                target: t.clone(),
                due_at: None,
            })
            .chain(unstarted.iter().map(|t| DueUpdate {
                target: t.clone(),
                due_at: Some(now),
            }))
            .collect();
        if !updates.is_empty() {
            self.store.set_due(&updates).await?;
        }
        Ok(summary)
    }
}
