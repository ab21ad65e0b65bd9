//! The `ssm-fleet` kind: PEM files on every EC2 instance its tags choose, written by an SSM
//! Run Command script, then a reload — the `files` kind for a fleet certpilot cannot log in
//! to:
//!
//! ```text
//! certpilot certificates add shop.example.com --deploy \
//!   'ssm-fleet:region=eu-west-1,tags=Role=web;Env=prod,dir=/etc/ssl/shop,reload="systemctl reload nginx"'
//! ```
//!
//! Each run asks SSM which managed instances carry the tags (`DescribeInstanceInformation`);
//! each instance is a unit of the deployment, recorded and proven on its own at its private
//! address. The certificate and key go to the instance through Secrets Manager: certpilot
//! writes them as a version of the secret `{bundle-prefix}{certificate id}` in the fleet's
//! region, and the script reads that version with the instance's role — never through the
//! command's parameters, which SSM keeps in the command history for anyone with
//! `ssm:ListCommands`. The script ([`script`]) lays the files out as the `files` kind does
//! (`DIR` a symlink into `DIR.versions/`), switches `DIR` with one rename, reloads, and says
//! what it did; `GetCommandInvocation` is followed per instance across runs.

mod script;
mod target;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ssm::types::InstanceInformationStringFilter;
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::Unit;
use certpilot_core::model::deploy_kind::{KeyDelivery, KindDescriptor, RunsIn, Setting, ValueKind};
use certpilot_core::ports::{DeployError, DeployTarget, TargetFactory};
use tracing::info;

use crate::AwsDeployTargets;
pub use target::InstanceTarget;

/// The secret name prefix of the bundles when the deployment names none.
pub const BUNDLE_PREFIX: &str = "certpilot-deploy/";

/// The `ssm-fleet` kind.
pub struct Kind {
    aws: Arc<AwsDeployTargets>,
}

/// `KEY=VALUE` pairs separated by `;` (or `,` in a file's setting).
fn tags(text: &str) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<_> = text
        .split([';', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            }
            _ => Err(format!(
                "{p:?} is not KEY=VALUE; tags are KEY=VALUE pairs separated by ';'"
            )),
        })
        .collect::<Result<_, _>>()?;
    if pairs.is_empty() {
        return Err("name at least one KEY=VALUE tag".into());
    }
    Ok(pairs)
}

/// Whether `id` looks like an instance id (`i-` and hex, or a managed node's `mi-`).
fn instance_id(id: &str) -> bool {
    let hex = id.strip_prefix("i-").or_else(|| id.strip_prefix("mi-"));
    hex.is_some_and(|h| (8..=17).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit()))
}

impl Kind {
    /// The kind, reaching SSM and Secrets Manager through `aws`'s configurations.
    pub fn entry(aws: Arc<AwsDeployTargets>) -> (KindDescriptor, Arc<dyn TargetFactory>) {
        (Kind::descriptor(), Arc::new(Kind { aws }))
    }

    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "ssm-fleet",
            family: "aws",
            summary: "PEM files on each EC2 instance the tags choose, written by an SSM Run Command script that reads them from Secrets Manager, then a reload; each instance a unit",
            settings: vec![
                Setting::required("region", "the fleet's region"),
                Setting::optional(
                    "tags",
                    "KEY=VALUE pairs separated by ';': every managed instance carrying them all",
                ),
                Setting::optional("instance-id", "one instance instead of tags"),
                Setting::required(
                    "dir",
                    "DIR on each instance ({instance-id} stands for the instance's id)",
                )
                .of(ValueKind::Path),
                Setting::optional("reload", "run on the instance once DIR holds the new files")
                    .of(ValueKind::Command),
                Setting::optional(
                    "port",
                    "the TLS port proven at each instance's private address (443)",
                ),
                Setting::optional(
                    "bundle-prefix",
                    "the Secrets Manager name prefix of the secrets the instances read (certpilot-deploy/)",
                ),
                Setting::optional(
                    "role-arn",
                    "an IAM role to assume for this fleet (another account)",
                ),
            ],
            default_verify_deadline: Duration::from_secs(2 * 60),
            permissions: vec![
                "ssm:DescribeInstanceInformation",
                "ssm:SendCommand (document AWS-RunShellScript, instances with the tags)",
                "ssm:GetCommandInvocation",
                "secretsmanager:CreateSecret, secretsmanager:PutSecretValue, secretsmanager:TagResource on BUNDLE-PREFIX*",
                "the instances' role: secretsmanager:GetSecretValue on BUNDLE-PREFIX* (and kms:Decrypt with a customer key)",
            ],
            key_types: KeyType::ALL.to_vec(),
            key_delivery: KeyDelivery::SecretReference,
            runs_in: RunsIn::Anywhere,
            binds: false,
            can_roll_back: true,
            serves_only_with: None,
            check: Some(|s| {
                let text = |k: &str| s.get(k).and_then(|v| v.as_str());
                crate::check_common(s, text("region").unwrap_or(""))?;
                match (text("tags"), text("instance-id")) {
                    (Some(t), _) => {
                        tags(t).map_err(|e| (t.to_owned(), e))?;
                    }
                    (None, Some(id)) if instance_id(id) => {}
                    (None, Some(id)) => {
                        return Err((
                            id.to_owned(),
                            "not an instance id (i-0123456789abcdef0)".into(),
                        ));
                    }
                    (None, None) => {
                        return Err((
                            String::new(),
                            "name the instances: tags=KEY=VALUE;… or instance-id=i-…".into(),
                        ));
                    }
                }
                if let Some(port) = text("port")
                    && port.parse::<u16>().map_or(true, |p| p == 0)
                {
                    return Err((port.to_owned(), "a port is 1 to 65535".into()));
                }
                if let Some(prefix) = text("bundle-prefix")
                    && !prefix
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
                {
                    return Err((
                        prefix.to_owned(),
                        "a Secrets Manager name holds letters, digits and /_+=.@- only".into(),
                    ));
                }
                Ok(())
            }),
        }
    }
}

#[async_trait]
impl TargetFactory for Kind {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        let region = crate::need(unit, "region")?;
        let instance = unit.text("instance-id").ok_or_else(|| {
            DeployError::Config(format!(
                "{}: no instance: an ssm-fleet unit is one instance its tags found",
                unit.name
            ))
        })?;
        let config = self.aws.config(unit.text("role-arn"), region).await;
        Ok(Box::new(InstanceTarget {
            ssm: aws_sdk_ssm::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            instance: instance.to_owned(),
            region: region.to_owned(),
            dir: crate::need(unit, "dir")?.replace("{instance-id}", instance),
            reload: unit
                .text("reload")
                .map(|r| r.replace("{instance-id}", instance)),
            bundle_prefix: unit
                .text("bundle-prefix")
                .unwrap_or(BUNDLE_PREFIX)
                .to_owned(),
        }))
    }

    /// One unit per managed instance carrying the tags, named by its id and proven at its
    /// private address (a unit naming `instance-id` is that instance).
    async fn units(&self, unit: &Unit) -> Result<Vec<Unit>, DeployError> {
        if unit.text("instance-id").is_some() {
            return Ok(vec![unit.clone()]);
        }
        let region = crate::need(unit, "region")?;
        let wanted = tags(crate::need(unit, "tags")?)
            .map_err(|e| DeployError::Config(format!("{}: tags: {e}", unit.name)))?;
        let port: u16 = unit
            .text("port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(443);
        let config = self.aws.config(unit.text("role-arn"), region).await;
        let ssm = aws_sdk_ssm::Client::new(&config);
        let filters: Vec<InstanceInformationStringFilter> = wanted
            .iter()
            .map(|(k, v)| {
                InstanceInformationStringFilter::builder()
                    .key(format!("tag:{k}"))
                    .values(v)
                    .build()
                    .map_err(|e| DeployError::Config(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let mut units = Vec::new();
        let mut token = None;
        loop {
            let page = ssm
                .describe_instance_information()
                .set_filters(Some(filters.clone()))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| crate::refused("ssm DescribeInstanceInformation", &e))?;
            for info in page.instance_information_list() {
                let Some(id) = info.instance_id() else {
                    continue;
                };
                let mut settings = unit.settings.clone();
                settings.insert("instance-id".into(), id.into());
                let endpoints = match info.ip_address() {
                    Some(ip) => {
                        let target = if ip.contains(':') {
                            format!("[{ip}]:{port}")
                        } else {
                            format!("{ip}:{port}")
                        };
                        vec![target.parse().map_err(|e| {
                            DeployError::Target(format!("instance {id}: its address {ip:?}: {e}"))
                        })?]
                    }
                    None => Vec::new(),
                };
                units.push(Unit {
                    name: id.to_owned(),
                    kind: unit.kind.clone(),
                    settings,
                    endpoints,
                });
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        if units.is_empty() {
            return Err(DeployError::Target(format!(
                "{}: no instance managed by SSM in {region} carries the tags {}; check the tags and that the SSM agent runs there",
                unit.name,
                wanted
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";")
            )));
        }
        units.sort_by(|a, b| a.name.cmp(&b.name));
        info!(deployment = %unit.name, instances = units.len(), "ssm: fleet found");
        Ok(units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_pairs_and_instance_ids_are_checked() {
        assert_eq!(
            tags("Role=web; Env=prod").unwrap(),
            vec![("Role".into(), "web".into()), ("Env".into(), "prod".into())]
        );
        assert!(tags("Role").unwrap_err().contains("KEY=VALUE"));
        assert!(tags(" ; ").is_err());
        assert!(instance_id("i-0123456789abcdef0"));
        assert!(instance_id("mi-0123456789abcdef0"));
        assert!(!instance_id("i-xyz"));
    }
}
