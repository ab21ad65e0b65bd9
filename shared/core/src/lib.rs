//! certpilot's domain: what a TLS endpoint is, what a scan observed, the pure policy that
//! judges observations, the ports adapters implement, and the services that tie them together.
//!
//! Nothing in this crate talks to a network, a database or a cloud API; adapters in sibling
//! crates implement [`ports`] and the front ends (CLI, Lambda functions) wire them up.

pub mod error;
pub mod model;
pub mod policy;
pub mod ports;
pub mod services;
pub mod standard_webhooks;

pub use error::{Classify, ErrorClass};
pub use model::{
    endpoint::{Endpoint, Tags, add_tag, parse_tag},
    observation::{
        CertificateInfo, ChainEntry, ErrorKind, KeyInfo, Observation, ProbeError, Problem, Served,
        Status, TlsInfo, Validation,
    },
    target::{
        Host, Protocol, ResolveOverride, ScanRequest, Target, TargetError, TargetsFileError,
        parse_targets_file,
    },
};

/// A time as RFC 3339 (`2026-12-05T10:00:00Z`), the one form every output and API uses.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// A CSV cell a spreadsheet will not run: text a hostile server chose (a subject, an issuer,
/// an error) that starts like a formula (`=`, `+`, `-`, `@`, tab, carriage return) gets a
/// leading `'`, as OWASP advises. Numbers (`-3` days) stay numbers.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula && cell.parse::<f64>().is_err() {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// An error and its sources, joined with `": "` — transport errors (TLS, DNS, timeouts)
/// carry their real cause several sources deep, and an operator needs to see it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
