//! Cloudflare custom certificates (`sni_custom`), uploaded with their key through the API
//! and replaced in place on renewal.
//!
//! Settings: `zone-id`, `token-secret` (an API token with Zone › SSL and Certificates › Edit,
//! in the secret store), `bundle-method`, `api-url`.

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

pub use client::DEFAULT_API;
pub use target::CloudflareTarget;

/// The `cloudflare` kind, reading tokens from a secret store.
pub struct Kind {
    secrets: Arc<dyn SecretStore>,
}

const BUNDLE_METHODS: &[&str] = &["ubiquitous", "optimal", "force"];

impl Kind {
    /// The kind, reading tokens from `secrets`.
    pub fn new(secrets: Arc<dyn SecretStore>) -> Self {
        Kind { secrets }
    }

    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "cloudflare",
            family: "cdn",
            summary: "a Cloudflare zone's custom certificate (sni_custom), replaced in place on renewal",
            settings: vec![
                Setting::required("zone-id", "the zone's id (32 hex digits, on the zone's overview page)"),
                Setting::required(
                    "token-secret",
                    "the secret (deploy/NAME) holding an API token with Zone › SSL and Certificates › Edit",
                )
                .naming_a_secret(),
                Setting::optional(
                    "bundle-method",
                    "how Cloudflare builds the chain: ubiquitous (most compatible), optimal, force (as uploaded)",
                )
                .of(ValueKind::OneOf(BUNDLE_METHODS)),
                Setting::optional("api-url", "the API's base URL (default https://api.cloudflare.com/client/v4)"),
            ],
            default_verify_deadline: Duration::from_secs(5 * 60),
            permissions: vec!["API token: Zone › SSL and Certificates › Edit, on the zone"],
            // Cloudflare takes RSA of 2048 bits or more and ECDSA keys.
            key_types: KeyType::ALL.to_vec(),
            key_delivery: KeyDelivery::InRequest,
            runs_in: RunsIn::Anywhere,
            binds: true,
            can_roll_back: true,
            serves_only_with: None,
            check: Some(|s| {
                let zone = s.get("zone-id").and_then(|v| v.as_str()).unwrap_or("");
                if zone.len() != 32 || !zone.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err((zone.to_owned(), "a zone id is 32 hex digits".into()));
                }
                crate::check_vendor_settings(s)
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
struct CloudflareSettings {
    zone_id: String,
    token_secret: String,
    bundle_method: Option<String>,
    api_url: Option<String>,
}

#[async_trait]
impl TargetFactory for Kind {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        let s: CloudflareSettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        let token = crate::credential(&self.secrets, &s.token_secret).await?;
        let client = client::Cloudflare::new(
            s.api_url.as_deref().unwrap_or(DEFAULT_API),
            &s.zone_id,
            token,
        )?;
        Ok(Box::new(CloudflareTarget::new(
            client,
            s.bundle_method.unwrap_or_else(|| "ubiquitous".into()),
        )))
    }
}
