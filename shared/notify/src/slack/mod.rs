//! Slack incoming webhooks: a Block Kit message per transition.
//!
//! Slack answers `200` with the plain text `ok`; errors are plain-text words with a 4xx
//! status (`400 invalid_blocks`, `404 no_service`, `410 channel_is_archived`…), which no
//! retry fixes; `429` carries `Retry-After` in seconds, which is honoured (Alertmanager does
//! not retry a 429, and loses the alert); `5xx` is retried.

pub mod blocks;
pub mod routes;

use certpilot_core::model::channel::Channel;
use certpilot_core::model::finding::Finding;
use certpilot_core::ports::{Notification, Notifier, NotifyError, SecretValue};

use crate::http::{Answer, Http, Verdict, retrying};

/// A Slack incoming webhook.
pub struct Slack {
    channel: Channel,
    url: SecretValue,
    http: Http,
}

impl Slack {
    pub(crate) fn new(channel: Channel, url: SecretValue, http: Http) -> Self {
        Slack { channel, url, http }
    }
}

/// What Slack's answer means, in words that say what to do.
fn judge(what: &str, a: &Answer) -> Verdict {
    let word = a.body.trim();
    match a.status {
        200 if word == "ok" => Verdict::Accepted,
        200 => Verdict::Refused(format!(
            "{what}: Slack answered 200 but not `ok` ({:?}); is the URL a Slack incoming webhook?",
            blocks::cut(word, 120)
        )),
        429 => Verdict::Retry(format!("{what}: Slack is rate limiting (429)")),
        s if s >= 500 => Verdict::Retry(format!(
            "{what}: Slack failed ({s} {})",
            blocks::cut(word, 120)
        )),
        s => {
            let hint = match word {
                "no_service" | "no_service_id" | "channel_not_found" | "invalid_token"
                | "no_team" => {
                    "the webhook was revoked or its URL is wrong: make a new one, then `certpilot channels remove` and `add`"
                }
                "channel_is_archived" => {
                    "the channel is archived: unarchive it or point the channel at another webhook"
                }
                "action_prohibited" | "posting_to_general_channel_denied" | "team_disabled" => {
                    "the workspace forbids this post: ask its admins"
                }
                "invalid_blocks" | "invalid_payload" | "no_text" | "too_many_attachments" => {
                    "Slack refused the message itself: a certpilot bug, please report it with this error"
                }
                _ => "see Slack's incoming webhook errors",
            };
            Verdict::Refused(format!(
                "{what}: Slack refused the message ({s} {}): {hint}",
                blocks::cut(word, 120)
            ))
        }
    }
}

#[async_trait::async_trait]
impl Notifier for Slack {
    fn name(&self) -> &str {
        &self.channel.name
    }

    fn wants(&self, finding: &Finding) -> bool {
        self.channel.wants(finding)
    }

    async fn notify(&self, n: Notification<'_>) -> Result<(), NotifyError> {
        let what = format!("channel {}", self.channel.name);
        let url = self.url.expose_str().map_err(|_| {
            NotifyError::Refused(format!("{what}: the stored webhook URL is not text"))
        })?;
        post(&self.http, &what, url, &blocks::message(&n)).await
    }
}

/// Posts `payload` to the incoming webhook at `url`: `429` waits for its `Retry-After`,
/// `5xx` and network failures are tried again, Slack's error words are explained. `what`
/// names the destination in errors (never the URL: it is the secret).
pub(crate) async fn post(
    http: &Http,
    what: &str,
    url: &str,
    payload: &serde_json::Value,
) -> Result<(), NotifyError> {
    let body =
        serde_json::to_vec(payload).map_err(|e| NotifyError::Refused(format!("{what}: {e}")))?;
    retrying(
        || http.post_json(what, url, &[], body.clone()),
        |a| judge(what, a),
    )
    .await
}

/// A Slack incoming webhook client for senders other than a channel (the Slack function):
/// the same answers, limits and retries.
pub struct Webhook(Http);

impl Webhook {
    /// A client with certpilot's timeouts.
    pub fn new() -> Result<Self, String> {
        Http::new().map(Webhook)
    }

    /// Posts a Block Kit `payload` to `url`; `what` names the destination in errors.
    pub async fn post(
        &self,
        what: &str,
        url: &str,
        payload: &serde_json::Value,
    ) -> Result<(), NotifyError> {
        post(&self.0, what, url, payload).await
    }
}
