//! An ACME CA as the renewal state machine sees it.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;

/// A certificate as downloaded from the CA and checked against the key and the names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadedCertificate {
    /// The full chain, PEM, leaf first.
    pub chain_pem: String,
    /// SHA-256 of the leaf, hex.
    pub fingerprint: String,
    /// Serial, hex.
    pub serial: String,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
    /// ARI certificate identifier, when the leaf has an authority key identifier.
    pub ari_id: Option<String>,
    /// The profile the order was issued under, as the CA reported it.
    pub profile: Option<String>,
}

/// A new order at the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrderInfo {
    /// The order URL.
    pub url: String,
    /// The profile asked for (only when the CA offers it).
    pub profile: Option<String>,
    /// The certificate the order replaces (ARI), if the CA accepted `replaces`.
    pub replaces: Option<String>,
}

/// Why the CA (or the way to it) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The CA's rate limit; retry after the given time.
    #[error("rate limited by the CA: {detail}")]
    RateLimited {
        /// The CA's words.
        detail: String,
        /// When the CA said to come back, if it did.
        retry_after: Option<Duration>,
    },
    /// Network failure, timeout, server error or nonces rejected too often: retry later.
    #[error("CA unavailable: {0}")]
    Unavailable(String),
    /// The CA rejected our nonces (`badNonce`) more often than instant-acme retries: the
    /// whole step is run again, and past that it is an outage like `Unavailable`.
    #[error("CA unavailable: it kept rejecting nonces: {0}")]
    BadNonce(String),
    /// The DNS provider that publishes DNS-01 records failed or timed out: retry later.
    #[error("DNS provider unavailable: {0}")]
    DnsUnavailable(String),
    /// The CA could not validate control of a name.
    #[error("validation failed: {detail}")]
    Validation {
        /// The CA's words, per name when it said.
        detail: String,
        /// The CA's problem document (RFC 7807).
        problem: serde_json::Value,
    },
    /// The order is gone or invalid (expired, deactivated): start a new one with the same key.
    #[error("order no longer usable: {0}")]
    OrderGone(String),
    /// The CA refused `replaces` (already replaced, or another account): order without it.
    #[error("the CA refused to mark the old certificate as replaced: {0}")]
    ReplacesRefused(String),
    /// The CA refused the request (bad names, CAA, unauthorized, malformed).
    #[error("refused by the CA: {detail}")]
    Rejected {
        /// The CA's words.
        detail: String,
        /// The CA's problem document, when it sent one.
        problem: Option<serde_json::Value>,
    },
    /// The issued certificate does not match the key or the names, or does not parse.
    #[error("the issued certificate failed its checks: {0}")]
    Check(String),
    /// Configuration problem on our side (unreachable directory URL, missing EAB secret…).
    #[error("{0}")]
    Config(String),
}

impl IssueError {
    /// The kind of failure, for records, JSON output and alerts.
    pub fn kind(&self) -> crate::model::certificate::FailureKind {
        use crate::model::certificate::FailureKind as K;
        match self {
            IssueError::RateLimited { .. } => K::RateLimited,
            IssueError::Unavailable(_) | IssueError::BadNonce(_) => K::CaUnavailable,
            IssueError::DnsUnavailable(_) => K::DnsUnavailable,
            IssueError::Validation { .. } => K::Validation,
            IssueError::OrderGone(_) => K::OrderGone,
            IssueError::ReplacesRefused(_) => K::ReplacesRefused,
            IssueError::Rejected { .. } => K::Rejected,
            IssueError::Check(_) => K::Check,
            IssueError::Config(_) => K::Config,
        }
    }

    /// The CA's problem document, when there is one.
    pub fn problem(&self) -> Option<&serde_json::Value> {
        match self {
            IssueError::Validation { problem, .. } => Some(problem),
            IssueError::Rejected { problem, .. } => problem.as_ref(),
            _ => None,
        }
    }

    /// How long the CA asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IssueError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What a certificate's CSR is made from.
#[derive(Clone, Copy, Debug)]
pub enum KeySource<'a> {
    /// certpilot's own key: the CSR is built and signed with it.
    Key(&'a SecretValue),
    /// A CSR a target made with a key it keeps (PEM): sent as it is, and the certificate
    /// checked against its public key.
    Csr(&'a str),
}

/// An ACME CA as the renewal state machine sees it. Each method is one resumable step; all
/// are idempotent for the same order, so a step interrupted by a crash can simply run again.
#[async_trait]
pub trait Issuer: Send + Sync {
    /// Generates a private key (PKCS#8 PEM).
    async fn generate_key(
        &self,
        key_type: crate::model::certificate::KeyType,
    ) -> Result<SecretValue, IssueError>;

    /// The CA's suggested renewal window for `cert` and when to ask again, or `None` when the
    /// CA does not offer ARI.
    async fn renewal_info(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        cert: &crate::model::certificate::IssuedCertificate,
    ) -> Result<Option<(crate::model::certificate::RenewalWindow, Duration)>, IssueError>;

    /// Creates an order for `spec`'s names, asking for its profile when the CA offers it and
    /// naming `replaces` when given.
    async fn create_order(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        replaces: Option<&str>,
    ) -> Result<NewOrderInfo, IssueError>;

    /// Publishes the challenge responses of every pending authorization and tells the CA
    /// they are ready. Responses stay published until [`Issuer::await_ready`] returns; running
    /// this again (after a crash) publishes them again without re-notifying the CA.
    async fn publish_challenges(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        order_url: &str,
    ) -> Result<(), IssueError>;

    /// Waits until the order is ready to finalize (every authorization valid), then removes
    /// the published responses.
    async fn await_ready(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        order_url: &str,
    ) -> Result<(), IssueError>;

    /// Sends the CSR for `key` (skipped when the order is already finalized).
    async fn finalize(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        order_url: &str,
        key: KeySource<'_>,
    ) -> Result<(), IssueError>;

    /// Waits for and downloads the certificate, and checks it against `key` and the names.
    async fn download(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        order_url: &str,
        key: KeySource<'_>,
    ) -> Result<DownloadedCertificate, IssueError>;
}
