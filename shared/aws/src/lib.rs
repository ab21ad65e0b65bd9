//! AWS adapters for certpilot's ports, other than the store (see `certpilot-dynamodb`).
//!
//! - [`SqsQueue`]: the [`WorkQueue`] on an SQS queue. Permissions: `sqs:SendMessage` on the
//!   queue (SendMessageBatch is authorised by it).
//! - [`SecretsManagerStore`]: the [`SecretStore`](certpilot_core::ports::SecretStore) on
//!   Secrets Manager, keys staged `AWSPENDING` → `AWSCURRENT` → `AWSPREVIOUS`.

//! - [`Route53Dns`]: the [`DnsProvider`](certpilot_core::ports::DnsProvider) for DNS-01 on
//!   Route 53.
//! - [`SqsIssuedSink`]: the [`IssuedSink`](certpilot_core::ports::IssuedSink) on the deploy
//!   queue.

mod route53;
mod secrets;

/// An SDK error's code (empty for transport failures: timeouts, refused connections) and a
/// one-line detail: the service's code and message, or the transport error's causes.
pub fn describe_sdk_error<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().unwrap_or_default().to_owned();
    let detail = if code.is_empty() {
        certpilot_core::error_chain(e)
    } else {
        format!("{code} {}", e.message().unwrap_or_default())
    };
    (code, detail)
}

/// Whether an AWS error code means "try again later": transport failures (no code),
/// throttling, and the service's own unavailability. Everything else (access denied, a
/// missing resource, a validation error) needs a person.
pub fn is_transient(code: &str) -> bool {
    code.is_empty()
        || code.contains("Throttl")
        || code.contains("Unavailable")
        || code.contains("TooManyRequests")
        || code.contains("LimitExceeded") && !code.contains("Quota")
        || matches!(
            code,
            "InternalFailure"
                | "InternalError"
                | "InternalServerError"
                | "ServiceFailure"
                | "PriorRequestNotComplete"
                | "RequestTimeout"
                | "RequestTimeoutException"
                | "SlowDown"
                | "ProvisionedThroughputExceededException"
                | "TransactionInProgressException"
        )
}

pub mod config;
pub mod lambda;

pub use route53::{LazyRoute53Dns, Route53Dns};
pub use secrets::{DEFAULT_PREFIX, SecretsManagerStore};

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use certpilot_core::model::certificate::{IssuedMessage, ManagedCertificate};
use certpilot_core::ports::{
    AnnounceError, CertificateWork, IssuedSink, QueueError, ScanBatch, WorkQueue, WorkSink,
};

/// Most entries SQS takes in one SendMessageBatch.
const SQS_BATCH: usize = 10;

/// The work queue on SQS: one message per [`ScanBatch`], JSON.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// A queue at `url` through `client`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl WorkQueue for SqsQueue {
    async fn send(&self, batches: &[ScanBatch]) -> Result<(), QueueError> {
        for (chunk_no, chunk) in batches.chunks(SQS_BATCH).enumerate() {
            let mut pending: Vec<(String, String)> = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    serde_json::to_string(b)
                        .map(|body| (format!("b{chunk_no}-{i}"), body))
                        .map_err(|e| QueueError::Rejected(format!("encoding a batch: {e}")))
                })
                .collect::<Result<_, _>>()?;
            for attempt in 0..4u32 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body)
                            .build()
                            .map_err(|e| QueueError::Rejected(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| {
                        let (code, detail) = describe_sdk_error(&e);
                        let text = format!("sqs {}: SendMessageBatch: {detail}", self.url);
                        match code.as_str() {
                            "AWS.SimpleQueueService.NonExistentQueue"
                            | "AccessDenied"
                            | "QueueDoesNotExist" => QueueError::Rejected(text),
                            _ => QueueError::Unavailable(text),
                        }
                    })?;
                // Entries that failed on the sender's side will fail again: stop at once.
                if let Some(f) = out.failed.iter().find(|f| f.sender_fault) {
                    return Err(QueueError::Rejected(format!(
                        "sqs {}: message refused: {} {}",
                        self.url,
                        f.code,
                        f.message.as_deref().unwrap_or_default()
                    )));
                }
                let failed: Vec<&str> = out.failed.iter().map(|f| f.id.as_str()).collect();
                pending.retain(|(id, _)| failed.contains(&id.as_str()));
            }
            if !pending.is_empty() {
                return Err(QueueError::Unavailable(format!(
                    "sqs {}: {} messages still failing after retries",
                    self.url,
                    pending.len()
                )));
            }
        }
        Ok(())
    }
}

/// The [`IssuedSink`] on the deploy queue: one [`IssuedMessage`] (JSON) per issuance. The
/// renew service calls it again after a crash, so a message may be sent twice; the deploy
/// consumer is idempotent. Permissions: `sqs:SendMessage` on the queue.
#[derive(Clone, Debug)]
pub struct SqsIssuedSink {
    client: Client,
    url: String,
}

impl SqsIssuedSink {
    /// A sink sending to the queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsIssuedSink {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl IssuedSink for SqsIssuedSink {
    async fn issued(&self, certificate: &ManagedCertificate) -> Result<(), AnnounceError> {
        let message = IssuedMessage::of(certificate).ok_or_else(|| {
            AnnounceError::Failed(format!(
                "{}: no current certificate to announce",
                certificate.id
            ))
        })?;
        let body = serde_json::to_string(&message)
            .map_err(|e| QueueError::Rejected(format!("encoding the message: {e}")))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                let (code, detail) = describe_sdk_error(&e);
                let text = format!("sqs {}: SendMessage: {detail}", self.url);
                if is_transient(&code) {
                    QueueError::Unavailable(text)
                } else {
                    QueueError::Rejected(text)
                }
            })?;
        Ok(())
    }
}

/// The request API's [`WorkSink`] on AWS: issuance and renewal on the renew queue (consumed by
/// the renew function, with a dead-letter queue), rollbacks on the deploy queue (consumed by
/// the deploy function). One message of JSON [`CertificateWork`] each. Permissions:
/// `sqs:SendMessage` on both queues.
#[derive(Clone, Debug)]
pub struct SqsWorkSink {
    client: Client,
    renew_url: String,
    deploy_url: Option<String>,
}

impl SqsWorkSink {
    /// Renewals to `renew_url`, rollbacks to `deploy_url` (refused without one).
    pub fn new(client: Client, renew_url: impl Into<String>, deploy_url: Option<String>) -> Self {
        SqsWorkSink {
            client,
            renew_url: renew_url.into(),
            deploy_url,
        }
    }
}

#[async_trait]
impl WorkSink for SqsWorkSink {
    async fn submit(&self, work: &CertificateWork) -> Result<(), QueueError> {
        let url = match work {
            CertificateWork::Renew { .. } => &self.renew_url,
            CertificateWork::RollBack { .. } => self.deploy_url.as_ref().ok_or_else(|| {
                QueueError::Rejected(
                    "no deploy queue (CERTPILOT_DEPLOY_QUEUE_URL) for rollbacks".into(),
                )
            })?,
        };
        let body = serde_json::to_string(work)
            .map_err(|e| QueueError::Rejected(format!("encoding the work: {e}")))?;
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                let (code, detail) = describe_sdk_error(&e);
                let text = format!("sqs {url}: SendMessage: {detail}");
                if is_transient(&code) {
                    QueueError::Unavailable(text)
                } else {
                    QueueError::Rejected(text)
                }
            })?;
        Ok(())
    }
}
