//! One instance of an `ssm-fleet`: the certificate written to the fleet's bundle secret,
//! the install script sent to the instance, its invocation followed to an outcome.
//!
//! A command still running when the run's patience ends leaves the unit `in_progress`
//! with the command in its handle (`ssm:<command id>#<fingerprint>`); the next run follows
//! that command instead of sending another. Installed, the handle is the fingerprint.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationError;
use aws_sdk_ssm::types::CommandInvocationStatus;
use certpilot_core::ports::{
    Bound, DeployError, DeployMaterial, DeployRequest, DeployTarget, Deployed,
};
use tracing::{info, warn};

use super::script::{Install, script};

/// How long one run waits for a command before leaving it for the next run.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often an invocation is read while waiting.
const POLL: Duration = Duration::from_secs(1);
/// How long a rollback may wait: there is no later run to finish it.
const ROLLBACK_PATIENCE: Duration = Duration::from_secs(180);
/// SSM keeps at most this much of each output stream.
const OUTPUT_TAIL: usize = 600;

/// One instance.
pub struct InstanceTarget {
    pub(crate) ssm: aws_sdk_ssm::Client,
    pub(crate) secrets: aws_sdk_secretsmanager::Client,
    pub(crate) instance: String,
    pub(crate) region: String,
    pub(crate) dir: String,
    pub(crate) reload: Option<String>,
    pub(crate) bundle_prefix: String,
}

/// Where a command stands.
enum Outcome {
    Running,
    Done,
}

fn tail(text: &str) -> &str {
    let text = text.trim();
    let mut at = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(at) {
        at += 1;
    }
    &text[at..]
}

impl InstanceTarget {
    /// Writes `material` as a new version of the certificate's bundle secret; its id and
    /// version.
    async fn bundle(
        &self,
        id: &str,
        material: &DeployMaterial,
    ) -> Result<(String, String), DeployError> {
        let key = material.key.as_ref().ok_or_else(|| {
            DeployError::Config("ssm-fleet: the certificate's key is needed".into())
        })?;
        let key = key
            .expose_str()
            .map_err(|_| DeployError::Config("ssm-fleet: the key is not PEM text".into()))?;
        let name = format!("{}{id}", self.bundle_prefix);
        let text = format!("{}{}", material.chain_pem, key);
        let put = || {
            self.secrets
                .put_secret_value()
                .secret_id(&name)
                .secret_string(&text)
                .send()
        };
        let version = match put().await {
            Ok(out) => out.version_id().map(str::to_owned),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                let created = self
                    .secrets
                    .create_secret()
                    .name(&name)
                    .description(format!(
                        "certpilot: the certificate {id} and its key, read by the instances of its ssm-fleet deployments"
                    ))
                    .secret_string(&text)
                    .tags(
                        aws_sdk_secretsmanager::types::Tag::builder()
                            .key("certpilot:certificate")
                            .value(id)
                            .build(),
                    )
                    .send()
                    .await;
                match created {
                    Ok(out) => out.version_id().map(str::to_owned),
                    // Another instance of the fleet created it a moment ago.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_exists_exception()) =>
                    {
                        put()
                            .await
                            .map_err(|e| {
                                crate::refused(&format!("secretsmanager PutSecretValue {name}"), &e)
                            })?
                            .version_id()
                            .map(str::to_owned)
                    }
                    Err(e) => {
                        return Err(crate::refused(
                            &format!("secretsmanager CreateSecret {name}"),
                            &e,
                        ));
                    }
                }
            }
            Err(e) => {
                return Err(crate::refused(
                    &format!("secretsmanager PutSecretValue {name}"),
                    &e,
                ));
            }
        };
        let version = version.ok_or_else(|| {
            DeployError::Unavailable(format!("secretsmanager: no version id for {name}"))
        })?;
        Ok((name, version))
    }

    /// Sends the install script for `material`; the command's id.
    async fn send(&self, id: &str, material: &DeployMaterial) -> Result<String, DeployError> {
        let (secret, version) = self.bundle(id, material).await?;
        let text = script(&Install {
            id,
            fingerprint: &material.fingerprint,
            dir: &self.dir,
            secret: &secret,
            secret_version: &version,
            region: &self.region,
            reload: self.reload.as_deref(),
        });
        let comment: String = format!("certpilot: {id} {}", &material.fingerprint[..16])
            .chars()
            .take(100)
            .collect();
        let out = self
            .ssm
            .send_command()
            .document_name("AWS-RunShellScript")
            .instance_ids(&self.instance)
            .parameters("commands", vec![text])
            .parameters("executionTimeout", vec!["600".to_owned()])
            .timeout_seconds(600)
            .comment(comment)
            .send()
            .await
            .map_err(|e| crate::refused(&format!("ssm SendCommand to {}", self.instance), &e))?;
        let command = out
            .command()
            .and_then(|c| c.command_id())
            .ok_or_else(|| DeployError::Unavailable("ssm SendCommand: no command id".into()))?
            .to_owned();
        info!(instance = %self.instance, %command, fingerprint = %material.fingerprint, "ssm: install sent");
        Ok(command)
    }

    /// Reads the command's invocation on this instance once.
    async fn read(&self, command: &str) -> Result<Outcome, DeployError> {
        let out = match self
            .ssm
            .get_command_invocation()
            .command_id(command)
            .instance_id(&self.instance)
            .send()
            .await
        {
            Ok(out) => out,
            // Normal for a moment after the send: the invocation is not made yet.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(GetCommandInvocationError::InvocationDoesNotExist(_))
                ) =>
            {
                return Ok(Outcome::Running);
            }
            Err(e) => {
                return Err(crate::refused(
                    &format!("ssm GetCommandInvocation {command} on {}", self.instance),
                    &e,
                ));
            }
        };
        match out.status() {
            Some(CommandInvocationStatus::Success) => Ok(Outcome::Done),
            Some(
                CommandInvocationStatus::Pending
                | CommandInvocationStatus::InProgress
                | CommandInvocationStatus::Delayed,
            )
            | None => Ok(Outcome::Running),
            Some(status) => {
                let (stdout, stderr) = (
                    out.standard_output_content().unwrap_or(""),
                    out.standard_error_content().unwrap_or(""),
                );
                let said = match (tail(stderr), tail(stdout)) {
                    ("", "") => String::new(),
                    ("", out) => format!(": {out}"),
                    (err, _) => format!(": {err}"),
                };
                Err(DeployError::Target(format!(
                    "instance {}: command {command} {} ({}, exit {}){said}",
                    self.instance,
                    status.as_str(),
                    out.status_details().unwrap_or(""),
                    out.response_code()
                )))
            }
        }
    }

    /// Follows `command` for up to `patience`.
    async fn follow(&self, command: &str, patience: Duration) -> Result<Outcome, DeployError> {
        let until = tokio::time::Instant::now() + patience;
        loop {
            if let Outcome::Done = self.read(command).await? {
                return Ok(Outcome::Done);
            }
            if tokio::time::Instant::now() + POLL > until {
                return Ok(Outcome::Running);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn running(&self, command: &str, fingerprint: &str) -> Deployed {
        Deployed {
            handle: Some(format!("ssm:{command}#{fingerprint}")),
            check_after: Some(time::OffsetDateTime::now_utc() + PATIENCE),
            ..Deployed::default()
        }
    }
}

#[async_trait]
impl DeployTarget for InstanceTarget {
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError> {
        // What DIR holds is only known on the instance (reading it would be a command of
        // its own): this is what certpilot last installed there, as recorded; the
        // handshake at the instance tells what it serves.
        let installed = recorded.filter(|h| !h.starts_with("ssm:"));
        Ok(Bound {
            certificates: installed.map(str::to_owned).into_iter().collect(),
            fingerprints: installed.map(str::to_owned).into_iter().collect(),
        })
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        let fingerprint = &request.certificate.fingerprint;
        let pending = request
            .record
            .and_then(|r| r.state.handle.as_deref())
            .and_then(|h| h.strip_prefix("ssm:"))
            .and_then(|h| h.split_once('#'))
            .filter(|(_, f)| f == fingerprint)
            .map(|(command, _)| command.to_owned());
        let command = match pending {
            Some(command) => command,
            None => self.send(request.id, request.certificate).await?,
        };
        match self.follow(&command, PATIENCE).await? {
            Outcome::Done => Ok(Deployed {
                handle: Some(fingerprint.clone()),
                ..Deployed::default()
            }),
            Outcome::Running => {
                info!(instance = %self.instance, %command, "ssm: still running; the next run follows it");
                Ok(self.running(&command, fingerprint))
            }
        }
    }

    async fn finish(&self, _deployed: &Deployed) -> Result<(), DeployError> {
        Ok(())
    }

    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        _deployed: Option<&Deployed>,
    ) -> Result<Option<String>, DeployError> {
        let Some(previous) = request.previous else {
            return Ok(None);
        };
        let command = self.send(request.id, previous).await?;
        match self.follow(&command, ROLLBACK_PATIENCE).await? {
            Outcome::Done => Ok(Some(previous.fingerprint.clone())),
            Outcome::Running => {
                warn!(instance = %self.instance, %command, "ssm: the rollback did not finish in time");
                Err(DeployError::Unavailable(format!(
                    "instance {}: the rollback command {command} had not finished after {}s",
                    self.instance,
                    ROLLBACK_PATIENCE.as_secs()
                )))
            }
        }
    }
}
