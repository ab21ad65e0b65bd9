//! Decoding SNS records and posting them: all the handler does.

use std::time::Duration;

use aws_lambda_events::event::sns::SnsEvent;
use certpilot_core::ports::{NotifyError, SecretStore, SecretVersion};
use certpilot_notify::slack::Webhook;
use certpilot_notify::slack::routes::Routes;
use certpilot_notify::sns::{Body, read_message};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

/// A failed invocation: Lambda retries the event, then dead-letters it.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("event: {0}")]
    Event(String),
    #[error("the webhook secret {name}: {why}")]
    Secret { name: String, why: String },
    #[error("{0}")]
    Slack(NotifyError),
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        let class = match &e {
            FunctionError::Event(_) => certpilot_core::ErrorClass::Input,
            FunctionError::Secret { .. } => certpilot_core::ErrorClass::Permanent,
            FunctionError::Slack(NotifyError::Unavailable(_)) => {
                certpilot_core::ErrorClass::Retryable
            }
            FunctionError::Slack(NotifyError::Refused(_)) => certpilot_core::ErrorClass::Permanent,
        };
        Diagnostic {
            error_type: certpilot_aws::lambda::error_type(class).into(),
            error_message: e.to_string(),
        }
    }
}

pub struct Handler {
    secrets: Box<dyn SecretStore>,
    secret: String,
    ttl: Duration,
    routes: Mutex<Option<(Routes, Instant)>>,
    webhook: Webhook,
}

impl Handler {
    pub fn new(
        secrets: Box<dyn SecretStore>,
        secret: String,
        ttl: Duration,
        webhook: Webhook,
    ) -> Self {
        Handler {
            secrets,
            secret,
            ttl,
            routes: Mutex::new(None),
            webhook,
        }
    }

    /// The webhook routes, read again once `ttl` has passed.
    async fn routes(&self) -> Result<Routes, FunctionError> {
        let mut cached = self.routes.lock().await;
        if let Some((routes, at)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(routes.clone());
        }
        let bad = |why: String| FunctionError::Secret {
            name: self.secret.clone(),
            why,
        };
        let (_, value) = self
            .secrets
            .get(&self.secret, &SecretVersion::Current)
            .await
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("does not exist".into()))?;
        let text = value.expose_str().map_err(|_| bad("is not text".into()))?;
        let routes = Routes::parse(text).map_err(bad)?;
        *cached = Some((routes.clone(), Instant::now()));
        Ok(routes)
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
        let sns: SnsEvent = serde_json::from_value(event.payload)
            .map_err(|e| FunctionError::Event(format!("not an SNS event: {e}")))?;
        let routes = self.routes().await?;
        let now = time::OffsetDateTime::now_utc();
        let (mut posted, mut skipped) = (0, 0);
        for record in sns.records {
            let message_id = record.sns.message_id.clone();
            let body = read_message(&record.sns.message)
                .map_err(|e| FunctionError::Event(format!("SNS message {message_id}: {e}")))?;
            let (owner, payload, what) = match &body {
                Body::Transition(transition, finding) => (
                    finding.owner.clone(),
                    certpilot_notify::slack::blocks::message(
                        &certpilot_core::ports::Notification {
                            transition: *transition,
                            finding,
                            now,
                        },
                    ),
                    format!("{} {}", transition.as_str(), finding.key),
                ),
                Body::Digest(d) => (
                    Some(d.owner.clone())
                        .filter(|o| o != certpilot_core::services::digest::NO_OWNER),
                    certpilot_notify::slack::blocks::digest(d),
                    format!("digest for {}", d.owner),
                ),
            };
            let Some(url) = routes.url_for(owner.as_deref()) else {
                info!(%message_id, owner = owner.as_deref().unwrap_or(""), %what, "no webhook for this owner and no \"*\"; not posted");
                skipped += 1;
                continue;
            };
            let destination = format!(
                "Slack webhook of {}",
                owner
                    .as_deref()
                    .filter(|o| routes.has_own(o))
                    .unwrap_or("\"*\"")
            );
            self.webhook
                .post(&destination, url, &payload)
                .await
                .map_err(|e| {
                    warn!(%message_id, %what, error = %e, "Slack did not take the message; the event is retried, then dead-lettered");
                    FunctionError::Slack(e)
                })?;
            info!(%message_id, %what, "posted to Slack");
            posted += 1;
        }
        Ok(json!({"posted": posted, "skipped": skipped}))
    }
}
