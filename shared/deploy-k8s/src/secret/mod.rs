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
//! `KUBECONFIG`, then `~/.kube/config`), `adopt`, `ca-crt`.

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

pub use target::SecretTarget;

/// The `kubernetes-secret` kind, reading kubeconfigs from a secret store when told to.
pub struct Kind {
    secrets: Arc<dyn SecretStore>,
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
    /// The kind, reading kubeconfigs from `secrets`.
    pub fn new(secrets: Arc<dyn SecretStore>) -> Self {
        Kind { secrets }
    }

    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "kubernetes-secret",
            family: "kubernetes",
            summary: "a kubernetes.io/tls secret in each cluster and namespace the deployment's units name, applied server-side under certpilot's field manager",
            settings: vec![
                Setting::required("secret-name", "the secret's name (tls.crt, tls.key)"),
                Setting::required("context", "the kubeconfig context of the cluster (per unit)"),
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
    pub fn entry(secrets: Arc<dyn SecretStore>) -> (KindDescriptor, Arc<dyn TargetFactory>) {
        (Kind::descriptor(), Arc::new(Kind::new(secrets)))
    }
}

/// The settings the kind reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct SecretSettings {
    secret_name: String,
    context: String,
    namespace: Option<String>,
    namespace_selector: Option<String>,
    kubeconfig_secret: Option<String>,
    kubeconfig: Option<std::path::PathBuf>,
    #[serde(default)]
    adopt: bool,
    #[serde(default)]
    ca_crt: bool,
}

impl Kind {
    /// Where the unit's kubeconfig comes from.
    async fn source(&self, s: &SecretSettings) -> Result<client::Source, DeployError> {
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
            secrets: client::Secrets::connect(&source, &s.context, &namespace).await?,
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
        let namespaces = client::namespaces(&source, &s.context, selector).await?;
        if namespaces.is_empty() {
            return Err(DeployError::Target(format!(
                "{}: no namespace of {} matches {selector:?}",
                unit.name, s.context
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
