//! certpilot's notification channels: Slack incoming webhooks (Block Kit), generic webhooks
//! signed with the Standard Webhooks scheme, SNS topics with filterable attributes, and
//! EventBridge buses.
//!
//! Each channel kind is a folder of the same shape (the message, the notifier and its
//! answers); [`notifier`] is the one place that builds a channel's notifier from its stored
//! configuration and its secret, so adding a kind is its folder and one arm there.

pub mod eventbridge;
mod http;
pub mod slack;
pub mod sns;
pub mod webhook;
mod words;

use std::sync::Arc;

use certpilot_core::model::channel::{Channel, ChannelKind};
use certpilot_core::model::finding::{Finding, FindingKind, FindingState, Severity, Subject};
use certpilot_core::ports::{
    Notification, Notifier, NotifyError, SecretStore, SecretValue, SecretVersion,
};

pub use http::{check_url, shown_url};

/// Checks a channel's secret before it is stored: a Slack webhook's URL, a webhook's
/// signing secret. The error says what is wrong and never repeats the secret.
pub fn check_secret(kind: &ChannelKind, secret: &str) -> Result<(), String> {
    match kind {
        ChannelKind::Slack => check_url(secret.trim()).map_err(|e| format!("the webhook URL {e}")),
        ChannelKind::Webhook { .. } => webhook::sign::key(secret)
            .map(|_| ())
            .map_err(|e| format!("the signing secret {e}")),
        ChannelKind::Sns { .. } | ChannelKind::EventBridge { .. } => Ok(()),
    }
}

/// An AWS SDK error as a channel's answer: transient ones (throttling, timeouts, the
/// service's own failures) are tried again by the next run, the rest need a person.
pub(crate) fn aws_error<E, R>(
    what: &str,
    operation: &str,
    e: &aws_sdk_sns::error::SdkError<E, R>,
) -> NotifyError
where
    E: aws_sdk_sns::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let (code, detail) = certpilot_aws::describe_sdk_error(e);
    let text = format!("{what}: {operation}: {detail}");
    if certpilot_aws::is_transient(&code)
        || matches!(
            code.as_str(),
            "InternalErrorException" | "InternalException" | "KMSThrottlingException"
        )
    {
        NotifyError::Unavailable(text)
    } else {
        NotifyError::Refused(text)
    }
}

/// A channel's notifier, from its configuration, its secret (for the kinds that need one)
/// and the AWS configuration (for SNS and EventBridge).
pub fn notifier(
    channel: &Channel,
    secret: Option<&SecretValue>,
    aws: Option<&aws_config::SdkConfig>,
) -> Result<Arc<dyn Notifier>, String> {
    let aws = || aws.ok_or_else(|| "no AWS configuration to reach it".to_owned());
    let secret = || -> Result<String, String> {
        let text = secret
            .ok_or_else(|| format!("its secret {} is missing", channel.secret_name()))?
            .expose_str()
            .map_err(|_| "its secret is not text".to_owned())?
            .trim()
            .to_owned();
        check_secret(&channel.kind, &text)?;
        Ok(text)
    };
    Ok(match &channel.kind {
        ChannelKind::Slack => Arc::new(slack::Slack::new(
            channel.clone(),
            SecretValue::new(secret()?.into_bytes()),
            http::Http::new()?,
        )),
        ChannelKind::Webhook { url } => Arc::new(webhook::Webhook::new(
            channel.clone(),
            url.clone(),
            webhook::sign::key(&secret()?)?,
            http::Http::new()?,
        )),
        ChannelKind::Sns { topic_arn } => Arc::new(sns::Sns::new(
            channel.clone(),
            topic_arn.clone(),
            aws_sdk_sns::Client::new(aws()?),
        )),
        ChannelKind::EventBridge { bus } => Arc::new(eventbridge::EventBridge::new(
            channel.clone(),
            bus.clone(),
            aws_sdk_eventbridge::Client::new(aws()?),
        )),
    })
}

/// Every channel's notifier. A channel that cannot be built (its secret is gone) still
/// takes its messages and refuses them with the reason, so they stay pending and the run
/// says why, rather than being dropped.
pub async fn notifiers(
    channels: &[Channel],
    secrets: &dyn SecretStore,
    aws: Option<&aws_config::SdkConfig>,
) -> Vec<Arc<dyn Notifier>> {
    let mut out: Vec<Arc<dyn Notifier>> = Vec::new();
    for channel in channels {
        let built = if channel.kind.needs_secret() {
            match secrets
                .get(&channel.secret_name(), &SecretVersion::Current)
                .await
            {
                Ok(Some((_, secret))) => notifier(channel, Some(&secret), aws),
                Ok(None) => Err(format!("its secret {} is missing", channel.secret_name())),
                Err(e) => Err(e.to_string()),
            }
        } else {
            notifier(channel, None, aws)
        };
        out.push(built.unwrap_or_else(|why| {
            Arc::new(Broken {
                channel: channel.clone(),
                why,
            })
        }));
    }
    out
}

/// A channel that cannot send: every message it wants is refused with the reason.
struct Broken {
    channel: Channel,
    why: String,
}

#[async_trait::async_trait]
impl Notifier for Broken {
    fn name(&self) -> &str {
        &self.channel.name
    }

    fn wants(&self, finding: &Finding) -> bool {
        self.channel.wants(finding)
    }

    async fn notify(&self, _: Notification<'_>) -> Result<(), NotifyError> {
        Err(NotifyError::Refused(format!(
            "channel {}: {}",
            self.channel.name, self.why
        )))
    }
}

/// The sample `certpilot channels test` sends: an expiring certificate, plainly marked as
/// a test, tagged like the findings the channel takes so it matches its own rule.
pub fn sample(channel: &Channel, now: time::OffsetDateTime) -> Finding {
    let subject = Subject::endpoint("certpilot-test.example:443", Some("192.0.2.10:443"));
    let mut tags = channel.matches.clone();
    tags.insert("certpilot-test".into(), "true".into());
    Finding {
        key: certpilot_core::model::finding::finding_key(FindingKind::Expiring, &subject),
        kind: FindingKind::Expiring,
        severity: channel.min_severity.max(Severity::Warning),
        state: FindingState::Open,
        subject,
        summary: format!(
            "Test from certpilot: channel {} works (nothing is wrong)",
            channel.name
        ),
        detail: "this is what a finding looks like here; no certificate is concerned".into(),
        next_step: "nothing: this was `certpilot channels test`".into(),
        owner: tags.get("owner").cloned(),
        environment: tags.get("environment").cloned(),
        tags,
        fact: String::new(),
        expires_at: Some(now + time::Duration::days(12)),
        opened_at: now,
        updated_at: now,
        resolved_at: None,
        acknowledged_until: None,
        acknowledged_reason: None,
        notified_at: None,
        pending: None,
        delivered_to: Vec::new(),
        sending_until: None,
        version: 0,
    }
}
