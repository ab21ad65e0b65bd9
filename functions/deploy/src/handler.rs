//! Decoding events and encoding answers: all the handler does.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use certpilot_core::Classify;
use certpilot_core::model::certificate::IssuedMessage;
use certpilot_core::ports::CertificateWork;
use certpilot_core::services::deploy::{DeployReport, DeployService, DeployServiceError};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// A failed invocation, typed so Lambda's diagnostics say whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error(transparent)]
    Deploy(#[from] DeployServiceError),
    #[error("event: {0}")]
    Event(String),
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        let class = match &e {
            FunctionError::Deploy(e) => e.class(),
            FunctionError::Event(_) => certpilot_core::ErrorClass::Input,
        };
        Diagnostic {
            error_type: certpilot_aws::lambda::error_type(class).into(),
            error_message: e.to_string(),
        }
    }
}

/// What a scheduler tick did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    verified: usize,
    not_verified: usize,
    failed: usize,
    reports: Vec<DeployReport>,
}

/// Holds what every invocation needs.
pub struct Handler {
    deploy: DeployService,
    findings: Option<certpilot_app::App>,
}

/// Time kept back at the end of an invocation to record outcomes and answer.
const MARGIN: Duration = Duration::from_secs(20);

impl Handler {
    pub fn new(deploy: DeployService) -> Self {
        Handler {
            deploy,
            findings: None,
        }
    }

    /// Records the certificates' findings at the end of each invocation.
    pub fn with_findings(mut self, app: certpilot_app::App) -> Self {
        self.findings = Some(app);
        self
    }

    /// At the end of each invocation: the certificates' findings are recorded and sent,
    /// each deployment's outcome is put on the event bus, and the run's metrics are logged
    /// (EMF, with the `RunCompleted` heartbeat for scheduled runs).
    async fn finish(&self, reports: &[DeployReport], failed: usize, scheduled: bool) {
        let Some(app) = &self.findings else {
            return;
        };
        app.record_certificate_findings_logged().await;
        app.send_findings_logged().await;
        app.announce(&outcome_events(reports)).await;
        let targets = || {
            reports
                .iter()
                .flat_map(|r| r.targets.iter())
                .filter(|t| !t.unchanged)
        };
        certpilot_aws::lambda::emit_run_metrics(
            "deploy",
            &[
                (
                    "DeploymentsVerified",
                    "Count",
                    targets().filter(|t| t.is_verified()).count() as f64,
                ),
                (
                    "DeploymentsNotServing",
                    "Count",
                    targets().filter(|t| !t.is_verified()).count() as f64,
                ),
                ("DeployFailures", "Count", failed as f64),
            ],
            scheduled,
        );
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, FunctionError> {
        let deadline = certpilot_aws::lambda::invocation_deadline(event.context.deadline);
        info!(request_id = %event.context.request_id, "invocation");
        // Verification never waits past the invocation's end.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(MARGIN);
        let service = self.deploy.with_max_deadline(left);
        if certpilot_aws::lambda::is_sqs(&event.payload) {
            let sqs: SqsEvent = serde_json::from_value(event.payload)
                .map_err(|e| FunctionError::Event(format!("SQS event: {e}")))?;
            let (response, reports, failed) = messages(&service, sqs).await;
            self.finish(&reports, failed, false).await;
            return serde_json::to_value(response).map_err(|e| FunctionError::Event(e.to_string()));
        }
        let mut summary = Summary::default();
        for id in service.pending().await? {
            match service.deploy(&id, None, false).await {
                Ok(r) if r.is_verified() => {
                    summary.verified += 1;
                    summary.reports.push(r);
                }
                Ok(r) => {
                    summary.not_verified += 1;
                    summary.reports.push(r);
                }
                Err(e) => {
                    error!(%id, error = %e, "deploy failed");
                    summary.failed += 1;
                }
            }
        }
        info!(
            verified = summary.verified,
            not_verified = summary.not_verified,
            failed = summary.failed,
            "summary"
        );
        self.finish(&summary.reports, summary.failed, true).await;
        serde_json::to_value(summary).map_err(|e| FunctionError::Event(e.to_string()))
    }
}

/// Each deployment that changed as a `Deployment verified` or `Deployment not serving` event
/// (a redelivered message for a deployment already verified announces nothing).
fn outcome_events(reports: &[DeployReport]) -> Vec<certpilot_notify::eventbridge::Event> {
    use certpilot_notify::eventbridge::{
        DEPLOYMENT_NOT_SERVING, DEPLOYMENT_VERIFIED, outcome_event,
    };
    reports
        .iter()
        .flat_map(|r| {
            r.targets.iter().filter(|t| !t.unchanged).map(|t| {
                outcome_event(
                    if t.is_verified() {
                        DEPLOYMENT_VERIFIED
                    } else {
                        DEPLOYMENT_NOT_SERVING
                    },
                    serde_json::json!({
                        "id": r.id,
                        "fingerprint": r.fingerprint,
                        "deployment": t,
                    }),
                )
            })
        })
        .collect()
}

/// Deploys each message's certificate; a message is reported failed (delivered again later)
/// when it cannot be read or its certificate is not served everywhere. Also returns the
/// reports and how many deploys failed outright.
async fn messages(
    service: &DeployService,
    event: SqsEvent,
) -> (SqsBatchResponse, Vec<DeployReport>, usize) {
    let mut failures = Vec::new();
    let mut reports = Vec::new();
    let mut failed = 0;
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        // A rollback the request API asked for travels on the same queue.
        if let Some(Ok(CertificateWork::RollBack { id, deployment })) = record
            .body
            .as_deref()
            .filter(|b| b.contains("\"action\""))
            .map(serde_json::from_str::<CertificateWork>)
        {
            match service.roll_back(&id, deployment.as_deref()).await {
                Ok(targets) => {
                    info!(%id, deployments = targets.len(), "rolled back as asked through the API");
                }
                Err(DeployServiceError::NotFound(id)) => {
                    warn!(%id, "certificate no longer managed; rollback dropped");
                }
                Err(e) => {
                    error!(%id, error = %e, "rollback failed");
                    failed += 1;
                    failures.push(message_id);
                }
            }
            continue;
        }
        let message: IssuedMessage = match record.body.as_deref().map(serde_json::from_str) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                warn!(%message_id, error = %e, "unreadable issued message");
                failures.push(message_id);
                continue;
            }
            None => {
                warn!(%message_id, "empty message");
                failures.push(message_id);
                continue;
            }
        };
        match service
            .deploy(&message.id, Some(&message.fingerprint), false)
            .await
        {
            Ok(report) if report.is_verified() => {
                info!(id = %report.id, fingerprint = %report.fingerprint, unchanged = report.targets.iter().all(|t| t.unchanged), "deployed and verified");
                reports.push(report);
            }
            Ok(report) => {
                for t in report
                    .targets
                    .iter()
                    .filter(|t| t.state.status.as_str() != "verified")
                {
                    error!(id = %report.id, deployment = %t.name, kind = %t.kind, status = t.state.status.as_str(), detail = t.state.detail.as_deref().unwrap_or_default(), "not served");
                }
                reports.push(report);
                failures.push(message_id);
            }
            Err(DeployServiceError::NotFound(id)) => {
                // Removed since it was issued: nothing to deploy, ever.
                warn!(%id, "certificate no longer managed; message dropped");
            }
            Err(e) => {
                error!(id = %message.id, error = %e, "deploy failed");
                failed += 1;
                failures.push(message_id);
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    for id in failures {
        response.add_failure(id);
    }
    (response, reports, failed)
}
