//! Akamai Certificate Provisioning System (CPS), third-party enrollments.
//!
//! Akamai generates and keeps the private key: certpilot takes the pending change's CSR
//! (starting a change when none is pending), has its ACME CA sign it, uploads the
//! certificate and chain, acknowledges the warnings policy allows, proves the change on
//! Akamai's staging network before acknowledging change management, and follows it to
//! production — each step in its own run. `edgegrid` signs every request.
//!
//! Settings: `enrollment-id`, `credentials-secret` (an `.edgerc` section in the secret
//! store), `staging-endpoints`, `allow-warnings`, `poll-interval`, `requests-per-minute`,
//! `api-url`.

mod client;
pub mod edgegrid;
mod target;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::model::certificate::{KeyType, TargetCsr};
use certpilot_core::model::deploy::Unit;
use certpilot_core::model::deploy_kind::{
    KeyDelivery, KindDescriptor, RunsIn, Setting, parse_duration, settings_as,
};
use certpilot_core::model::target::{ScanRequest, Target};
use certpilot_core::ports::{DeployError, DeployTarget, SecretStore, TargetCsrs, TargetFactory};
use time::OffsetDateTime;

pub use target::AkamaiTarget;

use crate::http::CallError;

/// How often a change is looked at when the deployment does not say.
const DEFAULT_POLL: Duration = Duration::from_secs(5 * 60);

/// The `akamai-cps` kind, reading API credentials from a secret store.
pub struct Kind {
    secrets: Arc<dyn SecretStore>,
}

/// `HOST[:PORT][=ADDRESS]`, comma-separated: the staging network's endpoints (the address
/// of Akamai's staging edge, e.g. from `dig +short HOST.edgekey-staging.net`).
fn staging_endpoints(text: &str) -> Result<Vec<ScanRequest>, (String, String)> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (target, address) = match e.split_once('=') {
                Some((t, a)) => (t, Some(a)),
                None => (e, None),
            };
            let bad = |why: String| (e.to_owned(), why);
            let mut request = ScanRequest::new(target.parse::<Target>().map_err(|err| {
                bad(format!(
                    "a staging endpoint is HOST[:PORT][=ADDRESS]: {err}"
                ))
            })?);
            if let Some(a) = address {
                request.connect_to = vec![a.trim().parse().map_err(|_| {
                    bad(format!(
                        "{a:?} is not an IP address (the staging edge's address)"
                    ))
                })?];
            }
            Ok(request)
        })
        .collect()
}

impl Kind {
    /// The kind, reading credentials from `secrets`.
    pub fn new(secrets: Arc<dyn SecretStore>) -> Self {
        Kind { secrets }
    }

    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "akamai-cps",
            family: "cdn",
            summary: "an Akamai CPS third-party enrollment: Akamai keeps the key, certpilot has its CSR signed, uploads the certificate, proves it on staging, follows it to production",
            settings: vec![
                Setting::required("enrollment-id", "the enrollment's number (cps list, or Control Center)"),
                Setting::required(
                    "credentials-secret",
                    "the secret (deploy/NAME) holding the API client's .edgerc section (client_secret, host, access_token, client_token)",
                )
                .naming_a_secret(),
                Setting::optional(
                    "staging-endpoints",
                    "HOST[:PORT][=ADDRESS],… of Akamai's staging network, proven before change management is acknowledged (needed when the enrollment tests on staging first)",
                ),
                Setting::optional(
                    "allow-warnings",
                    "warnings acknowledged without a person, by words they contain (e.g. CERTIFICATE_ADDED_TO_TRUST_CHAIN), comma-separated; others stop the deploy with a finding",
                ),
                Setting::optional("poll-interval", "how often a change in progress is looked at (default 5m)"),
                Setting::optional(
                    "requests-per-minute",
                    "the share of the account's CPS rate limit this deployment may use (default 35, all of it)",
                ),
                Setting::optional("api-url", "the API's base URL (default https:// and the credentials' host)"),
            ],
            default_verify_deadline: Duration::from_secs(10 * 60),
            permissions: vec![
                "API client: CPS API, READ-WRITE, on the enrollment's contract and group",
            ],
            // The algorithms of the keys Akamai makes for third-party CSRs.
            key_types: vec![KeyType::Rsa2048, KeyType::EcdsaP256],
            key_delivery: KeyDelivery::HeldByTarget,
            runs_in: RunsIn::Anywhere,
            binds: true,
            can_roll_back: false,
            serves_only_with: None,
            check: Some(|s| {
                let id = s.get("enrollment-id").map(|v| match v {
                    serde_json::Value::String(t) => t.clone(),
                    other => other.to_string(),
                });
                let id = id.unwrap_or_default();
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
                    return Err((id, "an enrollment id is a number".into()));
                }
                let secret = s.get("credentials-secret").and_then(|v| v.as_str()).unwrap_or("");
                crate::check_secret_name(secret)?;
                if let Some(t) = s.get("staging-endpoints").and_then(|v| v.as_str()) {
                    staging_endpoints(t)?;
                }
                if let Some(r) = s.get("requests-per-minute") {
                    let text = r.as_str().map_or_else(|| r.to_string(), str::to_owned);
                    if !text.trim().parse::<usize>().is_ok_and(|n| n > 0) {
                        return Err((text, "requests-per-minute is a number above 0".into()));
                    }
                }
                if let Some(p) = s.get("poll-interval").and_then(|v| v.as_str()) {
                    parse_duration(p).map_err(|e| (p.to_owned(), e))?;
                }
                if let Some(url) = s.get("api-url").and_then(|v| v.as_str()) {
                    crate::check_api_url(url)?;
                }
                Ok(())
            }),
        }
    }

    /// The kind as a registry entry.
    pub fn entry(secrets: Arc<dyn SecretStore>) -> (KindDescriptor, Arc<dyn TargetFactory>) {
        (Kind::descriptor(), Arc::new(Kind::new(secrets)))
    }

    async fn build(&self, unit: &Unit) -> Result<AkamaiTarget, DeployError> {
        let s: AkamaiSettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        let text = crate::credential(&self.secrets, &s.credentials_secret).await?;
        let (credentials, host) = client::parse_edgerc(&text).map_err(|e| {
            DeployError::Config(format!(
                "{}: the secret {:?}: {e}",
                unit.name, s.credentials_secret
            ))
        })?;
        let enrollment = match &s.enrollment_id {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(t) => t.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| DeployError::Config(format!("{}: enrollment-id is a number", unit.name)))?;
        let staging = match &s.staging_endpoints {
            Some(t) => staging_endpoints(t)
                .map_err(|(i, why)| DeployError::Config(format!("{i}: {why}")))?,
            None => vec![],
        };
        let poll = match &s.poll_interval {
            Some(p) => parse_duration(p).map_err(DeployError::Config)?,
            None => DEFAULT_POLL,
        };
        let per_minute = match &s.requests_per_minute {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as usize),
            Some(serde_json::Value::String(t)) => t.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(client::PER_MINUTE);
        Ok(AkamaiTarget {
            cps: client::Cps::new(
                credentials,
                &host,
                s.api_url.as_deref(),
                enrollment,
                per_minute,
            )?,
            staging,
            allow_warnings: s
                .allow_warnings
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect(),
            poll: time::Duration::try_from(poll).unwrap_or(time::Duration::minutes(5)),
        })
    }
}

/// The settings the kind reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct AkamaiSettings {
    enrollment_id: serde_json::Value,
    credentials_secret: String,
    staging_endpoints: Option<String>,
    allow_warnings: Option<String>,
    poll_interval: Option<String>,
    requests_per_minute: Option<serde_json::Value>,
    api_url: Option<String>,
}

/// The key type of a key Akamai made, by its algorithm's name.
fn key_type(algorithm: &str) -> Option<KeyType> {
    match algorithm.to_ascii_uppercase().as_str() {
        "RSA" => Some(KeyType::Rsa2048),
        "ECDSA" => Some(KeyType::EcdsaP256),
        _ => None,
    }
}

#[async_trait]
impl TargetFactory for Kind {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        Ok(Box::new(self.build(unit).await?))
    }

    async fn csrs(&self, id: &str, unit: &Unit) -> Result<TargetCsrs, DeployError> {
        let target = self.build(unit).await?;
        let cps = &target.cps;
        let later = |detail: String| TargetCsrs::NotYet {
            check_after: OffsetDateTime::now_utc() + target.poll,
            detail,
        };
        let look = async {
            let enrollment = cps.enrollment().await?;
            if enrollment["validationType"].as_str() != Some("third-party") {
                return Err(CallError::Failed(DeployError::Config(format!(
                    "Akamai enrollment {} is validated by {}, not third-party: certpilot can \
                     only sign the CSRs of third-party enrollments",
                    cps.enrollment,
                    enrollment["validationType"].as_str().unwrap_or("nothing")
                ))));
            }
            let Some(change) = client::Cps::pending_change(&enrollment) else {
                cps.force_renewal(&enrollment).await?;
                tracing::info!(%id, enrollment = cps.enrollment, "akamai: renewal change started");
                return Ok(later(format!(
                    "a new change of Akamai enrollment {} was started; Akamai is making its key \
                     and CSR",
                    cps.enrollment
                )));
            };
            let status = cps.change(change).await?;
            if status.state == "error" {
                cps.cancel(change).await?;
                return Ok(later(format!(
                    "Akamai's change {change} had failed ({}); it was cancelled and a new one \
                     starts at the next look",
                    status.error.unwrap_or(status.status)
                )));
            }
            if status.status != "wait-upload-third-party" {
                return Ok(later(format!(
                    "Akamai's change {change} of enrollment {} is at {}",
                    cps.enrollment, status.status
                )));
            }
            let mut csrs = vec![];
            for (algorithm, pem) in cps.csrs(change).await? {
                let key_type = key_type(&algorithm).ok_or_else(|| {
                    CallError::Failed(DeployError::Target(format!(
                        "Akamai offers a CSR for a {algorithm} key, which certpilot does not know"
                    )))
                })?;
                csrs.push(TargetCsr {
                    key_type,
                    csr_pem: pem,
                });
            }
            Ok(TargetCsrs::Ready(csrs))
        };
        match look.await {
            Ok(c) => Ok(c),
            Err(CallError::RateLimited { until, .. }) => Ok(TargetCsrs::NotYet {
                check_after: until,
                detail: "Akamai's rate limit for the account is used up".into(),
            }),
            Err(CallError::Failed(e)) => Err(e),
        }
    }
}
