//! The `kubernetes-secret` kind: the seeds' "issue once, sync everywhere" without kubed. A
//! deployment names the secret and lists its units, one per cluster and namespace:
//!
//! ```yaml
//! name: k8s
//! kind: kubernetes-secret
//! settings: {secret-name: shop-tls, kubeconfig-secret: deploy/kubeconfig}
//! units:
//!   - {name: eu.shop, settings: {context: prod-eu, namespace: shop}}
//!   - {name: us.shop, settings: {context: prod-us, namespace: shop}}
//! endpoints: [shop.example.com:443]
//! ```
//!
//! Settings: `secret-name`, `context`, `namespace`, `kubeconfig-secret` (the kubeconfig in
//! the secret store: the deploy function has no file), `kubeconfig` (a file; default
//! `KUBECONFIG`, then `~/.kube/config`), `adopt`, `ca-crt`. Instead of `context`, a unit
//! may name `eks-cluster` (a name or ARN): no kubeconfig then, the cluster is reached with
//! the standard AWS configuration (or `role-arn`'s), as the deploy function on Lambda does.

mod client;
mod target;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::Unit;
use certpilot_core::model::deploy_kind::{
    KeyDelivery, KindDescriptor, RunsIn, Setting, ValueKind, settings_as,
};
use certpilot_core::ports::{DeployError, DeployTarget, SecretStore, SecretVersion, TargetFactory};

use crate::eks::AwsConfigs;

pub use target::SecretTarget;

/// The `kubernetes-secret` kind, reading kubeconfigs from a secret store when told to, and
/// reaching EKS clusters with AWS configurations.
pub struct Kind {
    secrets: Arc<dyn SecretStore>,
    aws: Arc<dyn AwsConfigs>,
}

/// A DNS-1123 name (secrets, namespaces): lowercase letters, digits, '-', '.'.
fn dns_name(what: &str, v: &str) -> Result<(), (String, String)> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err((
            v.to_owned(),
            format!(
                "a {what} is lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ),
        ))
    }
}

impl Kind {
    /// The kind, reading kubeconfigs from `secrets` and reaching EKS with `aws`.
    pub fn new(secrets: Arc<dyn SecretStore>, aws: Arc<dyn AwsConfigs>) -> Self {
        Kind { secrets, aws }
    }

    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "kubernetes-secret",
            family: "kubernetes",
            summary: "a kubernetes.io/tls secret in each cluster and namespace the deployment's units name, applied server-side under certpilot's field manager",
            settings: vec![
                Setting::required("secret-name", "the secret's name (tls.crt, tls.key)"),
                Setting::optional("context", "the kubeconfig context of the cluster (per unit)"),
                Setting::optional(
                    "eks-cluster",
                    "instead of context: an EKS cluster's name or ARN, reached with the AWS configuration (the deploy function's role), no kubeconfig",
                ),
                Setting::optional("role-arn", "with eks-cluster: an IAM role to assume first (another account)"),
                Setting::optional("namespace", "the namespace (per unit)"),
                Setting::optional(
                    "namespace-selector",
                    "instead of namespace: every namespace whose labels match (team=shop,tier!=dev), each a unit",
                ),
                Setting::optional(
                    "kubeconfig-secret",
                    "the secret (deploy/NAME) holding the kubeconfig (needed in the deploy function, which has no file)",
                )
                .naming_a_secret(),
                Setting::optional("kubeconfig", "a kubeconfig file (default KUBECONFIG, then ~/.kube/config)")
                    .of(ValueKind::Path),
                Setting::optional("adopt", "take over a secret of that name certpilot did not create")
                    .of(ValueKind::Bool),
                Setting::optional("ca-crt", "also write the issuer's chain as ca.crt")
                    .of(ValueKind::Bool),
            ],
            default_verify_deadline: Duration::from_secs(3 * 60),
            permissions: vec![
                "RBAC in each namespace: get and patch on the secret, create on secrets until it exists (a Role bound to certpilot's user or service account)",
                "with namespace-selector: list on namespaces (a ClusterRole)",
                "with eks-cluster: eks:DescribeCluster on the cluster, and an EKS access entry mapping certpilot's IAM role to the Kubernetes user or group those RBAC bindings name",
            ],
            key_types: KeyType::ALL.to_vec(),
            key_delivery: KeyDelivery::InRequest,
            runs_in: RunsIn::Anywhere,
            binds: true,
            can_roll_back: true,
            serves_only_with: None,
            check: Some(|s| {
                let name = s.get("secret-name").and_then(|v| v.as_str()).unwrap_or("");
                dns_name("secret name", name)?;
                match (
                    s.get("context").and_then(|v| v.as_str()),
                    s.get("eks-cluster").and_then(|v| v.as_str()),
                ) {
                    (Some(_), None) => {}
                    (None, Some(cluster)) => {
                        crate::eks::parse_cluster(cluster).map_err(|e| (cluster.to_owned(), e))?;
                    }
                    (Some(_), Some(cluster)) => {
                        return Err((
                            cluster.to_owned(),
                            "give context or eks-cluster, not both".into(),
                        ));
                    }
                    (None, None) => {
                        return Err((
                            String::new(),
                            "name the cluster: context=NAME (a kubeconfig context), or eks-cluster=NAME".into(),
                        ));
                    }
                }
                if let Some(role) = s.get("role-arn").and_then(|v| v.as_str())
                    && (!role.starts_with("arn:") || !role.contains(":role/"))
                {
                    return Err((
                        role.to_owned(),
                        "a role is an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)".into(),
                    ));
                }
                match (
                    s.get("namespace").and_then(|v| v.as_str()),
                    s.get("namespace-selector").and_then(|v| v.as_str()),
                ) {
                    (Some(ns), None) => dns_name("namespace", ns)?,
                    (None, Some(selector)) if !selector.trim().is_empty() => {}
                    (Some(_), Some(selector)) => {
                        return Err((
                            selector.to_owned(),
                            "give namespace or namespace-selector, not both".into(),
                        ));
                    }
                    _ => {
                        return Err((
                            String::new(),
                            "name the namespace: namespace=NAME, or namespace-selector=LABEL=VALUE".into(),
                        ));
                    }
                }
                if let Some(secret) = s.get("kubeconfig-secret").and_then(|v| v.as_str())
                    && !secret.starts_with("deploy/")
                {
                    return Err((
                        secret.to_owned(),
                        "name a secret under deploy/, stored with `certpilot secrets set deploy/NAME --from-file FILE`".into(),
                    ));
                }
                Ok(())
            }),
        }
    }

    /// The kind as a registry entry.
    pub fn entry(
        secrets: Arc<dyn SecretStore>,
        aws: Arc<dyn AwsConfigs>,
    ) -> (KindDescriptor, Arc<dyn TargetFactory>) {
        (Kind::descriptor(), Arc::new(Kind::new(secrets, aws)))
    }
}

/// The settings the kind reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SecretSettings {
    secret_name: String,
    context: Option<String>,
    eks_cluster: Option<String>,
    role_arn: Option<String>,
    namespace: Option<String>,
    namespace_selector: Option<String>,
    kubeconfig_secret: Option<String>,
    kubeconfig: Option<std::path::PathBuf>,
    #[serde(default)]
    adopt: bool,
    #[serde(default)]
    ca_crt: bool,
}

impl SecretSettings {
    /// The cluster as messages name it: its context, or `eks:NAME`.
    fn cluster(&self) -> String {
        match (&self.context, &self.eks_cluster) {
            (Some(context), _) => context.clone(),
            (None, Some(eks)) => format!("eks:{eks}"),
            (None, None) => String::new(),
        }
    }
}

impl Kind {
    /// How the unit's cluster is reached: an EKS cluster's endpoint and token, or a
    /// kubeconfig.
    async fn source(&self, s: &SecretSettings) -> Result<client::Source, DeployError> {
        if let Some(cluster) = &s.eks_cluster {
            return Ok(client::Source::Eks(
                crate::eks::access(self.aws.as_ref(), cluster, s.role_arn.as_deref()).await?,
            ));
        }
        Ok(match (&s.kubeconfig_secret, &s.kubeconfig) {
            (Some(name), _) => {
                let (_, value) = self
                    .secrets
                    .get(name, &SecretVersion::Current)
                    .await?
                    .ok_or_else(|| {
                        DeployError::Config(format!(
                            "the secret {name:?} is not in the secret store; store the kubeconfig with `certpilot secrets set {name} --from-file FILE`"
                        ))
                    })?;
                client::Source::Text(
                    value
                        .expose_str()
                        .map_err(|_| {
                            DeployError::Config(format!("the secret {name:?} is not text"))
                        })?
                        .to_owned(),
                )
            }
            (None, Some(path)) => client::Source::File(path.clone()),
            (None, None) => client::Source::Default,
        })
    }
}

#[async_trait]
impl TargetFactory for Kind {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        let s: SecretSettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        let namespace = s
            .namespace
            .clone()
            .ok_or_else(|| DeployError::Config(format!("{}: no namespace named", unit.name)))?;
        let source = self.source(&s).await?;
        Ok(Box::new(SecretTarget {
            secrets: client::Secrets::connect(&source, &s.cluster(), &namespace).await?,
            name: s.secret_name,
            adopt: s.adopt,
            ca_crt: s.ca_crt,
        }))
    }

    /// With `namespace-selector`: one unit per namespace of the cluster whose labels match
    /// (named `UNIT.NAMESPACE`), listed on every run so a namespace labelled later gets the
    /// secret on the next.
    async fn units(&self, unit: &Unit) -> Result<Vec<Unit>, DeployError> {
        let s: SecretSettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        let Some(selector) = s
            .namespace_selector
            .as_deref()
            .filter(|_| s.namespace.is_none())
        else {
            return Ok(vec![unit.clone()]);
        };
        let source = self.source(&s).await?;
        let namespaces = client::namespaces(&source, &s.cluster(), selector).await?;
        if namespaces.is_empty() {
            return Err(DeployError::Target(format!(
                "{}: no namespace of {} matches {selector:?}",
                unit.name,
                s.cluster()
            )));
        }
        Ok(namespaces
            .into_iter()
            .map(|ns| {
                let mut settings = unit.settings.clone();
                settings.remove("namespace-selector");
                settings.insert("namespace".into(), ns.clone().into());
                Unit {
                    name: format!("{}.{ns}", unit.name),
                    settings,
                    ..unit.clone()
                }
            })
            .collect())
    }
}
