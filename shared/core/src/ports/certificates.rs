//! Managed certificates: their records, who may hold a lease on them, and who is told when one is issued.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;

/// Managed certificates and their renewal state.
///
/// Contract, for every implementation:
/// - **Keys.** A certificate is keyed by its id.
/// - **Not found.** Reading a missing one is `Ok(None)`; updating or removing one is
///   [`StoreError::NotFound`].
/// - **Versions.** `add_certificate` stores version 1 ([`StoreError::AlreadyExists`] when the
///   id exists); `update_certificate` writes the whole record only if the stored version is
///   still `certificate.version`, stores `version + 1` and returns the stored record, else
///   [`StoreError::Conflict`] and nothing is written. A renewal's lease and every step are
///   written this way, so two workers can never both think they hold the lease.
/// - **Due.** `certificates_due(before)` lists the certificates whose
///   `renewal.next_check_at` is at or before `before`, earliest first.
/// - **Secrets.** Records hold no private key, only SecretStore versions.
/// - **Issuance log.** `record_issuance` appends (name set, id, time) to a log kept apart
///   from the records, so it outlives `remove_certificate` and is shared by every id with the
///   same names; recording the same (name set, id, time) twice keeps one entry.
///   `issuances(names, since)` returns the times logged for exactly that name set (sorted,
///   as [`ManagedCertificate::name_set`] spells it) after `since`, oldest first. The CA's
///   duplicate-certificate limit counts the same way.
///
/// [`ManagedCertificate::name_set`]: crate::model::certificate::CertificateSpec::name_set
#[async_trait]
pub trait CertificateStore: Send + Sync {
    /// Adds a managed certificate.
    async fn add_certificate(
        &self,
        certificate: &crate::model::certificate::ManagedCertificate,
    ) -> Result<crate::model::certificate::ManagedCertificate, StoreError>;

    /// Replaces a certificate record if its stored version is still `certificate.version`.
    async fn update_certificate(
        &self,
        certificate: &crate::model::certificate::ManagedCertificate,
    ) -> Result<crate::model::certificate::ManagedCertificate, StoreError>;

    /// The certificate with this id.
    async fn certificate(
        &self,
        id: &str,
    ) -> Result<Option<crate::model::certificate::ManagedCertificate>, StoreError>;

    /// Every managed certificate, sorted by id.
    async fn certificates(
        &self,
    ) -> Result<Vec<crate::model::certificate::ManagedCertificate>, StoreError>;

    /// Stops managing a certificate (its keys stay in the SecretStore).
    async fn remove_certificate(&self, id: &str) -> Result<(), StoreError>;

    /// Certificates to look at before `before`, earliest first.
    async fn certificates_due(
        &self,
        before: OffsetDateTime,
    ) -> Result<Vec<crate::model::certificate::ManagedCertificate>, StoreError>;

    /// Logs that a certificate for `names` was issued at `at` (under record `id`).
    async fn record_issuance(
        &self,
        names: &[String],
        id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// When certificates for exactly `names` were issued after `since`, oldest first.
    async fn issuances(
        &self,
        names: &[String],
        since: OffsetDateTime,
    ) -> Result<Vec<OffsetDateTime>, StoreError>;
}

/// Whether the worker named in a lease still exists, where that can be known: a process of
/// this host can be looked up, a Lambda invocation elsewhere cannot.
pub trait Liveness: Send + Sync {
    /// `true` only when `owner` is certainly gone; `false` when alive or unknown.
    fn is_gone(&self, owner: &str) -> bool;
}

/// Told about every certificate issued (the deploy queue in AWS, a deploy hook locally).
#[async_trait]
pub trait IssuedSink: Send + Sync {
    /// `certificate` now has a new current certificate. Must be idempotent: a crash after
    /// this and before the renewal is marked done calls it again.
    async fn issued(
        &self,
        certificate: &crate::model::certificate::ManagedCertificate,
    ) -> Result<(), AnnounceError>;
}

/// Why telling about an issued certificate failed. The certificate is stored either way;
/// announcing is retried by the next run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    /// The deploy queue refused or could not be reached.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The key could not be read for the export.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A local step failed: writing the live directory, a deploy hook that failed or ran
    /// too long (names the step).
    #[error("{0}")]
    Failed(String),
}
