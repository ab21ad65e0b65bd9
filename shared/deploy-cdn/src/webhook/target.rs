//! The `webhook` target: one signed POST per deploy or rollback, retried on the receiver's
//! 5xx and 429 and on timeouts, within a bounded time.

use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::ports::{
    Bound, DeployError, DeployMaterial, DeployRequest, DeployTarget, Deployed,
};
use certpilot_core::standard_webhooks::{Key, sign};
use reqwest::Method;
use serde_json::json;
use tracing::info;

use crate::http::Http;

/// Attempts per delivery, and the pause before each retry.
const PAUSES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

/// One webhook deployment unit.
pub struct WebhookTarget {
    http: Http,
    url: String,
    key: Key,
    send_key: bool,
    unit: String,
}

impl WebhookTarget {
    pub(crate) fn new(
        url: String,
        key: Key,
        send_key: bool,
        unit: String,
        ca_pem: Option<&str>,
    ) -> Result<Self, DeployError> {
        Ok(WebhookTarget {
            http: Http::trusting(ca_pem)?,
            url,
            key,
            send_key,
            unit,
        })
    }

    /// Delivers `material` as `kind` (`deploy`, `rollback`).
    async fn deliver(
        &self,
        kind: &str,
        id: &str,
        material: &DeployMaterial,
    ) -> Result<(), DeployError> {
        let mut body = json!({
            "type": kind,
            "certificate_id": id,
            "deployment": self.unit,
            "fingerprint": material.fingerprint,
            "not_after": certpilot_core::rfc3339(material.not_after),
            "chain_pem": material.chain_pem,
        });
        if self.send_key {
            let key = material.key.as_ref().ok_or_else(|| {
                DeployError::Config(format!(
                    "{}: send-key is on but the key is not at hand",
                    self.unit
                ))
            })?;
            body["key_pem"] = key
                .expose_str()
                .map_err(|_| DeployError::Config("the key is not PEM text".into()))?
                .into();
        }
        let raw = body.to_string();
        // The same delivery keeps its id across retries and runs, so receivers can dedupe.
        let message_id = format!(
            "{id}.{}.{kind}.{}",
            self.unit,
            &material.fingerprint[..16.min(material.fingerprint.len())]
        );
        let mut last = String::new();
        for attempt in 0..=PAUSES.len() {
            if attempt > 0 {
                tokio::time::sleep(PAUSES[attempt - 1]).await;
            }
            let ts = time::OffsetDateTime::now_utc().unix_timestamp();
            let headers = [
                ("content-type", "application/json".to_owned()),
                ("webhook-id", message_id.clone()),
                ("webhook-timestamp", ts.to_string()),
                (
                    "webhook-signature",
                    sign(&self.key, &message_id, ts, raw.as_bytes()),
                ),
            ];
            let value: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
            match self
                .http
                .send("webhook", Method::POST, &self.url, &headers, Some(&value))
                .await
            {
                Ok(a) if (200..300).contains(&a.status) => {
                    info!(unit = %self.unit, kind, fingerprint = %material.fingerprint, "webhook: accepted");
                    return Ok(());
                }
                Ok(a) if a.status == 429 || a.status >= 500 => {
                    last = format!("HTTP {}", a.status);
                }
                Ok(a) => {
                    let said: String = String::from_utf8_lossy(&a.body).chars().take(200).collect();
                    return Err(DeployError::Target(format!(
                        "webhook {}: the receiver refused the {kind}: HTTP {}: {}",
                        self.unit,
                        a.status,
                        said.trim()
                    )));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(DeployError::Unavailable(format!(
            "webhook {}: no receiver accepted the {kind} after {} attempts (last: {last})",
            self.unit,
            PAUSES.len() + 1
        )))
    }
}

#[async_trait]
impl DeployTarget for WebhookTarget {
    /// A receiver cannot be asked what it holds: what it last accepted (the handle, its
    /// fingerprint) stands for it, and the handshake with the endpoints is the proof.
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError> {
        Ok(match recorded {
            Some(fp) => Bound {
                certificates: vec![fp.to_owned()],
                fingerprints: vec![fp.to_owned()],
            },
            None => Bound::default(),
        })
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        self.deliver("deploy", request.id, request.certificate)
            .await?;
        Ok(Deployed {
            handle: Some(request.certificate.fingerprint.clone()),
            replaced: request.previous.map(|p| p.fingerprint.clone()),
            ..Deployed::default()
        })
    }

    async fn finish(&self, _deployed: &Deployed) -> Result<(), DeployError> {
        Ok(())
    }

    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        _deployed: Option<&Deployed>,
    ) -> Result<Option<String>, DeployError> {
        let Some(previous) = request.previous else {
            return Ok(None);
        };
        self.deliver("rollback", request.id, previous).await?;
        Ok(Some(previous.fingerprint.clone()))
    }
}
