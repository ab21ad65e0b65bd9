//! EventBridge buses: every transition (and, from the functions, every issuance, deploy and
//! verify outcome) as a `certpilot` event, so teams route them with rules to anything
//! EventBridge reaches.
//!
//! Settled: source `certpilot`; detail-types `Finding opened`, `Finding escalated`, `Finding
//! reminded`, `Finding resolved`, `Finding acknowledged`, `Finding reopened`, `Certificate
//! issued`, `Deployment verified`, `Deployment not serving`; a finding's detail is the SNS
//! body's object (`{"schema": 1, "text", "transition", "finding"}`).
//!
//! `PutEvents` takes at most 10 entries and answers 200 even when some fail: the failed
//! entries (throttled, an internal failure) are sent again, up to [`ATTEMPTS`] times.

use std::time::Duration;

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use certpilot_core::model::channel::Channel;
use certpilot_core::model::finding::{Finding, Transition};
use certpilot_core::ports::{Notification, Notifier, NotifyError};
use serde_json::json;

/// Every event's source.
pub const SOURCE: &str = "certpilot";

/// Entries one `PutEvents` takes.
const BATCH: usize = 10;

/// Tries per entry before its failure is the caller's.
pub const ATTEMPTS: u32 = 4;

/// One event: its detail-type and detail.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `Finding opened`, `Certificate issued`…
    pub detail_type: String,
    /// The JSON detail.
    pub detail: serde_json::Value,
}

/// The detail-type of a finding's transition.
pub fn finding_detail_type(t: Transition) -> String {
    let word = t.as_str();
    format!("Finding {word}")
}

/// The event of a transition.
pub fn finding_event(n: &Notification<'_>) -> Event {
    Event {
        detail_type: finding_detail_type(n.transition),
        detail: json!({
            "schema": crate::sns::SCHEMA,
            "text": crate::words::fallback(n),
            "transition": n.transition,
            "finding": n.finding.public_json(),
        }),
    }
}

/// `Certificate issued`: a renewal that issued, its detail the row `certpilot renew` prints.
pub const CERTIFICATE_ISSUED: &str = "Certificate issued";
/// `Deployment verified`: every endpoint of a deployment serves the new certificate.
pub const DEPLOYMENT_VERIFIED: &str = "Deployment verified";
/// `Deployment not serving`: a deployment installed but not served everywhere (rolled back
/// where it could be), or failed.
pub const DEPLOYMENT_NOT_SERVING: &str = "Deployment not serving";

/// An outcome event: one of the detail-types above and its detail (`schema` is added).
pub fn outcome_event(detail_type: &str, mut detail: serde_json::Value) -> Event {
    if let Some(m) = detail.as_object_mut() {
        m.insert("schema".into(), json!(crate::sns::SCHEMA));
    }
    Event {
        detail_type: detail_type.to_owned(),
        detail,
    }
}

/// Puts `events` on `bus`, 10 per request, sending failed entries again (with a growing
/// pause) while the failure may pass. `what` names the destination in errors.
pub async fn put_events(
    client: &Client,
    bus: &str,
    what: &str,
    events: &[Event],
) -> Result<(), NotifyError> {
    for chunk in events.chunks(BATCH) {
        let mut pending: Vec<&Event> = chunk.iter().collect();
        let mut pause = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            let entries: Vec<PutEventsRequestEntry> = pending
                .iter()
                .map(|e| {
                    PutEventsRequestEntry::builder()
                        .source(SOURCE)
                        .detail_type(&e.detail_type)
                        .detail(e.detail.to_string())
                        .event_bus_name(bus)
                        .build()
                })
                .collect();
            let out = client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| crate::aws_error(what, "PutEvents", &e))?;
            if out.failed_entry_count() == 0 {
                break;
            }
            // Entries answer in request order: keep the ones that failed.
            let mut again = Vec::new();
            let mut refused = None;
            for (event, answer) in pending.iter().zip(out.entries()) {
                let Some(code) = answer.error_code() else {
                    continue;
                };
                let detail = format!(
                    "{what}: PutEvents {}: {code} {}",
                    event.detail_type,
                    answer.error_message().unwrap_or_default()
                );
                if certpilot_aws::is_transient(code) || code == "InternalException" {
                    again.push((*event, detail));
                } else {
                    refused.get_or_insert(detail);
                }
            }
            if let Some(detail) = refused {
                return Err(NotifyError::Refused(detail));
            }
            if again.is_empty() {
                break;
            }
            if attempt == ATTEMPTS {
                let (_, detail) = again.swap_remove(0);
                return Err(NotifyError::Unavailable(detail));
            }
            tracing::warn!(
                failed = again.len(),
                attempt,
                "PutEvents: entries failed; sending them again"
            );
            pending = again.into_iter().map(|(e, _)| e).collect();
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    Ok(())
}

/// An EventBridge bus as a channel.
pub struct EventBridge {
    channel: Channel,
    bus: String,
    client: Client,
}

impl EventBridge {
    pub(crate) fn new(channel: Channel, bus: String, client: Client) -> Self {
        EventBridge {
            channel,
            bus,
            client,
        }
    }
}

#[async_trait::async_trait]
impl Notifier for EventBridge {
    fn name(&self) -> &str {
        &self.channel.name
    }

    fn wants(&self, finding: &Finding) -> bool {
        self.channel.wants(finding)
    }

    async fn notify(&self, n: Notification<'_>) -> Result<(), NotifyError> {
        let what = format!(
            "channel {} (EventBridge bus {})",
            self.channel.name, self.bus
        );
        put_events(&self.client, &self.bus, &what, &[finding_event(&n)]).await
    }
}
