//! The findings policy as people write it: a YAML or JSON document (the CLI's
//! `--findings-policy FILE`, the functions' `CERTPILOT_FINDINGS_POLICY`), read over the
//! defaults, so an empty document is the settled policy.
//!
//! ```yaml
//! expiring_days: [30, 14, 7, 3, 1]   # when an unmanaged certificate is reported
//! critical_days: 7                   # `expiring` is critical from here
//! unreachable_after: 3               # failed scans in a row
//! not_serving_grace: 15m
//! remind: {critical: 1d, warning: 7d}
//! rules:                             # later rules win; an endpoint's alert-days tag wins over all
//!   - match: {environment: staging}
//!     expiring_days: [7, 1]
//!     severities: {expiring: info, validation: info, unreachable: info}
//!   - match: {owner: payments, environment: prod}
//!     expiring_days: [45, 30, 14, 7, 3, 1]
//!     critical_days: 14
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{FindingsPolicy, Rule};
use crate::model::endpoint::Tags;
use crate::model::finding::{FindingKind, Severity};

/// The longest threshold anyone means: ten years.
const MAX_DAYS: i64 = 3650;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    expiring_days: Option<Vec<i64>>,
    critical_days: Option<i64>,
    unreachable_after: Option<u32>,
    not_serving_grace: Option<String>,
    remind: Option<Remind>,
    #[serde(default)]
    rules: Vec<RuleSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Remind {
    critical: Option<String>,
    warning: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSettings {
    #[serde(rename = "match")]
    matches: Tags,
    expiring_days: Option<Vec<i64>>,
    critical_days: Option<i64>,
    #[serde(default)]
    severities: BTreeMap<FindingKind, Severity>,
}

fn days(field: &str, days: Option<Vec<i64>>) -> Result<Option<Vec<i64>>, String> {
    let Some(days) = days else { return Ok(None) };
    if days.is_empty() {
        return Err(format!(
            "{field} is empty; give at least one number of days (0 reports only on expiry day)"
        ));
    }
    if let Some(bad) = days.iter().find(|d| !(0..=MAX_DAYS).contains(*d)) {
        return Err(format!(
            "{field}: {bad} is not a number of days from 0 to {MAX_DAYS}"
        ));
    }
    Ok(Some(days))
}

fn one_day_count(field: &str, d: Option<i64>) -> Result<Option<i64>, String> {
    Ok(days(field, d.map(|d| vec![d]))?.map(|d| d[0]))
}

fn duration(field: &str, text: Option<String>) -> Result<Option<Duration>, String> {
    let Some(text) = text else { return Ok(None) };
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{field}: {text:?} is not a duration ({e}); write one such as 15m, 12h or 7d")
    })?;
    if d.is_zero() {
        return Err(format!("{field} must be longer than zero"));
    }
    Ok(Some(d))
}

impl FindingsPolicy {
    /// Reads a policy document over `self` (normally the defaults). The error names the field
    /// and what is wrong with it; the scan interval is the schedule's, not the document's.
    pub fn with_settings(mut self, document: serde_json::Value) -> Result<Self, String> {
        // An empty YAML file reads as null: the defaults.
        if document.is_null() {
            return Ok(self);
        }
        let s: Settings = serde_json::from_value(document).map_err(|e| e.to_string())?;
        if let Some(d) = days("expiring_days", s.expiring_days)? {
            self.expiring_days = d;
        }
        if let Some(d) = one_day_count("critical_days", s.critical_days)? {
            self.critical_days = d;
        }
        if let Some(n) = s.unreachable_after {
            if n == 0 {
                return Err("unreachable_after must be at least 1 failed scan".into());
            }
            self.unreachable_after = n;
        }
        if let Some(d) = duration("not_serving_grace", s.not_serving_grace)? {
            self.not_serving_grace = d;
        }
        if let Some(r) = s.remind {
            if let Some(d) = duration("remind.critical", r.critical)? {
                self.remind_critical = d;
            }
            if let Some(d) = duration("remind.warning", r.warning)? {
                self.remind_warning = d;
            }
        }
        for (i, r) in s.rules.into_iter().enumerate() {
            if r.matches.is_empty() {
                return Err(format!(
                    "rules[{i}].match is empty: a rule for everything is the top level's settings"
                ));
            }
            if r.expiring_days.is_none() && r.critical_days.is_none() && r.severities.is_empty() {
                return Err(format!(
                    "rules[{i}] changes nothing: give expiring_days, critical_days or severities"
                ));
            }
            self.rules.push(Rule {
                matches: r.matches,
                expiring_days: days(&format!("rules[{i}].expiring_days"), r.expiring_days)?,
                critical_days: one_day_count(
                    &format!("rules[{i}].critical_days"),
                    r.critical_days,
                )?,
                severities: r.severities,
            });
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: serde_json::Value) -> Result<FindingsPolicy, String> {
        FindingsPolicy::default().with_settings(v)
    }

    #[test]
    fn an_empty_document_is_the_settled_policy() {
        assert_eq!(read(json!(null)).unwrap(), FindingsPolicy::default());
        assert_eq!(read(json!({})).unwrap(), FindingsPolicy::default());
    }

    #[test]
    fn every_setting_is_read_over_the_defaults() {
        let p = read(json!({
            "expiring_days": [21, 7],
            "critical_days": 3,
            "unreachable_after": 5,
            "not_serving_grace": "30m",
            "remind": {"critical": "12h"},
            "rules": [{"match": {"environment": "staging"}, "expiring_days": [3],
                       "severities": {"expiring": "info"}}]
        }))
        .unwrap();
        assert_eq!(p.expiring_days, vec![21, 7]);
        assert_eq!(p.critical_days, 3);
        assert_eq!(p.unreachable_after, 5);
        assert_eq!(p.not_serving_grace, Duration::from_secs(1800));
        assert_eq!(p.remind_critical, Duration::from_secs(43_200));
        assert_eq!(p.remind_warning, FindingsPolicy::default().remind_warning);
        assert_eq!(p.rules.len(), 1);
        assert_eq!(
            p.rules[0].severities[&FindingKind::Expiring],
            Severity::Info
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (doc, says) in [
            (
                json!({"expiring_day": [30]}),
                "unknown field `expiring_day`",
            ),
            (json!({"expiring_days": []}), "expiring_days is empty"),
            (
                json!({"expiring_days": [30, -1]}),
                "expiring_days: -1 is not",
            ),
            (json!({"critical_days": 9000}), "critical_days: 9000 is not"),
            (
                json!({"unreachable_after": 0}),
                "unreachable_after must be at least 1",
            ),
            (
                json!({"not_serving_grace": "soon"}),
                "not_serving_grace: \"soon\" is not a duration",
            ),
            (
                json!({"remind": {"warning": "0s"}}),
                "remind.warning must be longer than zero",
            ),
            (
                json!({"rules": [{"match": {}, "expiring_days": [1]}]}),
                "rules[0].match is empty",
            ),
            (
                json!({"rules": [{"match": {"a": "b"}}]}),
                "rules[0] changes nothing",
            ),
            (
                json!({"rules": [{"match": {"a": "b"}, "severities": {"expring": "info"}}]}),
                "unknown variant `expring`",
            ),
            (
                json!({"rules": [{"match": {"a": "b"}, "severities": {"expiring": "urgent"}}]}),
                "unknown variant `urgent`",
            ),
        ] {
            let e = read(doc.clone()).expect_err(&doc.to_string());
            assert!(e.contains(says), "{doc}: {e}");
        }
    }
}
