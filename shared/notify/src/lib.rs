//! certpilot's notification channels reached over HTTPS: Slack incoming webhooks (Block
//! Kit) and generic webhooks signed with the Standard Webhooks scheme.
//!
//! Each channel kind is a folder of the same shape (the message, the notifier and its
//! answers); [`notifier`] is the one place that builds a channel's notifier from its stored
//! configuration and its secret, so adding a kind is its folder and one arm there.

mod http;
pub mod slack;
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
    }
}

/// A channel's notifier, from its configuration and its secret.
pub fn notifier(channel: &Channel, secret: &SecretValue) -> Result<Arc<dyn Notifier>, String> {
    let http = http::Http::new()?;
    let text = secret
        .expose_str()
        .map_err(|_| "its secret is not text".to_owned())?
        .trim()
        .to_owned();
    check_secret(&channel.kind, &text)?;
    Ok(match &channel.kind {
        ChannelKind::Slack => Arc::new(slack::Slack::new(
            channel.clone(),
            SecretValue::new(text.into_bytes()),
            http,
        )),
        ChannelKind::Webhook { url } => Arc::new(webhook::Webhook::new(
            channel.clone(),
            url.clone(),
            webhook::sign::key(&text)?,
            http,
        )),
    })
}

/// Every channel's notifier. A channel that cannot be built (its secret is gone) still
/// takes its messages and refuses them with the reason, so they stay pending and the run
/// says why, rather than being dropped.
pub async fn notifiers(channels: &[Channel], secrets: &dyn SecretStore) -> Vec<Arc<dyn Notifier>> {
    let mut out: Vec<Arc<dyn Notifier>> = Vec::new();
    for channel in channels {
        let built = match secrets
            .get(&channel.secret_name(), &SecretVersion::Current)
            .await
        {
            Ok(Some((_, secret))) => notifier(channel, &secret),
            Ok(None) => Err(format!("its secret {} is missing", channel.secret_name())),
            Err(e) => Err(e.to_string()),
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
