//! What the request API stores: requests awaiting approval, the audit trail, idempotency keys.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;
use crate::model::request::{AuditRecord, CertificateRequest, IdempotencyEntry, SavedResponse};

/// Requests that wait for an approver, and the decisions taken.
///
/// Contract: `put_request` of version 0 creates ([`StoreError::AlreadyExists`] when the id
/// has a request); of another version writes only if that is still the stored version, and
/// stores `version + 1` ([`StoreError::Conflict`] otherwise, nothing written), so two
/// approvers at once decide once. `pending_requests` lists those in `pending_approval`, by
/// id. `remove_request` forgets one (a rejected request, so the id can be asked again).
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// The request for certificate `id`.
    async fn request(&self, id: &str) -> Result<Option<CertificateRequest>, StoreError>;

    /// Creates or updates a request by version; returns it as stored.
    async fn put_request(
        &self,
        request: &CertificateRequest,
    ) -> Result<CertificateRequest, StoreError>;

    /// Requests waiting for approval, by id.
    async fn pending_requests(&self) -> Result<Vec<CertificateRequest>, StoreError>;

    /// Forgets the request for `id`; whether there was one.
    async fn remove_request(&self, id: &str) -> Result<bool, StoreError>;
}

/// The audit trail: append-only.
///
/// Contract: `append` never replaces a record ([`StoreError::AlreadyExists`] for a key
/// already written); `audit` returns records newest first, those with a key below `before`
/// when given, at most `limit`. Nothing edits or deletes a record.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends a record.
    async fn append(&self, record: &AuditRecord) -> Result<(), StoreError>;

    /// Records newest first, below the key `before`.
    async fn audit(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;
}

/// What [`IdempotencyStore::claim`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is now this request's: run it, then `complete` or `release`.
    Claimed,
    /// The key was used within its lifetime: replay, refuse a different body, or say the
    /// first request still runs.
    Existing(IdempotencyEntry),
}

/// `Idempotency-Key`s, kept [`IDEMPOTENCY_TTL`](crate::model::request::IDEMPOTENCY_TTL).
///
/// Contract: `claim` stores the entry and answers [`Claim::Claimed`] when the key is new or
/// its stored entry has expired at `now`, else [`Claim::Existing`] with the stored entry;
/// of two concurrent claims exactly one is `Claimed`. `complete` attaches the response;
/// `release` forgets the key (the request failed in a way a retry may fix).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims the entry's key.
    async fn claim(
        &self,
        entry: &IdempotencyEntry,
        now: OffsetDateTime,
    ) -> Result<Claim, StoreError>;

    /// Saves the response for `key`.
    async fn complete(&self, key: &str, response: &SavedResponse) -> Result<(), StoreError>;

    /// Forgets `key`.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
}
