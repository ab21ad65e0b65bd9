//! Where people hear about findings: Slack, webhooks, SNS, EventBridge, the terminal.

use async_trait::async_trait;

use crate::model::finding::{Finding, Transition};

/// One message: a finding at one of its transitions.
#[derive(Clone, Copy, Debug)]
pub struct Notification<'a> {
    /// What happened to it.
    pub transition: Transition,
    /// The finding as it stands after the transition.
    pub finding: &'a Finding,
    /// When the message is sent (for "expires in N days").
    pub now: time::OffsetDateTime,
}

/// Why a channel did not accept a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// Try again later (an outage, a rate limit): the next run resends.
    #[error("{0}")]
    Unavailable(String),
    /// The channel refused it (a revoked webhook, a bad payload): a person must act; the
    /// next run tries again all the same, nothing is dropped.
    #[error("{0}")]
    Refused(String),
}

/// A channel.
///
/// Contract: `notify` returns `Ok` only once the channel accepted the message; it is bounded
/// in time (every network call has a timeout). A message may be sent again after a crash
/// between acceptance and its record, never twice in the normal course.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Its name (`slack-payments`), as configured and recorded in `delivered_to`.
    fn name(&self) -> &str;

    /// Whether this channel takes messages about `finding` (severity, kind, tags).
    fn wants(&self, finding: &Finding) -> bool;

    /// Delivers one message.
    async fn notify(&self, notification: Notification<'_>) -> Result<(), NotifyError>;
}
