//! What every channel says of a finding, in words for people: one place, so Slack, a
//! webhook's `text` and (later) e-mail agree.

use certpilot_core::model::finding::{Finding, FindingKind, Severity, Transition};
use certpilot_core::ports::Notification;
use time::OffsetDateTime;

/// `not serving` for `not_serving`.
pub(crate) fn kind_words(kind: FindingKind) -> String {
    kind.as_str().replace('_', " ")
}

/// The transition as a headline word.
pub(crate) fn transition_words(n: &Notification<'_>) -> String {
    match n.transition {
        Transition::Opened => "New".into(),
        Transition::Escalated => format!("Now {}", n.finding.severity.as_str()),
        Transition::Reminded => "Still open".into(),
        Transition::Resolved => "Resolved".into(),
        Transition::Acknowledged => "Acknowledged".into(),
        Transition::Reopened => "Back again".into(),
    }
}

/// A mark people see at a glance.
pub(crate) fn mark(n: &Notification<'_>) -> &'static str {
    match (n.transition, n.finding.severity) {
        (Transition::Resolved, _) => "✅",
        (Transition::Acknowledged, _) => "🔕",
        (_, Severity::Critical) => "🔴",
        (_, Severity::Warning) => "🟠",
        (_, Severity::Info) => "🔵",
    }
}

/// `YYYY-MM-DD`.
pub(crate) fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// "3 days left (expires 2026-12-20)", "expired 2 days ago (2026-12-01)", or nothing when
/// the finding concerns no certificate's expiry.
pub(crate) fn days_left(f: &Finding, now: OffsetDateTime) -> Option<String> {
    let at = f.expires_at?;
    let days = (at - now).whole_days();
    Some(match days {
        d if at <= now => {
            let ago = -d;
            let plural = if ago == 1 { "" } else { "s" };
            format!("expired {ago} day{plural} ago ({})", date(at))
        }
        0 => format!("expires today ({})", date(at)),
        1 => format!("1 day left (expires {})", date(at)),
        d => format!("{d} days left (expires {})", date(at)),
    })
}

/// The plain one-line text: the notification's preview and the fallback of clients that
/// show no blocks. No links, no markup.
pub(crate) fn fallback(n: &Notification<'_>) -> String {
    let f = n.finding;
    let owner = f
        .owner
        .as_deref()
        .map(|o| format!(" (owner: {o})"))
        .unwrap_or_default();
    match n.transition {
        Transition::Resolved => format!("Resolved: {}{owner}", f.summary),
        Transition::Acknowledged => format!("Acknowledged: {}{owner}", f.summary),
        _ => format!(
            "{} {}: {}{owner}. Next: {}",
            transition_words(n),
            f.severity.as_str(),
            f.summary,
            f.next_step
        ),
    }
}
