//! Counts the DynamoDB requests of one scheduled scan run: 10,000 registered endpoints of
//! which 100 are due, against moto server, with a request-counting SDK interceptor.
//!
//! ```text
//! cargo run --release -p certpilot-e2e --bin dynamo-requests
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use certpilot_core::ports::{ScanLimits, ScheduleUpdate, Store, SystemClock};
use certpilot_core::services::scan::ScanService;
use certpilot_core::services::scheduled::{ScheduleSettings, ScheduledScan};
use certpilot_core::{Endpoint, Tags, Target};
use certpilot_dynamodb::DynamoStore;
use certpilot_scanner::{Deadlines, TlsProber, TrustStore};
use certpilot_testkit::certs::Ca;
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

    let ca = Ca::new("Requests Root");
    let leaf = ca.leaf(&["127.0.0.1"]).build();
    let live = servers::tls_many(&leaf, DUE, 24_000).await;
    let mut targets: Vec<String> = live.iter().map(|s| s.target()).collect();
    // The other endpoints are never due during the run, so never contacted.
    targets.extend((0..TOTAL - DUE).map(|i| format!("idle{i}.example:443")));
    println!("registering {TOTAL} endpoints on moto…");
    let now = time::OffsetDateTime::now_utc();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, chunk) in targets.chunks(TOTAL / 16).enumerate() {
        let (store, chunk) = (store.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for (j, t) in chunk.into_iter().enumerate() {
                let target: Target = t.parse().unwrap();
                let mut endpoint = Endpoint::new(target, Tags::new(), now);
                // All but the first 100 are next due tomorrow.
                if i > 0 || j >= DUE {
                    endpoint.next_scan_at = Some(now + time::Duration::days(1));
                }
                store.add_endpoint(&endpoint).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    counter.take();

    let clock = Arc::new(SystemClock);
    let scanner = ScanService::new(
        Arc::new(TlsProber::new(TrustStore::mozilla(), Deadlines::default())),
        clock.clone(),
        ScanLimits::default(),
    );
    let scheduled = ScheduledScan::new(
        store.clone(),
        scanner,
        None,
        clock,
        ScheduleSettings::default(),
        Duration::from_secs(15),
    );
    println!("{TOTAL} endpoints in the table, {DUE} due:");
    let first = scheduled
        .tick(Instant::now() + Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(first.scanned, DUE);
    print("first run (every observation is new)", &counter.take());

    // Make the same 100 due again: nothing about them has changed.
    let again: Vec<ScheduleUpdate> = targets[..DUE]
        .iter()
        .map(|t| ScheduleUpdate {
            target: t.clone(),
            next_scan_at: time::OffsetDateTime::now_utc() - time::Duration::SECOND,
        })
        .collect();
    store.schedule(&again).await.unwrap();
    counter.take();
    let second = scheduled
        .tick(Instant::now() + Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(second.scanned, DUE);
    let counts = counter.take();
    print("next run (nothing changed)", &counts);
    let writes = counts.get("TransactWriteItems").copied().unwrap_or(0)
        + counts.get("PutItem").copied().unwrap_or(0)
        + counts.get("UpdateItem").copied().unwrap_or(0)
        + counts.get("BatchWriteItem").copied().unwrap_or(0);
    println!(
        "  write requests per unchanged run: {writes} for {DUE} endpoints; item writes per unchanged endpoint per day at an hourly interval: 24 schedule updates + at most 1 last-seen refresh"
    );
}
