//! The work queue scheduled scans fan out through.

use async_trait::async_trait;

/// A batch of endpoints handed to another invocation to scan.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanBatch {
    /// The endpoints, with the tags their observations carry.
    pub endpoints: Vec<BatchEndpoint>,
}

/// One endpoint of a [`ScanBatch`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchEndpoint {
    /// Canonical target.
    pub target: crate::model::target::Target,
    /// Its tags.
    #[serde(default)]
    pub tags: crate::model::endpoint::Tags,
    /// Whether the endpoint has an explicit due time to clear once it is scanned.
    #[serde(default)]
    pub clear_due: bool,
}

/// Why work could not be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue service is unavailable or throttling; try again later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The queue refused the messages (missing queue, no permission, message too large).
    #[error("queue error: {0}")]
    Rejected(String),
}

/// Hands scan work to other invocations (SQS in AWS).
///
/// Contract: `send` delivers every batch at least once or returns an error; a batch may be
/// delivered more than once, so consumers must be idempotent (recording is).
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Queues the batches.
    async fn send(&self, batches: &[ScanBatch]) -> Result<(), QueueError>;
}

/// Work the request API hands to the workers instead of doing it while the caller waits:
/// an issuance takes a minute, a verified deploy up to half an hour.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CertificateWork {
    /// Issue or renew now, then deploy and verify; `force` even when not due.
    Renew {
        /// The certificate's id.
        id: String,
        /// Renew even when not due.
        #[serde(default)]
        force: bool,
    },
    /// Put the previous certificate back at its deployments (or the one named).
    RollBack {
        /// The certificate's id.
        id: String,
        /// Only this deployment.
        #[serde(default)]
        deployment: Option<String>,
    },
}

impl CertificateWork {
    /// The certificate it is about.
    pub fn id(&self) -> &str {
        match self {
            CertificateWork::Renew { id, .. } | CertificateWork::RollBack { id, .. } => id,
        }
    }
}

/// Where [`CertificateWork`] goes: the renew queue on AWS, a background task under
/// `certpilot serve`.
///
/// Contract: `submit` returns once the work is durably queued (or, locally, accepted by the
/// worker); the work may run more than once, and every step of it is idempotent.
#[async_trait]
pub trait WorkSink: Send + Sync {
    /// Queues the work.
    async fn submit(&self, work: &CertificateWork) -> Result<(), QueueError>;
}
