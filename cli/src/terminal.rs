//! The terminal as a notification channel: what the CLI says of findings on stderr.

use certpilot_core::model::finding::{Finding, Transition};
use certpilot_core::ports::{Notification, Notifier, NotifyError};

/// The terminal as a channel: each transition as a line on stderr (stdout holds the
/// command's own rows).
pub(crate) struct Terminal;

#[async_trait::async_trait]
impl Notifier for Terminal {
    fn name(&self) -> &str {
        "terminal"
    }

    fn wants(&self, _: &Finding) -> bool {
        true
    }

    async fn notify(&self, n: Notification<'_>) -> Result<(), NotifyError> {
        let f = n.finding;
        let next = if n.transition == Transition::Resolved {
            String::new()
        } else {
            format!(" — {}", f.next_step)
        };
        eprintln!(
            "certpilot: {} {} {}: {}{next} [{}]",
            n.transition.as_str(),
            f.severity.as_str(),
            f.kind.as_str(),
            f.summary,
            f.key
        );
        Ok(())
    }
}
