//! The renew function. An EventBridge Scheduler tick renews every managed certificate that is
//! due (bounded concurrency, no renewal started without time to finish it); an event
//! `{"ids": ["shop"], "force": true}` renews those certificates; an ACM event (source
//! `aws.acm`, such as "ACM Certificate Approaching Expiration") checks the certificates it
//! names at once. Certificates issued by ACM are requested, followed to `ISSUED` and watched
//! (validation records, managed renewal). Each issuance is announced on the deploy queue.
//!
//! Settings (environment): `CERTPILOT_TABLE` (required), `CERTPILOT_DEPLOY_QUEUE_URL`,
//! `CERTPILOT_SECRETS_PREFIX` (`certpilot/`), `CERTPILOT_SECRETS_KMS_KEY`,
//! `CERTPILOT_CONCURRENCY` (8), `CERTPILOT_ACME_TIMEOUT` (60s), `CERTPILOT_ACME_CA_FILE`,
//! `CERTPILOT_DNS_SYNC_TIMEOUT` (2m), `CERTPILOT_RENEWAL_BUDGET` (3m), `CERTPILOT_SCAN_INTERVAL`
//! (1h, the scan function's, for `scan_stale`), `CERTPILOT_FINDINGS_POLICY`
//! (JSON; the defaults), `CERTPILOT_ALERTS_TOPIC_ARN` and `CERTPILOT_EVENT_BUS` (where
//! findings and `Certificate issued` events go). DNS-01 goes through
//! Route 53 or RFC 2136 (a function in a VPC reaching the primary); HTTP-01 through a web
//! root (for example an EFS mount the web servers share).
//! AWS access follows the standard configuration.

mod config;
mod handler;

use std::sync::Arc;

use certpilot_app::App;
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = config::Config::from_env()?;
    let app = App::aws(&config.table)
        .await
        .with_findings_policy(certpilot_aws::lambda::findings_policy()?)
        .with_channels(certpilot_aws::lambda::alert_channels()?);
    let sink = match &config.deploy_queue_url {
        Some(url) => Some(app.deploy_queue(url).await),
        None => None,
    };
    let issuer = Arc::new(app.acme_issuer(config.acme(), config.dns_sync_timeout));
    let owner = certpilot_aws::lambda::worker_id();
    let renew = app
        .renew_service(issuer, sink.clone(), owner, config.renew_settings())
        .with_acm(app.acm_service(sink, config.dns_sync_timeout));
    let handler = handler::Handler::new(renew).with_findings(app.clone());
    lambda_runtime::run(service_fn(|event| handler.handle(event))).await
}
