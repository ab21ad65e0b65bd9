//! Generic webhooks for systems certpilot does not know (PagerDuty Events through a relay,
//! an in-house alert router), signed with the Standard Webhooks scheme so the receiver can
//! check that certpilot sent the message and when.
//!
//! The body is the Standard Webhooks envelope: `{"type": "finding.<transition>",
//! "timestamp": …, "data": {"schema": 1, "transition": …, "finding": {the findings JSON
//! fields}, "text": the plain one-line text}}`. `webhook-id` is the same on every retry of
//! one transition, so a receiver drops duplicates. A 2xx is acceptance; 429 (after its
//! `Retry-After`) and 5xx are retried; other answers are refusals a person must look at.

pub use certpilot_core::standard_webhooks as sign;

use certpilot_core::model::channel::Channel;
use certpilot_core::model::finding::Finding;
use certpilot_core::ports::{Notification, Notifier, NotifyError};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::http::{Answer, Http, Verdict, retrying, shown_url};

/// A signed webhook.
pub struct Webhook {
    channel: Channel,
    url: String,
    key: sign::Key,
    http: Http,
}

impl Webhook {
    pub(crate) fn new(channel: Channel, url: String, key: sign::Key, http: Http) -> Self {
        Webhook {
            channel,
            url,
            key,
            http,
        }
    }
}

/// The message's body (what is signed).
pub fn body(n: &Notification<'_>) -> serde_json::Value {
    json!({
        "type": format!("finding.{}", n.transition.as_str()),
        "timestamp": n.now.format(&Rfc3339).unwrap_or_default(),
        "data": {
            "schema": 1,
            "transition": n.transition,
            "finding": n.finding.public_json(),
            "text": crate::words::fallback(n),
        },
    })
}

/// The `webhook-id` of a transition: the same for every retry of it, another for the next.
pub fn message_id(n: &Notification<'_>) -> String {
    format!(
        "{}-{}-{}",
        n.finding.key,
        n.transition.as_str(),
        n.finding.updated_at.unix_timestamp()
    )
}

fn judge(what: &str, a: &Answer) -> Verdict {
    match a.status {
        200..=299 => Verdict::Accepted,
        429 => Verdict::Retry(format!("{what}: the receiver is rate limiting (429)")),
        s if s >= 500 => Verdict::Retry(format!("{what}: the receiver failed ({s})")),
        s => Verdict::Refused(format!(
            "{what}: the receiver refused the message ({s} {}); check its URL and that it knows the signing secret",
            crate::slack::blocks::cut(a.body.trim(), 200)
        )),
    }
}

#[async_trait::async_trait]
impl Notifier for Webhook {
    fn name(&self) -> &str {
        &self.channel.name
    }

    fn wants(&self, finding: &Finding) -> bool {
        self.channel.wants(finding)
    }

    async fn notify(&self, n: Notification<'_>) -> Result<(), NotifyError> {
        let what = format!("channel {} ({})", self.channel.name, shown_url(&self.url));
        let body = serde_json::to_vec(&body(&n))
            .map_err(|e| NotifyError::Refused(format!("{what}: {e}")))?;
        let id = message_id(&n);
        retrying(
            || {
                // A fresh timestamp per attempt: receivers refuse ones over five minutes old.
                let ts = time::OffsetDateTime::now_utc().unix_timestamp();
                let headers = [
                    ("webhook-id", id.clone()),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", sign::sign(&self.key, &id, ts, &body)),
                ];
                let http = self.http.clone();
                let (what, url, body) = (what.clone(), self.url.clone(), body.clone());
                async move { http.post_json(&what, &url, &headers, body).await }
            },
            |a| judge(&what, a),
        )
        .await
    }
}
