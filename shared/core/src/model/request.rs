//! What the request API keeps beside the certificates: requests waiting for approval, the
//! audit trail of every mutating request, and idempotency keys.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::certificate::ManagedCertificate;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: time::Duration = time::Duration::hours(24);

/// Where a request that needs approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for an approver.
    PendingApproval,
    /// Approved: the certificate is managed from then on.
    Approved,
    /// Rejected: nothing was issued.
    Rejected,
}

impl RequestState {
    /// The spelling in the API and the stores.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::PendingApproval => "pending_approval",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
        }
    }
}

/// A certificate request that waits for (or received) an approver's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificateRequest {
    /// The certificate's id (what it will be managed as).
    pub id: String,
    /// The requester's principal id.
    pub requester: String,
    /// When it was asked for.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// The policy rule that allowed it.
    pub rule: String,
    /// Who may approve it (principal patterns); never the requester.
    pub approvers: Vec<String>,
    /// The certificate to manage once approved.
    pub certificate: ManagedCertificate,
    /// Where it stands.
    pub state: RequestState,
    /// Who decided.
    #[serde(default)]
    pub decided_by: Option<String>,
    /// When.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    /// Why (the approver's words).
    #[serde(default)]
    pub reason: Option<String>,
    /// The stored version (0 before the first write).
    #[serde(default)]
    pub version: u64,
}

/// One mutating request, as the audit trail keeps it. Never a secret: bodies are summarised
/// by what they changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it was answered.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The request id (API Gateway's, or one the server made).
    pub request_id: String,
    /// Who asked (principal id).
    pub principal: String,
    /// From which address, when known.
    #[serde(default)]
    pub source: Option<String>,
    /// The method and route (`POST /certificates/{id}/renew`).
    pub action: String,
    /// What it acted on (a certificate id, an endpoint target).
    #[serde(default)]
    pub subject: Option<String>,
    /// The status answered.
    pub status: u16,
    /// What changed, in words.
    pub outcome: String,
}

impl AuditRecord {
    /// Its key: time order, then the request id (unique per request).
    pub fn key(&self) -> String {
        format!(
            "{:020}#{}",
            self.at.unix_timestamp_nanos().max(0),
            self.request_id
        )
    }
}

/// A response kept for an `Idempotency-Key`, replayed to a retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedResponse {
    /// Its status.
    pub status: u16,
    /// Its JSON body.
    pub body: String,
}

/// An `Idempotency-Key` as remembered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    /// The caller's principal and the key they sent, so that two callers never share one.
    pub key: String,
    /// A digest of the method, path and body the key was first used with.
    pub fingerprint: String,
    /// When it was first used.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The response, once there is one; absent while the first request runs.
    #[serde(default)]
    pub response: Option<SavedResponse>,
}

impl IdempotencyEntry {
    /// Whether it is forgotten at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now - self.created_at >= IDEMPOTENCY_TTL
    }
}
