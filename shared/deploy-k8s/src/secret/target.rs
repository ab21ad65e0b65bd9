//! The `kubernetes-secret` target: one `kubernetes.io/tls` secret in one namespace of one
//! cluster (a unit of the deployment), applied server-side under certpilot's field manager
//! with labels and annotations that say which certificate and version it holds.
//!
//! A secret certpilot did not create is never touched unless the deployment says `adopt`;
//! one of another type is refused, since Kubernetes cannot change a secret's type. The
//! handle is `context/namespace/name#fingerprint`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use certpilot_core::model::certificate::split_chain;
use certpilot_core::ports::{
    Bound, DeployError, DeployMaterial, DeployRequest, DeployTarget, Deployed,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tracing::info;

use super::client::Secrets;

const TLS: &str = "kubernetes.io/tls";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const FINGERPRINT: &str = "certpilot.io/fingerprint";
const CERTIFICATE: &str = "certpilot.io/certificate-id";
const NOT_AFTER: &str = "certpilot.io/not-after";

/// One secret.
pub struct SecretTarget {
    pub(crate) secrets: Secrets,
    pub(crate) name: String,
    pub(crate) adopt: bool,
    /// Whether `ca.crt` holds the issuer's chain (for clients that verify against it).
    pub(crate) ca_crt: bool,
}

/// SHA-256 of the first certificate of `tls.crt`, hex.
fn fingerprint_of(secret: &Secret) -> Option<String> {
    let crt = secret.data.as_ref()?.get("tls.crt")?;
    let der = CertificateDer::pem_slice_iter(&crt.0).next()?.ok()?;
    Some(hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        der.as_ref(),
    )))
}

impl SecretTarget {
    fn handle(&self, fingerprint: &str) -> String {
        format!("{}/{}#{fingerprint}", self.secrets.at, self.name)
    }

    fn secret(&self, id: &str, material: &DeployMaterial) -> Result<Secret, DeployError> {
        let key = material.key.as_ref().ok_or_else(|| {
            DeployError::Config("kubernetes-secret: the certificate's key is needed".into())
        })?;
        let mut data = BTreeMap::from([
            (
                "tls.crt".to_owned(),
                ByteString(material.chain_pem.clone().into_bytes()),
            ),
            ("tls.key".to_owned(), ByteString(key.expose().to_vec())),
        ]);
        if self.ca_crt {
            data.insert(
                "ca.crt".to_owned(),
                ByteString(
                    split_chain(&material.chain_pem)
                        .map(|(_, issuers)| issuers)
                        .unwrap_or_default()
                        .into_bytes(),
                ),
            );
        }
        Ok(Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY.to_owned(),
                    "certpilot".to_owned(),
                )])),
                annotations: Some(BTreeMap::from([
                    (CERTIFICATE.to_owned(), id.to_owned()),
                    (FINGERPRINT.to_owned(), material.fingerprint.clone()),
                    (
                        NOT_AFTER.to_owned(),
                        certpilot_core::rfc3339(material.not_after),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some(TLS.to_owned()),
            data: Some(data),
            ..Secret::default()
        })
    }

    /// Applies `material` over what the namespace holds, after checking certpilot may.
    async fn install(
        &self,
        id: &str,
        material: &DeployMaterial,
    ) -> Result<Option<String>, DeployError> {
        let existing = self.secrets.get(&self.name).await?;
        let at = format!("secret {} in {}", self.name, self.secrets.at);
        if let Some(s) = &existing {
            let kind = s.type_.as_deref().unwrap_or("Opaque");
            if kind != TLS {
                return Err(DeployError::Target(format!(
                    "{at} is of type {kind}; Kubernetes cannot change a secret's type: delete it \
                     or name another secret-name"
                )));
            }
            let ours = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY))
                .is_some_and(|v| v == "certpilot");
            if !ours && !self.adopt {
                return Err(DeployError::Target(format!(
                    "{at} exists and certpilot did not create it; set adopt=true to take it over"
                )));
            }
            if fingerprint_of(s).as_deref() == Some(material.fingerprint.as_str()) {
                return Ok(None);
            }
        }
        self.secrets
            .apply(&self.name, &self.secret(id, material)?)
            .await?;
        info!(at = %self.secrets.at, secret = %self.name, fingerprint = %material.fingerprint, "kubernetes: secret applied");
        Ok(existing.as_ref().and_then(fingerprint_of))
    }
}

#[async_trait]
impl DeployTarget for SecretTarget {
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError> {
        let Some(secret) = self.secrets.get(&self.name).await? else {
            return Ok(Bound::default());
        };
        let fingerprint = fingerprint_of(&secret);
        Ok(Bound {
            certificates: recorded
                .map(str::to_owned)
                .or_else(|| fingerprint.as_deref().map(|f| self.handle(f)))
                .into_iter()
                .collect(),
            fingerprints: fingerprint.into_iter().collect(),
        })
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        let replaced = self.install(request.id, request.certificate).await?;
        Ok(Deployed {
            handle: Some(self.handle(&request.certificate.fingerprint)),
            replaced,
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
            // Nothing of certpilot's was there before: the secret stays as it is.
            return Ok(None);
        };
        self.install(request.id, previous).await?;
        Ok(Some(self.handle(&previous.fingerprint)))
    }
}
