//! The scheduled scan: what the scan function does on each EventBridge Scheduler tick and for
//! each batch it hands itself through the work queue.
//!
//! 1. Query the endpoints due before now.
//! 2. Few enough for one invocation: scan them within the time left, record what was
//!    observed, and set each scanned endpoint's next scan time. Endpoints not started before
//!    the time ran out stay due for the next run.
//! 3. More than that: lease them (push their next scan time out a little so the next tick
//!    does not queue them again), and queue them in batches for other invocations.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use crate::model::target::ScanRequest;
use crate::policy;
use crate::ports::{
    BatchEndpoint, Clock, QueueError, ScanBatch, ScheduleUpdate, Store, StoreError, WorkQueue,
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
    /// Most endpoints one tick looks at (the rest are due on the next tick).
    pub max_due: usize,
    /// How far a queued endpoint's next scan is pushed out while its batch waits.
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
            max_due: 20_000,
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

impl ScheduledError {
    /// Whether running the same invocation again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ScheduledError::Store(e) => e.is_retryable(),
            ScheduledError::Queue(QueueError::Unavailable(_)) => true,
            ScheduledError::Queue(_) => false,
        }
    }
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
}

impl ScheduledScan {
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
        }
    }

    /// Handles a scheduler tick; `deadline` is when the invocation must have returned.
    pub async fn tick(&self, deadline: Instant) -> Result<RunSummary, ScheduledError> {
        let now = self.clock.now();
        let due = self.store.endpoints_due(now, self.settings.max_due).await?;
        let endpoints: Vec<BatchEndpoint> = due
            .into_iter()
            .map(|e| BatchEndpoint {
                target: e.target,
                tags: e.tags,
            })
            .collect();
        let count = endpoints.len();
        match &self.queue {
            Some(queue) if count > self.settings.max_inline => {
                let lease_until = now + self.settings.lease;
                let leases: Vec<ScheduleUpdate> = endpoints
                    .iter()
                    .map(|e| ScheduleUpdate {
                        target: e.target.to_string(),
                        next_scan_at: lease_until,
                    })
                    .collect();
                // Lease first: if queueing then fails, the endpoints come due again when the
                // lease ends instead of being queued twice by the next tick.
                self.store.schedule(&leases).await?;
                let batches: Vec<ScanBatch> = endpoints
                    .chunks(self.settings.batch_size.max(1))
                    .map(|c| ScanBatch {
                        endpoints: c.to_vec(),
                    })
                    .collect();
                queue.send(&batches).await?;
                let summary = RunSummary {
                    due: count,
                    queued: count,
                    batches: batches.len(),
                    ..RunSummary::default()
                };
                info!(?summary, "scheduled scan fanned out");
                Ok(summary)
            }
            _ => {
                let mut summary = self.scan(endpoints, deadline).await?;
                summary.due = count;
                info!(?summary, "scheduled scan finished");
                Ok(summary)
            }
        }
    }

    /// Scans a batch (a queued one, or a tick's) within `deadline`, records the observations
    /// and reschedules every endpoint it scanned.
    pub async fn scan(
        &self,
        endpoints: Vec<BatchEndpoint>,
        deadline: Instant,
    ) -> Result<RunSummary, ScheduledError> {
        let total = endpoints.len();
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
        // Stop starting probes early enough for the ones in flight to finish and be recorded.
        let stop_at = deadline
            .checked_sub(self.target_timeout + self.settings.margin)
            .unwrap_or_else(Instant::now);
        let mut scanned: std::collections::BTreeMap<String, time::OffsetDateTime> =
            Default::default();
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
            let entry = scanned.entry(obs.target.clone()).or_insert(obs.scanned_at);
            *entry = (*entry).max(obs.scanned_at);
            recorder.push(obs).await;
        }
        recorder.finish().await?;
        let updates: Vec<ScheduleUpdate> = scanned
            .into_iter()
            .map(|(target, at)| ScheduleUpdate {
                target,
                next_scan_at: policy::next_scan_at(at, self.settings.interval),
            })
            .collect();
        summary.scanned = updates.len();
        summary.left_for_next_run = total - updates.len();
        self.store.schedule(&updates).await?;
        Ok(summary)
    }
}
