//! Decoding events and encoding answers: all the handler does.

use certpilot_core::services::renew::{RenewError, RenewOutcome, RenewService};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, info};

/// A failed invocation, typed so Lambda's diagnostics say whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error(transparent)]
    Renew(#[from] RenewError),
    #[error("event: {0}")]
    Event(String),
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        let error_type = match &e {
            FunctionError::Renew(RenewError::Store(s)) if s.is_retryable() => "Retryable",
            _ => "NonRetryable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// A request to renew named certificates (an operator's `aws lambda invoke`); any other event
/// (the scheduler's tick) renews what is due.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    ids: Vec<String>,
    #[serde(default)]
    force: bool,
}

/// One certificate's result.
#[derive(Debug, Serialize)]
pub struct Row {
    id: String,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Value>,
}

/// The invocation's answer, also logged as its summary line.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    issued: usize,
    not_due: usize,
    deferred: usize,
    postponed: usize,
    busy: usize,
    failed: usize,
    results: Vec<Row>,
}

impl Summary {
    fn add(&mut self, id: String, result: Result<RenewOutcome, RenewError>) {
        let mut row = Row {
            id,
            outcome: "",
            fingerprint: None,
            detail: None,
            problem: None,
        };
        match result {
            Ok(RenewOutcome::Issued { fingerprint, .. }) => {
                self.issued += 1;
                row.outcome = "issued";
                row.fingerprint = Some(fingerprint);
            }
            Ok(RenewOutcome::NotDue { next_check_at }) => {
                self.not_due += 1;
                row.outcome = "not_due";
                row.detail = Some(format!("next check {next_check_at}"));
            }
            Ok(RenewOutcome::Deferred { reason, .. }) => {
                self.deferred += 1;
                row.outcome = "deferred";
                row.detail = Some(reason);
            }
            Ok(RenewOutcome::Postponed) => {
                self.postponed += 1;
                row.outcome = "postponed";
            }
            Ok(RenewOutcome::BackingOff {
                until,
                failures,
                last_error,
            }) => {
                // Counted with the not-due: nothing was attempted, the failure is recorded.
                self.not_due += 1;
                row.outcome = "backing_off";
                row.detail = Some(format!(
                    "{failures} failed attempts; next at {until}; last: {last_error}"
                ));
            }
            Ok(RenewOutcome::Busy { owner, .. }) => {
                self.busy += 1;
                row.outcome = "busy";
                row.detail = Some(format!("lease held by {owner}"));
            }
            Err(e) => {
                self.failed += 1;
                row.outcome = "failed";
                if let RenewError::Issue { error, .. } = &e {
                    row.problem = error.problem().cloned();
                }
                error!(id = %row.id, error = %e, "renewal failed");
                row.detail = Some(e.to_string());
            }
        }
        self.results.push(row);
    }
}

pub struct Handler {
    renew: RenewService,
}

impl Handler {
    pub fn new(renew: RenewService) -> Self {
        Handler { renew }
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
        let deadline = certpilot_aws::lambda::invocation_deadline(event.context.deadline);
        let mut summary = Summary::default();
        if event.payload["source"] == "aws.acm" {
            // "ACM Certificate Approaching Expiration" and its kin name the certificate by
            // ARN: look at it now instead of at the next scheduled check.
            let arns: Vec<String> = event.payload["resources"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            for arn in arns {
                match self.renew.renew_acm_arn(&arn).await {
                    Ok(Some((id, outcome))) => summary.add(id, Ok(outcome)),
                    Ok(None) => {
                        info!(%arn, "ACM event about a certificate certpilot does not manage")
                    }
                    Err(e) => summary.add(arn, Err(e)),
                }
            }
        } else if event.payload.get("ids").is_some() {
            let request: RenewRequest = serde_json::from_value(event.payload)
                .map_err(|e| FunctionError::Event(format!("renew request: {e}")))?;
            for id in request.ids {
                let result = self.renew.renew(&id, request.force).await;
                summary.add(id, result);
            }
        } else {
            for (id, result) in self.renew.renew_due_until(Some(deadline)).await? {
                summary.add(id, result);
            }
        }
        // Failures are recorded on each certificate with their backoff; the invocation
        // itself succeeds so that the scheduler does not retry them early.
        info!(
            request_id = %event.context.request_id,
            issued = summary.issued,
            failed = summary.failed,
            postponed = summary.postponed,
            busy = summary.busy,
            "renew summary"
        );
        serde_json::to_value(summary).map_err(|e| FunctionError::Event(e.to_string()))
    }
}
