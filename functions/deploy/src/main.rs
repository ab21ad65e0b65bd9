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
//! capped by the time the invocation has left), `CERTPILOT_PROBE_TIMEOUT` (10s). AWS access
//! follows the standard configuration.

mod config;
mod handler;

use std::sync::Arc;

use certpilot_aws::SecretsManagerStore;
use certpilot_core::ports::{Clock, DeployTargets, ScanLimits, SystemClock};
use certpilot_core::services::deploy::{DeployService, DeploySettings};
use certpilot_core::services::lease::Leases;
use certpilot_core::services::scan::ScanService;
use certpilot_core::services::verify::VerifyService;
use certpilot_deploy_aws::AwsDeployTargets;
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
    let secrets = Arc::new(SecretsManagerStore::from_config(&aws));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let scanner = ScanService::new(
        Arc::new(TlsProber::new(TrustStore::mozilla(), Deadlines::default())),
        clock.clone(),
        ScanLimits {
            concurrency: 64,
            target_timeout: config.probe_timeout,
        },
    );
    let targets: Arc<dyn DeployTargets> = AwsDeployTargets::new(aws);
    let leases = Leases::new(
        store.clone(),
        clock.clone(),
        certpilot_aws::lambda::worker_id(),
        std::time::Duration::from_secs(600),
    );
    let handler = handler::Handler::new(
        DeployService::new(
            store,
            secrets,
            targets,
            VerifyService::new(scanner),
            clock,
            DeploySettings {
                interval: config.verify_interval,
                max_deadline: Some(config.verify_max_deadline),
            },
        )
        .with_leases(leases),
    );
    lambda_runtime::run(service_fn(|event| handler.handle(event))).await
}
