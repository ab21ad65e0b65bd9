//! The scan function. An EventBridge Scheduler tick scans the endpoints due (or fans them out
//! in batches through SQS); an SQS batch scans the endpoints it carries and reports failed
//! messages one by one (`ReportBatchItemFailures`). Each run then sends the findings'
//! transitions to the alerts topic and the event bus, and logs its metrics (EMF, with the
//! `RunCompleted` heartbeat for ticks). The event `{"action": "digest", "days": 30}` (the
//! daily digest schedule) publishes every owner's digest to the alerts topic instead.
//!
//! Settings (environment): `CERTPILOT_TABLE` (required), `CERTPILOT_SCAN_QUEUE_URL` (fan-out;
//! without it every due endpoint is scanned inline), `CERTPILOT_SCAN_INTERVAL` (1h),
//! `CERTPILOT_MAX_INLINE` (500), `CERTPILOT_BATCH_SIZE` (200), `CERTPILOT_CONCURRENCY` (64),
//! `CERTPILOT_TARGET_TIMEOUT` (15s), `CERTPILOT_FINDINGS_POLICY` (JSON; the defaults),
//! `CERTPILOT_ALERTS_TOPIC_ARN` and `CERTPILOT_EVENT_BUS` (where findings go), `CERTPILOT_ALLOW_NETWORKS`
//! (networks endpoints registered through the API may resolve into; checked at each probe). AWS access follows the standard configuration.

mod config;
mod handler;

use certpilot_app::App;
use certpilot_core::ports::ScanLimits;
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = config::Config::from_env()?;
    let app = App::aws(&config.table)
        .await
        .with_findings_policy(certpilot_aws::lambda::findings_policy()?)
        .with_channels(certpilot_aws::lambda::alert_channels()?)
        .with_address_policy(certpilot_aws::lambda::address_policy()?);
    let scanner = app.public_scanner(ScanLimits {
        concurrency: config.concurrency,
        target_timeout: config.target_timeout,
    });
    let queue = match &config.queue_url {
        Some(url) => Some(app.work_queue(url).await),
        None => None,
    };
    let scheduled = app.scheduled_scan(scanner, queue, config.schedule, config.target_timeout);
    let handler = handler::Handler::new(scheduled, config.target_timeout, app);
    lambda_runtime::run(service_fn(|event| handler.handle(event))).await
}
