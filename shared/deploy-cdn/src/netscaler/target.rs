//! The `netscaler` target: one certkey, pointed at new files on renewal.
//!
//! The certificate (with its chain) and the key are uploaded to `/nsconfig/ssl` under names
//! made from the fingerprint, then the certkey is updated to them (`nodomaincheck`), which
//! every virtual server bound to it follows; a certkey that does not exist yet is created
//! and bound to `vserver`. The configuration is saved so a restart keeps it. Once the
//! endpoints serve the new certificate, the files it replaced (certpilot's) are deleted —
//! a key file does not stay on the appliance longer than it serves.
//!
//! The handle is `certkey#fingerprint`; `replaced` is the `cert|key` the certkey held.

use async_trait::async_trait;
use certpilot_core::ports::{
    Bound, DeployError, DeployMaterial, DeployRequest, DeployTarget, Deployed,
};
use tracing::info;

use super::client::{Nitro, NitroError};

/// One certkey.
pub struct NetscalerTarget {
    pub(crate) nitro: Nitro,
    pub(crate) certkey: String,
    pub(crate) vserver: Option<String>,
    pub(crate) save: bool,
}

fn files_of(fingerprint: &str) -> (String, String) {
    let short = &fingerprint[..16.min(fingerprint.len())];
    (
        format!("certpilot-{short}.pem"),
        format!("certpilot-{short}.key"),
    )
}

impl NetscalerTarget {
    /// Points the certkey at `material`'s files (uploading them); what it held before.
    async fn install(&self, material: &DeployMaterial) -> Result<Option<String>, NitroError> {
        let key = material
            .key
            .as_ref()
            .ok_or_else(|| {
                DeployError::Config("netscaler: the certificate's key is needed".into())
            })?
            .expose_str()
            .map_err(|_| DeployError::Config("netscaler: the key is not PEM text".into()))?
            .to_owned();
        let (cert_file, key_file) = files_of(&material.fingerprint);
        let held = self.nitro.certkey(&self.certkey).await?;
        if held
            .as_ref()
            .is_some_and(|(c, k)| *c == cert_file && *k == key_file)
        {
            return Ok(None);
        }
        self.nitro.upload(&cert_file, &material.chain_pem).await?;
        self.nitro.upload(&key_file, &key).await?;
        match &held {
            Some(_) => {
                self.nitro
                    .update_certkey(&self.certkey, &cert_file, &key_file)
                    .await?
            }
            None => {
                self.nitro
                    .add_certkey(&self.certkey, &cert_file, &key_file)
                    .await?;
                if let Some(vs) = &self.vserver {
                    self.nitro.bind(vs, &self.certkey).await?;
                }
            }
        }
        if self.save {
            self.nitro.save().await?;
        }
        info!(certkey = %self.certkey, file = %cert_file, "netscaler: certkey updated");
        Ok(held.map(|(c, k)| format!("{c}|{k}")))
    }
}

#[async_trait]
impl DeployTarget for NetscalerTarget {
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError> {
        let Some(h) = recorded else {
            return Ok(Bound::default());
        };
        let fingerprint = h.split_once('#').map_or("", |(_, f)| f);
        let held = self
            .nitro
            .certkey(&self.certkey)
            .await
            .map_err(NitroError::into_deploy)?;
        let ours = held.is_some_and(|(c, _)| c == files_of(fingerprint).0);
        Ok(Bound {
            certificates: vec![h.to_owned()],
            fingerprints: ours.then(|| fingerprint.to_owned()).into_iter().collect(),
        })
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        let replaced = self
            .install(request.certificate)
            .await
            .map_err(NitroError::into_deploy)?;
        Ok(Deployed {
            handle: Some(format!(
                "{}#{}",
                self.certkey, request.certificate.fingerprint
            )),
            replaced,
            ..Deployed::default()
        })
    }

    async fn finish(&self, deployed: &Deployed) -> Result<(), DeployError> {
        let Some((cert, key)) = deployed.replaced.as_deref().and_then(|r| r.split_once('|')) else {
            return Ok(());
        };
        for file in [cert, key]
            .into_iter()
            .filter(|f| f.starts_with("certpilot-"))
        {
            self.nitro
                .delete_file(file)
                .await
                .map_err(NitroError::into_deploy)?;
        }
        Ok(())
    }

    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        deployed: Option<&Deployed>,
    ) -> Result<Option<String>, DeployError> {
        if let Some(previous) = request.previous {
            self.install(previous)
                .await
                .map_err(NitroError::into_deploy)?;
            return Ok(Some(format!("{}#{}", self.certkey, previous.fingerprint)));
        }
        // No certificate of certpilot's before: the certkey goes back to the files it held.
        if let Some((cert, key)) = deployed
            .and_then(|d| d.replaced.as_deref())
            .and_then(|r| r.split_once('|'))
        {
            let undo = async {
                self.nitro.update_certkey(&self.certkey, cert, key).await?;
                if self.save {
                    self.nitro.save().await?;
                }
                Ok::<_, NitroError>(())
            };
            undo.await.map_err(NitroError::into_deploy)?;
        }
        Ok(None)
    }
}
