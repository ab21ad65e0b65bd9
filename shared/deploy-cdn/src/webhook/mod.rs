//! A signed webhook, for systems certpilot does not know: the certificate and chain (the key
//! only when the deployment says so, and then only over HTTPS) POSTed as JSON, signed with the
//! Standard Webhooks scheme. The receiver's 2xx is acceptance; the handshake with the
//! deployment's endpoints is the proof, as for every kind.
//!
//! The body: `{"type": "deploy"|"rollback", "certificate_id", "deployment", "fingerprint",
//! "not_after", "chain_pem", "key_pem"?}`. Settings: `url`, `secret` (`deploy/NAME`, holding
//! the receiver's `whsec_…` key), `send-key`, `ca-pem` (a private CA the receiver's HTTPS
//! certificate chains to).

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

pub use target::WebhookTarget;

/// The `webhook` kind, reading signing keys from a secret store.
pub struct Kind {
    secrets: Arc<dyn SecretStore>,
}

impl Kind {
    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "webhook",
            family: "cdn",
            summary: "a signed HTTPS POST of the certificate and chain (and the key, with send-key) to a system certpilot does not know",
            settings: vec![
                Setting::required("url", "where to POST (https://; plain http only to this machine, and never with the key)"),
                Setting::required(
                    "secret",
                    "the secret (deploy/NAME) holding the receiver's Standard Webhooks key (whsec_…)",
                )
                .naming_a_secret(),
                Setting::optional(
                    "send-key",
                    "send the private key too (a receiver that serves the certificate needs it); HTTPS only",
                )
                .of(ValueKind::Bool),
                Setting::optional(
                    "ca-pem",
                    "PEM of the private CA the receiver's HTTPS certificate chains to, trusted besides the public roots",
                ),
            ],
            default_verify_deadline: Duration::from_secs(5 * 60),
            permissions: vec!["the receiver's signing key (whsec_…) in the secret store"],
            key_types: KeyType::ALL.to_vec(),
            key_delivery: KeyDelivery::InRequest,
            runs_in: RunsIn::Anywhere,
            // Endpoints are optional (a receiver that only files certificates away); with
            // them, the receiver must get the key to serve the certificate.
            binds: false,
            can_roll_back: true,
            serves_only_with: Some("send-key"),
            check: Some(|s| {
                let url = s.get("url").and_then(|v| v.as_str()).unwrap_or("");
                crate::check_api_url(url)?;
                let send_key = s.get("send-key").is_some_and(|v| v == &serde_json::Value::Bool(true) || v == "true");
                if send_key && !url.starts_with("https://") {
                    return Err((
                        url.to_owned(),
                        "the key travels only over HTTPS: use an https:// URL or leave send-key off".into(),
                    ));
                }
                let secret = s.get("secret").and_then(|v| v.as_str()).unwrap_or("");
                crate::check_secret_name(secret)?;
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
struct WebhookSettings {
    url: String,
    secret: String,
    #[serde(default, deserialize_with = "bool_or_text")]
    send_key: bool,
    ca_pem: Option<String>,
}

/// `true`, or `"true"` as a `--deploy` spec writes it.
fn bool_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b),
        serde_json::Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        other => Err(serde::de::Error::custom(format!(
            "send-key: {other} is not true or false"
        ))),
    }
}

use serde::Deserialize as _;

#[async_trait]
impl TargetFactory for Kind {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        let s: WebhookSettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        let secret = crate::credential(&self.secrets, &s.secret).await?;
        let key = certpilot_core::standard_webhooks::key(&secret).map_err(|e| {
            DeployError::Config(format!("{}: the secret {:?} {e}", unit.name, s.secret))
        })?;
        Ok(Box::new(WebhookTarget::new(
            s.url,
            key,
            s.send_key,
            unit.name.clone(),
            s.ca_pem.as_deref(),
        )?))
    }
}
