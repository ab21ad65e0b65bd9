//! Citrix NetScaler (ADC) through NITRO: the certificate and key uploaded as files, the
//! certkey the virtual servers use pointed at them, the configuration saved.
//!
//! Settings: `nitro-url`, `credentials-secret` (`USER:PASSWORD` in the secret store),
//! `certkey`, `vserver` (bound when the certkey is created), `ca-pem` (the management
//! interface's CA), `save-config`.

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
use certpilot_core::ports::{DeployError, DeployTarget, SecretStore, TargetFactory};

pub use target::NetscalerTarget;

/// The `netscaler` kind, reading NITRO credentials from a secret store.
pub struct Kind {
    secrets: Arc<dyn SecretStore>,
}

impl Kind {
    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "netscaler",
            family: "cdn",
            summary: "a Citrix NetScaler (ADC) certkey through NITRO: files uploaded, the certkey updated (every bound virtual server follows), the configuration saved",
            settings: vec![
                Setting::required(
                    "nitro-url",
                    "the management address (https://NSIP; plain http only to this machine)",
                ),
                Setting::required(
                    "credentials-secret",
                    "the secret (deploy/NAME) holding the NITRO user as USER:PASSWORD",
                )
                .naming_a_secret(),
                Setting::required("certkey", "the certkey the virtual servers are bound to"),
                Setting::optional(
                    "vserver",
                    "the SSL virtual server to bind a certkey certpilot creates to",
                ),
                Setting::optional(
                    "ca-pem",
                    "PEM of the CA of the management interface's certificate",
                ),
                Setting::optional(
                    "save-config",
                    "save the running configuration after each change (default true)",
                )
                .of(ValueKind::Bool),
            ],
            default_verify_deadline: Duration::from_secs(60),
            permissions: vec![
                "a NITRO user whose command policy allows: add/rm system file, add/update/show ssl certKey, bind ssl vserver, save ns config",
            ],
            key_types: KeyType::ALL.to_vec(),
            key_delivery: KeyDelivery::InRequest,
            runs_in: RunsIn::Anywhere,
            binds: true,
            can_roll_back: true,
            serves_only_with: None,
            check: Some(|s| {
                let url = s.get("nitro-url").and_then(|v| v.as_str()).unwrap_or("");
                crate::check_api_url(url)?;
                let secret = s
                    .get("credentials-secret")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                crate::check_secret_name(secret)?;
                let certkey = s.get("certkey").and_then(|v| v.as_str()).unwrap_or("");
                let ok = certkey
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                    && certkey
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_#.:@=- ".contains(c));
                if !ok {
                    return Err((
                        certkey.to_owned(),
                        "a certkey name starts with a letter, digit or _ and holds only those and _#.:@=- and spaces".into(),
                    ));
                }
                if let Some(pem) = s.get("ca-pem").and_then(|v| v.as_str()) {
                    crate::http::roots(pem).map_err(|why| ("ca-pem".to_owned(), why))?;
                }
                Ok(())
            }),
        }
    }

    /// The kind as a registry entry.
    pub fn entry(secrets: Arc<dyn SecretStore>) -> (KindDescriptor, Arc<dyn TargetFactory>) {
        (Kind::descriptor(), Arc::new(Kind { secrets }))
    }
}

/// The settings the kind reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct NetscalerSettings {
    nitro_url: String,
    credentials_secret: String,
    certkey: String,
    vserver: Option<String>,
    ca_pem: Option<String>,
    save_config: Option<serde_json::Value>,
}

#[async_trait]
impl TargetFactory for Kind {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        let s: NetscalerSettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        let credentials = crate::credential(&self.secrets, &s.credentials_secret).await?;
        let (user, password) = credentials.split_once(':').ok_or_else(|| {
            DeployError::Config(format!(
                "{}: the secret {:?} holds USER:PASSWORD",
                unit.name, s.credentials_secret
            ))
        })?;
        let save = !matches!(&s.save_config, Some(serde_json::Value::Bool(false)))
            && !matches!(&s.save_config, Some(serde_json::Value::String(t)) if t == "false");
        Ok(Box::new(NetscalerTarget {
            nitro: client::Nitro::new(
                &s.nitro_url,
                user.to_owned(),
                password.to_owned(),
                s.ca_pem.as_deref(),
            )?,
            certkey: s.certkey,
            vserver: s.vserver,
            save,
        }))
    }
}
