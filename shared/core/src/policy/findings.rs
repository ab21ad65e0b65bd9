//! The findings policy: which problems exist now ([`Condition`]s, from observations and
//! certificate records), and how the stored findings change because of them ([`reconcile`]).
//!
//! Pure: every function takes `now`. The rules, settled so that every front and subscriber
//! agrees:
//! - `expired`, `not_serving`, `renewal_failed`, `deploy_failed`, `hook_failed`,
//!   `acm_renewal_blocked` and `scan_stale` are critical; `expiring` is a warning within the
//!   first threshold (30 days) and critical within 7; `renewal_overdue` is a warning, critical
//!   once the certificate is within a sixth of its lifetime of expiry; `validation` and
//!   `unreachable` are warnings. Rules matching tags (`environment=prod`, `owner=payments`)
//!   override severities and thresholds; an endpoint's own `alert-days` tag overrides its
//!   thresholds.
//! - `renewal_overdue` is relative to the certificate's own renewal time (its ARI window, or
//!   its share of lifetime), so a 6-day certificate does not alert all the time and a 198-day
//!   one does not alert late.
//! - A finding notifies on transitions only: opened, escalated (severity rose), reminded (past
//!   another threshold, or after the reminder interval: daily when critical, weekly when a
//!   warning), resolved, acknowledged, reopened. Words that change every day (days left) are
//!   left to the message, so a run that changes nothing writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use time::OffsetDateTime;

use crate::model::certificate::{FailureKind, ManagedCertificate};
use crate::model::deploy::DeploymentStatus;
use crate::model::endpoint::Tags;
use crate::model::finding::{
    Finding, FindingKind, FindingState, Severity, Subject, Transition, finding_key,
};
use crate::model::observation::{Observation, Problem, Status};

mod settings;

/// The tag whose value (`30,14,7`) replaces an endpoint's expiry thresholds.
pub const ALERT_DAYS_TAG: &str = "alert-days";

/// Overrides for the subjects whose tags match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Tags that must all be present with these values (`environment=prod`).
    pub matches: Tags,
    /// Expiry thresholds in days.
    pub expiring_days: Option<Vec<i64>>,
    /// Days before expiry from which `expiring` is critical.
    pub critical_days: Option<i64>,
    /// Severities by kind.
    pub severities: BTreeMap<FindingKind, Severity>,
}

/// The findings policy's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingsPolicy {
    /// Days before expiry at which an unmanaged certificate is reported, and reported again.
    pub expiring_days: Vec<i64>,
    /// Days before expiry from which `expiring` is critical.
    pub critical_days: i64,
    /// Failed scans in a row before an endpoint is `unreachable`.
    pub unreachable_after: u32,
    /// How long endpoints may keep serving the previous certificate after an issuance before
    /// it is `not_serving` (reloads, rollouts).
    pub not_serving_grace: Duration,
    /// Reminder interval while critical.
    pub remind_critical: Duration,
    /// Reminder interval while a warning.
    pub remind_warning: Duration,
    /// How often every registered endpoint is scanned (the scan function's
    /// `CERTPILOT_SCAN_INTERVAL`, or the timer running `certpilot scan`): `scan_stale` after
    /// twice that without a full scan.
    pub scan_interval: Duration,
    /// Overrides by tags, later rules over earlier ones.
    pub rules: Vec<Rule>,
}

impl Default for FindingsPolicy {
    fn default() -> Self {
        FindingsPolicy {
            expiring_days: vec![30, 14, 7, 3, 1],
            critical_days: 7,
            unreachable_after: 3,
            not_serving_grace: Duration::from_secs(15 * 60),
            remind_critical: Duration::from_secs(86_400),
            remind_warning: Duration::from_secs(7 * 86_400),
            scan_interval: Duration::from_secs(3600),
            rules: Vec::new(),
        }
    }
}

impl FindingsPolicy {
    /// The rules whose tags all match `tags`, in order.
    fn matching<'a>(&'a self, tags: &'a Tags) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.matches.iter().all(|(k, v)| tags.get(k) == Some(v)))
    }

    /// The expiry thresholds for a subject with `tags`, largest first.
    pub fn thresholds(&self, tags: &Tags) -> Vec<i64> {
        let from_tag = tags.get(ALERT_DAYS_TAG).and_then(|v| {
            v.split(',')
                .map(|d| d.trim().parse::<i64>().ok().filter(|d| *d >= 0))
                .collect::<Option<Vec<i64>>>()
        });
        let mut days = from_tag
            .or_else(|| {
                self.matching(tags)
                    .filter_map(|r| r.expiring_days.clone())
                    .last()
            })
            .unwrap_or_else(|| self.expiring_days.clone());
        days.sort_unstable_by(|a, b| b.cmp(a));
        days.dedup();
        days
    }

    /// Days before expiry from which `expiring` is critical for a subject with `tags`.
    pub fn critical_days(&self, tags: &Tags) -> i64 {
        self.matching(tags)
            .filter_map(|r| r.critical_days)
            .last()
            .unwrap_or(self.critical_days)
    }

    /// `default` unless a matching rule says otherwise for `kind`.
    fn severity(&self, kind: FindingKind, tags: &Tags, default: Severity) -> Severity {
        self.matching(tags)
            .filter_map(|r| r.severities.get(&kind).copied())
            .last()
            .unwrap_or(default)
    }

    /// How long an open finding of `severity` waits before a reminder.
    pub fn reminder(&self, severity: Severity) -> Option<Duration> {
        match severity {
            Severity::Critical => Some(self.remind_critical),
            Severity::Warning => Some(self.remind_warning),
            Severity::Info => None,
        }
    }
}

/// A problem that exists now: what a finding is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// What it is.
    pub kind: FindingKind,
    /// What it is about.
    pub subject: Subject,
    /// How urgent.
    pub severity: Severity,
    /// One line for people.
    pub summary: String,
    /// What exactly is wrong.
    pub detail: String,
    /// What to do next.
    pub next_step: String,
    /// The subject's tags (owner, environment…).
    pub tags: Tags,
    /// What makes this occurrence what it is (the threshold crossed, the serial): a change
    /// while open reminds people.
    pub fact: String,
    /// When the certificate concerned expires, when there is one (for "days left").
    pub expires_at: Option<OffsetDateTime>,
}

fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The problems one observation of one endpoint address shows. `failures_in_a_row` counts
/// this observation too when it failed; `managed` says whether the served certificate is one
/// certpilot renews (then `renewal_overdue` speaks for it, not `expiring`).
pub fn endpoint_conditions(
    obs: &Observation,
    failures_in_a_row: u32,
    managed: bool,
    now: OffsetDateTime,
    policy: &FindingsPolicy,
) -> Vec<Condition> {
    let subject = Subject::endpoint(&obs.target, obs.address.as_deref());
    let tags = &obs.tags;
    let condition = |kind: FindingKind,
                     default: Severity,
                     summary: String,
                     detail: String,
                     next: &str,
                     fact: String| Condition {
        kind,
        subject: subject.clone(),
        severity: policy.severity(kind, tags, default),
        summary,
        detail,
        next_step: next.to_owned(),
        tags: tags.clone(),
        fact,
        expires_at: obs.certificate.as_ref().map(|c| c.not_after),
    };
    let mut found = Vec::new();
    if obs.status == Status::Error {
        if failures_in_a_row >= policy.unreachable_after.max(1) {
            let (kind, message) = obs.error.as_ref().map_or(("other", String::new()), |e| {
                (e.kind.as_str(), e.message.clone())
            });
            found.push(condition(
                FindingKind::Unreachable,
                Severity::Warning,
                format!("{} is unreachable ({kind})", obs.target),
                format!("{failures_in_a_row} scans in a row failed; the last: {kind}: {message}"),
                "check that the service runs and that certpilot may reach it (DNS, firewall, port)",
                kind.to_owned(),
            ));
        }
        return found;
    }
    let Some(cert) = &obs.certificate else {
        return found;
    };
    let serial = cert.serial.clone();
    if cert.not_after < now {
        found.push(condition(
            FindingKind::Expired,
            Severity::Critical,
            format!(
                "{} serves a certificate that expired on {}",
                obs.target,
                date(cert.not_after)
            ),
            format!(
                "serial {serial}, issued by {}, expired {}",
                cert.issuer,
                date(cert.not_after)
            ),
            if managed {
                "renew it now (`certpilot renew --force ID`) and check that the endpoint reloads"
            } else {
                "replace the certificate on the endpoint now; clients refuse it"
            },
            serial.clone(),
        ));
    } else if !managed {
        let days = crate::policy::days_remaining(cert.not_after, now);
        let thresholds = policy.thresholds(tags);
        if let Some(crossed) = thresholds.iter().copied().filter(|t| days <= *t).min() {
            let default = if days <= policy.critical_days(tags) {
                Severity::Critical
            } else {
                Severity::Warning
            };
            found.push(condition(
                FindingKind::Expiring,
                default,
                format!("{} serves a certificate that expires on {}", obs.target, date(cert.not_after)),
                format!("serial {serial}, issued by {}, for {}", cert.issuer, cert.sans.join(", ")),
                "renew or replace it before then (or let certpilot manage it: `certpilot certificates add`)",
                // The serial and the threshold: another threshold reminds, another certificate
                // in its place (a renewal) is another finding's business.
                format!("{serial}@{crossed}"),
            ));
        }
    }
    if let Some(validation) = &obs.validation {
        let problems: Vec<&Problem> = validation
            .problems
            .iter()
            .filter(|p| !matches!(p, Problem::Expired))
            .collect();
        if !problems.is_empty() {
            let names: Vec<&str> = problems.iter().map(|p| p.as_str()).collect();
            found.push(condition(
                FindingKind::Validation,
                Severity::Warning,
                format!(
                    "{} serves a certificate clients may refuse: {}",
                    obs.target,
                    names.join(", ")
                ),
                format!("serial {serial}, issued by {}", cert.issuer),
                next_step_for(&problems),
                format!("{serial}:{}", names.join(",")),
            ));
        }
    }
    found
}

fn next_step_for(problems: &[&Problem]) -> &'static str {
    match problems.first() {
        Some(Problem::IncompleteChain) => "serve the full chain (fullchain.pem, not cert.pem)",
        Some(Problem::HostnameMismatch) => "serve a certificate that covers this name",
        Some(Problem::WeakKey | Problem::WeakSignature) => {
            "replace it with a certificate with a strong key and signature (ECDSA P-256 or RSA 2048+, SHA-256)"
        }
        Some(Problem::NotYetValid) => "check the server's clock and the certificate's notBefore",
        _ => "serve a certificate from a CA clients trust",
    }
}

/// The problems of one managed certificate: expired, overdue, its last renewal's failure,
/// each deployment's failure or outage, ACM's blocked renewal.
pub fn certificate_conditions(
    cert: &ManagedCertificate,
    now: OffsetDateTime,
    policy: &FindingsPolicy,
) -> Vec<Condition> {
    let tags = &cert.spec.tags;
    let expires_at = cert.current.as_ref().map(|c| c.not_after);
    let mut found = Vec::new();
    let mut push = |kind: FindingKind,
                    subject: Subject,
                    default: Severity,
                    summary: String,
                    detail: String,
                    next: String,
                    fact: String| {
        found.push(Condition {
            kind,
            subject,
            severity: policy.severity(kind, tags, default),
            summary,
            detail,
            next_step: next,
            tags: tags.clone(),
            fact,
            expires_at,
        });
    };
    let id = cert.id.as_str();
    if let Some(current) = &cert.current {
        if current.not_after < now {
            push(
                FindingKind::Expired,
                Subject::certificate(id),
                Severity::Critical,
                format!("{id} expired on {}", date(current.not_after)),
                format!("serial {}; no renewal succeeded since", current.serial),
                format!("renew it now: `certpilot renew --force {id}`"),
                current.serial.clone(),
            );
        } else {
            let due = crate::policy::renewal::renew_at(
                current,
                cert.spec.renewal,
                cert.renewal.ari_window.as_ref(),
                id,
            );
            let lifetime = current.not_after - current.not_before;
            // Overdue once a third of the time between the renewal time and expiry has
            // passed: retries had their chance, and there is still time to act.
            let overdue_at = due + (current.not_after - due) / 3;
            if now >= overdue_at {
                let critical = current.not_after - now <= lifetime / 6;
                push(
                    FindingKind::RenewalOverdue,
                    Subject::certificate(id),
                    if critical {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    format!("{id} should have been renewed by {} and was not", date(due)),
                    format!(
                        "serial {} expires {}; {} failed attempts",
                        current.serial,
                        date(current.not_after),
                        cert.renewal.failures
                    ),
                    format!(
                        "see why with `certpilot certificates show {id}`, then `certpilot renew {id}`"
                    ),
                    current.serial.clone(),
                );
            }
        }
    }
    if let Some(failure) = &cert.renewal.last_error {
        let (kind, next) = if failure.kind == FailureKind::Announce {
            (
                FindingKind::HookFailed,
                "fix the deploy hook or live directory; the next `certpilot renew` runs it again without a new order".to_owned(),
            )
        } else {
            (
                FindingKind::RenewalFailed,
                format!(
                    "read the CA's answer in `certpilot certificates show {id}`; certpilot retries with backoff"
                ),
            )
        };
        let problem = failure
            .problem
            .as_ref()
            .and_then(|p| p.get("detail").and_then(|d| d.as_str()))
            .map(|d| format!(" (the CA said: {d})"))
            .unwrap_or_default();
        push(
            kind,
            Subject::certificate(id),
            Severity::Critical,
            format!(
                "{}: {} of {id} failed",
                failure.kind.as_str(),
                if kind == FindingKind::HookFailed {
                    "the deploy hook"
                } else {
                    "the renewal"
                }
            ),
            format!("{}{problem}", failure.message),
            next,
            failure.kind.as_str().to_owned(),
        );
    }
    for record in &cert.deployments {
        let subject = Subject::deployment(id, &record.name);
        let detail = record.state.detail.clone().unwrap_or_default();
        match record.state.status {
            DeploymentStatus::Failed => push(
                FindingKind::DeployFailed,
                subject,
                Severity::Critical,
                format!("deploying {id} to {} failed", record.name),
                detail,
                format!("fix what the target says, then `certpilot deploy {id}`"),
                record.fingerprint.clone(),
            ),
            // The deploy waited its kind's verification deadline before it said so: that
            // was the grace.
            DeploymentStatus::NotServing => {
                push(
                    FindingKind::NotServing,
                    subject,
                    Severity::Critical,
                    format!("{} does not serve the renewed {id}", record.name),
                    detail,
                    format!(
                        "the previous certificate was put back; find why the endpoints keep the old one, then `certpilot deploy {id}`"
                    ),
                    record.fingerprint.clone(),
                );
            }
            _ => {}
        }
    }
    if let Some(acm) = &cert.acm
        && !acm.problems.is_empty()
    {
        let words: Vec<&str> = acm.problems.iter().map(|p| p.detail.as_str()).collect();
        push(
            FindingKind::AcmRenewalBlocked,
            Subject::certificate(id),
            Severity::Critical,
            format!("ACM cannot renew {id} on its own"),
            words.join("; "),
            "restore the validation records ACM asked for (`certpilot certificates show ID`)"
                .replace("ID", id),
            acm.status.clone(),
        );
    }
    found
}

/// What one endpoint address serves instead of a certificate's current version, after a
/// verification gave it the whole deadline to pick it up.
#[derive(Clone, Debug)]
pub struct NotServed<'a> {
    /// The endpoint.
    pub target: &'a str,
    /// The address handshaken with.
    pub address: Option<&'a str>,
    /// The fingerprint served instead, when a handshake completed.
    pub serving: Option<&'a str>,
    /// Why no certificate was obtained, when none was.
    pub error: Option<&'a str>,
    /// Since when.
    pub since: OffsetDateTime,
}

/// `not_serving` for an endpoint address of `cert` (a certificate verified at its endpoints
/// rather than through a deployment): naming what it serves instead.
pub fn endpoint_not_serving(
    cert: &ManagedCertificate,
    seen: &NotServed<'_>,
    policy: &FindingsPolicy,
) -> Condition {
    let id = &cert.id;
    let tags = &cert.spec.tags;
    let expected = cert
        .current
        .as_ref()
        .map(|c| c.serial.as_str())
        .unwrap_or("?");
    let instead = match (seen.serving, seen.error) {
        (Some(other), _) => format!("serves {other} instead"),
        (None, Some(error)) => format!("serves no certificate ({error})"),
        (None, None) => "serves no certificate".into(),
    };
    Condition {
        kind: FindingKind::NotServing,
        subject: Subject::endpoint(seen.target, seen.address),
        severity: policy.severity(FindingKind::NotServing, tags, Severity::Critical),
        summary: format!("{} does not serve the current {id}", seen.target),
        detail: format!(
            "{} {instead} of serial {expected}, since {}",
            seen.address.unwrap_or(seen.target),
            date(seen.since)
        ),
        next_step: format!(
            "find why it keeps the old certificate (a node not reloaded, another certificate in front), then `certpilot verify {id}`"
        ),
        tags: tags.clone(),
        fact: seen.serving.or(seen.error).unwrap_or("none").to_owned(),
        expires_at: cert.current.as_ref().map(|c| c.not_after),
    }
}

/// The subject of the scheduled scan's `scan_stale` finding.
pub const SCAN_SCHEDULE: &str = "scan";

/// `scan_stale` when the last full sweep of the registered endpoints (the scheduled scan's
/// tick, or a `certpilot scan` of every registered endpoint) finished at `last_sweep`, more
/// than twice [`FindingsPolicy::scan_interval`] ago. Before any sweep there is no schedule to
/// fall silent. One finding for the whole schedule, not one per endpoint: when the scheduler
/// stops, every endpoint goes stale within one interval, and ten thousand alerts about one
/// cause would bury it.
pub fn schedule_stale(
    last_sweep: Option<OffsetDateTime>,
    now: OffsetDateTime,
    policy: &FindingsPolicy,
) -> Option<Condition> {
    let last = last_sweep?;
    let interval = policy.scan_interval;
    (now - last >= interval * 2).then(|| Condition {
        kind: FindingKind::ScanStale,
        subject: Subject::schedule(SCAN_SCHEDULE),
        severity: policy.severity(FindingKind::ScanStale, &Tags::new(), Severity::Critical),
        summary: format!(
            "registered endpoints have not been scanned since {}",
            time_of_day(last)
        ),
        detail: format!(
            "a full scan is due every {}; the last finished {} ago, so no endpoint is watched",
            humantime::format_duration(interval),
            humantime::format_duration(whole_minutes(now - last))
        ),
        next_step: "check that the scheduled scan runs (the scan function's schedule, errors and logs; locally the timer or cron job running `certpilot scan`)".into(),
        tags: Tags::new(),
        fact: String::new(),
        expires_at: None,
    })
}

/// `at` to the minute, in UTC.
fn time_of_day(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(format)
        .unwrap_or_else(|_| date(at))
}

/// `d` rounded down to whole minutes (seconds under a minute), for a duration people read.
fn whole_minutes(d: time::Duration) -> Duration {
    let secs = d.whole_seconds().max(0).unsigned_abs();
    Duration::from_secs(if secs < 60 { secs } else { secs / 60 * 60 })
}

/// A new finding from `c`, opened now.
fn opened(c: &Condition, now: OffsetDateTime) -> Finding {
    Finding {
        key: finding_key(c.kind, &c.subject),
        kind: c.kind,
        severity: c.severity,
        state: FindingState::Open,
        subject: c.subject.clone(),
        summary: c.summary.clone(),
        detail: c.detail.clone(),
        next_step: c.next_step.clone(),
        owner: c.tags.get("owner").cloned(),
        environment: c.tags.get("environment").cloned(),
        tags: c.tags.clone(),
        fact: c.fact.clone(),
        expires_at: c.expires_at,
        opened_at: now,
        updated_at: now,
        resolved_at: None,
        acknowledged_until: None,
        acknowledged_reason: None,
        notified_at: None,
        pending: Some(Transition::Opened),
        delivered_to: Vec::new(),
        sending_until: None,
        version: 0,
    }
}

/// Records `transition` on `f`: a transition not yet sent is replaced by the newer one,
/// except that a finding opened and resolved before anyone heard of it needs no message.
fn transition(f: &mut Finding, t: Transition) {
    let before = f.pending;
    f.pending = match (f.pending, t) {
        (Some(Transition::Opened | Transition::Reopened), Transition::Resolved)
            if f.notified_at.is_none_or(|n| n < f.opened_at) =>
        {
            None
        }
        (Some(Transition::Opened), Transition::Escalated | Transition::Reminded) => {
            Some(Transition::Opened)
        }
        _ => Some(t),
    };
    if f.pending != before {
        // A new message: every channel gets it, whoever had the old one, and no sender's
        // claim on the old one holds it back.
        f.delivered_to.clear();
        f.sending_until = None;
    }
}

/// How the stored findings change given the conditions found now. `in_scope` says which
/// stored findings this evaluation speaks for (a scan of some endpoints says nothing about
/// the others): those in scope without a condition are resolved. Returns only the findings
/// that changed, new ones with version 0.
pub fn reconcile(
    existing: &[Finding],
    conditions: &[Condition],
    in_scope: &dyn Fn(&Finding) -> bool,
    now: OffsetDateTime,
    policy: &FindingsPolicy,
) -> Vec<Finding> {
    let by_key: HashMap<&str, &Finding> = existing.iter().map(|f| (f.key.as_str(), f)).collect();
    let mut changed = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in conditions {
        let key = finding_key(c.kind, &c.subject);
        if !seen.insert(key.clone()) {
            continue;
        }
        let Some(old) = by_key.get(key.as_str()) else {
            changed.push(opened(c, now));
            continue;
        };
        let mut f = (*old).clone();
        let words_changed = f.summary != c.summary
            || f.detail != c.detail
            || f.next_step != c.next_step
            || f.tags != c.tags
            || f.expires_at != c.expires_at;
        f.summary.clone_from(&c.summary);
        f.detail.clone_from(&c.detail);
        f.next_step.clone_from(&c.next_step);
        f.owner = c.tags.get("owner").cloned();
        f.environment = c.tags.get("environment").cloned();
        f.tags.clone_from(&c.tags);
        f.expires_at = c.expires_at;
        let rose = c.severity > f.severity;
        let severity_changed = c.severity != f.severity;
        let fact_changed = f.fact != c.fact;
        f.severity = c.severity;
        f.fact.clone_from(&c.fact);
        let muted =
            f.state == FindingState::Acknowledged && f.acknowledged_until.is_some_and(|u| u > now);
        let t = match f.state {
            FindingState::Resolved => {
                f.state = FindingState::Open;
                f.opened_at = now;
                f.resolved_at = None;
                Some(Transition::Reopened)
            }
            FindingState::Acknowledged if !muted => {
                f.state = FindingState::Open;
                f.acknowledged_until = None;
                f.acknowledged_reason = None;
                Some(Transition::Reopened)
            }
            FindingState::Acknowledged => None,
            FindingState::Open if rose => Some(Transition::Escalated),
            FindingState::Open if fact_changed => Some(Transition::Reminded),
            FindingState::Open => {
                let last = f.notified_at.unwrap_or(f.opened_at);
                let due = policy.reminder(f.severity).is_some_and(|i| now - last >= i);
                (due && f.pending.is_none()).then_some(Transition::Reminded)
            }
        };
        if let Some(t) = t {
            transition(&mut f, t);
        }
        if t.is_some() || words_changed || severity_changed || fact_changed {
            f.updated_at = now;
            changed.push(f);
        }
    }
    for old in existing {
        if old.is_active() && !seen.contains(&old.key) && in_scope(old) {
            let mut f = old.clone();
            f.state = FindingState::Resolved;
            f.resolved_at = Some(now);
            f.acknowledged_until = None;
            f.acknowledged_reason = None;
            f.updated_at = now;
            transition(&mut f, Transition::Resolved);
            changed.push(f);
        }
    }
    changed
}

/// `f` muted until `until` for `reason`.
pub fn acknowledge(
    f: &Finding,
    until: OffsetDateTime,
    reason: &str,
    now: OffsetDateTime,
) -> Finding {
    let mut f = f.clone();
    f.state = FindingState::Acknowledged;
    f.acknowledged_until = Some(until);
    f.acknowledged_reason = Some(reason.to_owned());
    f.updated_at = now;
    transition(&mut f, Transition::Acknowledged);
    f
}

/// `f` with its acknowledgement withdrawn: open again.
pub fn unacknowledge(f: &Finding, now: OffsetDateTime) -> Finding {
    let mut f = f.clone();
    if f.state == FindingState::Acknowledged {
        f.state = FindingState::Open;
        f.acknowledged_until = None;
        f.acknowledged_reason = None;
        f.updated_at = now;
        transition(&mut f, Transition::Reopened);
    }
    f
}

/// `f` once every channel it goes to accepted its pending transition.
pub fn notified(f: &Finding, now: OffsetDateTime) -> Finding {
    let mut f = f.clone();
    f.pending = None;
    f.delivered_to.clear();
    f.sending_until = None;
    f.notified_at = Some(now);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::certificate::{IssuedCertificate, ManagedCertificate};
    use crate::model::observation::ObservationHead;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 09:00 UTC);

    fn day(n: i64) -> time::Duration {
        time::Duration::days(n)
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// An observation at `now` of `shop.example.com:443` serving `serial`, expiring at `not_after`.
    fn seen(now: OffsetDateTime, serial: &str, not_after: OffsetDateTime, t: Tags) -> Observation {
        let mut served = crate::services::test_support::served(now, serial);
        served.certificate.serial = serial.into();
        served.certificate.not_after = not_after;
        served.certificate.not_before = not_after - day(90);
        Observation::served(
            ObservationHead {
                target: "shop.example.com:443".into(),
                host: "shop.example.com".into(),
                port: 443,
                scanned_at: now,
                tags: t,
            },
            "192.0.2.1:443".into(),
            5,
            served,
        )
    }

    fn expiring(days_left: i64, t: Tags, policy: &FindingsPolicy) -> Option<(Severity, String)> {
        endpoint_conditions(
            &seen(T0, "aa", T0 + day(days_left), t),
            0,
            false,
            T0,
            policy,
        )
        .into_iter()
        .find(|c| c.kind == FindingKind::Expiring)
        .map(|c| (c.severity, c.fact))
    }

    #[test]
    fn expiry_thresholds_per_environment_and_per_endpoint() {
        let prod = Rule {
            matches: tags(&[("environment", "prod")]),
            expiring_days: Some(vec![60, 21]),
            critical_days: None,
            severities: BTreeMap::from([(FindingKind::Expiring, Severity::Critical)]),
        };
        let payments = Rule {
            matches: tags(&[("owner", "payments")]),
            expiring_days: None,
            critical_days: Some(14),
            severities: BTreeMap::new(),
        };
        let policy = FindingsPolicy {
            rules: vec![prod, payments],
            ..FindingsPolicy::default()
        };
        let w = Some(Severity::Warning);
        let c = Some(Severity::Critical);
        // (days left, tags, severity, fact)
        type Case<'a> = (i64, &'a [(&'a str, &'a str)], Option<Severity>, &'a str);
        let cases: [Case; 12] = [
            (45, &[], None, ""),
            (30, &[], w, "aa@30"),
            (20, &[], w, "aa@30"),
            (14, &[], w, "aa@14"),
            (7, &[], c, "aa@7"),
            (1, &[], c, "aa@1"),
            // prod: its own thresholds, critical from the first
            (45, &[("environment", "prod")], c, "aa@60"),
            (25, &[("environment", "prod")], c, "aa@60"),
            // the endpoint's own tag beats the rule
            (
                45,
                &[("environment", "prod"), (ALERT_DAYS_TAG, "10,5")],
                None,
                "",
            ),
            (8, &[(ALERT_DAYS_TAG, "10, 5")], w, "aa@10"),
            // payments: the default thresholds, critical a week earlier
            (20, &[("owner", "payments")], w, "aa@30"),
            (14, &[("owner", "payments")], c, "aa@14"),
        ];
        for (days, t, severity, fact) in cases {
            let got = expiring(days, tags(t), &policy);
            assert_eq!(got.as_ref().map(|g| g.0), severity, "{days} days, {t:?}");
            if let Some((_, f)) = got {
                assert_eq!(f, fact, "{days} days, {t:?}");
            }
        }
    }

    #[test]
    fn a_managed_certificate_is_not_expiring_but_overdue_relative_to_its_own_window() {
        // A managed certificate served: no `expiring`, whatever the days left.
        let obs = seen(T0, "aa", T0 + day(5), Tags::new());
        assert!(
            endpoint_conditions(&obs, 0, true, T0, &FindingsPolicy::default())
                .iter()
                .all(|c| c.kind != FindingKind::Expiring)
        );
        // (lifetime, age at evaluation) → renewal_overdue severity. Renewal is due at half
        // the lifetime under 10 days, else with a third left; overdue a third of the way from
        // there to expiry; critical within a sixth of the lifetime of expiry.
        let cases: [(f64, f64, Option<Severity>); 12] = [
            (6.0, 3.5, None),
            (6.0, 4.1, Some(Severity::Warning)),
            (6.0, 5.1, Some(Severity::Critical)),
            (6.0, 6.5, None), // expired: `expired` speaks
            (90.0, 69.0, None),
            (90.0, 71.0, Some(Severity::Warning)),
            (90.0, 76.0, Some(Severity::Critical)),
            (198.0, 150.0, None),
            (198.0, 155.0, Some(Severity::Warning)),
            (198.0, 166.0, Some(Severity::Critical)),
            (198.0, 100.0, None),
            (90.0, 10.0, None),
        ];
        for (lifetime, age, expected) in cases {
            let not_before = T0 - time::Duration::seconds_f64(age * 86_400.0);
            let mut cert = ManagedCertificate::new(
                "shop".into(),
                crate::services::test_support::spec(&["shop.example.com"], vec![]),
                not_before,
            );
            cert.current = Some(IssuedCertificate {
                fingerprint: "aa".into(),
                serial: "01".into(),
                not_before,
                not_after: not_before + time::Duration::seconds_f64(lifetime * 86_400.0),
                issued_at: not_before,
                ari_id: None,
                profile: None,
                chain_pem: String::new(),
                key_version: "1".into(),
                order_url: String::new(),
                key_holder: None,
                stacked: vec![],
            });
            let found = certificate_conditions(&cert, T0, &FindingsPolicy::default());
            let overdue = found
                .iter()
                .find(|c| c.kind == FindingKind::RenewalOverdue)
                .map(|c| c.severity);
            assert_eq!(overdue, expected, "{lifetime}-day certificate at day {age}");
            let expired = found.iter().any(|c| c.kind == FindingKind::Expired);
            assert_eq!(
                expired,
                age > lifetime,
                "{lifetime}-day certificate at day {age}"
            );
        }
    }

    /// A store in a vector: `run` applies what `reconcile` changed, versions included.
    struct Book(Vec<Finding>);

    impl Book {
        fn run(&mut self, conditions: &[Condition], now: OffsetDateTime) -> Vec<Finding> {
            self.run_scoped(conditions, &|_| true, now)
        }

        fn run_scoped(
            &mut self,
            conditions: &[Condition],
            scope: &dyn Fn(&Finding) -> bool,
            now: OffsetDateTime,
        ) -> Vec<Finding> {
            let changed = reconcile(&self.0, conditions, scope, now, &FindingsPolicy::default());
            for f in &changed {
                self.put(f.clone());
            }
            changed
        }

        fn put(&mut self, mut f: Finding) {
            f.version += 1;
            match self.0.iter_mut().find(|x| x.key == f.key) {
                Some(slot) => *slot = f,
                None => self.0.push(f),
            }
        }

        /// A channel accepts every pending transition; returns them.
        fn send(&mut self, now: OffsetDateTime) -> Vec<(FindingKind, Transition)> {
            let sent: Vec<_> = self
                .0
                .iter()
                .filter_map(|f| f.pending.map(|t| (f.kind, t)))
                .collect();
            let done: Vec<Finding> = self
                .0
                .iter()
                .filter(|f| f.pending.is_some())
                .map(|f| notified(f, now))
                .collect();
            for f in done {
                self.put(f);
            }
            sent
        }
    }

    fn expiring_now(
        now: OffsetDateTime,
        serial: &str,
        not_after: OffsetDateTime,
    ) -> Vec<Condition> {
        endpoint_conditions(
            &seen(now, serial, not_after, tags(&[("owner", "payments")])),
            0,
            false,
            now,
            &FindingsPolicy::default(),
        )
    }

    #[test]
    fn one_message_per_transition_through_a_certificates_last_month() {
        use FindingKind::Expiring;
        use Transition::*;
        let expiry = T0 + day(25);
        let mut book = Book(Vec::new());
        // Opened once; the same run again changes nothing and sends nothing.
        book.run(&expiring_now(T0, "aa", expiry), T0);
        assert_eq!(book.send(T0), [(Expiring, Opened)]);
        assert_eq!(book.0[0].owner.as_deref(), Some("payments"));
        assert!(
            book.run(
                &expiring_now(T0, "aa", expiry),
                T0 + time::Duration::hours(1)
            )
            .is_empty()
        );
        assert!(book.send(T0).is_empty());
        // A warning is not reminded daily...
        assert!(
            book.run(&expiring_now(T0 + day(2), "aa", expiry), T0 + day(2))
                .is_empty()
        );
        // ...but crossing the 14-day threshold reminds.
        book.run(&expiring_now(T0 + day(11), "aa", expiry), T0 + day(11));
        assert_eq!(book.send(T0 + day(11)), [(Expiring, Reminded)]);
        // 7 days: critical, escalated; then reminded daily.
        book.run(&expiring_now(T0 + day(18), "aa", expiry), T0 + day(18));
        assert_eq!(book.send(T0 + day(18)), [(Expiring, Escalated)]);
        assert_eq!(book.0[0].severity, Severity::Critical);
        assert!(
            book.run(
                &expiring_now(T0 + day(18) + time::Duration::hours(20), "aa", expiry),
                T0 + day(18) + time::Duration::hours(20)
            )
            .is_empty()
        );
        book.run(&expiring_now(T0 + day(19), "aa", expiry), T0 + day(19));
        assert_eq!(book.send(T0 + day(19)), [(Expiring, Reminded)]);
        // Replaced by a renewal: the new serial is far from expiry, the finding resolves.
        book.run(
            &expiring_now(T0 + day(20), "bb", T0 + day(110)),
            T0 + day(20),
        );
        assert_eq!(book.send(T0 + day(20)), [(Expiring, Resolved)]);
        assert_eq!(book.0[0].state, FindingState::Resolved);
        // Nothing more while it stays fine.
        assert!(
            book.run(
                &expiring_now(T0 + day(21), "bb", T0 + day(110)),
                T0 + day(21)
            )
            .is_empty()
        );
        // The renewed one comes near expiry too: the same finding reopens.
        book.run(
            &expiring_now(T0 + day(85), "bb", T0 + day(110)),
            T0 + day(85),
        );
        assert_eq!(book.send(T0 + day(85)), [(Expiring, Reopened)]);
        assert_eq!(book.0.len(), 1, "one finding per kind and subject");
    }

    #[test]
    fn acknowledged_findings_stay_quiet_until_the_date_then_reopen() {
        use Transition::*;
        let expiry = T0 + day(6);
        let mut book = Book(Vec::new());
        book.run(&expiring_now(T0, "aa", expiry), T0);
        book.send(T0);
        let acked = acknowledge(&book.0[0], T0 + day(3), "replaced by hand on Friday", T0);
        book.put(acked);
        assert_eq!(book.send(T0), [(FindingKind::Expiring, Acknowledged)]);
        // Muted: no daily reminder while acknowledged, even past a threshold.
        for d in 1..3 {
            book.run(&expiring_now(T0 + day(d), "aa", expiry), T0 + day(d));
            assert!(book.send(T0 + day(d)).is_empty(), "day {d}");
        }
        assert_eq!(book.0[0].state, FindingState::Acknowledged);
        // The date passed and the problem is still there: reopened.
        book.run(&expiring_now(T0 + day(4), "aa", expiry), T0 + day(4));
        assert_eq!(book.send(T0 + day(4)), [(FindingKind::Expiring, Reopened)]);
        assert_eq!(book.0[0].state, FindingState::Open);
        assert!(book.0[0].acknowledged_until.is_none());
        // Withdrawn by hand: open again at once.
        let acked = acknowledge(&book.0[0], T0 + day(30), "later", T0 + day(4));
        book.put(unacknowledge(&acked, T0 + day(4)));
        assert_eq!(book.0[0].state, FindingState::Open);
    }

    #[test]
    fn resolution_speaks_only_for_the_subjects_evaluated_and_a_finding_nobody_heard_of_vanishes_quietly()
     {
        let mut book = Book(Vec::new());
        book.run(&expiring_now(T0, "aa", T0 + day(20)), T0);
        book.send(T0);
        // A run that evaluated other endpoints leaves this one alone.
        let changed = book.run_scoped(
            &[],
            &|f| f.subject.id != "shop.example.com:443",
            T0 + day(1),
        );
        assert!(changed.is_empty());
        assert_eq!(book.0[0].state, FindingState::Open);
        // Opened, then gone before any channel accepted it: no message at all.
        let mut fresh = Book(Vec::new());
        fresh.run(&expiring_now(T0, "aa", T0 + day(20)), T0);
        fresh.run(&[], T0 + time::Duration::minutes(5));
        assert!(fresh.send(T0).is_empty());
        assert_eq!(fresh.0[0].state, FindingState::Resolved);
    }

    #[test]
    fn unreachable_only_after_n_failures_in_a_row_and_validation_names_the_problems() {
        use crate::model::observation::{ErrorKind, ProbeError};
        let head = ObservationHead {
            target: "api.example.com:443".into(),
            host: "api.example.com".into(),
            port: 443,
            scanned_at: T0,
            tags: Tags::new(),
        };
        let failed = Observation::failed(
            head,
            None,
            5,
            ProbeError::new(ErrorKind::Timeout, "connect timed out"),
        );
        let policy = FindingsPolicy::default();
        assert!(endpoint_conditions(&failed, 2, false, T0, &policy).is_empty());
        let c = endpoint_conditions(&failed, 3, false, T0, &policy);
        assert_eq!(c[0].kind, FindingKind::Unreachable);
        assert_eq!(c[0].severity, Severity::Warning);
        assert!(c[0].summary.contains("timeout"), "{}", c[0].summary);

        let mut obs = seen(T0, "aa", T0 + day(80), Tags::new());
        obs.validation = Some(crate::model::observation::Validation {
            trusted: false,
            problems: vec![Problem::IncompleteChain],
        });
        let c = endpoint_conditions(&obs, 0, false, T0, &policy);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, FindingKind::Validation);
        assert!(c[0].summary.contains("incomplete_chain"));
        assert!(c[0].next_step.contains("fullchain"));
    }

    #[test]
    fn a_silent_scheduler_is_one_critical_finding_about_the_schedule() {
        let policy = FindingsPolicy {
            scan_interval: Duration::from_secs(3600),
            ..FindingsPolicy::default()
        };
        assert!(
            schedule_stale(None, T0, &policy).is_none(),
            "no sweep yet: no schedule to miss"
        );
        assert!(schedule_stale(Some(T0 - time::Duration::minutes(119)), T0, &policy).is_none());
        let c = schedule_stale(Some(T0 - time::Duration::minutes(150)), T0, &policy)
            .expect("stale after twice the interval");
        assert_eq!(c.severity, Severity::Critical);
        assert_eq!(c.subject, Subject::schedule(SCAN_SCHEDULE));
        assert!(c.detail.contains("every 1h"), "{}", c.detail);
        assert!(c.detail.contains("2h 30m ago"), "{}", c.detail);
        let daily = FindingsPolicy {
            scan_interval: Duration::from_secs(86_400),
            ..policy
        };
        assert!(
            schedule_stale(Some(T0 - time::Duration::hours(30)), T0, &daily).is_none(),
            "a daily scan is not late after 30 hours"
        );
    }
}
