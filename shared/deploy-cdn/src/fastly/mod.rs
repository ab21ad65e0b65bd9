//! Fastly custom TLS certificates: the private key uploaded first, then the certificate,
//! activated on each of its names; replaced in place on renewal when Fastly allows it.
//!
//! Settings: `token-secret` (a Fastly API token in the secret store), `configuration-id`
//! (the TLS configuration new activations use; the account's default otherwise), `api-url`.

mod client;
mod target;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::Unit;
use certpilot_core::model::deploy_kind::{
    KeyDelivery, KindDescriptor, RunsIn, Setting, settings_as,
};
use certpilot_core::ports::{DeployError, DeployTarget, SecretStore, TargetFactory};

pub use client::DEFAULT_API;
pub use target::FastlyTarget;

/// The key types Fastly accepts for certificates it is given: "256-bit or 384-bit ECDSA
/// keys or 2048-bit RSA keys" (its guide to uploading your own certificates). The API
/// reference still says RSA only, which predates ECDSA support; larger RSA keys are refused.
pub(crate) const ACCEPTED_KEYS: &[KeyType] =
    &[KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048];

/// The `fastly` kind, reading tokens from a secret store.
pub struct Kind {
    secrets: Arc<dyn SecretStore>,
}

impl Kind {
    /// The kind, reading tokens from `secrets`.
    pub fn new(secrets: Arc<dyn SecretStore>) -> Self {
        Kind { secrets }
    }

    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "fastly",
            family: "cdn",
            summary: "a Fastly custom TLS certificate activated on each of its names, replaced in place on renewal",
            settings: vec![
                Setting::required(
                    "token-secret",
                    "the secret (deploy/NAME) holding a Fastly API token (global scope, of a user with TLS management permission)",
                )
                .naming_a_secret(),
                Setting::optional(
                    "configuration-id",
                    "the TLS configuration new activations use (default: the account's default configuration)",
                ),
                Setting::optional("api-url", "the API's base URL (default https://api.fastly.com)"),
            ],
            default_verify_deadline: Duration::from_secs(5 * 60),
            permissions: vec![
                "API token: global scope, of a user with the TLS management permission (or a superuser)",
            ],
            key_types: ACCEPTED_KEYS.to_vec(),
            key_delivery: KeyDelivery::InRequest,
            runs_in: RunsIn::Anywhere,
            binds: true,
            can_roll_back: true,
            serves_only_with: None,
            check: Some(|s| {
                crate::check_vendor_settings(s)?;
                if let Some(c) = s.get("configuration-id").and_then(|v| v.as_str())
                    && (c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric()))
                {
                    return Err((c.to_owned(), "a TLS configuration id is letters and digits".into()));
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
struct FastlySettings {
    token_secret: String,
    configuration_id: Option<String>,
    api_url: Option<String>,
}

#[async_trait]
impl TargetFactory for Kind {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        let s: FastlySettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        let token = crate::credential(&self.secrets, &s.token_secret).await?;
        let client = client::Fastly::new(s.api_url.as_deref().unwrap_or(DEFAULT_API), token)?;
        Ok(Box::new(FastlyTarget::new(client, s.configuration_id)))
    }
}
