//! The Slack function, subscribed to the alerts topic. Each SNS record (a finding's
//! transition, or an owner's daily digest, schema 1) becomes a Block Kit message posted to
//! the incoming webhook of the finding's owner, or the default one.
//!
//! Nothing is lost in a Slack outage: a message Slack does not take (after waiting out a
//! `429`'s `Retry-After` and retrying `5xx`) fails the invocation, so Lambda retries the
//! asynchronous event and then hands it to the dead-letter queue, which has an alarm.
//!
//! Settings (environment): `CERTPILOT_SLACK_WEBHOOK_SECRET` (required: the Secrets Manager
//! secret's name or ARN; it holds a webhook URL, or a JSON object from owner to URL with
//! `"*"` for the rest), `CERTPILOT_SECRET_TTL` (5m: how long the secret is kept before it
//! is read again, so a new URL is taken without a cold start). AWS access follows the
//! standard configuration.

mod handler;

use std::time::Duration;

use certpilot_aws::lambda::{duration, required};
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let secret = required(
        "CERTPILOT_SLACK_WEBHOOK_SECRET",
        "the Secrets Manager secret holding the Slack webhook URL(s)",
    )?;
    let ttl = duration("CERTPILOT_SECRET_TTL", Duration::from_secs(300))?;
    let config = certpilot_aws::config::load().await;
    // No prefix: the setting names the secret as Secrets Manager knows it.
    let secrets = certpilot_aws::SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&config),
        "",
        None,
    );
    let webhook = certpilot_notify::slack::Webhook::new()?;
    let handler = handler::Handler::new(Box::new(secrets), secret, ttl, webhook);
    lambda_runtime::run(service_fn(|event| handler.handle(event))).await
}
