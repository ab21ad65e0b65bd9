//! Findings: a problem someone must hear about, with a life of its own.
//!
//! A finding has a stable key (its kind and subject), a severity, words for people (summary,
//! detail, what to do next), the owner and environment from the tags, and a state. Its life
//! goes through [`Transition`]s — opened, escalated, reminded, resolved, acknowledged,
//! reopened — and notifications go out on transitions only: each is stored as `pending` with
//! the finding, and cleared once a channel accepted it. The JSON field names are a public
//! interface (`certpilot findings --format json`, the SNS message, the API).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::endpoint::Tags;

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A served or managed certificate has expired.
    Expired,
    /// A certificate certpilot does not manage expires within a threshold.
    Expiring,
    /// A managed certificate is past its renewal window and still not renewed.
    RenewalOverdue,
    /// The last renewal failed (with the CA's problem).
    RenewalFailed,
    /// A deploy target refused the certificate.
    DeployFailed,
    /// The deploy hook or live-directory export after an issuance failed.
    HookFailed,
    /// An endpoint still serves something else than the current certificate.
    NotServing,
    /// A served certificate fails validation: untrusted, wrong name, incomplete chain, weak.
    Validation,
    /// An endpoint failed several scans in a row.
    Unreachable,
    /// ACM's own renewal of a certificate is blocked.
    AcmRenewalBlocked,
    /// An endpoint was not scanned for twice its interval: the scheduler itself is silent.
    ScanStale,
}

impl FindingKind {
    /// Every kind.
    pub const ALL: [FindingKind; 11] = [
        FindingKind::Expired,
        FindingKind::Expiring,
        FindingKind::RenewalOverdue,
        FindingKind::RenewalFailed,
        FindingKind::DeployFailed,
        FindingKind::HookFailed,
        FindingKind::NotServing,
        FindingKind::Validation,
        FindingKind::Unreachable,
        FindingKind::AcmRenewalBlocked,
        FindingKind::ScanStale,
    ];

    /// The snake_case name every output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Expired => "expired",
            FindingKind::Expiring => "expiring",
            FindingKind::RenewalOverdue => "renewal_overdue",
            FindingKind::RenewalFailed => "renewal_failed",
            FindingKind::DeployFailed => "deploy_failed",
            FindingKind::HookFailed => "hook_failed",
            FindingKind::NotServing => "not_serving",
            FindingKind::Validation => "validation",
            FindingKind::Unreachable => "unreachable",
            FindingKind::AcmRenewalBlocked => "acm_renewal_blocked",
            FindingKind::ScanStale => "scan_stale",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention within days.
    Warning,
    /// An outage, or one soon.
    Critical,
}

impl Severity {
    /// The snake_case name every output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The severity named `name`.
    pub fn parse(name: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What sort of thing a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    /// An endpoint (and one of its addresses).
    Endpoint,
    /// A managed certificate.
    Certificate,
    /// One deployment of a managed certificate.
    Deployment,
    /// One of certpilot's own schedules (`scan`): the subject of a finding that the
    /// schedule stopped, which speaks for every endpoint it covers at once.
    Schedule,
}

/// What a finding is about: an endpoint address, a certificate or a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: SubjectType,
    /// The endpoint's target, the certificate's id, or `<certificate id>/<deployment>`.
    pub id: String,
    /// For an endpoint, the address (`ip:port`); absent when it did not resolve, or when
    /// the finding is about the endpoint as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Subject {
    /// An endpoint, or one address of it.
    pub fn endpoint(target: &str, address: Option<&str>) -> Subject {
        Subject {
            kind: SubjectType::Endpoint,
            id: target.to_owned(),
            address: address.filter(|a| !a.is_empty()).map(str::to_owned),
        }
    }

    /// A managed certificate.
    pub fn certificate(id: &str) -> Subject {
        Subject {
            kind: SubjectType::Certificate,
            id: id.to_owned(),
            address: None,
        }
    }

    /// A deployment of a managed certificate.
    pub fn deployment(certificate: &str, deployment: &str) -> Subject {
        Subject {
            kind: SubjectType::Deployment,
            id: format!("{certificate}/{deployment}"),
            address: None,
        }
    }

    /// One of certpilot's schedules (`scan`).
    pub fn schedule(name: &str) -> Subject {
        Subject {
            kind: SubjectType::Schedule,
            id: name.to_owned(),
            address: None,
        }
    }

    /// The one string that names it (what the key hashes).
    pub fn canonical(&self) -> String {
        let kind = match self.kind {
            SubjectType::Endpoint => "endpoint",
            SubjectType::Certificate => "certificate",
            SubjectType::Deployment => "deployment",
            SubjectType::Schedule => "schedule",
        };
        match &self.address {
            Some(a) => format!("{kind}:{}@{a}", self.id),
            None => format!("{kind}:{}", self.id),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == SubjectType::Schedule {
            return write!(f, "certpilot's {} schedule", self.id);
        }
        match &self.address {
            Some(a) => write!(f, "{} ({a})", self.id),
            None => f.write_str(&self.id),
        }
    }
}

/// A finding's key: `<kind>.<lowercase base32 of the SHA-256 of its subject>`, URL-safe and
/// the same in every process and version.
pub fn finding_key(kind: FindingKind, subject: &Subject) -> String {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, subject.canonical().as_bytes());
    format!(
        "{}.{}",
        kind.as_str(),
        data_encoding::BASE32_NOPAD
            .encode(digest.as_ref())
            .to_ascii_lowercase()
    )
}

/// Where a finding stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingState {
    /// The problem is there.
    Open,
    /// The problem is there, and someone muted it until a date.
    Acknowledged,
    /// The problem is gone.
    Resolved,
}

impl FindingState {
    /// The snake_case name every output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingState::Open => "open",
            FindingState::Acknowledged => "acknowledged",
            FindingState::Resolved => "resolved",
        }
    }
}

/// A change in a finding's life: the only moments anyone is notified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// First seen.
    Opened,
    /// Its severity rose (an expiring certificate crossed into critical).
    Escalated,
    /// Still open after the reminder interval, or past another threshold.
    Reminded,
    /// The problem is gone.
    Resolved,
    /// Someone muted it until a date.
    Acknowledged,
    /// Back after it was resolved, or its acknowledgement ran out.
    Reopened,
}

impl Transition {
    /// The snake_case name every output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Opened => "opened",
            Transition::Escalated => "escalated",
            Transition::Reminded => "reminded",
            Transition::Resolved => "resolved",
            Transition::Acknowledged => "acknowledged",
            Transition::Reopened => "reopened",
        }
    }
}

/// A finding, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Its stable key ([`finding_key`]).
    pub key: String,
    /// What it is about.
    pub kind: FindingKind,
    /// How urgent.
    pub severity: Severity,
    /// Where it stands.
    pub state: FindingState,
    /// What it is about.
    pub subject: Subject,
    /// One line for people.
    pub summary: String,
    /// What exactly is wrong (what is served instead, the CA's problem, the target's error).
    pub detail: String,
    /// What to do next.
    pub next_step: String,
    /// The owning team (tag `owner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The environment (tag `environment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Every tag of the subject.
    #[serde(default)]
    pub tags: Tags,
    /// What makes this occurrence what it is (the threshold crossed, the serial served):
    /// when it changes while open, people are reminded.
    #[serde(default)]
    pub fact: String,
    /// When the certificate concerned expires, when there is one (for "days left").
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was first opened.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it was resolved (while resolved).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    /// Muted until then (while acknowledged).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub acknowledged_until: Option<OffsetDateTime>,
    /// Why it was muted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_reason: Option<String>,
    /// When people were last told about it (a channel accepted the notification).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub notified_at: Option<OffsetDateTime>,
    /// The transition not yet accepted by every channel it goes to: sent on the next run
    /// until it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Transition>,
    /// The channels that accepted the pending transition already (a retry skips them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_to: Vec<String>,
    /// A sender claimed the pending transition until then: others leave it alone, and once
    /// it lapses (the sender died) the next run sends it.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub sending_until: Option<OffsetDateTime>,
    /// Optimistic-locking version: 1 on creation, incremented by the store on every update.
    #[serde(default)]
    pub version: u64,
}

impl Finding {
    /// The finding as every front and subscriber sees it (`certpilot findings --format json`,
    /// webhooks, SNS): the settled fields, nothing internal (versions, claims, deliveries).
    pub fn public_json(&self) -> serde_json::Value {
        let time = crate::rfc3339;
        serde_json::json!({
            "key": self.key,
            "kind": self.kind,
            "severity": self.severity,
            "state": self.state,
            "subject": self.subject,
            "summary": self.summary,
            "detail": self.detail,
            "next_step": self.next_step,
            "owner": self.owner,
            "environment": self.environment,
            "tags": self.tags,
            "expires_at": self.expires_at.map(time),
            "opened_at": time(self.opened_at),
            "updated_at": time(self.updated_at),
            "resolved_at": self.resolved_at.map(time),
            "acknowledged_until": self.acknowledged_until.map(time),
        })
    }

    /// A finding as [`public_json`](Self::public_json) wrote it (what an SNS subscriber, such as
    /// the Slack function, receives): enough to say it again. What is not public (the
    /// delivery record, the version) is empty. The error names the field.
    pub fn from_public_json(v: &serde_json::Value) -> Result<Finding, String> {
        use time::format_description::well_known::Rfc3339;
        #[derive(Deserialize)]
        struct Public {
            key: String,
            kind: FindingKind,
            severity: Severity,
            state: FindingState,
            subject: Subject,
            summary: String,
            detail: String,
            next_step: String,
            owner: Option<String>,
            environment: Option<String>,
            #[serde(default)]
            tags: Tags,
            expires_at: Option<String>,
            opened_at: String,
            updated_at: String,
            resolved_at: Option<String>,
            acknowledged_until: Option<String>,
        }
        let p: Public = serde_json::from_value(v.clone()).map_err(|e| format!("finding: {e}"))?;
        let time = |field: &str, t: &str| {
            OffsetDateTime::parse(t, &Rfc3339)
                .map_err(|e| format!("finding.{field}: {t:?} is not an RFC 3339 time ({e})"))
        };
        let optional =
            |field: &str, t: &Option<String>| t.as_deref().map(|t| time(field, t)).transpose();
        if p.key != finding_key(p.kind, &p.subject) {
            return Err(format!(
                "finding.key {:?} is not the key of its kind and subject",
                p.key
            ));
        }
        Ok(Finding {
            expires_at: optional("expires_at", &p.expires_at)?,
            opened_at: time("opened_at", &p.opened_at)?,
            updated_at: time("updated_at", &p.updated_at)?,
            resolved_at: optional("resolved_at", &p.resolved_at)?,
            acknowledged_until: optional("acknowledged_until", &p.acknowledged_until)?,
            key: p.key,
            kind: p.kind,
            severity: p.severity,
            state: p.state,
            subject: p.subject,
            summary: p.summary,
            detail: p.detail,
            next_step: p.next_step,
            owner: p.owner,
            environment: p.environment,
            tags: p.tags,
            fact: String::new(),
            acknowledged_reason: None,
            notified_at: None,
            pending: None,
            delivered_to: Vec::new(),
            sending_until: None,
            version: 0,
        })
    }

    /// Whether the problem is there (open or acknowledged).
    pub fn is_active(&self) -> bool {
        self.state != FindingState::Resolved
    }

    /// When a resolved finding, told to everyone it had to be told to, may be forgotten
    /// ([`RESOLVED_RETENTION`] after it was resolved); `None` while it matters.
    pub fn forget_after(&self) -> Option<OffsetDateTime> {
        match (self.is_active(), self.pending, self.resolved_at) {
            (false, None, Some(resolved)) => Some(resolved + RESOLVED_RETENTION),
            _ => None,
        }
    }

    /// Whether a store still lists it at `now`.
    pub fn is_retained(&self, now: OffsetDateTime) -> bool {
        self.forget_after().is_none_or(|t| now < t)
    }
}

/// How long a resolved finding stays listed (`findings --all`, the dashboard's "recent"):
/// long enough for a quarter's review of what happened, short enough that the store does not
/// grow with every problem ever solved. DynamoDB's TTL deletes them; SQLite purges them.
pub const RESOLVED_RETENTION: time::Duration = time::Duration::days(90);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_reads_back_from_its_public_json_and_mistakes_are_named() {
        let subject = Subject::endpoint("shop.example.com:443", Some("192.0.2.1:443"));
        let t = OffsetDateTime::from_unix_timestamp(1_796_000_000).expect("time");
        let f = Finding {
            key: finding_key(FindingKind::Expiring, &subject),
            kind: FindingKind::Expiring,
            severity: Severity::Warning,
            state: FindingState::Acknowledged,
            subject,
            summary: "s".into(),
            detail: "d".into(),
            next_step: "n".into(),
            owner: Some("payments".into()),
            environment: None,
            tags: Tags::from([("owner".into(), "payments".into())]),
            fact: String::new(),
            expires_at: Some(t + time::Duration::days(9)),
            opened_at: t,
            updated_at: t + time::Duration::hours(1),
            resolved_at: None,
            acknowledged_until: Some(t + time::Duration::days(3)),
            acknowledged_reason: None,
            notified_at: None,
            pending: None,
            delivered_to: Vec::new(),
            sending_until: None,
            version: 0,
        };
        assert_eq!(Finding::from_public_json(&f.public_json()), Ok(f.clone()));
        let mut bad = f.public_json();
        bad["opened_at"] = "yesterday".into();
        assert!(
            Finding::from_public_json(&bad)
                .unwrap_err()
                .contains("finding.opened_at: \"yesterday\" is not an RFC 3339 time")
        );
        let mut forged = f.public_json();
        forged["kind"] = "expired".into();
        assert!(
            Finding::from_public_json(&forged)
                .unwrap_err()
                .contains("finding.key")
        );
    }

    #[test]
    fn keys_are_url_safe_stable_and_differ_by_kind_and_subject() {
        let a = Subject::endpoint("shop.example.com:443", Some("192.0.2.1:443"));
        let key = finding_key(FindingKind::Expiring, &a);
        // Pinned: computed apart (Python's hashlib and base64), so a change of the scheme,
        // which would orphan every stored finding, fails here.
        assert_eq!(
            key,
            "expiring.f25zipba7zusiv4yzaqypypuvjjtdevxmgefextmsnapvrg7tgiq"
        );
        assert!(key.starts_with("expiring."), "{key}");
        let hash = key.trim_start_matches("expiring.");
        assert_eq!(hash.len(), 52, "256 bits in unpadded base32");
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        );
        assert_ne!(key, finding_key(FindingKind::Expired, &a));
        let b = Subject::endpoint("shop.example.com:443", Some("192.0.2.2:443"));
        assert_ne!(key, finding_key(FindingKind::Expiring, &b));
        assert_ne!(
            finding_key(FindingKind::NotServing, &Subject::certificate("shop")),
            finding_key(FindingKind::NotServing, &Subject::deployment("shop", "alb"))
        );
    }

    #[test]
    fn subjects_and_kinds_read_as_the_json_says() {
        let s = Subject::deployment("shop", "alb");
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"type": "deployment", "id": "shop/alb"})
        );
        for kind in FindingKind::ALL {
            assert_eq!(FindingKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                serde_json::json!(kind.as_str())
            );
        }
        assert!(Severity::Critical > Severity::Warning && Severity::Warning > Severity::Info);
    }
}
