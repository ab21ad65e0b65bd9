//! The `fastly` target: the deployment's names served by one Fastly custom certificate.
//!
//! A renewal that covers the same names or more replaces the certificate in place (`PATCH`:
//! the id and every activation stay). One that drops a name cannot (Fastly refuses), so the
//! new certificate is uploaded beside the old one and each domain's activation is moved to
//! it; only once the edges are proven to serve it does `finish` drop the activations of the
//! names no longer covered and delete the old certificate, then every private key
//! certpilot uploaded that no certificate uses any more.
//!
//! The handle is `id#fingerprint#serial`: Fastly never gives the certificate back, but it
//! gives its serial number, so what the handle claims is checked against what Fastly holds.
//! Every step finds what an earlier, interrupted run did (the new certificate by its
//! serial, activations by domain), so a deploy cut short by the rate limit resumes.

use std::sync::Mutex;

use async_trait::async_trait;
use certpilot_core::ports::{
    Bound, DeployError, DeployMaterial, DeployRequest, DeployTarget, Deployed,
};
use tracing::info;

use super::ACCEPTED_KEYS;
use super::client::{Fastly, FastlyCertificate};
use crate::http::{CallError, patiently};

/// The name prefix of the private keys certpilot uploads (the only ones it deletes).
const KEY_PREFIX: &str = "certpilot-";

/// One Fastly deployment unit.
pub struct FastlyTarget {
    client: Fastly,
    configuration: Option<String>,
    resolved_configuration: Mutex<Option<String>>,
}

/// A handle's parts.
struct Handle<'a> {
    id: &'a str,
    fingerprint: &'a str,
    serial: &'a str,
}

fn handle(id: &str, fingerprint: &str, serial: &str) -> String {
    format!("{id}#{fingerprint}#{serial}")
}

fn split(h: &str) -> Handle<'_> {
    let mut parts = h.splitn(3, '#');
    Handle {
        id: parts.next().unwrap_or(""),
        fingerprint: parts.next().unwrap_or(""),
        serial: parts.next().unwrap_or(""),
    }
}

/// The leaf's serial number, decimal, as Fastly reports it.
fn serial_of(material: &DeployMaterial) -> Result<String, DeployError> {
    let bad = || DeployError::Config("fastly: the certificate's chain does not parse".into());
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(material.chain_pem.as_bytes()).map_err(|_| bad())?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&pem.contents).map_err(|_| bad())?;
    Ok(leaf.tbs_certificate.serial.to_string())
}

fn key_of(material: &DeployMaterial) -> Result<String, DeployError> {
    if !ACCEPTED_KEYS.contains(&material.key_type) {
        return Err(DeployError::Config(format!(
            "fastly: Fastly accepts {} keys only, and this certificate's key is {}: \
             set the certificate's key type to one of those",
            ACCEPTED_KEYS
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            material.key_type.as_str()
        )));
    }
    let key = material.key.as_ref().ok_or_else(|| {
        DeployError::Config("fastly: the certificate's key is needed to upload it".into())
    })?;
    key.expose_str()
        .map(str::to_owned)
        .map_err(|_| DeployError::Config("fastly: the key is not PEM text".into()))
}

fn lower(names: &[String]) -> Vec<String> {
    names.iter().map(|n| n.to_ascii_lowercase()).collect()
}

/// Whether `names` cover every domain of `existing` (Fastly's rule for replacing in place).
fn covers(names: &[String], existing: &FastlyCertificate) -> bool {
    let names = lower(names);
    existing.domains.iter().all(|d| names.contains(d))
}

impl FastlyTarget {
    pub(crate) fn new(client: Fastly, configuration: Option<String>) -> Self {
        FastlyTarget {
            client,
            configuration,
            resolved_configuration: Mutex::new(None),
        }
    }

    /// The TLS configuration new activations use: the setting, else the account's default.
    async fn configuration(&self) -> Result<String, CallError> {
        if let Some(c) = &self.configuration {
            return Ok(c.clone());
        }
        if let Some(c) = self
            .resolved_configuration
            .lock()
            .ok()
            .and_then(|c| c.clone())
        {
            return Ok(c);
        }
        let c = self.client.default_configuration().await?;
        if let Ok(mut slot) = self.resolved_configuration.lock() {
            *slot = Some(c.clone());
        }
        Ok(c)
    }

    /// The certificate serving the first of `names` that is activated, if any.
    async fn serving(&self, names: &[String]) -> Result<Option<FastlyCertificate>, CallError> {
        for name in lower(names) {
            if let Some(a) = self.client.activations_of_domain(&name).await?.first() {
                return self.client.certificate(&a.certificate).await;
            }
        }
        Ok(None)
    }

    /// Makes certificate `id` the one serving each of `names`: moves the activations that
    /// point elsewhere, creates the missing ones.
    async fn activate_all(&self, id: &str, names: &[String]) -> Result<(), CallError> {
        for name in lower(names) {
            let activations = self.client.activations_of_domain(&name).await?;
            if activations.iter().any(|a| a.certificate == id) {
                continue;
            }
            match activations.first() {
                Some(a) => {
                    self.client.move_activation(&a.id, id).await?;
                    info!(domain = %name, from = %a.certificate, to = %id, "fastly: activation moved");
                }
                None => {
                    let configuration = self.configuration().await?;
                    self.client.activate(&name, id, &configuration).await?;
                    info!(domain = %name, certificate = %id, "fastly: domain activated");
                }
            }
        }
        Ok(())
    }

    /// Uploads the key unless Fastly already has it.
    async fn ensure_key(&self, material: &DeployMaterial) -> Result<(), CallError> {
        let key = key_of(material)?;
        let name = format!(
            "{KEY_PREFIX}{}",
            &material.fingerprint[..16.min(material.fingerprint.len())]
        );
        if self
            .client
            .unused_keys()
            .await?
            .iter()
            .any(|k| k.name == name)
        {
            return Ok(());
        }
        self.client.upload_key(&key, &name).await
    }

    /// Installs `material` over what the unit serves now (`recorded`: its handle so far).
    async fn install(
        &self,
        material: &DeployMaterial,
        recorded: Option<&str>,
    ) -> Result<Deployed, CallError> {
        // Refuse what Fastly would refuse before writing anything.
        key_of(material)?;
        let serial = serial_of(material)?;
        let recorded_cert = match recorded {
            Some(h) => self.client.certificate(split(h).id).await?,
            None => None,
        };
        let done = |id: &str| handle(id, &material.fingerprint, &serial);
        if let Some(c) = &recorded_cert
            && c.serial == serial
        {
            self.activate_all(&c.id, &material.names).await?;
            return Ok(Deployed {
                handle: Some(done(&c.id)),
                ..Deployed::default()
            });
        }
        let holding = match recorded_cert {
            Some(c) => Some(c),
            None => self.serving(&material.names).await?,
        };
        let replaced = holding
            .as_ref()
            .map(|h| match recorded.filter(|r| split(r).id == h.id) {
                Some(r) => r.to_owned(),
                None => handle(&h.id, "", &h.serial),
            });
        // A run cut short may have uploaded it already.
        let primary = material
            .names
            .first()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        let uploaded = self
            .client
            .certificates_for(&primary)
            .await?
            .into_iter()
            .find(|c| c.serial == serial);
        let name = format!(
            "{primary} (certpilot {})",
            &material.fingerprint[..12.min(material.fingerprint.len())]
        );
        let id = match (uploaded, &holding) {
            (Some(u), _) => u.id,
            (None, Some(h)) if covers(&material.names, h) => {
                self.ensure_key(material).await?;
                let c = self
                    .client
                    .replace_certificate(&h.id, &material.chain_pem, &name)
                    .await?;
                info!(id = %c.id, fingerprint = %material.fingerprint, "fastly: certificate replaced in place");
                c.id
            }
            (None, _) => {
                self.ensure_key(material).await?;
                let c = self
                    .client
                    .create_certificate(&material.chain_pem, &name)
                    .await?;
                info!(id = %c.id, fingerprint = %material.fingerprint, "fastly: certificate uploaded");
                c.id
            }
        };
        self.activate_all(&id, &material.names).await?;
        Ok(Deployed {
            handle: Some(done(&id)),
            replaced,
            ..Deployed::default()
        })
    }

    /// Deletes the keys certpilot uploaded that no certificate uses.
    async fn drop_unused_keys(&self) -> Result<(), CallError> {
        for key in self.client.unused_keys().await? {
            if key.name.starts_with(KEY_PREFIX) && self.client.delete_key(&key.id).await? {
                info!(key = %key.id, "fastly: unused private key deleted");
            }
        }
        Ok(())
    }

    /// Retires certificate `old` in favour of `new`: its activations of names `new` covers
    /// move, the others (names dropped from the certificate) end, then it is deleted.
    async fn retire(&self, old: &str, new: &str) -> Result<(), CallError> {
        let covered = self
            .client
            .certificate(new)
            .await?
            .map(|c| c.domains)
            .unwrap_or_default();
        for a in self.client.activations_of_certificate(old).await? {
            if covered.contains(&a.domain) {
                self.client.move_activation(&a.id, new).await?;
            } else {
                self.client.deactivate(&a.id).await?;
                info!(domain = %a.domain, "fastly: activation ended (the name left the certificate)");
            }
        }
        self.client.delete_certificate(old).await?;
        info!(id = %old, "fastly: replaced certificate deleted");
        Ok(())
    }
}

#[async_trait]
impl DeployTarget for FastlyTarget {
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError> {
        let Some(h) = recorded else {
            return Ok(Bound::default());
        };
        let parts = split(h);
        let Some(c) = self
            .client
            .certificate(parts.id)
            .await
            .map_err(CallError::into_deploy)?
        else {
            return Ok(Bound::default());
        };
        let activated = !self
            .client
            .activations_of_certificate(&c.id)
            .await
            .map_err(CallError::into_deploy)?
            .is_empty();
        Ok(Bound {
            certificates: if activated {
                vec![h.to_owned()]
            } else {
                vec![]
            },
            // Only what Fastly's serial confirms is claimed.
            fingerprints: (activated && c.serial == parts.serial && !parts.fingerprint.is_empty())
                .then(|| parts.fingerprint.to_owned())
                .into_iter()
                .collect(),
        })
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        let recorded = request.record.and_then(|r| r.state.handle.clone());
        patiently(recorded.clone(), || {
            self.install(request.certificate, recorded.as_deref())
        })
        .await
    }

    async fn finish(&self, deployed: &Deployed) -> Result<(), DeployError> {
        let Some(new) = deployed.handle.as_deref().map(split) else {
            return Ok(());
        };
        if let Some(old) = deployed.replaced.as_deref().map(split)
            && old.id != new.id
        {
            self.retire(old.id, new.id)
                .await
                .map_err(CallError::into_deploy)?;
        }
        self.drop_unused_keys()
            .await
            .map_err(CallError::into_deploy)
    }

    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        deployed: Option<&Deployed>,
    ) -> Result<Option<String>, DeployError> {
        let current = deployed
            .and_then(|d| d.handle.clone())
            .or_else(|| request.record.and_then(|r| r.state.handle.clone()));
        let Some(previous) = request.previous else {
            // Nothing was served before certpilot: take away what it activated.
            if let (Some(h), true) = (&current, deployed.is_some_and(|d| d.replaced.is_none())) {
                let id = split(h).id;
                let undo = async {
                    for a in self.client.activations_of_certificate(id).await? {
                        self.client.deactivate(&a.id).await?;
                    }
                    self.client.delete_certificate(id).await
                };
                undo.await.map_err(CallError::into_deploy)?;
            }
            // A key uploaded by a deploy that failed before its certificate goes too.
            self.drop_unused_keys()
                .await
                .map_err(CallError::into_deploy)?;
            return Ok(None);
        };
        let back = self
            .install(previous, current.as_deref())
            .await
            .map_err(CallError::into_deploy)?;
        // The certificate rolled away from goes once nothing is activated on it.
        if let (Some(cur), Some(now)) = (
            current.as_deref().map(split),
            back.handle.as_deref().map(split),
        ) && cur.id != now.id
            && self
                .client
                .activations_of_certificate(cur.id)
                .await
                .map_err(CallError::into_deploy)?
                .is_empty()
        {
            self.client
                .delete_certificate(cur.id)
                .await
                .map_err(CallError::into_deploy)?;
        }
        self.drop_unused_keys()
            .await
            .map_err(CallError::into_deploy)?;
        Ok(back.handle)
    }
}
