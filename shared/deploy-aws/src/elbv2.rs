//! ELBv2 (ALB and NLB) HTTPS/TLS listeners.
//!
//! As the default certificate, a new ARN replaces the old with `ModifyListener`. As an SNI
//! certificate the new ARN is added beside the old one, and the old one is removed only once
//! the endpoints serve the new one, so clients are never without a certificate.
//!
//! Settings: `listener-arn`, `sni`. IAM: `elasticloadbalancing:DescribeListeners`,
//! `DescribeListenerCertificates`, `ModifyListener`, `AddListenerCertificates`,
//! `RemoveListenerCertificates`, plus the ACM import's.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::Certificate;
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::Unit;
use certpilot_core::model::deploy_kind::{KindDescriptor, Setting, ValueKind, settings_as};
use certpilot_core::ports::DeployError;
use tracing::info;

use crate::{Bind, Binder, arn_region, refused};

/// The `elbv2-listener` kind.
pub struct Kind;

impl crate::AwsKind for Kind {
    fn descriptor(&self) -> KindDescriptor {
        crate::descriptor(
            "elbv2-listener",
            "an ALB or NLB HTTPS/TLS listener, as its default certificate or an SNI one",
            vec![
                Setting::required(
                    "listener-arn",
                    "the listener's ARN (its region is read from it)",
                ),
                Setting::optional(
                    "sni",
                    "bind as one of the listener's SNI certificates instead of its default one",
                )
                .of(ValueKind::Bool),
            ],
            std::time::Duration::from_secs(2 * 60),
            &[
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeListenerCertificates",
                "elasticloadbalancing:ModifyListener",
                "elasticloadbalancing:AddListenerCertificates",
                "elasticloadbalancing:RemoveListenerCertificates",
            ],
            // Application and Network Load Balancers take every algorithm ACM imports.
            &KeyType::ALL,
            |s| {
                let arn = s.get("listener-arn").and_then(|v| v.as_str()).unwrap_or("");
                let region = arn_region(arn).map_err(|e| (e.input, e.reason))?;
                if !arn.contains(":listener/") {
                    return Err((arn.to_owned(), "not a listener ARN".into()));
                }
                crate::check_common(s, &region)
            },
        )
    }

    fn region(&self, unit: &Unit) -> Result<String, DeployError> {
        arn_region(crate::need(unit, "listener-arn")?)
            .map_err(|e| DeployError::Config(e.to_string()))
    }

    fn binder(&self, config: &SdkConfig, unit: &Unit) -> Result<Box<dyn Binder>, DeployError> {
        let settings: ListenerSettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        Ok(Box::new(Listener::new(
            Client::new(config),
            settings.listener_arn,
            settings.sni,
        )))
    }
}

/// The settings the kind reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ListenerSettings {
    listener_arn: String,
    #[serde(default)]
    sni: bool,
}

/// One listener.
pub struct Listener {
    client: Client,
    arn: String,
    sni: bool,
}

impl Listener {
    /// The listener `arn`, bound as its default certificate or (`sni`) one of its SNI ones.
    pub fn new(client: Client, arn: String, sni: bool) -> Self {
        Listener { client, arn, sni }
    }

    async fn default_certificate(&self) -> Result<Option<String>, DeployError> {
        let out = self
            .client
            .describe_listeners()
            .listener_arns(&self.arn)
            .send()
            .await
            .map_err(|e| refused(&format!("elbv2 DescribeListeners {}", self.arn), &e))?;
        let listener = out
            .listeners()
            .first()
            .ok_or_else(|| DeployError::Target(format!("elbv2 listener {} not found", self.arn)))?;
        Ok(listener
            .certificates()
            .first()
            .and_then(|c| c.certificate_arn.clone()))
    }

    async fn sni_certificates(&self) -> Result<Vec<String>, DeployError> {
        let out = self
            .client
            .describe_listener_certificates()
            .listener_arn(&self.arn)
            .send()
            .await
            .map_err(|e| {
                refused(
                    &format!("elbv2 DescribeListenerCertificates {}", self.arn),
                    &e,
                )
            })?;
        Ok(out
            .certificates()
            .iter()
            .filter(|c| c.is_default != Some(true))
            .filter_map(|c| c.certificate_arn.clone())
            .collect())
    }

    async fn set_default(&self, arn: &str) -> Result<(), DeployError> {
        self.client
            .modify_listener()
            .listener_arn(&self.arn)
            .certificates(certificate(arn))
            .send()
            .await
            .map_err(|e| refused(&format!("elbv2 ModifyListener {}", self.arn), &e))?;
        info!(listener = %self.arn, certificate = %arn, "elbv2: default certificate set");
        Ok(())
    }

    async fn remove(&self, arn: &str) -> Result<(), DeployError> {
        self.client
            .remove_listener_certificates()
            .listener_arn(&self.arn)
            .certificates(certificate(arn))
            .send()
            .await
            .map_err(|e| {
                refused(
                    &format!("elbv2 RemoveListenerCertificates {}", self.arn),
                    &e,
                )
            })?;
        info!(listener = %self.arn, certificate = %arn, "elbv2: SNI certificate removed");
        Ok(())
    }
}

fn certificate(arn: &str) -> Certificate {
    Certificate::builder().certificate_arn(arn).build()
}

#[async_trait]
impl Binder for Listener {
    async fn bound(&self) -> Result<Vec<String>, DeployError> {
        let mut all: Vec<String> = self.default_certificate().await?.into_iter().collect();
        for arn in self.sni_certificates().await? {
            if !all.contains(&arn) {
                all.push(arn);
            }
        }
        Ok(all)
    }

    async fn bind(&self, arn: &str, managed: Option<&str>) -> Result<Bind, DeployError> {
        if !self.sni {
            let current = self.default_certificate().await?;
            if current.as_deref() == Some(arn) {
                return Ok(Bind::default());
            }
            self.set_default(arn).await?;
            return Ok(Bind {
                replaced: current,
                added: false,
            });
        }
        let listed = self.sni_certificates().await?;
        let added = !listed.iter().any(|a| a == arn);
        if added {
            self.client
                .add_listener_certificates()
                .listener_arn(&self.arn)
                .certificates(certificate(arn))
                .send()
                .await
                .map_err(|e| refused(&format!("elbv2 AddListenerCertificates {}", self.arn), &e))?;
            info!(listener = %self.arn, certificate = %arn, "elbv2: SNI certificate added");
        }
        // Only the certificate certpilot put there is replaced: others in the list belong
        // to other names.
        Ok(Bind {
            replaced: managed
                .filter(|m| *m != arn && listed.iter().any(|a| a == m))
                .map(str::to_owned),
            added,
        })
    }

    async fn release(&self, _arn: &str, replaced: &str) -> Result<(), DeployError> {
        if self.sni {
            self.remove(replaced).await?;
        }
        Ok(())
    }

    async fn restore(&self, arn: &str, bind: &Bind) -> Result<(), DeployError> {
        if self.sni {
            // The replaced certificate was never removed: dropping the new one is enough.
            if bind.added {
                self.remove(arn).await?;
            }
            Ok(())
        } else if let Some(replaced) = &bind.replaced {
            self.set_default(replaced).await
        } else {
            Ok(())
        }
    }
}
