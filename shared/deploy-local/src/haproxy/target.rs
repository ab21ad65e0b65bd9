//! The `haproxy` target: the certificate file HAProxy loads (chain and key in one PEM),
//! written atomically so a restart keeps the new certificate, and the running process told
//! through its Runtime API — or, without an admin socket, the reload command run.
//!
//! The handle is the fingerprint of what was installed. The first deploy keeps what the file
//! held before as `FILE.certpilot-before` (0600), which a rollback with no previous
//! certificate puts back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::ports::{
    Bound, DeployError, DeployMaterial, DeployRequest, DeployTarget, Deployed,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tracing::info;

use super::runtime::Runtime;
use crate::command::{HostCommand, Output, hook_env};

/// One HAProxy certificate file.
pub struct HaproxyTarget {
    pub(crate) file: PathBuf,
    pub(crate) runtime: Option<Runtime>,
    pub(crate) reload: Option<String>,
    pub(crate) reload_timeout: Duration,
}

/// The fingerprint (SHA-256, hex) and serial (hex, uppercase) of the first certificate of
/// `pem`.
fn leaf_of(pem: &str) -> Option<(String, String)> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    let fingerprint = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        der.as_ref(),
    ));
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some((fingerprint, hex::encode_upper(cert.raw_serial())))
}

fn backup_of(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".certpilot-before");
    PathBuf::from(name)
}

impl HaproxyTarget {
    /// Writes `pem` to the file (and, the first time, keeps what it held), then makes the
    /// running HAProxy serve it.
    async fn install(
        &self,
        id: &str,
        pem: String,
        material: Option<&DeployMaterial>,
    ) -> Result<(), DeployError> {
        let file = self.file.clone();
        let written = pem.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = file.parent().unwrap_or(Path::new("."));
            certpilot_files::atomic::check_private_directory(dir)?;
            let backup = backup_of(&file);
            if !backup.exists()
                && let Ok(before) = std::fs::read(&file)
            {
                certpilot_files::atomic::write_file(&backup, &before, 0o600)?;
            }
            certpilot_files::atomic::write_file(&file, written.as_bytes(), 0o600)
        })
        .await
        .map_err(|e| DeployError::Target(format!("haproxy: {e}")))?
        .map_err(|e| DeployError::Target(format!("haproxy: {}: {e}", self.file.display())))?;
        match (&self.runtime, &self.reload) {
            (Some(runtime), _) => runtime.replace(&self.file, &pem).await?,
            (None, Some(line)) => {
                let (names, fingerprint, not_after) = material.map_or_else(
                    || (vec![], String::new(), time::OffsetDateTime::now_utc()),
                    |m| (m.names.clone(), m.fingerprint.clone(), m.not_after),
                );
                let command = HostCommand {
                    what: "reload command",
                    line: line.clone(),
                    env: hook_env(id, &names, &fingerprint, not_after, self.file.parent()),
                    timeout: self.reload_timeout,
                };
                command
                    .run(Output::Capture)
                    .await
                    .map_err(|e| DeployError::Target(format!("haproxy: {e}")))?;
            }
            (None, None) => {
                return Err(DeployError::Config(
                    "haproxy: set socket (the Runtime API) or reload".into(),
                ));
            }
        }
        info!(file = %self.file.display(), runtime = self.runtime.is_some(), "haproxy: certificate installed");
        Ok(())
    }

    fn pem_of(material: &DeployMaterial) -> Result<String, DeployError> {
        let key = material.key.as_ref().ok_or_else(|| {
            DeployError::Config("haproxy: the certificate's key is needed in its file".into())
        })?;
        let key = key
            .expose_str()
            .map_err(|_| DeployError::Config("haproxy: the key is not PEM text".into()))?;
        Ok(format!(
            "{}\n{}\n",
            material.chain_pem.trim_end(),
            key.trim_end()
        ))
    }
}

#[async_trait]
impl DeployTarget for HaproxyTarget {
    /// What the file holds, claimed only when the running HAProxy serves the same serial.
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError> {
        let file = self.file.clone();
        let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(file))
            .await
            .map_err(|e| DeployError::Target(format!("haproxy: {e}")))?
            .unwrap_or_default();
        let Some((fingerprint, serial)) = leaf_of(&text) else {
            return Ok(Bound::default());
        };
        if let Some(runtime) = &self.runtime
            && runtime.serial(&self.file).await?.as_deref() != Some(serial.as_str())
        {
            return Ok(Bound {
                certificates: recorded.map(str::to_owned).into_iter().collect(),
                fingerprints: vec![],
            });
        }
        Ok(Bound {
            certificates: vec![fingerprint.clone()],
            fingerprints: vec![fingerprint],
        })
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        let material = request.certificate;
        self.install(request.id, Self::pem_of(material)?, Some(material))
            .await?;
        Ok(Deployed {
            handle: Some(material.fingerprint.clone()),
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
        if let Some(previous) = request.previous {
            self.install(request.id, Self::pem_of(previous)?, Some(previous))
                .await?;
            return Ok(Some(previous.fingerprint.clone()));
        }
        // Nothing of certpilot's was there before: what the file held goes back.
        let backup = backup_of(&self.file);
        let before = tokio::task::spawn_blocking(move || std::fs::read_to_string(backup))
            .await
            .map_err(|e| DeployError::Target(format!("haproxy: {e}")))?;
        match before {
            Ok(pem) => {
                let handle = leaf_of(&pem).map(|(f, _)| f);
                self.install(request.id, pem, None).await?;
                Ok(handle)
            }
            Err(_) => Ok(None),
        }
    }
}
