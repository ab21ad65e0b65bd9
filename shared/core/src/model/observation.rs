//! What one scan of one (target, address) saw.
//!
//! [`Observation`] serializes to the JSON Lines record of `certpilot scan --format json`. Its
//! field names are a public interface: later versions may add fields, never rename them.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::endpoint::Tags;

/// Whether a certificate was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A certificate was obtained (it may still fail validation).
    Ok,
    /// No certificate was obtained; `error` says why.
    Error,
}

/// Why no certificate was obtained: one kind per failure, so alerts and dashboards can group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The name did not resolve (NXDOMAIN, no addresses, resolver failure or timeout).
    Dns,
    /// The TCP connection was refused.
    Refused,
    /// The peer reset or closed the connection before a certificate arrived.
    Reset,
    /// A connect, handshake or whole-target deadline passed.
    Timeout,
    /// The peer answered with something that is not TLS.
    NotTls,
    /// The peer sent a TLS alert (its name is in the message and in `alert`).
    TlsAlert,
    /// The peer spoke TLS but broke the protocol, or offered nothing we can negotiate.
    TlsProtocol,
    /// The plaintext protocol did not allow the upgrade to TLS.
    StarttlsRefused,
    /// Anything else (unreachable network…); the message says what.
    Other,
    /// This machine, not the endpoint, failed: out of file descriptors, memory or ephemeral
    /// ports. Says nothing about the endpoint, so it is never recorded as its observation.
    Local,
}

impl ErrorKind {
    /// The snake_case name used in JSON, CSV and the table.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Dns => "dns",
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NotTls => "not_tls",
            ErrorKind::TlsAlert => "tls_alert",
            ErrorKind::TlsProtocol => "tls_protocol",
            ErrorKind::StarttlsRefused => "starttls_refused",
            ErrorKind::Other => "other",
            ErrorKind::Local => "local",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed probe: its kind and a sentence for humans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// What happened, in words.
    pub message: String,
    /// The TLS alert's name (`handshake_failure`, `protocol_version`…) for `tls_alert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

impl ProbeError {
    /// An I/O error that is this machine's, not the peer's: out of file descriptors
    /// (`EMFILE`, `ENFILE`), buffers or memory (`ENOBUFS`, `ENOMEM`), or local ports
    /// (`EADDRNOTAVAIL`). Linux numbering, the only platform certpilot ships for.
    pub fn is_local_resource(e: &std::io::Error) -> bool {
        matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12 | 99))
    }

    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProbeError {
            kind,
            message: message.into(),
            alert: None,
        }
    }

    /// A `tls_alert` error naming the alert.
    pub fn alert(name: &str) -> Self {
        ProbeError {
            kind: ErrorKind::TlsAlert,
            message: format!("peer sent TLS alert {name}"),
            alert: Some(name.to_owned()),
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ProbeError {}

/// The negotiated TLS parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// IANA cipher suite name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: String,
}

/// A public key's algorithm and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// `RSA`, `EC`, `Ed25519`, `Ed448`, `DSA` or the algorithm OID.
    #[serde(rename = "type")]
    pub kind: String,
    /// Key size in bits (the modulus for RSA, the field size for EC).
    pub bits: u32,
    /// The named curve for EC keys (`P-256`, `P-384`, `P-521`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<String>,
}

impl fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.curve {
            Some(curve) => write!(f, "{} {curve}", self.kind),
            None => write!(f, "{} {}", self.kind, self.bits),
        }
    }
}

/// The served leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// Subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS names and IP addresses from subjectAltName, in certificate order.
    pub sans: Vec<String>,
    /// Serial number, lowercase hex without separators.
    pub serial: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER encoding, lowercase hex: the certificate's identity.
    pub fingerprint_sha256: String,
    /// Public key algorithm and size.
    pub key: KeyInfo,
    /// Signature algorithm, e.g. `sha256WithRSAEncryption`, `ecdsa-with-SHA256`.
    pub signature_algorithm: String,
}

/// One certificate of the presented chain (the leaf first, as sent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER encoding, lowercase hex.
    pub fingerprint_sha256: String,
}

/// A reason a client would reject, or should distrust, the served certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The leaf's notAfter has passed.
    Expired,
    /// The leaf's notBefore is in the future.
    NotYetValid,
    /// No SAN (or, without SANs, no CN) matches the host name or IP address scanned.
    HostnameMismatch,
    /// The leaf is its own issuer.
    SelfSigned,
    /// The chain ends at a root that is not in the trust store: one the server sent, or the
    /// issuer of the last intermediate it sent (a private or unknown CA).
    UntrustedRoot,
    /// The server sent its leaf alone, and the leaf's issuer is not a trusted root: the
    /// intermediate is missing.
    IncompleteChain,
    /// A presented certificate has an RSA key shorter than 2048 bits.
    WeakKey,
    /// A presented certificate is signed with SHA-1 or MD5.
    WeakSignature,
    /// The chain reaches a trusted root but a certificate on the way breaks a rule: an
    /// intermediate expired or not yet valid, a path-length or name constraint violated, a
    /// CA certificate served as the leaf, a bad signature.
    InvalidChain,
}

impl Problem {
    /// The snake_case name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Expired => "expired",
            Problem::NotYetValid => "not_yet_valid",
            Problem::HostnameMismatch => "hostname_mismatch",
            Problem::SelfSigned => "self_signed",
            Problem::UntrustedRoot => "untrusted_root",
            Problem::IncompleteChain => "incomplete_chain",
            Problem::WeakKey => "weak_key",
            Problem::WeakSignature => "weak_signature",
            Problem::InvalidChain => "invalid_chain",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on a served chain, kept apart from obtaining it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    /// A client with the trust store used would accept this chain for this name, now.
    pub trusted: bool,
    /// Every problem found, sorted, without duplicates.
    pub problems: Vec<Problem>,
}

/// Everything a successful probe of one address learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// Negotiated version and cipher.
    pub tls: TlsInfo,
    /// The leaf.
    pub certificate: CertificateInfo,
    /// The chain as presented, leaf first.
    pub chain: Vec<ChainEntry>,
    /// The validation verdict.
    pub validation: Validation,
}

/// The record of one scan of one (target, address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The target's canonical spelling (`host:port`, or `scheme://host:port`).
    pub target: String,
    /// Host name or IP address scanned (and sent as SNI when a name).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The address connected to, `ip:port` (`[v6]:port`); absent when resolution failed.
    pub address: Option<String>,
    /// When the probe started, RFC 3339 UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub scanned_at: OffsetDateTime,
    /// How long the probe took.
    pub elapsed_ms: u64,
    /// `ok` when a certificate was obtained.
    pub status: Status,
    /// Why no certificate was obtained (only when `status` is `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ProbeError>,
    /// Negotiated TLS parameters, when the handshake got that far.
    pub tls: Option<TlsInfo>,
    /// The leaf certificate.
    pub certificate: Option<CertificateInfo>,
    /// The presented chain, leaf first.
    #[serde(default)]
    pub chain: Vec<ChainEntry>,
    /// Whole days from `scanned_at` to the leaf's notAfter, rounded down (negative once expired).
    pub days_remaining: Option<i64>,
    /// The validation verdict.
    pub validation: Option<Validation>,
    /// Tags of the target (from the targets file or the registered endpoint).
    #[serde(default)]
    pub tags: Tags,
}

impl Observation {
    /// The record of a probe that obtained a certificate.
    pub fn served(
        head: ObservationHead,
        address: String,
        elapsed_ms: u64,
        served: Served,
    ) -> Observation {
        let days = crate::policy::days_remaining(served.certificate.not_after, head.scanned_at);
        Observation {
            target: head.target,
            host: head.host,
            port: head.port,
            address: Some(address),
            scanned_at: head.scanned_at,
            elapsed_ms,
            status: Status::Ok,
            error: None,
            tls: Some(served.tls),
            certificate: Some(served.certificate),
            chain: served.chain,
            days_remaining: Some(days),
            validation: Some(served.validation),
            tags: head.tags,
        }
    }

    /// The record of a probe that obtained no certificate. `tls` is kept when the handshake
    /// negotiated parameters before failing.
    pub fn failed(
        head: ObservationHead,
        address: Option<String>,
        elapsed_ms: u64,
        error: ProbeError,
    ) -> Observation {
        Observation {
            target: head.target,
            host: head.host,
            port: head.port,
            address,
            scanned_at: head.scanned_at,
            elapsed_ms,
            status: Status::Error,
            error: Some(error),
            tls: None,
            certificate: None,
            chain: Vec::new(),
            days_remaining: None,
            validation: None,
            tags: head.tags,
        }
    }

    /// The served certificate's fingerprint, if one was obtained.
    pub fn fingerprint(&self) -> Option<&str> {
        self.certificate
            .as_ref()
            .map(|c| c.fingerprint_sha256.as_str())
    }

    /// The key of the (endpoint, address) this observation belongs to.
    pub fn address_key(&self) -> &str {
        self.address.as_deref().unwrap_or("")
    }
}

/// The parts of an observation known before probing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservationHead {
    /// Canonical target.
    pub target: String,
    /// Host as scanned.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Start of the probe.
    pub scanned_at: OffsetDateTime,
    /// Tags carried from the request.
    pub tags: Tags,
}
