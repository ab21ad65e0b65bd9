//! The digest: per owner, the open findings and what expires soon — what a team lead reads
//! once a day (`certpilot digest`, and the functions' daily digest to the alerts topic).
//!
//! Endpoints and certificates without an `owner` tag are gathered under [`NO_OWNER`], so
//! nothing falls through.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::model::finding::Severity;
use crate::ports::{CertificateStore, FindingStore, InventoryQuery, Store, StoreError};

/// The owner of what has no `owner` tag.
pub const NO_OWNER: &str = "(no owner)";

/// One owner's digest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// The owner (tag `owner`), or [`NO_OWNER`].
    pub owner: String,
    /// The window of `expiring`, in days.
    pub days: u32,
    /// The open findings, as the findings JSON, most severe first.
    pub findings: Vec<Value>,
    /// What expires within the window, soonest first: endpoints (`"what": "endpoint"`) and
    /// managed certificates (`"what": "certificate"`).
    pub expiring: Vec<Value>,
}

impl Digest {
    /// The most severe open finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings
            .iter()
            .filter_map(|f| f["severity"].as_str().and_then(Severity::parse))
            .max()
    }

    /// The one-line headline: `payments: 2 open findings; 3 expire within 30 days`.
    pub fn headline(&self) -> String {
        format!(
            "{}: {} open finding{}; {} expire{} within {} days",
            self.owner,
            self.findings.len(),
            if self.findings.len() == 1 { "" } else { "s" },
            self.expiring.len(),
            if self.expiring.len() == 1 { "s" } else { "" },
            self.days
        )
    }

    /// The digest as plain text, for people (the terminal, an e-mail): the headline, then
    /// one line per finding and per expiry.
    pub fn text(&self) -> String {
        let mut out = self.headline();
        out.push('\n');
        for f in &self.findings {
            let _ = writeln!(
                out,
                "  {} {}: {} — {}",
                f["severity"].as_str().unwrap_or(""),
                f["kind"].as_str().unwrap_or(""),
                f["summary"].as_str().unwrap_or(""),
                f["next_step"].as_str().unwrap_or("")
            );
        }
        for e in &self.expiring {
            let _ = writeln!(
                out,
                "  expires {} (in {} days): {}",
                e["not_after"].as_str().unwrap_or(""),
                e["days_left"],
                expiring_what(e)
            );
        }
        out
    }
}

/// What an expiring item is: `certificate shop`, or `shop.example.com:443 (192.0.2.1:443)`.
pub fn expiring_what(e: &Value) -> String {
    match e["what"].as_str() {
        Some("certificate") => format!("certificate {}", e["id"].as_str().unwrap_or("")),
        _ => format!(
            "{} ({})",
            e["target"].as_str().unwrap_or(""),
            e["address"].as_str().unwrap_or("")
        ),
    }
}

/// Every owner's digest at `now`, with what expires within `days`, ordered by owner.
pub async fn digests(
    store: &dyn Store,
    certificates: &dyn CertificateStore,
    findings: &dyn FindingStore,
    now: OffsetDateTime,
    days: u32,
) -> Result<Vec<Digest>, StoreError> {
    let time = crate::rfc3339;
    let until = now + time::Duration::days(i64::from(days));
    let mut digests: BTreeMap<String, Digest> = BTreeMap::new();
    fn entry<'a>(
        digests: &'a mut BTreeMap<String, Digest>,
        owner: Option<&String>,
        days: u32,
    ) -> &'a mut Digest {
        let name = owner
            .filter(|o| !o.is_empty())
            .cloned()
            .unwrap_or_else(|| NO_OWNER.to_owned());
        digests.entry(name.clone()).or_insert_with(|| Digest {
            owner: name,
            days,
            ..Digest::default()
        })
    }
    let mut active = findings.active_findings().await?;
    crate::ports::sort_findings(&mut active);
    for f in &active {
        entry(&mut digests, f.owner.as_ref(), days)
            .findings
            .push(f.public_json());
    }
    let mut expiring: Vec<(OffsetDateTime, Option<String>, Value)> = Vec::new();
    let query = InventoryQuery {
        expiring_before: Some(until),

        ..InventoryQuery::default()
    };
    for row in store.inventory(&query).await? {
        let o = &row.observation;
        let Some(c) = &o.certificate else { continue };
        expiring.push((
            c.not_after,
            row.tags.get("owner").cloned(),
            json!({
                "what": "endpoint",
                "target": o.target,
                "address": o.address,
                "not_after": time(c.not_after),
                "days_left": crate::policy::days_remaining(c.not_after, now),
                "issuer": c.issuer,
                "serial": c.serial,
            }),
        ));
    }
    for cert in certificates.certificates().await? {
        let Some(current) = &cert.current else {
            continue;
        };
        if current.not_after < until {
            expiring.push((
                current.not_after,
                cert.spec.tags.get("owner").cloned(),
                json!({
                    "what": "certificate",
                    "id": cert.id,
                    "not_after": time(current.not_after),
                    "days_left": crate::policy::days_remaining(current.not_after, now),
                    "serial": current.serial,
                }),
            ));
        }
    }
    expiring.sort_by_key(|(at, _, _)| *at);
    for (_, owner, item) in expiring {
        entry(&mut digests, owner.as_ref(), days)
            .expiring
            .push(item);
    }
    Ok(digests.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_reads_as_text_and_knows_its_worst_finding() {
        let d = Digest {
            owner: "payments".into(),
            days: 30,
            findings: vec![
                json!({"severity": "warning", "kind": "expiring", "summary": "shop expires", "next_step": "renew"}),
                json!({"severity": "critical", "kind": "expired", "summary": "api expired", "next_step": "replace"}),
            ],
            expiring: vec![
                json!({"what": "certificate", "id": "shop", "not_after": "2027-01-01T00:00:00Z", "days_left": 12}),
            ],
        };
        assert_eq!(d.worst(), Some(Severity::Critical));
        let text = d.text();
        assert!(
            text.starts_with("payments: 2 open findings; 1 expires within 30 days\n"),
            "{text}"
        );
        assert!(
            text.contains("  critical expired: api expired — replace\n"),
            "{text}"
        );
        assert!(
            text.contains("  expires 2027-01-01T00:00:00Z (in 12 days): certificate shop\n"),
            "{text}"
        );
        assert_eq!(Digest::default().worst(), None);
    }
}
