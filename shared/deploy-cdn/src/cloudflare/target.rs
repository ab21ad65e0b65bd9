//! The `cloudflare` target: one `sni_custom` certificate per deployment unit.
//!
//! Cloudflare answers a `PATCH` with a new id and deletes the old certificate once the new
//! one is active, so the handle recorded is always the latest id (with the fingerprint of
//! what was uploaded under it, since the API never gives the certificate back). A handle
//! that is gone (replaced elsewhere, or by a rollback) is found again by the certificate's
//! hosts. A rollback uploads the previous certificate over the current one and reports the
//! new id.

use async_trait::async_trait;
use certpilot_core::ports::{
    Bound, DeployError, DeployMaterial, DeployRequest, DeployTarget, Deployed,
};
use tracing::info;

use super::client::{Cloudflare, CustomCertificate};
use crate::http::{CallError, patiently};

/// One Cloudflare deployment unit.
pub struct CloudflareTarget {
    client: Cloudflare,
    bundle_method: String,
}

/// `id#fingerprint`.
fn handle(id: &str, fingerprint: &str) -> String {
    format!("{id}#{fingerprint}")
}

fn split(handle: &str) -> (&str, Option<&str>) {
    match handle.split_once('#') {
        Some((id, fp)) => (id, Some(fp)),
        None => (handle, None),
    }
}

fn same_hosts(c: &CustomCertificate, names: &[String]) -> bool {
    let mut a: Vec<String> = c.hosts.clone();
    let mut b: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

fn key_of(material: &DeployMaterial) -> Result<String, DeployError> {
    let key = material.key.as_ref().ok_or_else(|| {
        DeployError::Config("cloudflare: the certificate's key is needed to upload it".into())
    })?;
    key.expose_str()
        .map(str::to_owned)
        .map_err(|_| DeployError::Config("cloudflare: the key is not PEM text".into()))
}

impl CloudflareTarget {
    pub(crate) fn new(client: Cloudflare, bundle_method: String) -> Self {
        CloudflareTarget {
            client,
            bundle_method,
        }
    }

    /// The certificate this unit holds now: the recorded id when the zone still has it,
    /// else the zone's certificate for exactly these hosts.
    async fn locate(
        &self,
        recorded: Option<&str>,
        names: &[String],
    ) -> Result<Option<(String, Option<String>)>, CallError> {
        if let Some(h) = recorded {
            let (id, fp) = split(h);
            if self.client.get(id).await?.is_some() {
                return Ok(Some((id.to_owned(), fp.map(str::to_owned))));
            }
        }
        Ok(self
            .client
            .list()
            .await?
            .into_iter()
            .find(|c| same_hosts(c, names))
            .map(|c| (c.id, None)))
    }

    /// Puts `material` on the unit over what it holds (or as a new certificate).
    async fn upload(
        &self,
        holding: Option<&str>,
        material: &DeployMaterial,
    ) -> Result<String, CallError> {
        let key = key_of(material)?;
        let uploaded = match holding {
            Some(id) => {
                self.client
                    .replace(id, &material.chain_pem, &key, &self.bundle_method)
                    .await?
            }
            None => {
                self.client
                    .create(&material.chain_pem, &key, &self.bundle_method)
                    .await?
            }
        };
        info!(id = %uploaded.id, replaced = ?holding, fingerprint = %material.fingerprint, "cloudflare: uploaded");
        Ok(uploaded.id)
    }

    async fn deploy_once(&self, request: &DeployRequest<'_>) -> Result<Deployed, CallError> {
        let material = request.certificate;
        let recorded = request.record.and_then(|r| r.state.handle.as_deref());
        let holding = self.locate(recorded, &material.names).await?;
        if let Some((id, Some(fp))) = &holding
            && *fp == material.fingerprint
        {
            return Ok(Deployed {
                handle: Some(handle(id, fp)),
                ..Deployed::default()
            });
        }
        let replaced = holding.as_ref().map(|(id, fp)| match fp {
            Some(fp) => handle(id, fp),
            None => id.clone(),
        });
        let id = self
            .upload(holding.as_ref().map(|(id, _)| id.as_str()), material)
            .await?;
        Ok(Deployed {
            handle: Some(handle(&id, &material.fingerprint)),
            replaced,
            ..Deployed::default()
        })
    }
}

#[async_trait]
impl DeployTarget for CloudflareTarget {
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError> {
        let Some(h) = recorded else {
            return Ok(Bound::default());
        };
        let (id, fp) = split(h);
        match self.client.get(id).await.map_err(CallError::into_deploy)? {
            Some(_) => Ok(Bound {
                certificates: vec![h.to_owned()],
                fingerprints: fp.map(str::to_owned).into_iter().collect(),
            }),
            None => Ok(Bound::default()),
        }
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        let recorded = request.record.and_then(|r| r.state.handle.clone());
        patiently(recorded, || self.deploy_once(&request)).await
    }

    async fn finish(&self, _deployed: &Deployed) -> Result<(), DeployError> {
        // A replacement deletes what it replaced: nothing is left to drop.
        Ok(())
    }

    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        deployed: Option<&Deployed>,
    ) -> Result<Option<String>, DeployError> {
        let current = deployed
            .and_then(|d| d.handle.as_deref())
            .or_else(|| request.record.and_then(|r| r.state.handle.as_deref()));
        let holding = self
            .locate(current, &request.certificate.names)
            .await
            .map_err(CallError::into_deploy)?;
        let Some(previous) = request.previous else {
            // Nothing was here before certpilot: take what it uploaded away again.
            if let Some((id, _)) = holding
                && deployed.is_some_and(|d| d.replaced.is_none())
            {
                self.client
                    .delete(&id)
                    .await
                    .map_err(CallError::into_deploy)?;
            }
            return Ok(None);
        };
        if let Some((id, Some(fp))) = &holding
            && *fp == previous.fingerprint
        {
            return Ok(Some(handle(id, fp)));
        }
        let id = self
            .upload(holding.as_ref().map(|(id, _)| id.as_str()), previous)
            .await
            .map_err(CallError::into_deploy)?;
        Ok(Some(handle(&id, &previous.fingerprint)))
    }
}
