//! Counts the DynamoDB requests of one scheduled scan run: 10,000 registered endpoints of
//! which 100 are due, against moto server, with a request-counting SDK interceptor.
//!
//! Due-ness comes from each endpoint's slot, so the bench picks the run's window first and
//! then endpoints to match: 100 loopback TLS servers on ports whose slots fall in the window,
//! and 9,900 idle names whose slots do not (those are never contacted).
//!
//! ```text
//! cargo run --release -p certpilot-e2e --bin dynamo-requests
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_core::ports::{EndpointStore as _, ScheduleStore as _};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use certpilot_core::policy;
use certpilot_core::ports::{Clock, ScanLimits};
use certpilot_core::services::scan::ScanService;
use certpilot_core::services::scheduled::{ScheduleSettings, ScheduledScan};
use certpilot_core::{Endpoint, Tags, Target};
use certpilot_dynamodb::DynamoStore;
use certpilot_scanner::{Deadlines, TlsProber, TrustStore};
use certpilot_testkit::certs::Ca;
use certpilot_testkit::clock::ManualClock;
use certpilot_testkit::procs::Moto;
use certpilot_testkit::servers;
use tokio::time::Instant;

const TOTAL: usize = 10_000;
const DUE: usize = 100;

/// Counts requests by operation (the `X-Amz-Target` header names it).
#[derive(Clone, Debug, Default)]
struct Counter(Arc<Mutex<BTreeMap<String, usize>>>);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "request-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.split('.').nth(1))
            .unwrap_or("unknown")
            .to_owned();
        *self.0.lock().unwrap().entry(op).or_default() += 1;
        Ok(())
    }
}

impl Counter {
    fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn print(label: &str, counts: &BTreeMap<String, usize>) {
    let total: usize = counts.values().sum();
    let detail: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  {label}: {total} requests ({})", detail.join(", "));
}

#[tokio::main]
async fn main() {
    let moto = Moto::start();
    let counter = Counter::default();
    let config = certpilot_e2e::moto_dynamodb_config(&moto.endpoint_url)
        .interceptor(counter.clone())
        // moto copies the whole table for each transaction, so with 10,000 items a transaction
        // takes seconds there; this bench counts requests, it does not time them.
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(600))
                .build(),
        )
        .build();
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        "requests-bench",
    ));
    store.create_table().await.unwrap();

    // One run of an hourly schedule whose previous run was 36 s earlier: 1% of the slots.
    let interval = Duration::from_secs(3600);
    let now = time::OffsetDateTime::now_utc();
    let previous = now - time::Duration::seconds(36);
    let window = policy::due_slots(Some(previous), now, interval);
    let in_window = |key: &str| {
        let slot = policy::scan_slot(key);
        window.iter().any(|r| r.contains(slot))
    };
    let ca = Ca::new("Requests Root");
    let leaf = ca.leaf(&["127.0.0.1"]).build();
    let ports = (20_000..=u16::MAX).filter(|p| in_window(&format!("127.0.0.1:{p}")));
    let live = servers::tls_on_ports(&leaf, DUE, ports).await;
    let mut targets: Vec<String> = live.iter().map(|s| s.target()).collect();
    targets.extend(
        (0..)
            .map(|i| format!("idle{i}.example:443"))
            .filter(|t| !in_window(t))
            .take(TOTAL - DUE),
    );
    println!("registering {TOTAL} endpoints on moto…");
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in targets.chunks(TOTAL / 16) {
        let (store, chunk) = (store.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for t in chunk {
                let target: Target = t.parse().unwrap();
                let mut endpoint = Endpoint::new(target, Tags::new(), previous);
                // Registered long ago and scanned since: no explicit due time.
                endpoint.due_at = None;
                store.add_endpoint(&endpoint).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    store.advance_tick(None, previous).await.unwrap();
    counter.take();

    let clock = Arc::new(ManualClock::new(now));
    let scanner = ScanService::new(
        Arc::new(TlsProber::new(TrustStore::mozilla(), Deadlines::default())),
        clock.clone() as Arc<dyn Clock>,
        ScanLimits::default(),
    );
    let scheduled = ScheduledScan::new(
        store.clone(),
        scanner,
        None,
        clock.clone() as Arc<dyn Clock>,
        ScheduleSettings {
            interval,
            ..ScheduleSettings::default()
        },
        Duration::from_secs(15),
    )
    // Findings are evaluated after each run, as the scan function does.
    .with_findings(
        Arc::new(certpilot_core::services::findings::FindingsService::new(
            store.clone(),
            clock.clone() as Arc<dyn Clock>,
            certpilot_core::policy::findings::FindingsPolicy::default(),
        )),
        store.clone(),
    );
    println!("{TOTAL} endpoints in the table, {DUE} due:");
    let first = scheduled
        .tick(Instant::now() + Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!((first.due, first.scanned), (DUE, DUE), "{first:?}");
    print("first run (every observation is new)", &counter.take());
    use certpilot_core::ports::ChannelStore as _;
    let sender = certpilot_core::services::findings::FindingsService::new(
        store.clone(),
        clock.clone() as Arc<dyn Clock>,
        certpilot_core::policy::findings::FindingsPolicy::default(),
    );
    sender.notify(&[]).await.unwrap();
    print(
        "sending the first run's 100 opened findings (each claimed, then settled)",
        &counter.take(),
    );

    // The same window an hour later: nothing about the 100 has changed.
    clock.advance(time::Duration::HOUR - time::Duration::seconds(36));
    store.advance_tick(Some(now), clock.now()).await.unwrap();
    clock.advance(time::Duration::seconds(36));
    counter.take();
    let second = scheduled
        .tick(Instant::now() + Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!((second.due, second.scanned), (DUE, DUE), "{second:?}");
    assert_eq!(second.findings_changed, 0, "{second:?}");
    let counts = counter.take();
    print("next run (nothing changed)", &counts);
    println!(
        "  of which findings: 2 reads (the managed certificates, the active findings), no write"
    );
    // What every function does next: send the pending transitions to the channels (none
    // here but the stored ones; the alerts topic and the event bus come from the function's
    // settings). Nothing is pending after an unchanged run.
    let channels = store.channels().await.unwrap();
    let report = sender.notify(&[]).await.unwrap();
    assert!(channels.is_empty() && report.sent.is_empty());
    print("sending what is pending (nothing is)", &counter.take());
    let item_writes = |counts: &BTreeMap<String, usize>| {
        [
            "TransactWriteItems",
            "PutItem",
            "UpdateItem",
            "BatchWriteItem",
        ]
        .iter()
        .map(|op| counts.get(*op).copied().unwrap_or(0))
        .sum::<usize>()
    };
    println!(
        "  write requests in the unchanged run: {} (the tick marker), none for the {DUE} endpoints",
        item_writes(&counts)
    );

    // A day later the same endpoints refresh "last seen" once.
    clock.advance(time::Duration::days(1) - time::Duration::seconds(36));
    store
        .advance_tick(Some(now + time::Duration::HOUR), clock.now())
        .await
        .unwrap();
    clock.advance(time::Duration::seconds(36));
    counter.take();
    let third = scheduled
        .tick(Instant::now() + Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(third.scanned, DUE);
    let counts = counter.take();
    print(
        "a day later (nothing changed; daily last-seen refresh)",
        &counts,
    );
    println!(
        "  item writes per unchanged endpoint per day at an hourly interval: 1 (the last-seen refresh), plus 24 tick-marker writes a day for the whole table"
    );
}
