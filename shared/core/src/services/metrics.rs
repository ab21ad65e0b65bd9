//! Metrics of the estate, as Prometheus text and as CloudWatch EMF lines.
//!
//! The Prometheus names and labels are ssl_exporter's (`ssl_cert_not_after`,
//! `ssl_cert_not_before` in Unix seconds with `serial_no` in decimal, `issuer_cn`, `cn`, and
//! comma-wrapped `dnsnames`, `ips`, `emails`, `ou`; `ssl_probe_success`), plus `instance`
//! (the endpoint) and `address`, so rules written for ssl_exporter — the seeds'
//! `(ssl_cert_not_after - time()) / 86400 < 30` — work unchanged. Unlike ssl_exporter, only
//! the leaf is exported: the inventory keeps an intermediate's expiry but not its serial or
//! start. certpilot's own metrics are prefixed `certpilot_`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use time::OffsetDateTime;

use crate::model::certificate::ManagedCertificate;
use crate::model::deploy::DeploymentStatus;
use crate::model::finding::{Finding, FindingState};
use crate::model::observation::Status;
use crate::ports::InventoryEntry;

/// What the metrics are made of.
pub struct Estate<'a> {
    /// The latest observation of every (endpoint, address).
    pub inventory: &'a [InventoryEntry],
    /// Every managed certificate.
    pub certificates: &'a [ManagedCertificate],
    /// The active findings.
    pub findings: &'a [Finding],
    /// Now (EMF's timestamp).
    pub now: OffsetDateTime,
}

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A lowercase hex serial in decimal, as Go's `big.Int.String()` prints it (ssl_exporter's
/// `serial_no`).
pub fn serial_decimal(hex: &str) -> String {
    // Little-endian base-1e9 limbs: multiply by 16 and add each hex digit.
    let mut limbs: Vec<u64> = vec![0];
    for c in hex.chars() {
        let Some(d) = c.to_digit(16) else { continue };
        let mut carry = u64::from(d);
        for limb in &mut limbs {
            let v = *limb * 16 + carry;
            *limb = v % 1_000_000_000;
            carry = v / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let mut out = limbs.last().map(u64::to_string).unwrap_or_default();
    for limb in limbs.iter().rev().skip(1) {
        let _ = write!(out, "{limb:09}");
    }
    out
}

/// The value of attribute `attr` (`CN`, `OU`) in an RFC 4514 distinguished name, all of
/// them joined as ssl_exporter does for OU.
fn dn_values(dn: &str, attr: &str) -> Vec<String> {
    dn.split(',')
        .filter_map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(attr)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

/// ssl_exporter's comma-wrapped list: `",a,b,"`, or `""` when empty.
fn wrapped(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(",{},", items.join(","))
    }
}

fn seconds(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// The Prometheus text exposition (format 0.0.4) of `estate`.
pub fn prometheus(estate: &Estate<'_>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    };
    let mut probe = Vec::new();
    let mut not_after = Vec::new();
    let mut not_before = Vec::new();
    for e in estate.inventory {
        let o = &e.observation;
        let address = o.address.clone().unwrap_or_default();
        let base = [
            ("instance", o.target.as_str()),
            ("address", address.as_str()),
        ];
        probe.push(format!(
            "ssl_probe_success{} {}",
            labels(&base),
            u8::from(o.status == Status::Ok)
        ));
        let Some(c) = o.certificate.as_ref().filter(|_| o.status == Status::Ok) else {
            continue;
        };
        let (ips, dns): (Vec<String>, Vec<String>) = c
            .sans
            .iter()
            .cloned()
            .partition(|s| s.parse::<std::net::IpAddr>().is_ok());
        let serial = serial_decimal(&c.serial);
        let issuer_cn = dn_values(&c.issuer, "CN").join(",");
        let cn = dn_values(&c.subject, "CN").join(",");
        let ou = wrapped(&dn_values(&c.subject, "OU"));
        let emails = wrapped(&dn_values(&c.subject, "emailAddress"));
        let (dns, ips) = (wrapped(&dns), wrapped(&ips));
        let l = labels(&[
            base[0],
            base[1],
            ("serial_no", &serial),
            ("issuer_cn", &issuer_cn),
            ("cn", &cn),
            ("dnsnames", &dns),
            ("ips", &ips),
            ("emails", &emails),
            ("ou", &ou),
        ]);
        not_after.push(format!("ssl_cert_not_after{l} {}", seconds(c.not_after)));
        not_before.push(format!("ssl_cert_not_before{l} {}", seconds(c.not_before)));
    }
    family(
        "ssl_probe_success",
        "If the last probe of the endpoint address was a success",
        probe,
    );
    family(
        "ssl_cert_not_after",
        "NotAfter expressed as a Unix Epoch Time",
        not_after,
    );
    family(
        "ssl_cert_not_before",
        "NotBefore expressed as a Unix Epoch Time",
        not_before,
    );

    let mut open: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for f in estate
        .findings
        .iter()
        .filter(|f| f.state == FindingState::Open)
    {
        *open
            .entry((
                f.kind.as_str(),
                f.severity.as_str(),
                f.owner.as_deref().unwrap_or(""),
            ))
            .or_default() += 1;
    }
    family(
        "certpilot_finding_open",
        "Open findings (not acknowledged), by kind, severity and owner",
        open.iter()
            .map(|((k, s, o), n)| {
                format!(
                    "certpilot_finding_open{} {n}",
                    labels(&[("kind", k), ("severity", s), ("owner", o)])
                )
            })
            .collect(),
    );
    let mut expiry = Vec::new();
    let mut renewed = Vec::new();
    let mut verified = Vec::new();
    for c in estate.certificates {
        let id = [("id", c.id.as_str())];
        if let Some(cur) = &c.current {
            expiry.push(format!(
                "certpilot_certificate_not_after{} {}",
                labels(&id),
                seconds(cur.not_after)
            ));
            renewed.push(format!(
                "certpilot_renewal_last_success_timestamp_seconds{} {}",
                labels(&id),
                seconds(cur.issued_at)
            ));
        }
        for d in &c.deployments {
            let ok = d.state.status == DeploymentStatus::Verified
                && c.current
                    .as_ref()
                    .is_some_and(|cur| cur.fingerprint == d.fingerprint);
            verified.push(format!(
                "certpilot_deployment_verified{} {}",
                labels(&[("id", c.id.as_str()), ("deployment", d.name.as_str())]),
                u8::from(ok)
            ));
        }
    }
    family(
        "certpilot_certificate_not_after",
        "When the current version of a managed certificate expires, as a Unix Epoch Time",
        expiry,
    );
    family(
        "certpilot_renewal_last_success_timestamp_seconds",
        "When the current version of a managed certificate was issued",
        renewed,
    );
    family(
        "certpilot_deployment_verified",
        "1 when the deployment was proven by handshake to serve the current version",
        verified,
    );
    let last = estate
        .inventory
        .iter()
        .map(|e| e.observation.scanned_at)
        .max();
    family(
        "certpilot_scan_last_run_timestamp_seconds",
        "When the most recent scan observed an endpoint",
        last.map(|t| format!("certpilot_scan_last_run_timestamp_seconds {}", seconds(t)))
            .into_iter()
            .collect(),
    );
    out
}

/// One CloudWatch Embedded Metric Format line (namespace `certpilot`, ending in a newline):
/// `metrics` (name, CloudWatch unit, value) under one dimension set made of `dimensions`
/// (name, value), with `fields` beside them for people reading the log. EMF's `Timestamp` is
/// in milliseconds.
pub fn emf_line(
    now: OffsetDateTime,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, &str, f64)],
    fields: serde_json::Value,
) -> String {
    let ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let mut root = match fields {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    for (name, value) in dimensions {
        root.insert((*name).to_owned(), serde_json::Value::from(*value));
    }
    for (name, _, value) in metrics {
        root.insert((*name).to_owned(), serde_json::json!(value));
    }
    let names: Vec<&str> = dimensions.iter().map(|(n, _)| *n).collect();
    let defs: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, unit, _)| serde_json::json!({"Name": name, "Unit": unit}))
        .collect();
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": ms,
            "CloudWatchMetrics": [{
                "Namespace": "certpilot",
                "Dimensions": [names],
                "Metrics": defs,
            }],
        }),
    );
    serde_json::Value::Object(root).to_string() + "\n"
}

/// CloudWatch Embedded Metric Format: one JSON object per line, namespace `certpilot`.
/// `DaysToExpiry` per endpoint address (dimensions `Target`, `Address`), per managed
/// certificate (`CertificateId`), and `OpenFindings` per severity.
pub fn emf(estate: &Estate<'_>) -> String {
    let days = |t: OffsetDateTime| (t - estate.now).whole_seconds() as f64 / 86_400.0;
    let mut out = String::new();
    for e in estate.inventory {
        let o = &e.observation;
        if let Some(c) = o.certificate.as_ref().filter(|_| o.status == Status::Ok) {
            out.push_str(&emf_line(
                estate.now,
                &[
                    ("Target", &o.target),
                    ("Address", o.address.as_deref().unwrap_or_default()),
                ],
                &[("DaysToExpiry", "None", days(c.not_after))],
                serde_json::json!({"serial": c.serial}),
            ));
        }
    }
    for c in estate.certificates {
        if let Some(cur) = &c.current {
            out.push_str(&emf_line(
                estate.now,
                &[("CertificateId", &c.id)],
                &[("DaysToExpiry", "None", days(cur.not_after))],
                serde_json::Value::Null,
            ));
        }
    }
    for severity in ["critical", "warning", "info"] {
        let n = estate
            .findings
            .iter()
            .filter(|f| f.state == FindingState::Open && f.severity.as_str() == severity)
            .count();
        out.push_str(&emf_line(
            estate.now,
            &[("Severity", severity)],
            &[("OpenFindings", "Count", n as f64)],
            serde_json::Value::Null,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_decimal_like_gos_big_int() {
        assert_eq!(serial_decimal("00"), "0");
        assert_eq!(serial_decimal("ff"), "255");
        // 2^64 + 1 and a 20-byte serial, computed apart with Python's int(…, 16).
        assert_eq!(serial_decimal("010000000000000001"), "18446744073709551617");
        assert_eq!(
            serial_decimal("4a3b9f0c2d1e8f7a6b5c4d3e2f1a0b9c8d7e6f50"),
            "423794916004502923288794519129899868850923401040"
        );
    }

    #[test]
    fn label_values_are_escaped_and_lists_comma_wrapped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(wrapped(&[]), "");
        assert_eq!(wrapped(&["a".into(), "b".into()]), ",a,b,");
        assert_eq!(
            dn_values("CN=shop, O=Shop, OU=a, OU=b", "OU"),
            vec!["a", "b"]
        );
    }
}
