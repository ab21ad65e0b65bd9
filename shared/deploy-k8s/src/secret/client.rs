//! One cluster's API through kube-rs: its kubeconfig (from the secret store, a file, or the
//! standard places) and one context, or an EKS cluster's endpoint and token; bounded in time.

use std::time::Duration;

use certpilot_core::ports::DeployError;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// How long connecting and each request may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// certpilot's field manager in server-side apply.
pub(crate) const FIELD_MANAGER: &str = "certpilot";

/// Where the kubeconfig comes from.
pub(crate) enum Source {
    /// Its text (from the secret store).
    Text(String),
    /// A file.
    File(std::path::PathBuf),
    /// `KUBECONFIG`, then `~/.kube/config`.
    Default,
    /// An EKS cluster's endpoint, CA and token (no kubeconfig).
    Eks(crate::eks::ClusterAccess),
}

/// A namespace's secrets in one cluster.
pub(crate) struct Secrets {
    api: Api<Secret>,
    pub(crate) at: String,
}

fn refused(at: &str, what: &str, e: &kube::Error) -> DeployError {
    let words = e.to_string();
    match e {
        kube::Error::Api(status) if status.code == 401 => DeployError::Target(format!(
            "{at}: {what}: the cluster did not accept certpilot's credentials: a token or certificate it does not know, or on EKS an IAM role without an access entry in the cluster ({words})"
        )),
        kube::Error::Api(status) if status.code == 403 => DeployError::Target(format!(
            "{at}: {what}: the cluster refused: certpilot's user needs get and patch on secrets in this namespace (list on namespaces for a selector) ({words})"
        )),
        kube::Error::Api(_) => DeployError::Target(format!("{at}: {what}: {words}")),
        _ => DeployError::Unavailable(format!("{at}: {what}: {words}")),
    }
}

/// The names of the namespaces of `context`'s cluster whose labels match `selector`.
pub(crate) async fn namespaces(
    source: &Source,
    context: &str,
    selector: &str,
) -> Result<Vec<String>, DeployError> {
    let client = client(source, context, context).await?;
    let api: Api<Namespace> = Api::all(client);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            refused(
                context,
                &format!("list namespaces matching {selector:?}"),
                &e,
            )
        })?;
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

/// A client of `context`'s cluster, bounded in time.
async fn client(source: &Source, context: &str, at: &str) -> Result<Client, DeployError> {
    let bad = |e: String| DeployError::Config(format!("{at}: the kubeconfig: {e}"));
    let kubeconfig = match source {
        Source::Text(t) => Kubeconfig::from_yaml(t).map_err(|e| bad(e.to_string()))?,
        Source::File(p) => Kubeconfig::read_from(p).map_err(|e| bad(e.to_string()))?,
        Source::Default => Kubeconfig::read().map_err(|e| bad(e.to_string()))?,
        Source::Eks(access) => {
            let mut config = Config::new(access.endpoint.parse().map_err(|e| {
                DeployError::Target(format!(
                    "{at}: the cluster's endpoint {:?}: {e}",
                    access.endpoint
                ))
            })?);
            config.root_cert = Some(access.ca.clone());
            config.auth_info.token = Some(access.token.clone().into());
            return bounded(config, at);
        }
    };
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| bad(format!("context {context:?}: {e}")))?;
    bounded(config, at)
}

/// A client of `config`, each connection and request bounded in time.
fn bounded(mut config: Config, at: &str) -> Result<Client, DeployError> {
    config.connect_timeout = Some(TIMEOUT);
    config.read_timeout = Some(TIMEOUT);
    config.write_timeout = Some(TIMEOUT);
    Client::try_from(config)
        .map_err(|e| DeployError::Config(format!("{at}: the cluster's client: {e}")))
}

impl Secrets {
    /// The secrets of `namespace` in the cluster of `context`.
    pub(crate) async fn connect(
        source: &Source,
        context: &str,
        namespace: &str,
    ) -> Result<Self, DeployError> {
        let at = format!("{context}/{namespace}");
        let client = client(source, context, &at).await?;
        Ok(Secrets {
            api: Api::namespaced(client, namespace),
            at,
        })
    }

    /// The secret `name`, if there is one.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Secret>, DeployError> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| refused(&self.at, &format!("get secret {name}"), &e))
    }

    /// Applies `secret` (server-side apply, certpilot's field manager, taking over the fields
    /// certpilot owns).
    pub(crate) async fn apply(&self, name: &str, secret: &Secret) -> Result<Secret, DeployError> {
        self.api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(secret),
            )
            .await
            .map_err(|e| refused(&self.at, &format!("apply secret {name}"), &e))
    }
}
