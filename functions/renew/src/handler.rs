//! Decoding events and encoding answers: all the handler does. Events: the scheduler's
//! tick, `{"ids": […], "force"}`, ACM's events, and the renew queue's SQS batches (answered
//! with `batchItemFailures`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use certpilot_core::Classify;
use certpilot_core::ports::CertificateWork;
use certpilot_core::services::renew::{RenewError, RenewOutcome, RenewService, report};
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
        let class = match &e {
            FunctionError::Renew(e) => e.class(),
            FunctionError::Event(_) => certpilot_core::ErrorClass::Input,
        };
        Diagnostic {
            error_type: certpilot_aws::lambda::error_type(class).into(),
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

/// The invocation's answer, also logged as its summary line: counts, and one row per
/// certificate exactly as the CLI prints it (`certpilot_core::services::renew::report`).
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    issued: usize,
    not_due: usize,
    deferred: usize,
    postponed: usize,
    busy: usize,
    failed: usize,
    results: Vec<Value>,
}

impl Summary {
    fn add(&mut self, id: String, result: Result<RenewOutcome, RenewError>) {
        match &result {
            Ok(RenewOutcome::Issued { .. }) => self.issued += 1,
            // Backing off is counted with the not-due: nothing was attempted.
            Ok(RenewOutcome::NotDue { .. } | RenewOutcome::BackingOff { .. }) => {
                self.not_due += 1;
            }
            Ok(RenewOutcome::Deferred { .. }) => self.deferred += 1,
            Ok(RenewOutcome::Postponed) => self.postponed += 1,
            Ok(RenewOutcome::Busy { .. }) => self.busy += 1,
            Err(e) => {
                self.failed += 1;
                error!(%id, error = %e, "renewal failed");
            }
        }
        self.results.push(report(&id, &result));
    }
}

pub struct Handler {
    renew: RenewService,
    findings: Option<certpilot_app::App>,
}

impl Handler {
    pub fn new(renew: RenewService) -> Self {
        Handler {
            renew,
            findings: None,
        }
    }

    /// Records and sends the certificates' findings at the end of each invocation.
    pub fn with_findings(mut self, app: certpilot_app::App) -> Self {
        self.findings = Some(app);
        self
    }

    /// At the end of each invocation: the certificates' findings are recorded and sent,
    /// each issuance is put on the event bus, and the run's and the estate's metrics are
    /// logged (EMF, with the `RunCompleted` heartbeat for scheduled runs).
    async fn finish(&self, summary: &Summary, scheduled: bool) {
        let Some(app) = &self.findings else {
            return;
        };
        app.record_certificate_findings_logged().await;
        app.send_findings_logged().await;
        let issued: Vec<_> = summary
            .results
            .iter()
            .filter(|r| r["outcome"] == "issued")
            .map(|r| {
                certpilot_notify::eventbridge::outcome_event(
                    certpilot_notify::eventbridge::CERTIFICATE_ISSUED,
                    r.clone(),
                )
            })
            .collect();
        app.announce(&issued).await;
        certpilot_aws::lambda::emit_run_metrics(
            "renew",
            &[
                ("Renewals", "Count", summary.issued as f64),
                ("RenewalFailures", "Count", summary.failed as f64),
            ],
            scheduled,
        );
        match app.estate_emf().await {
            Ok(lines) => certpilot_aws::lambda::emit_emf(&lines),
            Err(e) => tracing::warn!(error = %e, "estate metrics"),
        }
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
        let deadline = certpilot_aws::lambda::invocation_deadline(event.context.deadline);
        let mut summary = Summary::default();
        let mut scheduled = false;
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
        } else if certpilot_aws::lambda::is_sqs(&event.payload) {
            // The renew queue: certificates the request API accepted, issued now rather
            // than at the next tick. A message fails (is delivered again, then dead-lettered)
            // when it cannot be read or its renewal failed in a way a retry may fix.
            let sqs: SqsEvent = serde_json::from_value(event.payload)
                .map_err(|e| FunctionError::Event(format!("SQS event: {e}")))?;
            let mut response = SqsBatchResponse::default();
            for record in sqs.records {
                let message_id = record.message_id.clone().unwrap_or_default();
                let work = record
                    .body
                    .as_deref()
                    .map(serde_json::from_str::<CertificateWork>);
                match work {
                    Some(Ok(CertificateWork::Renew { id, force })) => {
                        let result = self.renew.renew(&id, force).await;
                        if matches!(&result, Err(e) if e.is_retryable()) {
                            response.add_failure(message_id);
                        }
                        summary.add(id, result);
                    }
                    Some(Ok(other)) => {
                        error!(%message_id, id = other.id(), "not renew work: this is the renew queue");
                        response.add_failure(message_id);
                    }
                    Some(Err(e)) => {
                        error!(%message_id, error = %e, "unreadable work");
                        response.add_failure(message_id);
                    }
                    None => {
                        error!(%message_id, "empty message");
                        response.add_failure(message_id);
                    }
                }
            }
            info!(request_id = %event.context.request_id, issued = summary.issued,
                failed = summary.failed, results = %serde_json::Value::from(summary.results.clone()),
                "renew queue summary");
            self.finish(&summary, false).await;
            return serde_json::to_value(response).map_err(|e| FunctionError::Event(e.to_string()));
        } else if event.payload.get("ids").is_some() {
            let request: RenewRequest = serde_json::from_value(event.payload)
                .map_err(|e| FunctionError::Event(format!("renew request: {e}")))?;
            for id in request.ids {
                let result = self.renew.renew(&id, request.force).await;
                summary.add(id, result);
            }
        } else {
            scheduled = true;
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
        self.finish(&summary, scheduled).await;
        serde_json::to_value(summary).map_err(|e| FunctionError::Event(e.to_string()))
    }
}
