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
