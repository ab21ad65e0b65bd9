//! SNS topics: the AWS path. Every transition is one `Publish` to the alerts topic, which
//! teams subscribe to (the Slack function, e-mail, SQS, a pager) and filter.
//!
//! Settled, so that every subscriber agrees:
//! - The body is JSON, `{"schema": 1, "text": the plain one-line text, "transition": …,
//!   "finding": {the findings JSON fields}}`, indented and with the text first so that an
//!   e-mail subscriber reads the sentence before the data.
//! - Message attributes `severity`, `kind`, `transition`, and `environment` and `owner` when
//!   the finding has them (absent, not empty: a filter policy says `{"owner": [{"exists":
//!   false}]}` for the unowned), all of type `String` — five, under SQS raw delivery's limit
//!   of ten.
//! - Never `MessageStructure=json`: subscribers of some protocols would lose the attributes
//!   their filter policies read.
//! - `Subject` (the e-mail's subject line): ASCII, one line, at most 100 characters, as SNS
//!   requires.

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use certpilot_core::model::channel::Channel;
use certpilot_core::model::finding::{Finding, Severity, Transition};
use certpilot_core::ports::{Notification, Notifier, NotifyError};
use certpilot_core::services::digest::{Digest, NO_OWNER};

/// The schema of the body; a subscriber refuses another.
pub const SCHEMA: u64 = 1;

/// SNS's longest subject.
const MAX_SUBJECT: usize = 100;

/// What is published for one transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The e-mail subject line.
    pub subject: String,
    /// The JSON body.
    pub body: String,
    /// The filterable attributes, name and value.
    pub attributes: Vec<(&'static str, String)>,
}

/// The message of a transition.
pub fn message(n: &Notification<'_>) -> Message {
    let f = n.finding;
    let text = crate::words::fallback(n);
    let body = body(
        text,
        &[
            ("transition", serde_json::json!(n.transition.as_str())),
            ("finding", f.public_json()),
        ],
    );
    let mut attributes = vec![
        ("severity", f.severity.as_str().to_owned()),
        ("kind", f.kind.as_str().to_owned()),
        ("transition", n.transition.as_str().to_owned()),
    ];
    if let Some(e) = f.environment.as_ref().filter(|e| !e.is_empty()) {
        attributes.push(("environment", e.clone()));
    }
    if let Some(o) = f.owner.as_ref().filter(|o| !o.is_empty()) {
        attributes.push(("owner", o.clone()));
    }
    Message {
        subject: subject(n),
        body,
        attributes,
    }
}

/// A body: `schema` and the sentence `text` first (for people reading an e-mail), then
/// `fields` in order, indented. Written out by hand because serde_json's maps sort keys.
fn body(text: String, fields: &[(&str, serde_json::Value)]) -> String {
    let mut out = format!(
        "{{\n  \"schema\": {SCHEMA},\n  \"text\": {}",
        serde_json::Value::String(text)
    );
    for (name, value) in fields {
        let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
        out.push_str(&format!(
            ",\n  \"{name}\": {}",
            pretty.replace('\n', "\n  ")
        ));
    }
    out.push_str("\n}");
    out
}

/// `certpilot: New critical expired: shop.example.com:443 serves …`, made to SNS's rules.
fn subject(n: &Notification<'_>) -> String {
    let f = n.finding;
    let head = match n.transition {
        Transition::Resolved | Transition::Acknowledged => crate::words::transition_words(n),
        _ => format!(
            "{} {}",
            crate::words::transition_words(n),
            f.severity.as_str()
        ),
    };
    let line = format!(
        "certpilot: {head} {}: {}",
        crate::words::kind_words(f.kind),
        f.summary
    );
    ascii_line(&line, MAX_SUBJECT)
}

/// `text` as one line of printable ASCII of at most `max` characters (`...` when cut).
pub(crate) fn ascii_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| match c {
            ' '..='~' => c,
            '—' | '–' => '-',
            _ if c.is_whitespace() => ' ',
            _ => '?',
        })
        .collect();
    if out.len() > max {
        out.truncate(max - 3);
        out.push_str("...");
    }
    out
}

/// A body as a subscriber receives it: the transition and the finding. The error names
/// what is wrong (another schema, a missing field).
pub fn read_body(body: &str) -> Result<(Transition, Finding), String> {
    match read_message(body)? {
        Body::Transition(t, f) => Ok((t, *f)),
        Body::Digest(d) => Err(format!("a digest (for {}), not a transition", d.owner)),
    }
}

/// What a message of the alerts topic holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// A finding's transition.
    Transition(Transition, Box<Finding>),
    /// An owner's daily digest.
    Digest(Digest),
}

/// Any message of the alerts topic. The error names what is wrong (another schema, a
/// missing field).
pub fn read_message(body: &str) -> Result<Body, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the message is not JSON: {e}"))?;
    match v.get("schema").and_then(serde_json::Value::as_u64) {
        Some(SCHEMA) => {}
        other => {
            return Err(format!(
                "schema {other:?}: this subscriber reads schema {SCHEMA}"
            ));
        }
    }
    if let Some(d) = v.get("digest") {
        let digest: Digest =
            serde_json::from_value(d.clone()).map_err(|e| format!("digest: {e}"))?;
        return Ok(Body::Digest(digest));
    }
    let transition: Transition = v
        .get("transition")
        .cloned()
        .ok_or("no transition")
        .and_then(|t| serde_json::from_value(t).map_err(|_| "transition: not a transition"))
        .map_err(str::to_owned)?;
    let finding = Finding::from_public_json(v.get("finding").ok_or("no finding")?)?;
    Ok(Body::Transition(transition, Box::new(finding)))
}

/// The message of an owner's digest: `{"schema": 1, "text", "digest"}`, with the attributes
/// `kind` = `digest`, `owner` (absent for [`NO_OWNER`]) and `severity` (the worst open
/// finding's, `info` when none), so a team's subscription that filters on its owner gets
/// its digest too.
pub fn digest_message(d: &Digest) -> Message {
    let body = body(
        d.text(),
        &[("digest", serde_json::to_value(d).unwrap_or_default())],
    );
    let mut attributes = vec![
        (
            "severity",
            d.worst().unwrap_or(Severity::Info).as_str().to_owned(),
        ),
        ("kind", "digest".to_owned()),
        ("transition", "digest".to_owned()),
    ];
    if d.owner != NO_OWNER {
        attributes.push(("owner", d.owner.clone()));
    }
    Message {
        subject: ascii_line(&format!("certpilot digest: {}", d.headline()), MAX_SUBJECT),
        body,
        attributes,
    }
}

/// Publishes `m` to `topic_arn`, its attributes as `String`s. `what` names the destination
/// in errors.
pub async fn publish(
    client: &Client,
    topic_arn: &str,
    what: &str,
    m: Message,
) -> Result<(), NotifyError> {
    let mut publish = client
        .publish()
        .topic_arn(topic_arn)
        .subject(m.subject)
        .message(m.body);
    for (name, value) in m.attributes {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| NotifyError::Refused(format!("{what}: {e}")))?;
        publish = publish.message_attributes(name, value);
    }
    publish
        .send()
        .await
        .map(drop)
        .map_err(|e| crate::aws_error(what, "Publish", &e))
}

/// An SNS topic.
pub struct Sns {
    channel: Channel,
    topic_arn: String,
    client: Client,
}

impl Sns {
    pub(crate) fn new(channel: Channel, topic_arn: String, client: Client) -> Self {
        Sns {
            channel,
            topic_arn,
            client,
        }
    }
}

#[async_trait::async_trait]
impl Notifier for Sns {
    fn name(&self) -> &str {
        &self.channel.name
    }

    fn wants(&self, finding: &Finding) -> bool {
        self.channel.wants(finding)
    }

    async fn notify(&self, n: Notification<'_>) -> Result<(), NotifyError> {
        let what = format!("channel {} (SNS {})", self.channel.name, self.topic_arn);
        publish(&self.client, &self.topic_arn, &what, message(&n)).await
    }
}
