//! Managed certificates: what certpilot issues and renews, how, and where the renewal stands.
//!
//! A [`ManagedCertificate`] is one record: its [`CertificateSpec`] (what the owner asked for),
//! the certificate issued last ([`IssuedCertificate`], public data only), and the
//! [`RenewalState`], including the in-flight [`RenewalJob`] with its lease. Every change is a
//! write conditional on `version`, so a step of a renewal is persisted exactly once and two
//! workers can never both hold the lease. Private keys are never here: only the SecretStore
//! version that holds them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::deploy::{Deployment, DeploymentRecord, DeploymentStatus};
use crate::model::endpoint::Tags;
use crate::model::target::Target;

/// Why a certificate specification is invalid; the message names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?}: {reason}")]
pub struct SpecError {
    /// The offending input.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

fn spec_error(input: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Most names Let's Encrypt takes in one order (any profile).
pub const MAX_NAMES: usize = 100;

/// Most names a `tlsserver` or `shortlived` order takes.
pub const MAX_NAMES_SHORT_PROFILES: usize = 25;

/// The key a certificate is issued for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256: small, fast, accepted everywhere that matters.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// RSA 2048 (for clients that cannot do ECDSA).
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// RSA 4096.
    Rsa4096,
}

impl KeyType {
    /// Every key type, in the order `--help` lists them.
    pub const ALL: [KeyType; 5] = [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    /// Whether it is an RSA key (else ECDSA).
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }

    /// The spelling used on the command line and in stored records.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str() == lower)
            .or(match lower.as_str() {
                "p256" | "ec256" | "ecdsa" => Some(KeyType::EcdsaP256),
                "p384" | "ec384" => Some(KeyType::EcdsaP384),
                "rsa" | "rsa-2048" => Some(KeyType::Rsa2048),
                "rsa-3072" => Some(KeyType::Rsa3072),
                "rsa-4096" => Some(KeyType::Rsa4096),
                _ => None,
            })
            .ok_or_else(|| {
                let all: Vec<&str> = KeyType::ALL.iter().map(|k| k.as_str()).collect();
                spec_error(
                    s,
                    format!("unknown key type; use one of {}", all.join(", ")),
                )
            })
    }
}

/// One name a certificate covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Identifier {
    /// A DNS name, lowercase, possibly a wildcard (`*.example.com`).
    Dns(String),
    /// An IP address (ACME `ip` identifier, RFC 8738).
    Ip(IpAddr),
}

impl Identifier {
    /// Whether this is a wildcard name.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Identifier::Dns(n) if n.starts_with("*."))
    }

    /// The name DNS-01 validates through: a wildcard's base name.
    pub fn validation_name(&self) -> String {
        match self {
            Identifier::Dns(n) => n.strip_prefix("*.").unwrap_or(n).to_owned(),
            Identifier::Ip(ip) => ip.to_string(),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::Dns(n) => f.write_str(n),
            Identifier::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl FromStr for Identifier {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if let Ok(ip) = trimmed.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(Identifier::Ip(ip));
        }
        // One trailing dot is a fully qualified name; more is a typo.
        let name = trimmed.strip_suffix('.').unwrap_or(trimmed);
        // Internationalised names are stored, requested and matched in their A-label (xn--)
        // form, the only form certificates carry (RFC 5280 7.2).
        let name = if name.is_ascii() {
            name.to_ascii_lowercase()
        } else {
            let (wild, base) = match name.strip_prefix("*.") {
                Some(base) => ("*.", base),
                None => ("", name),
            };
            let ascii = idna::domain_to_ascii_cow(base.as_bytes(), idna::AsciiDenyList::STD3)
                .map_err(|_| {
                    spec_error(
                        s,
                        "not a valid internationalised name (IDNA 2008/UTS 46 refuse it)",
                    )
                })?;
            format!("{wild}{ascii}")
        };
        if name.is_empty() {
            return Err(spec_error(s, "empty name"));
        }
        if crate::model::target::looks_numeric(&name) {
            return Err(spec_error(
                s,
                "not a valid IP address (write IPv4 as four decimal numbers from 0 to 255), and \
                 not a DNS name either: no top-level domain is numeric",
            ));
        }
        if name.len() > 253 {
            return Err(spec_error(s, "longer than 253 characters"));
        }
        let (wild, base) = match name.strip_prefix("*.") {
            Some(base) => (true, base),
            None => (false, name.as_str()),
        };
        if base.contains('*') {
            return Err(spec_error(
                s,
                "a wildcard may only be the whole first label (*.example.com)",
            ));
        }
        let labels: Vec<&str> = base.split('.').collect();
        if labels.len() < 2 && !wild {
            // Single-label names cannot get a publicly trusted certificate; say so early.
            return Err(spec_error(s, "needs at least two labels (example.com)"));
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err(spec_error(s, "each label must be 1 to 63 characters"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(spec_error(s, "a label may not start or end with '-'"));
            }
            if label.contains('_') {
                return Err(spec_error(
                    s,
                    "'_' is not allowed in a certificate's names: CAs refuse it (CA/Browser \
                     Forum ballot SC12); use '-'",
                ));
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(spec_error(
                    s,
                    "only letters, digits and '-' (write internationalised names in their xn-- form)",
                ));
            }
        }
        Ok(Identifier::Dns(name))
    }
}

/// External Account Binding for CAs that require it (ZeroSSL, Google Trust Services, SSL.com,
/// DigiCert, Sectigo). The HMAC key is a secret: only its SecretStore name is kept here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalAccountBinding {
    /// The key identifier the CA gave.
    pub key_id: String,
    /// The SecretStore name holding the base64url HMAC key.
    pub hmac_secret: String,
}

/// Which ACME CA issues the certificate, and as whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeIssuer {
    /// The directory URL (`https://acme-v02.api.letsencrypt.org/directory`).
    pub directory: String,
    /// Account contacts (`mailto:` URLs).
    #[serde(default)]
    pub contact: Vec<String>,
    /// External Account Binding, when the CA requires one.
    #[serde(default)]
    pub eab: Option<ExternalAccountBinding>,
    /// The certificate profile to ask for (`tlsserver`, `shortlived`), used only when the CA
    /// offers it.
    #[serde(default)]
    pub profile: Option<String>,
    /// The account's SecretStore name, fixed when the directory URL was rewritten (its
    /// credentials removed) so that the certificate keeps its account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_secret: Option<String>,
}

impl AcmeIssuer {
    /// The longest lifetime, in days, this CA and profile can issue, with the reason.
    pub fn longest_lifetime_days(&self) -> (u32, &'static str) {
        match self.profile.as_deref() {
            Some("shortlived") => (6, "the shortlived profile issues 160-hour certificates"),
            Some("tlsserver") => (45, "the tlsserver profile issues 45-day certificates"),
            _ if self.directory.contains(".api.letsencrypt.org/") => {
                (90, "Let's Encrypt issues 90-day certificates at most")
            }
            _ => (
                200,
                "no public CA may issue for more than 200 days since 2026-03-15",
            ),
        }
    }

    /// The SecretStore name of the ACME account used for this directory and contact set: one
    /// account per (CA, contacts, EAB key), created once and reused.
    pub fn account_secret_name(&self) -> String {
        if let Some(pinned) = &self.account_secret {
            return pinned.clone();
        }
        let mut material = self.directory.clone();
        for c in &self.contact {
            material.push('\n');
            material.push_str(c);
        }
        if let Some(eab) = &self.eab {
            material.push('\n');
            material.push_str(&eab.key_id);
        }
        format!("acme-account/{:016x}", fnv1a64(material.as_bytes()))
    }
}

/// Where `url`'s userinfo (`user:password@`) is, as a byte range including the `@`.
fn userinfo(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')?;
    Some(start..start + at + 1)
}

/// `url` with any `user:password@` shown as `***@`: what logs, errors and output show.
pub fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some(range) => format!("{}***@{}", &url[..range.start], &url[range.end..]),
        None => url.to_owned(),
    }
}

impl AcmeIssuer {
    /// Removes credentials from the directory URL, keeping the account this certificate
    /// already uses; `true` when there were some. ACME authenticates the account key (and
    /// EAB at registration), and certpilot's HTTP client never sent URL credentials, so the
    /// renewal behaves exactly as before.
    pub fn strip_directory_credentials(&mut self) -> bool {
        let Some(range) = userinfo(&self.directory) else {
            return false;
        };
        self.account_secret = Some(self.account_secret_name());
        self.directory.replace_range(range, "");
        true
    }
}

/// The key under which a store logs issuances for a name set (as
/// [`CertificateSpec::name_set`] spells it): the names themselves while short, so a person
/// reading the store recognises them, else a stable hash that fits any store's key limits.
pub fn name_set_key(names: &[String]) -> String {
    let joined = names.join(",");
    if joined.len() <= 512 {
        joined
    } else {
        format!(
            "fnv1a64:{:016x}:{}",
            fnv1a64(joined.as_bytes()),
            names.len()
        )
    }
}

/// Stable 64-bit FNV-1a: names derived from it must not change between versions.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// How the CA is shown control of the names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ChallengeConfig {
    /// HTTP-01 answered by certpilot's own responder listening on this address (port 80 in
    /// production, or behind a proxy that forwards `/.well-known/acme-challenge/`).
    Http01Listen {
        /// `host:port` to listen on.
        listen: String,
    },
    /// HTTP-01 answered by writing the token into the web root of a server that already
    /// serves `/.well-known/acme-challenge/`.
    Http01Webroot {
        /// The web root directory.
        webroot: std::path::PathBuf,
    },
    /// DNS-01 through a DNS provider (the only way to get wildcard names).
    Dns01 {
        /// Which provider and how to reach it.
        provider: DnsProviderConfig,
    },
}

/// A DNS provider for DNS-01.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DnsProviderConfig {
    /// AWS Route 53; the hosted zone is found from the name unless given.
    Route53 {
        /// Hosted zone id, when lookup by name is not wanted.
        #[serde(default)]
        zone_id: Option<String>,
    },
    /// RFC 2136 dynamic update to a primary server, signed with TSIG.
    Rfc2136 {
        /// `host:port` of the primary.
        server: String,
        /// The zone to update.
        zone: String,
        /// TSIG key name.
        key_name: String,
        /// SecretStore name of the TSIG key (base64).
        key_secret: String,
    },
}

impl DnsProviderConfig {
    /// The provider's kind, as in the `kind` field of its JSON form.
    pub fn kind(&self) -> &'static str {
        match self {
            DnsProviderConfig::Route53 { .. } => "route53",
            DnsProviderConfig::Rfc2136 { .. } => "rfc2136",
        }
    }
}

/// When to renew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RenewalPolicy {
    /// The CA's ACME Renewal Information when offered, else a share of the lifetime.
    #[default]
    Auto,
    /// A fixed number of days before expiry (ARI still wins when it asks for earlier).
    DaysBefore {
        /// Days before `notAfter`.
        days: u32,
    },
}

/// What the owner asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSpec {
    /// The names, the first being the common name; sorted and unique after the first.
    pub names: Vec<Identifier>,
    /// The key type.
    #[serde(default)]
    pub key_type: KeyType,
    /// The CA.
    pub issuer: AcmeIssuer,
    /// How validation is done.
    pub challenge: ChallengeConfig,
    /// When to renew.
    #[serde(default)]
    pub renewal: RenewalPolicy,
    /// Owner, environment…
    #[serde(default)]
    pub tags: Tags,
    /// The endpoints that should serve this certificate.
    #[serde(default)]
    pub endpoints: Vec<Target>,
    /// Where it is installed after each issuance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<Deployment>,
    /// Issued by AWS Certificate Manager instead of the ACME issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm: Option<AcmIssuance>,
}

/// A public certificate requested from AWS Certificate Manager with DNS validation: ACM keeps
/// the key and renews the certificate itself, as long as the validation CNAME records stay.
/// certpilot requests it, writes the records (the DNS-01 provider, Route 53), follows the
/// request to `ISSUED` across runs, and then watches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmIssuance {
    /// The region to request it in (where it will be used; `us-east-1` for CloudFront).
    pub region: String,
}

/// Where an ACM request stands, and what watching it found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmState {
    /// The certificate's ARN.
    pub arn: String,
    /// ACM's status (`PENDING_VALIDATION`, `ISSUED`, `FAILED`…).
    pub status: String,
    /// When certpilot last looked.
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    /// The validation CNAME records ACM asked for (`name` → `value`).
    #[serde(default)]
    pub validation: Vec<(String, String)>,
    /// What is wrong now: a removed validation record, a failing managed renewal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<AcmProblem>,
}

/// What watching an ACM certificate found wrong: a kind alerts key on, and words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "AcmProblemRecord")]
pub struct AcmProblem {
    /// What kind of problem.
    pub kind: AcmProblemKind,
    /// What happened and what certpilot did, for people.
    pub detail: String,
}

/// The kinds of [`AcmProblem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AcmProblemKind {
    /// A validation CNAME was missing (ACM cannot renew without it); it was written again.
    ValidationRecordMissing,
    /// ACM's managed renewal failed or is stuck waiting for validation.
    ManagedRenewalStuck,
    /// The request failed (`FAILED`, `VALIDATION_TIMED_OUT`, `REVOKED`…); a new one follows.
    RequestFailed,
    /// A kind this version does not know, or a record written before kinds existed.
    #[serde(other)]
    Other,
}

/// How [`AcmProblem`]s are stored: records written before kinds existed hold plain text.
#[derive(Deserialize)]
#[serde(untagged)]
enum AcmProblemRecord {
    Typed {
        kind: AcmProblemKind,
        detail: String,
    },
    Text(String),
}

impl From<AcmProblemRecord> for AcmProblem {
    fn from(r: AcmProblemRecord) -> Self {
        match r {
            AcmProblemRecord::Typed { kind, detail } => AcmProblem { kind, detail },
            AcmProblemRecord::Text(detail) => AcmProblem {
                kind: AcmProblemKind::Other,
                detail,
            },
        }
    }
}

impl fmt::Display for AcmProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl CertificateSpec {
    /// Checks what the types cannot: at least one name, no duplicates, wildcards only with
    /// DNS-01, IP addresses only with HTTP-01.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.names.is_empty() {
            return Err(spec_error("", "a certificate needs at least one name"));
        }
        let limit = match self.issuer.profile.as_deref() {
            Some(p @ ("tlsserver" | "shortlived")) if self.acm.is_none() => {
                Some((MAX_NAMES_SHORT_PROFILES, format!("the {p} profile")))
            }
            _ if self.acm.is_none() => Some((MAX_NAMES, "an ACME order".to_owned())),
            _ => None,
        };
        if let Some((most, what)) = limit
            && self.names.len() > most
        {
            return Err(spec_error(
                &format!("{} names", self.names.len()),
                format!("{what} takes at most {most} names; split them over certificates"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in &self.names {
            if !seen.insert(name) {
                return Err(spec_error(&name.to_string(), "listed twice"));
            }
            let dns01 = matches!(self.challenge, ChallengeConfig::Dns01 { .. });
            if name.is_wildcard() && !dns01 {
                return Err(spec_error(
                    &name.to_string(),
                    "wildcard names can only be validated with DNS-01 (--dns route53|rfc2136)",
                ));
            }
            if matches!(name, Identifier::Ip(_)) && dns01 {
                return Err(spec_error(
                    &name.to_string(),
                    "IP addresses cannot be validated with DNS-01; use HTTP-01",
                ));
            }
        }
        let directory = &self.issuer.directory;
        let host = directory
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
            .map(|_| directory[8..].split(['/', '?', '#']).next().unwrap_or(""));
        match host {
            None => {
                return Err(spec_error(
                    &redact_url(directory),
                    "the ACME directory must be an https:// URL (ACME requires HTTPS, RFC 8555 §6.1)",
                ));
            }
            Some("") => {
                return Err(spec_error(
                    &redact_url(directory),
                    "the ACME directory URL has no host",
                ));
            }
            Some(_) => {}
        }
        if userinfo(&self.issuer.directory).is_some() {
            return Err(spec_error(
                &redact_url(&self.issuer.directory),
                "the directory URL holds credentials (user:password@), which would be stored \
                 and shown with the record and are never sent: an ACME CA authenticates the \
                 account key, and a commercial CA's account with --eab-kid/--eab-hmac-file",
            ));
        }
        if let RenewalPolicy::DaysBefore { days } = self.renewal {
            let (longest, why) = self.issuer.longest_lifetime_days();
            if days >= longest {
                return Err(spec_error(
                    &days.to_string(),
                    format!(
                        "--renew-days-before must be shorter than the certificate's lifetime \
                         ({why}): a margin that long renews on every run"
                    ),
                ));
            }
        }
        for c in &self.issuer.contact {
            if !c.starts_with("mailto:") || !c.contains('@') {
                return Err(spec_error(
                    c,
                    "a contact must be mailto:someone@example.com",
                ));
            }
        }
        if let Some(acm) = &self.acm {
            if !matches!(
                self.challenge,
                ChallengeConfig::Dns01 {
                    provider: DnsProviderConfig::Route53 { .. }
                }
            ) {
                return Err(spec_error(
                    &acm.region,
                    "ACM validates by DNS: its CNAME records are written through Route 53 (--dns route53)",
                ));
            }
            if !matches!(
                self.key_type,
                KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::Rsa2048
            ) {
                return Err(spec_error(
                    self.key_type.as_str(),
                    "ACM issues ecdsa-p256, ecdsa-p384 or rsa2048 keys only",
                ));
            }
            if let Some(n) = self.names.iter().find(|n| matches!(n, Identifier::Ip(_))) {
                return Err(spec_error(
                    &n.to_string(),
                    "ACM does not issue for IP addresses",
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for d in &self.deployments {
            if !names.insert(d.name.as_str()) {
                return Err(spec_error(&d.name, "two deployments have this name"));
            }
            d.validate()?;
        }
        Ok(())
    }

    /// The names as the CA's duplicate-certificate limit sees them: a sorted set.
    pub fn name_set(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names.iter().map(ToString::to_string).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The id a certificate gets by default: its first name, readable in commands.
    pub fn default_id(&self) -> String {
        default_id(&self.names)
    }
}

/// A certificate that was issued: public facts only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// SHA-256 of the leaf's DER, hex.
    pub fingerprint: String,
    /// Serial number, hex.
    pub serial: String,
    /// Validity start.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// Validity end.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When certpilot stored it.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The ARI certificate identifier (`base64url(AKI).base64url(serial)`), for renewal
    /// information and for `replaces` on the next order.
    pub ari_id: Option<String>,
    /// The profile the CA issued it under, when it said.
    #[serde(default)]
    pub profile: Option<String>,
    /// The full chain, PEM, leaf first.
    pub chain_pem: String,
    /// The SecretStore version holding its private key (empty when `key_holder` keeps it).
    pub key_version: String,
    /// The order it came from.
    pub order_url: String,
    /// Who keeps its private key when certpilot never had it: a deployment's target that
    /// made the CSR (an Akamai enrollment). No key of it exists in the secret store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_holder: Option<String>,
    /// The certificates issued with it for the same names under other key algorithms (a
    /// dual-stack enrollment's RSA and ECDSA pair), deployed together with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacked: Vec<StackedCertificate>,
}

impl IssuedCertificate {
    /// Whether its key is kept by a target rather than by certpilot.
    pub fn is_keyless(&self) -> bool {
        self.key_holder.is_some()
    }
}

/// A certificate issued beside another for the same names under another key algorithm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackedCertificate {
    /// Its key algorithm.
    pub key_type: KeyType,
    /// SHA-256 of the leaf's DER, hex.
    pub fingerprint: String,
    /// Serial number, hex.
    pub serial: String,
    /// Validity start.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// Validity end.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The ARI certificate identifier, for `replaces` on its next order.
    pub ari_id: Option<String>,
    /// The full chain, PEM, leaf first.
    pub chain_pem: String,
}

/// A CSR made by a target that keeps the key (an Akamai enrollment's), to be signed by the
/// certificate's CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCsr {
    /// The key algorithm of the key behind it.
    pub key_type: KeyType,
    /// The CSR, PEM.
    pub csr_pem: String,
}

/// One step of a renewal; each is persisted before the next starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalStep {
    /// A private key was generated and stored as a pending SecretStore version.
    KeyStored,
    /// The order exists at the CA; its URL is recorded.
    OrderCreated,
    /// Challenge responses are published (HTTP responder, web root, DNS).
    ChallengesPublished,
    /// Every authorization is valid; the order is ready to finalize.
    Validated,
    /// The CSR was sent; the CA is issuing or has issued.
    Finalized,
    /// The certificate is downloaded, checked and stored; its key version is current.
    CertificateStored,
}

impl fmt::Display for RenewalStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RenewalStep::KeyStored => "key_stored",
            RenewalStep::OrderCreated => "order_created",
            RenewalStep::ChallengesPublished => "challenges_published",
            RenewalStep::Validated => "validated",
            RenewalStep::Finalized => "finalized",
            RenewalStep::CertificateStored => "certificate_stored",
        };
        f.write_str(s)
    }
}

/// A renewal in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalJob {
    /// The last step completed.
    pub step: RenewalStep,
    /// When the job started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The pending SecretStore version with the new key.
    pub key_version: String,
    /// The order's URL, once created.
    #[serde(default)]
    pub order_url: Option<String>,
    /// The profile asked for on the order, if any.
    #[serde(default)]
    pub profile: Option<String>,
    /// Whether the order named the certificate it replaces (ARI `replaces`).
    #[serde(default)]
    pub replaces: Option<String>,
    /// For a key kept by a target: the CSRs it made, one per key algorithm, issued in turn
    /// (each its own order); empty when certpilot generated the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub csrs: Vec<TargetCsr>,
    /// The certificates already issued for the first of `csrs`, while the next is ordered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issued: Vec<StackedCertificate>,
}

/// Who holds the right to work on a certificate, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// An id unique to the worker (process or invocation).
    pub owner: String,
    /// When the lease lapses if not renewed or released.
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// Why a renewal attempt failed, as shown to the owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalFailure {
    /// When it failed.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// At which step.
    pub step: Option<RenewalStep>,
    /// The error kind (`validation`, `rate_limited`, `ca_unavailable`, `rejected`…).
    pub kind: FailureKind,
    /// What happened, in words.
    pub message: String,
    /// The CA's problem document (RFC 7807), when it sent one.
    #[serde(default)]
    pub problem: Option<serde_json::Value>,
}

/// Why a renewal failed, as a kind alerts and policies key on (the words are beside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The CA's rate limit.
    RateLimited,
    /// The CA could not be reached, failed or timed out.
    CaUnavailable,
    /// The DNS provider publishing DNS-01 records failed.
    DnsUnavailable,
    /// The CA could not validate control of a name.
    Validation,
    /// The order expired or was deactivated.
    OrderGone,
    /// The CA refused `replaces`.
    ReplacesRefused,
    /// The CA refused the request.
    Rejected,
    /// The issued certificate failed its checks.
    Check,
    /// Configuration on our side.
    Config,
    /// The certificate store failed.
    Store,
    /// The secret store failed.
    SecretStore,
    /// Announcing the new certificate (deploy queue, hook, live directory) failed.
    Announce,
    /// The certificate was not found.
    NotFound,
    /// Another worker took the lease.
    LeaseLost,
    /// A kind this version does not know (written by a newer one).
    #[serde(other)]
    Other,
}

impl FailureKind {
    /// The snake_case name every output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::RateLimited => "rate_limited",
            FailureKind::CaUnavailable => "ca_unavailable",
            FailureKind::DnsUnavailable => "dns_unavailable",
            FailureKind::Validation => "validation",
            FailureKind::OrderGone => "order_gone",
            FailureKind::ReplacesRefused => "replaces_refused",
            FailureKind::Rejected => "rejected",
            FailureKind::Check => "check",
            FailureKind::Config => "config",
            FailureKind::Store => "store",
            FailureKind::SecretStore => "secret_store",
            FailureKind::Announce => "announce",
            FailureKind::NotFound => "not_found",
            FailureKind::LeaseLost => "lease_lost",
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for FailureKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Where renewal stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalState {
    /// When the certificate is next looked at (renewal due, ARI re-check, or retry). The
    /// store indexes it: "due for renewal before T" is a query on it.
    #[serde(with = "time::serde::rfc3339")]
    pub next_check_at: OffsetDateTime,
    /// The renewal in flight.
    #[serde(default)]
    pub job: Option<RenewalJob>,
    /// The lease on the record.
    #[serde(default)]
    pub lease: Option<Lease>,
    /// Failed attempts since the last success.
    #[serde(default)]
    pub failures: u32,
    /// The last failure, cleared on success.
    #[serde(default)]
    pub last_error: Option<RenewalFailure>,
    /// When certificates for this name set were issued recently (the CA's duplicate limit
    /// counts these), oldest first; entries older than a week are dropped.
    #[serde(default, with = "rfc3339_vec")]
    pub recent_issuances: Vec<OffsetDateTime>,
    /// The ARI window the CA suggested last, if any.
    #[serde(default)]
    pub ari_window: Option<RenewalWindow>,
}

/// A renewal window suggested by the CA (RFC 9773).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalWindow {
    /// Start of the suggested window.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// End of the suggested window.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

mod rfc3339_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use time::OffsetDateTime;

    #[derive(Serialize, Deserialize)]
    struct At(#[serde(with = "time::serde::rfc3339")] OffsetDateTime);

    pub fn serialize<S: Serializer>(v: &[OffsetDateTime], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|t| At(*t)).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OffsetDateTime>, D::Error> {
        Ok(Vec::<At>::deserialize(d)?
            .into_iter()
            .map(|a| a.0)
            .collect())
    }
}

/// A certificate certpilot manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedCertificate {
    /// Its id (unique; by default the first name).
    pub id: String,
    /// What was asked for.
    pub spec: CertificateSpec,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Optimistic-locking version: 1 on creation, incremented by the store on every update.
    pub version: u64,
    /// The certificate issued last, once there is one.
    #[serde(default)]
    pub current: Option<IssuedCertificate>,
    /// The one before it: what a rollback puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<IssuedCertificate>,
    /// What certpilot last did at each deployment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<DeploymentRecord>,
    /// The ACM request, for certificates ACM issues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm: Option<AcmState>,
    /// Renewal bookkeeping.
    pub renewal: RenewalState,
}

impl ManagedCertificate {
    /// A new, not yet stored certificate, due for issuance at once.
    pub fn new(id: String, spec: CertificateSpec, now: OffsetDateTime) -> Self {
        ManagedCertificate {
            id,
            spec,
            created_at: now,
            version: 0,
            current: None,
            previous: None,
            deployments: Vec::new(),
            acm: None,
            renewal: RenewalState {
                next_check_at: now,
                job: None,
                lease: None,
                failures: 0,
                last_error: None,
                recent_issuances: Vec::new(),
                ari_window: None,
            },
        }
    }

    /// The record of the deployment named `name`.
    pub fn deployment_record(&self, name: &str) -> Option<&DeploymentRecord> {
        self.deployments.iter().find(|r| r.name == name)
    }

    /// Whether every deployment serves the current certificate: only then is a renewal done.
    pub fn is_deployed(&self) -> bool {
        let Some(current) = &self.current else {
            return self.spec.deployments.is_empty();
        };
        self.spec.deployments.iter().all(|d| {
            self.deployment_record(&d.name).is_some_and(|r| {
                r.state.status == DeploymentStatus::Verified && r.fingerprint == current.fingerprint
            })
        })
    }

    /// The SecretStore name of its private key.
    pub fn key_secret_name(&self) -> String {
        format!("certificate-key/{}", self.id)
    }
}

/// The announcement of an issuance: the deploy queue's message body. Carries what a deployer
/// needs to find and check the certificate, never the key (only its SecretStore version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedMessage {
    /// The managed certificate's id.
    pub id: String,
    /// SHA-256 of the new leaf, hex: what endpoints must serve once deployed.
    pub fingerprint: String,
    /// Its serial, hex.
    pub serial: String,
    /// Its expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The SecretStore version of its key.
    pub key_version: String,
    /// Its names.
    pub names: Vec<String>,
}

impl IssuedMessage {
    /// The message for `cert`'s current certificate, if it has one.
    pub fn of(cert: &ManagedCertificate) -> Option<IssuedMessage> {
        let current = cert.current.as_ref()?;
        Some(IssuedMessage {
            id: cert.id.clone(),
            fingerprint: current.fingerprint.clone(),
            serial: current.serial.clone(),
            not_after: current.not_after,
            key_version: current.key_version.clone(),
            names: cert.spec.name_set(),
        })
    }
}

/// The id a certificate for `names` gets by default: its first name as an id may spell it
/// (`*.example.com` → `wildcard.example.com`, `2001:db8::7` → `ip-2001-db8--7`).
pub fn default_id(names: &[Identifier]) -> String {
    match names.first() {
        Some(Identifier::Dns(name)) => name.replace('*', "wildcard"),
        Some(Identifier::Ip(IpAddr::V6(ip))) => format!("ip-{}", ip.to_string().replace(':', "-")),
        Some(Identifier::Ip(ip)) => ip.to_string(),
        None => String::new(),
    }
}

/// Checks a certificate id: it becomes part of file and secret names.
pub fn validate_certificate_id(id: &str) -> Result<(), SpecError> {
    if id.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(spec_error(
            id,
            format!(
                "ids are lowercase, like the names they come from; use {:?}",
                id.to_ascii_lowercase()
            ),
        ));
    }
    if id.is_empty() || id.len() > 128 {
        return Err(spec_error(id, "an id is 1 to 128 characters"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || id.starts_with('.')
    {
        return Err(spec_error(
            id,
            "an id may hold only letters, digits, '-', '_' and '.', and not start with '.'",
        ));
    }
    Ok(())
}

/// The first certificate of a PEM chain and the rest.
pub fn split_chain(chain_pem: &str) -> Option<(String, String)> {
    const END: &str = "-----END CERTIFICATE-----";
    let at = chain_pem.find(END)? + END.len();
    let leaf = format!("{}\n", chain_pem[..at].trim());
    let rest = chain_pem[at..].trim();
    Some((
        leaf,
        if rest.is_empty() {
            String::new()
        } else {
            format!("{rest}\n")
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(names: &[&str], challenge: ChallengeConfig) -> CertificateSpec {
        CertificateSpec {
            names: names.iter().map(|n| n.parse().unwrap()).collect(),
            key_type: KeyType::default(),
            issuer: AcmeIssuer {
                directory: "https://acme.test/dir".into(),
                contact: vec!["mailto:ops@example.com".into()],
                eab: None,
                profile: None,
                account_secret: None,
            },
            challenge,
            renewal: RenewalPolicy::Auto,
            tags: Tags::new(),
            endpoints: Vec::new(),
            deployments: Vec::new(),
            acm: None,
        }
    }

    fn http() -> ChallengeConfig {
        ChallengeConfig::Http01Listen {
            listen: "0.0.0.0:80".into(),
        }
    }

    fn dns() -> ChallengeConfig {
        ChallengeConfig::Dns01 {
            provider: DnsProviderConfig::Route53 { zone_id: None },
        }
    }

    #[test]
    fn identifiers_parse_to_canonical_names_or_say_what_is_wrong() {
        assert_eq!(
            "Shop.Example.COM.".parse::<Identifier>().unwrap(),
            Identifier::Dns("shop.example.com".into())
        );
        assert!("*.example.com".parse::<Identifier>().unwrap().is_wildcard());
        // Internationalised names become their A-labels; full-width letters fold.
        for (idn, ascii) in [
            ("Bücher.Example", "xn--bcher-kva.example"),
            ("*.bücher.example.", "*.xn--bcher-kva.example"),
            ("ＳＨＯＰ.example.com", "shop.example.com"),
        ] {
            assert_eq!(
                idn.parse::<Identifier>().unwrap(),
                Identifier::Dns(ascii.into()),
                "{idn}"
            );
        }
        assert_eq!(
            "[2001:db8::1]".parse::<Identifier>().unwrap(),
            Identifier::Ip("2001:db8::1".parse().unwrap())
        );
        for (bad, why) in [
            ("", "empty"),
            ("localhost", "two labels"),
            ("a.*.example.com", "whole first label"),
            ("-a.example.com", "start or end"),
            ("shop!.example.com", "only letters"),
            ("ex\u{a0}ample.com", "internationalised"),
        ] {
            let e = bad.parse::<Identifier>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(
            "*.example.com"
                .parse::<Identifier>()
                .unwrap()
                .validation_name(),
            "example.com"
        );
    }

    #[test]
    fn key_types_parse_their_names_and_common_aliases() {
        for k in KeyType::ALL {
            assert_eq!(k.as_str().parse::<KeyType>().unwrap(), k);
        }
        assert_eq!("P256".parse::<KeyType>().unwrap(), KeyType::EcdsaP256);
        let e = "dsa".parse::<KeyType>().unwrap_err().to_string();
        assert!(e.contains("ecdsa-p256") && e.contains("\"dsa\""), "{e}");
    }

    #[test]
    fn specs_refuse_what_the_ca_would_refuse() {
        assert!(
            spec(&["shop.example.com", "www.example.com"], http())
                .validate()
                .is_ok()
        );
        assert!(spec(&["*.example.com"], dns()).validate().is_ok());
        let cases = [
            (spec(&[], http()), "at least one name"),
            (spec(&["a.example.com", "a.example.com"], http()), "twice"),
            (spec(&["*.example.com"], http()), "DNS-01"),
            (spec(&["192.0.2.1"], dns()), "HTTP-01"),
        ];
        for (s, why) in cases {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let mut bad = spec(&["a.example.com"], http());
        bad.issuer.contact = vec!["ops@example.com".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("mailto:"));
    }

    #[test]
    fn ids_are_safe_as_file_and_secret_names() {
        assert!(validate_certificate_id("shop.example.com").is_ok());
        for bad in ["", "../etc", "a/b", ".hidden", "a b"] {
            assert!(validate_certificate_id(bad).is_err(), "{bad}");
        }
        let s = spec(&["*.example.com"], dns());
        assert_eq!(s.default_id(), "wildcard.example.com");
        assert!(validate_certificate_id(&s.default_id()).is_ok());
    }

    #[test]
    fn the_account_is_one_per_directory_contacts_and_eab_key() {
        let a = spec(&["a.example.com"], http()).issuer;
        let mut b = a.clone();
        assert_eq!(a.account_secret_name(), b.account_secret_name());
        b.profile = Some("shortlived".into());
        assert_eq!(
            a.account_secret_name(),
            b.account_secret_name(),
            "profile is per order"
        );
        b.eab = Some(ExternalAccountBinding {
            key_id: "kid-1".into(),
            hmac_secret: "eab/kid-1".into(),
        });
        assert_ne!(a.account_secret_name(), b.account_secret_name());
    }

    #[test]
    fn records_round_trip_through_json() {
        let c = ManagedCertificate::new(
            "shop".into(),
            spec(&["shop.example.com"], http()),
            OffsetDateTime::UNIX_EPOCH,
        );
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            serde_json::from_str::<ManagedCertificate>(&json).unwrap(),
            c
        );
    }

    #[test]
    fn a_chain_splits_into_leaf_and_intermediates() {
        let chain = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        let (leaf, rest) = split_chain(chain).expect("split");
        assert_eq!(
            leaf,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            rest,
            "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"
        );
        let (_, none) = split_chain(&leaf).expect("split");
        assert!(none.is_empty());
        assert!(split_chain("no pem").is_none());
    }
}
