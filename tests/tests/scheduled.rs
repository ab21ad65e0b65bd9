//! The scheduled scan use case with real parts: the SQLite store, the TLS scanner and TLS
//! servers on loopback; only the work queue is an in-memory stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::ports::{
    Clock, InventoryQuery, QueueError, ScanBatch, ScanLimits, Store, SystemClock, WorkQueue,
};
use certpilot_core::services::endpoints::register;
use certpilot_core::services::scan::ScanService;
use certpilot_core::services::scheduled::{ScheduleSettings, ScheduledScan};
use certpilot_core::{Tags, Target};
use certpilot_scanner::{Deadlines, TlsProber, TrustStore};
use certpilot_sqlite::SqliteStore;
use certpilot_testkit::certs::Ca;
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
    scheduled: ScheduledScan,
}

fn setup(
    settings: ScheduleSettings,
    concurrency: usize,
    target_timeout: Duration,
    queue: MemoryQueue,
) -> Setup {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let queue = Arc::new(queue);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deadlines = Deadlines {
        connect: target_timeout,
        handshake: target_timeout,
    };
    let scanner = ScanService::new(
        Arc::new(TlsProber::new(TrustStore::mozilla(), deadlines)),
        clock.clone(),
        ScanLimits {
            concurrency,
            target_timeout,
        },
    );
    let scheduled = ScheduledScan::new(
        store.clone(),
        scanner,
        Some(queue.clone() as Arc<dyn WorkQueue>),
        clock,
        settings,
        target_timeout,
    );
    Setup {
        store,
        queue,
        scheduled,
    }
}

async fn add(store: &SqliteStore, target: &str) {
    let target: Target = target.parse().unwrap();
    register(
        store,
        &target,
        &Tags::new(),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_scans_what_is_due_records_it_and_reschedules() {
    let ca = Ca::new("Tick Root");
    let leaf = ca.leaf(&["127.0.0.1"]).build();
    let a = servers::tls_default(&leaf).await;
    let b = servers::tls_default(&leaf).await;
    let closed = servers::closed_port().await;
    let s = setup(
        ScheduleSettings::default(),
        8,
        Duration::from_secs(5),
        MemoryQueue::default(),
    );
    for t in [a.target(), b.target(), closed.to_string()] {
        add(&s.store, &t).await;
    }
    let summary = s
        .scheduled
        .tick(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        (
            summary.due,
            summary.scanned,
            summary.observations,
            summary.failed
        ),
        (3, 3, 3, 1)
    );
    assert_eq!(summary.left_for_next_run, 0);
    let now = time::OffsetDateTime::now_utc();
    assert!(s.store.endpoints_due(now, 10).await.unwrap().is_empty());
    for e in s.store.endpoints().await.unwrap() {
        let next = e.next_scan_at.expect("rescheduled");
        let ahead = next - now;
        assert!(
            ahead > time::Duration::minutes(59) && ahead <= time::Duration::hours(1),
            "{ahead}"
        );
    }
    assert_eq!(
        s.store
            .inventory(&InventoryQuery::default())
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        s.queue.sent.lock().unwrap().is_empty(),
        "small runs stay inline"
    );
    let again = s
        .scheduled
        .tick(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.due, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_due_endpoints_are_leased_and_queued_in_batches() {
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
        add(&s.store, &server.target()).await;
    }
    let summary = s
        .scheduled
        .tick(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        (
            summary.due,
            summary.queued,
            summary.batches,
            summary.scanned
        ),
        (5, 5, 3, 0)
    );
    // Leased: the next tick does not queue them again.
    let next = s
        .scheduled
        .tick(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
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
        s.scheduled
            .scan(batch.endpoints, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap();
    }
    let inventory = s.store.inventory(&InventoryQuery::default()).await.unwrap();
    assert_eq!(inventory.len(), 5);
    assert!(
        inventory
            .iter()
            .all(|e| e.observation.certificate.is_some())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_queue_is_an_error_that_can_be_retried_and_queues_nothing_twice() {
    let settings = ScheduleSettings {
        max_inline: 1,
        ..ScheduleSettings::default()
    };
    let broken = MemoryQueue {
        broken: true,
        ..MemoryQueue::default()
    };
    let s = setup(settings, 8, Duration::from_secs(5), broken);
    add(&s.store, "127.0.0.1:1").await;
    add(&s.store, "127.0.0.1:2").await;
    let err = s
        .scheduled
        .tick(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    // The lease holds them back until it ends, when they come due again.
    let now = time::OffsetDateTime::now_utc();
    assert!(s.store.endpoints_due(now, 10).await.unwrap().is_empty());
    assert_eq!(
        s.store
            .endpoints_due(now + time::Duration::minutes(16), 10)
            .await
            .unwrap()
            .len(),
        2
    );
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
        add(&s.store, &t.target()).await;
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
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(s.store.endpoints_due(now, 10).await.unwrap().len(), 4);
    assert_eq!(
        s.store
            .inventory(&InventoryQuery::default())
            .await
            .unwrap()
            .len(),
        2
    );
}
