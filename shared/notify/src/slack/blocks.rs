//! A finding's transition as a Slack Block Kit message, within Slack's limits.
//!
//! What an on-call reader needs, in this order: what happened (header), the summary and its
//! detail (what is served instead, the CA's or the target's words), where, who owns it,
//! days left, the next step, and the key to mute it with. Resolved messages say so and drop
//! the next step. Every text is cut to Slack's limits (header 150, section 3000, field 2000
//! characters; 10 fields; 50 blocks) so a long error never costs the whole message a
//! `400 invalid_blocks`.

use certpilot_core::model::finding::{FindingState, Transition};
use certpilot_core::ports::Notification;
use serde_json::{Value, json};

use crate::words;

/// The longest header text.
pub const MAX_HEADER: usize = 150;
/// The longest section text.
pub const MAX_SECTION: usize = 3000;
/// The longest text of one section field.
pub const MAX_FIELD: usize = 2000;
/// The most fields in one section.
pub const MAX_FIELDS: usize = 10;
/// The most blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Top-level `text` Slack keeps whole (it truncates beyond 40,000; 4,000 is its advice).
pub const MAX_TEXT: usize = 4000;

/// Cuts `s` to at most `max` characters, marking the cut.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escapes what Slack's mrkdwn treats as markup: `&`, `<`, `>` (so a served subject such
/// as `<script>` or `<!channel>` in a certificate name is shown, never acted upon).
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escaped and cut, escaping first so the cut never splits an entity's meaning away from
/// the limit.
fn mrkdwn(s: &str, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": cut(&escape(s), max)})
}

/// The message for `n`.
pub fn message(n: &Notification<'_>) -> Value {
    let f = n.finding;
    let resolved = n.transition == Transition::Resolved;
    let header = format!(
        "{} {} · {} · {}",
        words::mark(n),
        words::transition_words(n),
        f.severity.as_str(),
        words::kind_words(f.kind)
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&header, MAX_HEADER), "emoji": true}}),
        json!({"type": "section", "text": mrkdwn(
            &if f.detail.is_empty() {
                format!("*{}*", f.summary)
            } else {
                format!("*{}*\n{}", f.summary, f.detail)
            },
            MAX_SECTION,
        )}),
    ];
    let mut fields = vec![format!("*Where*\n{}", f.subject)];
    fields.push(format!(
        "*Owner*\n{}",
        f.owner.as_deref().unwrap_or("no owner tag")
    ));
    if let Some(env) = &f.environment {
        fields.push(format!("*Environment*\n{env}"));
    }
    if let Some(left) = words::days_left(f, n.now).filter(|_| !resolved) {
        fields.push(format!("*Expiry*\n{left}"));
    }
    if f.state == FindingState::Acknowledged
        && let Some(until) = f.acknowledged_until
    {
        fields.push(format!(
            "*Muted until*\n{} — {}",
            words::date(until),
            f.acknowledged_reason
                .as_deref()
                .unwrap_or("no reason given")
        ));
    }
    let fields: Vec<Value> = fields
        .iter()
        .take(MAX_FIELDS)
        .map(|t| mrkdwn(t, MAX_FIELD))
        .collect();
    blocks.push(json!({"type": "section", "fields": fields}));
    if resolved {
        blocks.push(json!({"type": "section", "text": mrkdwn("Nothing more to do: the problem is gone.", MAX_SECTION)}));
    } else {
        blocks.push(json!({"type": "section", "text": mrkdwn(&format!("*Next step*\n{}", f.next_step), MAX_SECTION)}));
    }
    let mut context = format!(
        "certpilot · `{}` · opened {}",
        f.key,
        words::date(f.opened_at)
    );
    if f.state == FindingState::Open {
        context.push_str(&format!(
            " · to mute: `certpilot findings ack {} --until DATE --reason TEXT`",
            f.key
        ));
    }
    blocks.push(json!({"type": "context", "elements": [mrkdwn(&context, MAX_SECTION)]}));
    blocks.truncate(MAX_BLOCKS);
    json!({
        "text": cut(&words::fallback(n), MAX_TEXT),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// The message of an owner's digest: a header, the headline, then one section per finding
/// and per expiry, most severe and soonest first, within 50 blocks (the last says how many
/// more there are).
pub fn digest(d: &certpilot_core::services::digest::Digest) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&format!("Daily certificate digest · {}", d.owner), MAX_HEADER), "emoji": true}}),
        json!({"type": "section", "text": mrkdwn(&d.headline(), MAX_SECTION)}),
    ];
    let mut lines: Vec<String> = d
        .findings
        .iter()
        .map(|f| {
            format!(
                "*{} {}*: {}\n{}",
                f["severity"].as_str().unwrap_or(""),
                f["kind"].as_str().unwrap_or(""),
                f["summary"].as_str().unwrap_or(""),
                f["next_step"].as_str().unwrap_or("")
            )
        })
        .collect();
    lines.extend(d.expiring.iter().map(|e| {
        format!(
            "*expires in {} days* ({}): {}",
            e["days_left"],
            e["not_after"].as_str().unwrap_or(""),
            certpilot_core::services::digest::expiring_what(e)
        )
    }));
    // Two blocks above, one kept for "and N more".
    let room = MAX_BLOCKS - blocks.len() - 1;
    let more = lines.len().saturating_sub(room);
    for line in lines.iter().take(room) {
        blocks.push(json!({"type": "section", "text": mrkdwn(line, MAX_SECTION)}));
    }
    if more > 0 {
        blocks.push(json!({"type": "context", "elements": [mrkdwn(&format!("…and {more} more: `certpilot digest --owner {}`", d.owner), MAX_SECTION)]}));
    }
    json!({
        "text": cut(&d.text(), MAX_TEXT),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_keeps_the_limit_and_marks_the_cut() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut(&"é".repeat(5000), 3000).chars().count(), 3000);
    }

    #[test]
    fn markup_in_served_names_is_shown_not_acted_upon() {
        assert_eq!(
            escape("<!channel> & <@U1>"),
            "&lt;!channel&gt; &amp; &lt;@U1&gt;"
        );
    }
}
