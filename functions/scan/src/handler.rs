//! Decoding events and encoding answers: all the handler does.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
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
        let error_type = match &e {
            FunctionError::Scheduled(s) if s.is_retryable() => "Retryable",
            _ => "NonRetryable",
        };
        Diagnostic {
            error_type: error_type.into(),
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
        let deadline = deadline_of(&event.context);
        let remaining_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        tracing::info!(request_id = %event.context.request_id, remaining_ms, deadline = event.context.deadline, "invocation");
        let payload = event.payload;
        if is_sqs(&payload) {
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

fn is_sqs(payload: &Value) -> bool {
    payload["Records"]
        .as_array()
        .and_then(|r| r.first())
        .is_some_and(|r| r["eventSource"] == "aws:sqs")
}

/// The invocation's deadline as a monotonic instant.
fn deadline_of(context: &lambda_runtime::Context) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Instant::now() + Duration::from_millis(remaining_ms(context.deadline, now_ms))
}

/// Milliseconds left before `deadline`. Lambda sends an epoch time in milliseconds; cargo
/// lambda's local emulator sends the function timeout itself (e.g. 600000), which as an
/// epoch time would be 1970. A value that old is read as the time budget it really is.
fn remaining_ms(deadline: u64, now_ms: u64) -> u64 {
    const A_YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
    if deadline < A_YEAR_MS {
        deadline
    } else {
        deadline.saturating_sub(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_epoch_times_or_budgets() {
        let now = 1_795_000_000_000;
        assert_eq!(remaining_ms(now + 900_000, now), 900_000);
        assert_eq!(remaining_ms(now - 5, now), 0);
        assert_eq!(remaining_ms(600_000, now), 600_000);
    }

    #[test]
    fn sqs_events_are_told_from_ticks() {
        let sqs = serde_json::json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]});
        assert!(is_sqs(&sqs));
        assert!(!is_sqs(
            &serde_json::json!({"detail-type": "Scheduled Event"})
        ));
        assert!(!is_sqs(
            &serde_json::json!({"Records": [{"eventSource": "aws:s3"}]})
        ));
    }
}
