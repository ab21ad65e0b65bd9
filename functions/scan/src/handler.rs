//! Decoding events and encoding answers: all the handler does.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use certpilot_core::Classify;
use certpilot_core::ports::ScanBatch;
use certpilot_core::services::scheduled::{RunSummary, ScheduledError, ScheduledScan};
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
    #[error("publishing digests: {0}")]
    Digest(String),
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        let class = match &e {
            FunctionError::Scheduled(e) => e.class(),
            FunctionError::Event(_) => certpilot_core::ErrorClass::Input,
            FunctionError::Digest(_) => certpilot_core::ErrorClass::Retryable,
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
    app: certpilot_app::App,
}

/// The digest schedule's event: `{"action": "digest", "days": 30}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestRequest {
    #[allow(dead_code)]
    action: String,
    #[serde(default = "thirty")]
    days: u32,
}

fn thirty() -> u32 {
    30
}

impl Handler {
    pub fn new(
        scheduled: ScheduledScan,
        target_timeout: Duration,
        app: certpilot_app::App,
    ) -> Self {
        Handler {
            scheduled,
            target_timeout,
            app,
        }
    }

    /// Publishes every owner's digest.
    async fn digest(&self, payload: Value) -> Result<Value, FunctionError> {
        let request: DigestRequest = serde_json::from_value(payload)
            .map_err(|e| FunctionError::Event(format!("digest request: {e}")))?;
        if !(1..=400).contains(&request.days) {
            return Err(FunctionError::Event(format!(
                "digest request: days {}: from 1 to 400",
                request.days
            )));
        }
        let published = self
            .app
            .publish_digests(request.days)
            .await
            .map_err(FunctionError::Digest)?;
        tracing::info!(published, "digests published");
        certpilot_aws::lambda::emit_run_metrics(
            "digest",
            &[("DigestsPublished", "Count", published as f64)],
            true,
        );
        Ok(serde_json::json!({"digests": published}))
    }

    /// After a run: the findings' transitions go out, and the run's metrics are logged.
    async fn finish(&self, summary: &RunSummary, tick: bool) {
        self.app.send_findings_logged().await;
        certpilot_aws::lambda::emit_run_metrics(
            "scan",
            &[
                ("EndpointsScanned", "Count", summary.scanned as f64),
                ("ScanFailures", "Count", summary.failed as f64),
                (
                    "EndpointsLeftForNextRun",
                    "Count",
                    summary.left_for_next_run as f64,
                ),
            ],
            tick,
        );
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
        let deadline = certpilot_aws::lambda::invocation_deadline(event.context.deadline);
        let remaining_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        tracing::info!(request_id = %event.context.request_id, remaining_ms, deadline = event.context.deadline, "invocation");
        let payload = event.payload;
        if payload["action"] == "digest" {
            return self.digest(payload).await;
        }
        if certpilot_aws::lambda::is_sqs(&payload) {
            let sqs: SqsEvent = serde_json::from_value(payload)
                .map_err(|e| FunctionError::Event(format!("SQS event: {e}")))?;
            let response = self.batches(sqs, deadline).await;
            return serde_json::to_value(response).map_err(|e| FunctionError::Event(e.to_string()));
        }
        let summary = self.scheduled.tick(deadline).await?;
        self.finish(&summary, true).await;
        serde_json::to_value(summary).map_err(|e| FunctionError::Event(e.to_string()))
    }

    /// Scans each message's batch in turn; a message that cannot be read, cannot be finished
    /// in the time left, or whose results cannot be stored is reported failed, alone.
    async fn batches(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let mut failures: Vec<String> = Vec::new();
        let mut total = RunSummary::default();
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
            match self.scheduled.scan(batch.endpoints, deadline).await {
                Ok(s) => {
                    total.scanned += s.scanned;
                    total.failed += s.failed;
                    total.left_for_next_run += s.left_for_next_run;
                }
                Err(e) => failures.push(fail(e.to_string())),
            }
        }
        self.finish(&total, false).await;
        let mut response = SqsBatchResponse::default();
        for id in failures {
            response.add_failure(id);
        }
        response
    }
}
