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
//! `CERTPILOT_DNS_SYNC_TIMEOUT` (2m), `CERTPILOT_RENEWAL_BUDGET` (3m). DNS-01 goes through
//! Route 53 or RFC 2136 (a function in a VPC reaching the primary); HTTP-01 through a web
//! root (for example an EFS mount the web servers share).
//! AWS access follows the standard configuration.

mod config;
mod handler;

use std::sync::Arc;

use certpilot_acme::rfc2136::Rfc2136Dns;
use certpilot_acme::{AcmeIssuer, AcmeSettings};
use certpilot_aws::{Route53Dns, SecretsManagerStore, SqsIssuedSink};
use certpilot_core::ports::{IssuedSink, SystemClock};
use certpilot_core::services::acm::AcmService;
use certpilot_core::services::renew::{RenewService, RenewSettings};
use certpilot_deploy_aws::acm::AcmIssuer;
use certpilot_dynamodb::DynamoStore;
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
    let rfc2136 = Rfc2136Dns::new(
        secrets.clone(),
        std::time::Duration::from_secs(10),
        config.dns_sync_timeout,
    );
    let issuer = AcmeIssuer::new(
        secrets.clone(),
        AcmeSettings {
            timeout: config.acme_timeout,
            ca_file: config.acme_ca_file.clone(),
        },
    )
    .with_dns(
        "route53",
        Arc::new(Route53Dns::new(
            aws_sdk_route53::Client::new(&aws),
            config.dns_sync_timeout,
        )),
    )
    .with_dns("rfc2136", Arc::new(rfc2136));
    let sink = config.deploy_queue_url.as_ref().map(|url| {
        Arc::new(SqsIssuedSink::new(aws_sdk_sqs::Client::new(&aws), url)) as Arc<dyn IssuedSink>
    });
    let owner = certpilot_aws::lambda::worker_id();
    let acm = AcmService::new(
        store.clone(),
        Arc::new(AcmIssuer::new(aws.clone())),
        Arc::new(Route53Dns::new(
            aws_sdk_route53::Client::new(&aws),
            config.dns_sync_timeout,
        )),
        sink.clone(),
        Arc::new(SystemClock),
    );
    let renew = RenewService::new(
        store,
        secrets,
        Arc::new(issuer),
        sink,
        Arc::new(SystemClock),
        owner,
        RenewSettings {
            concurrency: config.concurrency,
            renewal_budget: config.renewal_budget,
            // A renewal started with its budget left must end within it, stalled CA or not.
            deadline: config.renewal_budget,
            ..RenewSettings::default()
        },
    )
    .with_acm(acm);
    let handler = handler::Handler::new(renew);
    lambda_runtime::run(service_fn(|event| handler.handle(event))).await
}
