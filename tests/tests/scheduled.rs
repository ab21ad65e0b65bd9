//! The scheduled scan use case with real parts: the SQLite store, the TLS scanner and TLS
//! servers on loopback; only the work queue is an in-memory stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_core::Classify;
use certpilot_core::ports::{EndpointStore as _, ObservationStore as _, ScheduleStore as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::policy;
use certpilot_core::ports::{
    Clock, DueQuery, InventoryQuery, QueueError, ScanBatch, ScanLimits, WorkQueue,
};
use certpilot_core::services::endpoints::register;
use certpilot_core::services::scan::ScanService;
use certpilot_core::services::scheduled::{ScheduleSettings, ScheduledScan};
use certpilot_core::{Tags, Target};
use certpilot_scanner::{Deadlines, TlsProber, TrustStore};
use certpilot_sqlite::SqliteStore;
use certpilot_testkit::certs::Ca;
use certpilot_testkit::clock::ManualClock;
use certpilot_testkit::servers;
use tokio::time::Instant;

#[derive(Default)]
struct MemoryQueue {
    sent: Mutex<Vec<ScanBatch>>,
    broken: bool,
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn send(&self, batches: &[ScanBatch]) -> Result<(), QueueError> {
        if self.broken {
            return Err(QueueError::Unavailable("queue is down".into()));
        }
        self.sent.lock().unwrap().extend(batches.iter().cloned());
        Ok(())
    }
}

struct Setup {
    store: Arc<SqliteStore>,
    queue: Arc<MemoryQueue>,
    clock: Arc<ManualClock>,
    scheduled: ScheduledScan,
}

impl Setup {
    /// Endpoints a tick at the clock's time would list if the previous one ran `since` ago.
    async fn due_now(&self, since: Option<time::Duration>) -> Vec<String> {
        let now = self.clock.now();
        let query = DueQuery {
            slots: policy::due_slots(since.map(|s| now - s), now, Duration::from_secs(3600)),
            now,
        };
        let due = self.store.endpoints_due(&query).await.unwrap();
        due.into_iter().map(|e| e.key()).collect()
    }

    async fn tick(&self) -> certpilot_core::services::scheduled::RunSummary {
        self.scheduled
            .tick(Instant::now() + Duration::from_secs(60))
            .await
            .unwrap()
    }
}

fn setup(
    settings: ScheduleSettings,
    concurrency: usize,
    target_timeout: Duration,
    queue: MemoryQueue,
) -> Setup {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let queue = Arc::new(queue);
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let deadlines = Deadlines {
        connect: target_timeout,
        handshake: target_timeout,
    };
    let scanner = ScanService::new(
        Arc::new(TlsProber::new(TrustStore::mozilla(), deadlines)),
        clock.clone() as Arc<dyn Clock>,
        ScanLimits {
            concurrency,
            target_timeout,
        },
    );
    let scheduled = ScheduledScan::new(
        store.clone(),
        scanner,
        Some(queue.clone() as Arc<dyn WorkQueue>),
        clock.clone() as Arc<dyn Clock>,
        settings,
        target_timeout,
    );
    Setup {
        store,
        queue,
        clock,
        scheduled,
    }
}

async fn add(s: &Setup, target: &str) {
    let target: Target = target.parse().unwrap();
    register(s.store.as_ref(), &target, &Tags::new(), s.clock.now())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_scans_new_endpoints_and_then_each_once_per_interval_writing_no_schedule() {
    let ca = Ca::new("Tick Root");
    let leaf = ca.leaf(&["127.0.0.1"]).build();
    let servers = servers::tls_many(&leaf, 12, 23_100).await;
    let closed = servers::closed_port().await;
    let s = setup(
        ScheduleSettings::default(),
        8,
        Duration::from_secs(5),
        MemoryQueue::default(),
    );
    let mut targets: Vec<String> = servers.iter().map(|x| x.target()).collect();
    targets.push(closed.to_string());
    for t in &targets {
        add(&s, t).await;
    }
    let summary = s.tick().await;
    assert_eq!(
        (
            summary.due,
            summary.scanned,
            summary.observations,
            summary.failed,
            summary.left_for_next_run
        ),
        (13, 13, 13, 1, 0)
    );
    assert_eq!(
        s.store
            .inventory(&InventoryQuery::default())
            .await
            .unwrap()
            .len(),
        13
    );
    assert!(
        s.queue.sent.lock().unwrap().is_empty(),
        "small runs stay inline"
    );
    // Scanned: back to their slots, with no explicit due time and no edit.
    for e in s.store.endpoints().await.unwrap() {
        assert_eq!((e.due_at, e.version), (None, 1), "{}", e.key());
    }
    assert_eq!(s.store.last_tick().await.unwrap(), Some(s.clock.now()));
    // An hour of five-minute ticks scans each endpoint exactly once more, each in its slot.
    let mut scanned: Vec<String> = Vec::new();
    for _ in 0..12 {
        s.clock.advance(time::Duration::minutes(5));
        let expected = s.due_now(Some(time::Duration::minutes(5))).await;
        let summary = s.tick().await;
        assert_eq!(summary.due, expected.len());
        assert_eq!(summary.scanned, expected.len());
        scanned.extend(expected);
    }
    scanned.sort();
    let mut want = targets.clone();
    want.sort();
    assert_eq!(scanned, want);
    for e in s.store.endpoints().await.unwrap() {
        assert_eq!((e.due_at, e.version), (None, 1), "{}", e.key());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_the_same_tick_advance_the_schedule_once() {
    let tarpit = servers::tarpit().await;
    let s = setup(
        ScheduleSettings::default(),
        8,
        Duration::from_secs(1),
        MemoryQueue::default(),
    );
    add(&s, &tarpit.target()).await;
    // EventBridge delivers at least once: two invocations of one tick run together. Both read
    // the same marker and scan (recording is idempotent); only one moves the marker.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (a, b) = tokio::join!(s.scheduled.tick(deadline), s.scheduled.tick(deadline));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.due, b.due), (1, 1));
    assert_eq!(
        [a.superseded, b.superseded].iter().filter(|x| **x).count(),
        1
    );
    assert_eq!(s.store.last_tick().await.unwrap(), Some(s.clock.now()));
    assert_eq!(
        s.store.history(&tarpit.target(), 10).await.unwrap().len(),
        1,
        "the duplicate observation was not written twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_due_endpoints_are_queued_in_batches_and_not_queued_twice() {
    let ca = Ca::new("Fanout Root");
    let leaf = ca.leaf(&["127.0.0.1"]).build();
    let servers = servers::tls_many(&leaf, 5, 23_000).await;
    let settings = ScheduleSettings {
        max_inline: 2,
        batch_size: 2,
        ..ScheduleSettings::default()
    };
    let s = setup(settings, 8, Duration::from_secs(5), MemoryQueue::default());
    for server in &servers {
        add(&s, &server.target()).await;
    }
    let summary = s.tick().await;
    assert_eq!(
        (
            summary.due,
            summary.queued,
            summary.batches,
            summary.scanned
        ),
        (5, 5, 3, 0)
    );
    // New endpoints are leased while their batches wait: the next tick does not queue them
    // again (and their slots are not due yet either).
    s.clock.advance(time::Duration::seconds(1));
    let next = s.tick().await;
    assert_eq!(next.due, 0);
    let batches = s.queue.sent.lock().unwrap().clone();
    assert_eq!(
        batches
            .iter()
            .map(|b| b.endpoints.len())
            .collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    for batch in batches {
        let done = s
            .scheduled
            .scan(batch.endpoints, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(done.left_for_next_run, 0);
    }
    let inventory = s.store.inventory(&InventoryQuery::default()).await.unwrap();
    assert_eq!(inventory.len(), 5);
    assert!(
        inventory
            .iter()
            .all(|e| e.observation.certificate.is_some())
    );
    // Scanned from the queue: the lease is cleared, they are back in their slots.
    assert!(
        s.store
            .endpoints()
            .await
            .unwrap()
            .iter()
            .all(|e| e.due_at.is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_queue_is_an_error_that_can_be_retried_and_leaves_the_schedule_where_it_was() {
    let settings = ScheduleSettings {
        max_inline: 1,
        ..ScheduleSettings::default()
    };
    let broken = MemoryQueue {
        broken: true,
        ..MemoryQueue::default()
    };
    let s = setup(settings, 8, Duration::from_secs(5), broken);
    add(&s, "127.0.0.1:1").await;
    add(&s, "127.0.0.1:2").await;
    let err = s
        .scheduled
        .tick(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    // The marker did not move, so the next tick sweeps the same slots again; the new
    // endpoints come due again when their lease ends.
    assert_eq!(s.store.last_tick().await.unwrap(), None);
    assert!(s.due_now(Some(time::Duration::ZERO)).await.is_empty());
    s.clock.advance(time::Duration::minutes(16));
    assert_eq!(s.due_now(Some(time::Duration::ZERO)).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_time_leaves_the_rest_due_and_loses_no_observation() {
    let mut tarpits = Vec::new();
    for _ in 0..6 {
        tarpits.push(servers::tarpit().await);
    }
    let settings = ScheduleSettings {
        margin: Duration::ZERO,
        ..ScheduleSettings::default()
    };
    let s = setup(settings, 2, Duration::from_secs(1), MemoryQueue::default());
    for t in &tarpits {
        add(&s, &t.target()).await;
    }
    // 1.5 s left and 1 s per probe: only the first two probes may start.
    let summary = s
        .scheduled
        .tick(Instant::now() + Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(summary.scanned, 2, "{summary:?}");
    assert_eq!(summary.left_for_next_run, 4);
    assert_eq!(summary.failed, 2, "tarpits time out");
    // The four not started are due at the very next tick, whatever their slots.
    assert_eq!(s.due_now(Some(time::Duration::ZERO)).await.len(), 4);
    assert_eq!(
        s.store
            .inventory(&InventoryQuery::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_tick_after_a_silence_resolves_scan_stale() {
    use certpilot_core::model::finding::{FindingKind, FindingState};
    use certpilot_core::ports::FindingStore as _;
    use certpilot_core::services::findings::FindingsService;
    let s = setup(
        ScheduleSettings::default(),
        4,
        Duration::from_secs(5),
        MemoryQueue::default(),
    );
    let findings = Arc::new(FindingsService::new(
        s.store.clone(),
        s.clock.clone() as Arc<dyn Clock>,
        policy::findings::FindingsPolicy::default(),
    ));
    let scheduled = s
        .scheduled
        .clone()
        .with_findings(findings.clone(), s.store.clone());
    let tick = || scheduled.tick(Instant::now() + Duration::from_secs(60));
    tick().await.unwrap();
    assert!(
        findings
            .record_schedule(s.store.last_tick().await.unwrap())
            .await
            .unwrap()
            .is_empty(),
        "a schedule that runs is not stale"
    );

    // The scheduler stops for three hours: the renew run that still happens says so.
    s.clock.advance(time::Duration::hours(3));
    let opened = findings
        .record_schedule(s.store.last_tick().await.unwrap())
        .await
        .unwrap();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].kind, FindingKind::ScanStale);
    assert_eq!(opened[0].state, FindingState::Open);

    let resumed = tick().await.unwrap();
    assert_eq!(resumed.findings_changed, 1, "{resumed:?}");
    let f = s.store.finding(&opened[0].key).await.unwrap().unwrap();
    assert_eq!(f.state, FindingState::Resolved);
    s.clock.advance(time::Duration::minutes(15));
    assert_eq!(tick().await.unwrap().findings_changed, 0);
}
