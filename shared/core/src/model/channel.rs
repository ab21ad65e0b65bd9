//! Channels: where people hear about findings, and which findings each one takes.
//!
//! A channel is configuration, stored with everything else; what makes it reachable (a
//! Slack webhook URL, a signing secret) lives in the secret store under
//! [`Channel::secret_name`] and never in this record, so listing channels prints nothing
//! secret.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::finding::{Finding, FindingKind, Severity};

/// How a channel delivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelKind {
    /// A Slack incoming webhook (its URL is the secret).
    Slack,
    /// A generic HTTPS webhook signed with the Standard Webhooks scheme (the signing secret
    /// is the secret; the URL may be shown, without its query).
    Webhook {
        /// Where it posts.
        url: String,
    },
    /// An SNS topic (the AWS path): subscribers filter on the message attributes `severity`,
    /// `kind`, `environment` and `owner`, and route to the Slack function, e-mail, SQS…
    /// No secret: access is the caller's IAM identity.
    Sns {
        /// The topic's ARN.
        topic_arn: String,
    },
    /// An EventBridge bus: every transition as a `certpilot` event (`Finding opened`…), for
    /// rules to route anywhere. No secret: access is the caller's IAM identity.
    #[serde(rename = "eventbridge")]
    EventBridge {
        /// The bus's name or ARN (`default`).
        bus: String,
    },
}

impl ChannelKind {
    /// Its name in listings (`slack`, `webhook`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Sns { .. } => "sns",
            ChannelKind::EventBridge { .. } => "eventbridge",
        }
    }

    /// Whether it needs a secret (a Slack URL, a signing secret); AWS channels use the
    /// caller's IAM identity.
    pub fn needs_secret(&self) -> bool {
        matches!(self, ChannelKind::Slack | ChannelKind::Webhook { .. })
    }
}

/// Checks an SNS topic ARN (`arn:aws:sns:REGION:ACCOUNT:NAME`): the error says what is wrong.
pub fn check_topic_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && !parts[5].is_empty()
        && parts[5].len() <= 256
        && parts[5]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err("is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)".into())
    }
}

/// Checks an EventBridge bus name or ARN: 1–256 characters of letters, digits and `.-_/`
/// (names), or an `arn:aws:events:…:event-bus/NAME`.
pub fn check_event_bus(bus: &str) -> Result<(), String> {
    let name = bus
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":event-bus/").map(|(_, n)| n))
        .unwrap_or(bus);
    let ok = !name.is_empty()
        && bus.len() <= 1600
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/".contains(c));
    if ok {
        Ok(())
    } else {
        Err("is not an EventBridge bus name or ARN (default, ops-bus, arn:aws:events:REGION:ACCOUNT:event-bus/NAME)".into())
    }
}

/// A configured channel and its routing rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Its name (`slack-payments`): lowercase letters, digits and `-`.
    pub name: String,
    /// How it delivers.
    pub kind: ChannelKind,
    /// The least severe finding it takes.
    pub min_severity: Severity,
    /// Only these kinds (every kind when empty).
    #[serde(default)]
    pub kinds: Vec<FindingKind>,
    /// Only findings whose tags hold each of these (`owner=payments`); `owner` and
    /// `environment` are tags like any other.
    #[serde(default)]
    pub matches: BTreeMap<String, String>,
}

/// Why a channel name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel name {name:?}: {reason}")]
pub struct ChannelNameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The longest channel name.
pub const MAX_CHANNEL_NAME: usize = 64;

/// Checks a channel name: 1–64 characters of lowercase letters, digits and `-`, starting
/// with a letter (it is part of a secret's name and of `delivered_to`).
pub fn check_channel_name(name: &str) -> Result<(), ChannelNameError> {
    let err = |reason| ChannelNameError {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(err("is empty"));
    }
    if name.len() > MAX_CHANNEL_NAME {
        return Err(err("is longer than 64 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(err("must start with a lowercase letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(err("may hold only lowercase letters, digits and '-'"));
    }
    if name == "terminal" {
        return Err(err("is the terminal's own name"));
    }
    Ok(())
}

impl Channel {
    /// Where its secret lives in the secret store.
    pub fn secret_name(&self) -> String {
        Channel::secret_name_of(&self.name)
    }

    /// Where the secret of the channel `name` lives.
    pub fn secret_name_of(name: &str) -> String {
        format!("certpilot/channels/{name}")
    }

    /// Whether it takes messages about `finding`: severe enough, of a kind it lists (or any),
    /// and tagged with everything it matches. Owner routing is `--match owner=payments`.
    pub fn wants(&self, finding: &Finding) -> bool {
        finding.severity >= self.min_severity
            && (self.kinds.is_empty() || self.kinds.contains(&finding.kind))
            && self
                .matches
                .iter()
                .all(|(k, v)| finding.tags.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::finding::{Subject, finding_key};

    fn finding(kind: FindingKind, severity: Severity, owner: Option<&str>) -> Finding {
        let subject = Subject::endpoint("shop.example:443", None);
        let mut tags = crate::model::endpoint::Tags::new();
        if let Some(o) = owner {
            tags.insert("owner".into(), o.into());
        }
        Finding {
            key: finding_key(kind, &subject),
            kind,
            severity,
            state: crate::model::finding::FindingState::Open,
            subject,
            summary: String::new(),
            detail: String::new(),
            next_step: String::new(),
            owner: owner.map(str::to_owned),
            environment: None,
            tags,
            fact: String::new(),
            expires_at: None,
            opened_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
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

    #[test]
    fn aws_destinations_are_checked() {
        assert!(check_topic_arn("arn:aws:sns:us-east-1:123456789012:certpilot-alerts").is_ok());
        assert!(check_topic_arn("arn:aws-us-gov:sns:us-gov-west-1:123456789012:a.fifo").is_ok());
        for bad in [
            "certpilot-alerts",
            "arn:aws:sqs:us-east-1:123456789012:q",
            "arn:aws:sns:us-east-1:1234:t",
            "arn:aws:sns:us-east-1:123456789012:",
            "arn:aws:sns:us-east-1:123456789012:a b",
        ] {
            assert!(check_topic_arn(bad).is_err(), "{bad}");
        }
        for good in [
            "default",
            "ops-bus",
            "aws.partner/x",
            "arn:aws:events:us-east-1:123456789012:event-bus/ops",
        ] {
            assert!(check_event_bus(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a b",
            "arn:aws:events:us-east-1:123456789012:event-bus/",
        ] {
            assert!(check_event_bus(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_channel_takes_what_is_severe_enough_of_its_kinds_and_its_owner() {
        let mut ch = Channel {
            name: "payments".into(),
            kind: ChannelKind::Slack,
            min_severity: Severity::Warning,
            kinds: vec![],
            matches: BTreeMap::from([("owner".into(), "payments".into())]),
        };
        let cases = [
            (
                FindingKind::Expiring,
                Severity::Warning,
                Some("payments"),
                true,
            ),
            (
                FindingKind::Expiring,
                Severity::Info,
                Some("payments"),
                false,
            ),
            (
                FindingKind::Expired,
                Severity::Critical,
                Some("search"),
                false,
            ),
            (FindingKind::Expired, Severity::Critical, None, false),
        ];
        for (kind, severity, owner, wanted) in cases {
            assert_eq!(
                ch.wants(&finding(kind, severity, owner)),
                wanted,
                "{kind} {severity} {owner:?}"
            );
        }
        ch.kinds = vec![FindingKind::NotServing];
        assert!(!ch.wants(&finding(
            FindingKind::Expiring,
            Severity::Critical,
            Some("payments")
        )));
        assert!(ch.wants(&finding(
            FindingKind::NotServing,
            Severity::Critical,
            Some("payments")
        )));
    }

    #[test]
    fn channel_names_are_checked_and_the_reason_given() {
        assert!(check_channel_name("slack-payments").is_ok());
        for (bad, why) in [
            ("", "is empty"),
            ("Slack", "must start with a lowercase letter"),
            ("slack payments", "may hold only"),
            ("terminal", "the terminal's own name"),
        ] {
            let e = check_channel_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(check_channel_name(&"a".repeat(65)).is_err());
    }
}
