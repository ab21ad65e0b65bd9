//! Decoding events and encoding answers: all the handler does.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use certpilot_core::Classify;
use certpilot_core::ports::ScanBatch;
use certpilot_core::services::scheduled::{ScheduledError, ScheduledScan};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use tokio::time::Instant;
use tracing::warn;

/// A failed invocation, typed so Lambda's diagnostics say whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error(transparent)]
    Scheduled(#[from] ScheduledError),
    #[error("event is neither a scheduler tick nor an SQS batch: {0}")]
    Event(String),
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        let class = match &e {
            FunctionError::Scheduled(e) => e.class(),
            FunctionError::Event(_) => certpilot_core::ErrorClass::Input,
        };
        Diagnostic {
            error_type: certpilot_aws::lambda::error_type(class).into(),
            error_message: e.to_string(),
        }
    }
}

pub struct Handler {
    scheduled: ScheduledScan,
    target_timeout: Duration,
}

impl Handler {
    pub fn new(scheduled: ScheduledScan, target_timeout: Duration) -> Self {
        Handler {
            scheduled,
            target_timeout,
        }
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
        let deadline = certpilot_aws::lambda::invocation_deadline(event.context.deadline);
        let remaining_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        tracing::info!(request_id = %event.context.request_id, remaining_ms, deadline = event.context.deadline, "invocation");
        let payload = event.payload;
        if certpilot_aws::lambda::is_sqs(&payload) {
            let sqs: SqsEvent = serde_json::from_value(payload)
                .map_err(|e| FunctionError::Event(format!("SQS event: {e}")))?;
            let response = self.batches(sqs, deadline).await;
            return serde_json::to_value(response).map_err(|e| FunctionError::Event(e.to_string()));
        }
        let summary = self.scheduled.tick(deadline).await?;
        serde_json::to_value(summary).map_err(|e| FunctionError::Event(e.to_string()))
    }

    /// Scans each message's batch in turn; a message that cannot be read, cannot be finished
    /// in the time left, or whose results cannot be stored is reported failed, alone.
    async fn batches(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let mut failures: Vec<String> = Vec::new();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let fail = |why: String| {
                warn!(message_id = %id, %why, "batch failed");
                id.clone()
            };
            let batch: ScanBatch = match record.body.as_deref().map(serde_json::from_str) {
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    failures.push(fail(format!("unreadable batch: {e}")));
                    continue;
                }
                None => {
                    failures.push(fail("empty message".into()));
                    continue;
                }
            };
            if deadline.saturating_duration_since(Instant::now()) < self.target_timeout * 2 {
                failures.push(fail("not enough time left; retried later".into()));
                continue;
            }
            if let Err(e) = self.scheduled.scan(batch.endpoints, deadline).await {
                failures.push(fail(e.to_string()));
            }
        }
        let mut response = SqsBatchResponse::default();
        for id in failures {
            response.add_failure(id);
        }
        response
    }
}
