//! The deploy function. Each "issued" message from the renew function's queue installs that
//! certificate at its deployments (ACM import, ELBv2 listeners, CloudFront, API Gateway
//! domains, through an assumed role where one is named) and proves by handshake that every
//! endpoint serves it; a deployment that does not is rolled back and recorded `not_serving`,
//! and its message is reported failed so SQS delivers it again (and, in the end, to the
//! dead-letter queue and its alarm). A redelivered message for a deployment already verified
//! does nothing. A scheduler tick (any other event) deploys every certificate not yet served
//! everywhere.
//!
//! Settings (environment): `CERTPILOT_TABLE` (required), `CERTPILOT_SECRETS_PREFIX`
//! (`certpilot/`), `CERTPILOT_VERIFY_INTERVAL` (10s), `CERTPILOT_VERIFY_MAX_DEADLINE` (10m,
//! capped by the time the invocation has left), `CERTPILOT_PROBE_TIMEOUT` (10s),
//! `CERTPILOT_SCAN_INTERVAL` (1h, the scan function's, for `scan_stale`), `CERTPILOT_ALLOW_NETWORKS`
//! (networks what the API registered may resolve into, checked at each probe), `CERTPILOT_FINDINGS_POLICY`
//! (JSON; the defaults), `CERTPILOT_ALERTS_TOPIC_ARN` and `CERTPILOT_EVENT_BUS` (where
//! findings and `Deployment verified` / `Deployment not serving` events go). AWS access
//! follows the standard configuration.

mod config;
mod handler;

use certpilot_app::{App, DEPLOY_LEASE};
use certpilot_core::services::verify::VerifyService;
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
    let verifier = VerifyService::new(app.public_scanner(config.probe_limits()));
    let leases = app.leases(certpilot_aws::lambda::worker_id(), DEPLOY_LEASE);
    let deploy = app.deploy_service(
        app.deploy_targets(),
        verifier,
        leases,
        config.deploy_settings(),
    );
    let handler = handler::Handler::new(deploy).with_findings(app.clone());
    lambda_runtime::run(service_fn(|event| handler.handle(event))).await
}
