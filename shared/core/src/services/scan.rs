//! The scan use case: probe many targets with bounded concurrency and strict deadlines, and
//! stream one observation per (target, address) as each finishes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::debug;

use crate::error::Classify;
use crate::model::endpoint::Tags;
use crate::model::observation::{ErrorKind, Observation, ObservationHead, ProbeError};
use crate::model::target::{ScanRequest, format_address};
use crate::ports::{Clock, ObservationStore, Prober, ScanLimits, StoreError};

/// Scans targets through a [`Prober`].
#[derive(Clone)]
pub struct ScanService {
    prober: Arc<dyn Prober>,
    clock: Arc<dyn Clock>,
    limits: ScanLimits,
    /// No lookup or probe runs past this (a caller's overall deadline).
    until: Option<tokio::time::Instant>,
}

/// A scan under way: yields observations in the order probes finish.
pub struct ScanRun {
    results: mpsc::Receiver<Observation>,
    stop: Arc<AtomicBool>,
}

impl ScanRun {
    /// Starts no further targets; probes already started still report. Used when an
    /// invocation runs out of time: what was not started stays due for the next run.
    pub fn stop_starting(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The next finished observation, or `None` when every probe has reported.
    pub async fn next(&mut self) -> Option<Observation> {
        self.results.recv().await
    }
}

impl ScanService {
    /// A service probing through `prober`, reading time from `clock`.
    pub fn new(prober: Arc<dyn Prober>, clock: Arc<dyn Clock>, limits: ScanLimits) -> Self {
        let limits = ScanLimits {
            concurrency: limits.concurrency.max(1),
            ..limits
        };
        ScanService {
            prober,
            clock,
            limits,
            until: None,
        }
    }

    /// Like [`ScanService::start`], but every lookup and probe also ends by `until`: a
    /// caller's deadline bounds the handshakes too, tarpits included.
    pub fn start_before(&self, requests: Vec<ScanRequest>, until: tokio::time::Instant) -> ScanRun {
        let mut bounded = self.clone();
        bounded.until = Some(until);
        bounded.start(requests)
    }

    /// Time a lookup or probe starting now may take, and whether the caller's deadline (not
    /// the per-target timeout) is what limits it.
    fn budget(&self) -> (Duration, bool) {
        let per_target = self.limits.target_timeout;
        match self.until {
            Some(until) => {
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                if left < per_target {
                    (left, true)
                } else {
                    (per_target, false)
                }
            }
            None => (per_target, false),
        }
    }

    /// Starts scanning `requests`. At most `limits.concurrency` resolutions and probes run at
    /// once; each is cut off at `limits.target_timeout` and reported as a `timeout` error, so
    /// a run takes at most about (probes / concurrency) x timeout.
    ///
    /// Must be called inside a Tokio runtime; probes run as tasks so they use every core.
    pub fn start(&self, requests: Vec<ScanRequest>) -> ScanRun {
        // A small buffer: a slow consumer (a terminal, a store) applies back-pressure instead
        // of letting 10,000 finished observations pile up in memory.
        let (tx, rx) = mpsc::channel(self.limits.concurrency * 2);
        let semaphore = Arc::new(Semaphore::new(self.limits.concurrency));
        let service = self.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        tokio::spawn(async move {
            for request in requests {
                let Ok(permit) = semaphore.clone().acquire_owned().await else {
                    return;
                };
                if tx.is_closed() || stopped.load(Ordering::SeqCst) {
                    return;
                }
                let service = service.clone();
                let (tx, semaphore) = (tx.clone(), semaphore.clone());
                tokio::spawn(async move {
                    service.scan_request(request, permit, semaphore, tx).await;
                });
            }
        });
        ScanRun { results: rx, stop }
    }

    async fn scan_request(
        &self,
        request: ScanRequest,
        permit: OwnedSemaphorePermit,
        semaphore: Arc<Semaphore>,
        tx: mpsc::Sender<Observation>,
    ) {
        let scanned_at = self.clock.now();
        let started = Instant::now();
        let resolved = match request.known_addresses() {
            Some(addresses) => Ok(addresses),
            None => {
                let (budget, _) = self.budget();
                match tokio::time::timeout(budget, self.prober.resolve(&request)).await {
                    Ok(result) => result,
                    Err(_) => Err(ProbeError::new(
                        ErrorKind::Dns,
                        format!("name lookup did not answer within {budget:?}"),
                    )),
                }
            }
        };
        let addresses = match resolved {
            Ok(addresses) if addresses.is_empty() => Err(ProbeError::new(
                ErrorKind::Dns,
                "name resolved to no addresses",
            )),
            other => other,
        };
        let request = Arc::new(request);
        match addresses {
            Err(error) => {
                let head = head(&request, scanned_at, request.tags.clone());
                let obs = Observation::failed(head, None, elapsed_ms(started), error);
                let _ = tx.send(obs).await;
            }
            Ok(addresses) => {
                // The first address reuses the permit that covered the lookup; the others
                // wait their turn like any other probe.
                let mut permit = Some(permit);
                for address in addresses {
                    let permit = match permit.take() {
                        Some(p) => p,
                        None => match semaphore.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => return,
                        },
                    };
                    let service = self.clone();
                    let (request, tx) = (request.clone(), tx.clone());
                    tokio::spawn(async move {
                        let obs = service.probe_address(&request, address).await;
                        drop(permit);
                        let _ = tx.send(obs).await;
                    });
                }
            }
        }
    }

    async fn probe_address(&self, request: &ScanRequest, address: SocketAddr) -> Observation {
        let scanned_at = self.clock.now();
        let started = Instant::now();
        let head = head(request, scanned_at, request.tags.clone());
        let (deadline, callers) = self.budget();
        let outcome =
            tokio::time::timeout(deadline, self.prober.probe(request, address, scanned_at)).await;
        let address_text = format_address(&address);
        let obs = match outcome {
            Ok(Ok(served)) => Observation::served(head, address_text, elapsed_ms(started), served),
            Ok(Err(error)) => {
                Observation::failed(head, Some(address_text), elapsed_ms(started), error)
            }
            Err(_) => Observation::failed(
                head,
                Some(address_text),
                elapsed_ms(started),
                ProbeError::new(
                    ErrorKind::Timeout,
                    if callers {
                        "no certificate before the overall deadline".to_owned()
                    } else {
                        format!("no certificate within the whole-target deadline of {deadline:?}")
                    },
                ),
            ),
        };
        debug!(
            target = %obs.target,
            address = obs.address.as_deref().unwrap_or(""),
            status = ?obs.status,
            error = obs.error.as_ref().map(|e| e.kind.as_str()),
            elapsed_ms = obs.elapsed_ms,
            "probed"
        );
        obs
    }
}

fn head(request: &ScanRequest, scanned_at: time::OffsetDateTime, tags: Tags) -> ObservationHead {
    ObservationHead {
        target: request.target.to_string(),
        host: request.target.host.to_string(),
        port: request.target.port,
        scanned_at,
        tags,
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Writes observations to a [`Store`] in batches, so a scan of 10,000 endpoints makes a few
/// dozen writes rather than 10,000 — but never holds one longer than [`Recorder::MAX_DELAY`],
/// so a process killed outright (SIGKILL, out of memory) loses seconds of work, not minutes.
///
/// A write that fails for a reason a retry can help (another writer holds the SQLite lock,
/// DynamoDB throttles) is tried again with backoff for up to [`Recorder::RETRY_FOR`] before
/// the batch is counted as lost. Observations of kind [`ErrorKind::Local`] (this machine ran
/// out of descriptors) say nothing about the endpoint and are never recorded.
///
/// [`ErrorKind::Local`]: ErrorKind::Local
pub struct Recorder {
    store: Arc<dyn ObservationStore>,
    batch: Vec<Observation>,
    batch_size: usize,
    oldest: Option<Instant>,
    recorded: usize,
    skipped_local: usize,
    first_error: Option<StoreError>,
    streaks: std::collections::HashMap<(String, Option<String>), u32>,
}

impl Recorder {
    /// Default number of observations per write.
    pub const BATCH: usize = 200;
    /// Longest an observation waits in a batch before it is written.
    pub const MAX_DELAY: Duration = Duration::from_secs(1);
    /// How long a retryable write failure is retried.
    pub const RETRY_FOR: Duration = Duration::from_secs(60);

    /// A recorder writing to `store`.
    pub fn new(store: Arc<dyn ObservationStore>) -> Self {
        Recorder {
            store,
            batch: Vec::with_capacity(Self::BATCH),
            batch_size: Self::BATCH,
            oldest: None,
            recorded: 0,
            skipped_local: 0,
            first_error: None,
            streaks: Default::default(),
        }
    }

    /// Queues one observation, writing the batch when it is full or its oldest entry has
    /// waited [`Recorder::MAX_DELAY`]. A failed write does not stop the scan: the error is
    /// kept and returned by [`Recorder::finish`].
    pub async fn push(&mut self, observation: Observation) {
        if observation
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Local)
        {
            self.skipped_local += 1;
            return;
        }
        self.batch.push(observation);
        self.oldest.get_or_insert_with(Instant::now);
        if self.batch.len() >= self.batch_size {
            self.flush().await;
        } else {
            self.tick().await;
        }
    }

    /// Writes the batch if its oldest entry has waited [`Recorder::MAX_DELAY`]; call it
    /// from a timer while no observation arrives (slow targets timing out).
    pub async fn tick(&mut self) {
        if self.oldest.is_some_and(|t| t.elapsed() >= Self::MAX_DELAY) {
            self.flush().await;
        }
    }

    /// Observations not recorded because this machine, not the endpoint, failed.
    pub fn skipped_local(&self) -> usize {
        self.skipped_local
    }

    /// Writes what is queued now.
    pub async fn flush(&mut self) {
        self.oldest = None;
        if self.batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            match self.store.record_observations(&self.batch).await {
                Ok(streaks) => {
                    self.recorded += self.batch.len();
                    for (obs, streak) in self.batch.iter().zip(streaks) {
                        if streak > 0 {
                            self.streaks
                                .insert((obs.target.clone(), obs.address.clone()), streak);
                        }
                    }
                    break;
                }
                // Recording is idempotent: the whole batch can be written again.
                Err(e) if e.is_retryable() && started.elapsed() < Self::RETRY_FOR => {
                    tracing::warn!(error = %e, retry_in = ?delay, "recording observations: retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, lost = self.batch.len(), "could not record observations");
                    self.first_error.get_or_insert(e);
                    break;
                }
            }
        }
        self.batch.clear();
    }

    /// The failure streak of each (endpoint, address) recorded as failed so far (written
    /// batches only: [`Recorder::flush`] first).
    pub fn failure_streaks(&self) -> &std::collections::HashMap<(String, Option<String>), u32> {
        &self.streaks
    }

    /// Writes what is queued and returns how many observations were recorded, or the first
    /// write error.
    pub async fn finish(mut self) -> Result<usize, StoreError> {
        self.flush().await;
        match self.first_error {
            Some(e) => Err(e),
            None => Ok(self.recorded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::observation::{Served, Status};
    use crate::services::test_support::FixedClock;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use time::macros::datetime;

    /// A prober whose behaviour is chosen by the port number, counting probes in flight.
    #[derive(Default)]
    struct ScriptedProber {
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    #[async_trait]
    impl Prober for ScriptedProber {
        async fn resolve(&self, request: &ScanRequest) -> Result<Vec<SocketAddr>, ProbeError> {
            match request.target.host.to_string().as_str() {
                "two.test" => Ok(vec![
                    SocketAddr::from(([127, 0, 0, 1], request.target.port)),
                    SocketAddr::from(([127, 0, 0, 2], request.target.port)),
                ]),
                _ => Err(ProbeError::new(ErrorKind::Dns, "NXDOMAIN")),
            }
        }

        async fn probe(
            &self,
            _request: &ScanRequest,
            address: SocketAddr,
            now: time::OffsetDateTime,
        ) -> Result<Served, ProbeError> {
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(n, Ordering::SeqCst);
            let result = match address.port() {
                1 => {
                    // A tarpit: never answers.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    unreachable!("the deadline cuts this off")
                }
                2 => Err(ProbeError::new(ErrorKind::Refused, "connection refused")),
                _ => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok(served(now))
                }
            };
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            result
        }
    }

    fn served(now: time::OffsetDateTime) -> Served {
        crate::services::test_support::served(now, "ab")
    }

    fn request(s: &str) -> ScanRequest {
        ScanRequest::new(s.parse().expect("valid target"))
    }

    async fn collect(run: &mut ScanRun) -> Vec<Observation> {
        let mut out = Vec::new();
        while let Some(o) = run.next().await {
            out.push(o);
        }
        out.sort_by(|a, b| (&a.target, &a.address).cmp(&(&b.target, &b.address)));
        out
    }

    #[tokio::test(start_paused = true)]
    async fn classifies_each_outcome_and_cuts_off_tarpits_at_the_deadline() {
        let prober = Arc::new(ScriptedProber::default());
        let now = datetime!(2026-11-22 12:00 UTC);
        let service = ScanService::new(
            prober,
            Arc::new(FixedClock(now)),
            ScanLimits {
                concurrency: 4,
                target_timeout: Duration::from_secs(3),
            },
        );
        let mut run = service.start(vec![
            request("127.0.0.1:1"),
            request("127.0.0.1:2"),
            request("127.0.0.1:3"),
            request("two.test:4"),
            request("missing.test:5"),
        ]);
        let started = tokio::time::Instant::now();
        let got = collect(&mut run).await;
        // Paused time: the only wait is the tarpit's 3 s deadline.
        assert!(started.elapsed() < Duration::from_secs(4));
        let summary: Vec<_> = got
            .iter()
            .map(|o| {
                (
                    o.target.as_str(),
                    o.address.as_deref(),
                    o.status,
                    o.error.as_ref().map(|e| e.kind),
                    o.days_remaining,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "127.0.0.1:1",
                    Some("127.0.0.1:1"),
                    Status::Error,
                    Some(ErrorKind::Timeout),
                    None
                ),
                (
                    "127.0.0.1:2",
                    Some("127.0.0.1:2"),
                    Status::Error,
                    Some(ErrorKind::Refused),
                    None
                ),
                (
                    "127.0.0.1:3",
                    Some("127.0.0.1:3"),
                    Status::Ok,
                    None,
                    Some(10)
                ),
                (
                    "missing.test:5",
                    None,
                    Status::Error,
                    Some(ErrorKind::Dns),
                    None
                ),
                (
                    "two.test:4",
                    Some("127.0.0.1:4"),
                    Status::Ok,
                    None,
                    Some(10)
                ),
                (
                    "two.test:4",
                    Some("127.0.0.2:4"),
                    Status::Ok,
                    None,
                    Some(10)
                ),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn never_runs_more_probes_than_the_concurrency_limit() {
        let prober = Arc::new(ScriptedProber::default());
        let service = ScanService::new(
            prober.clone(),
            Arc::new(FixedClock(datetime!(2026-11-22 12:00 UTC))),
            ScanLimits {
                concurrency: 3,
                target_timeout: Duration::from_secs(1),
            },
        );
        let requests = (0..50)
            .map(|i| request(&format!("127.0.0.1:{}", 100 + i)))
            .collect();
        let got = collect(&mut service.start(requests)).await;
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|o| o.status == Status::Ok));
        assert_eq!(prober.max_in_flight.load(Ordering::SeqCst), 3);
    }
}
