//! The scan function. An EventBridge Scheduler tick scans the endpoints due (or fans them out
//! in batches through SQS); an SQS batch scans the endpoints it carries and reports failed
//! messages one by one (`ReportBatchItemFailures`).
//!
//! Settings (environment): `CERTPILOT_TABLE` (required), `CERTPILOT_SCAN_QUEUE_URL` (fan-out;
//! without it every due endpoint is scanned inline), `CERTPILOT_SCAN_INTERVAL` (1h),
//! `CERTPILOT_MAX_INLINE` (500), `CERTPILOT_BATCH_SIZE` (200), `CERTPILOT_CONCURRENCY` (64),
//! `CERTPILOT_TARGET_TIMEOUT` (15s). AWS access follows the standard configuration.

mod config;
mod handler;

use std::sync::Arc;

use certpilot_aws::SqsQueue;
use certpilot_core::ports::{ScanLimits, SystemClock, WorkQueue};
use certpilot_core::services::scan::ScanService;
use certpilot_core::services::scheduled::ScheduledScan;
use certpilot_dynamodb::DynamoStore;
use certpilot_scanner::{Deadlines, TlsProber, TrustStore};
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = config::Config::from_env()?;
    let aws = certpilot_dynamodb::load_aws_config().await;
    let store = Arc::new(DynamoStore::new(
        certpilot_dynamodb::Client::new(&aws),
        &config.table,
    ));
    let queue = config.queue_url.as_ref().map(|url| {
        Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&aws), url)) as Arc<dyn WorkQueue>
    });
    let prober = TlsProber::new(TrustStore::mozilla(), Deadlines::default());
    let limits = ScanLimits {
        concurrency: config.concurrency,
        target_timeout: config.target_timeout,
    };
    let clock = Arc::new(SystemClock);
    let scanner = ScanService::new(Arc::new(prober), clock.clone(), limits);
    let scheduled = ScheduledScan::new(
        store,
        scanner,
        queue,
        clock,
        config.schedule,
        config.target_timeout,
    );
    let handler = handler::Handler::new(scheduled, config.target_timeout);
    lambda_runtime::run(service_fn(|event| handler.handle(event))).await
}
