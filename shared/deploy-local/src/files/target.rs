//! The `files` target: installs a version, switches `DIR` to it, reloads the server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::ports::{
    Bound, DeployError, DeployMaterial, DeployRequest, DeployTarget, Deployed,
};
use tracing::info;

use super::layout::{Current, Layout, version_of};
use crate::command::{HostCommand, Output, hook_env};

/// One `files` deployment.
pub struct FilesTarget {
    layout: Arc<Layout>,
    reload: Option<String>,
    reload_timeout: Duration,
    /// What `DIR` pointed at before this target's deploy switched it (a deploy that failed
    /// at the reload still switched, and its rollback needs to know where from).
    before: Mutex<Option<String>>,
}

impl FilesTarget {
    /// A target writing to `layout`, reloading with `reload`.
    pub fn new(layout: Layout, reload: Option<String>, reload_timeout: Duration) -> Self {
        FilesTarget {
            layout: Arc::new(layout),
            reload,
            reload_timeout,
            before: Mutex::new(None),
        }
    }

    /// Runs a blocking filesystem step off the runtime's threads.
    async fn on_disk<T: Send + 'static>(
        &self,
        step: impl FnOnce(&Layout) -> Result<T, String> + Send + 'static,
    ) -> Result<T, DeployError> {
        let layout = self.layout.clone();
        tokio::task::spawn_blocking(move || step(&layout))
            .await
            .map_err(|e| DeployError::Target(format!("files: {e}")))?
            .map_err(DeployError::Target)
    }

    /// Runs the reload command, if there is one, for `material` now in `DIR`.
    async fn reload(&self, id: &str, material: &DeployMaterial) -> Result<(), DeployError> {
        let Some(line) = &self.reload else {
            return Ok(());
        };
        let command = HostCommand {
            what: "reload command",
            line: line.clone(),
            env: hook_env(
                id,
                &material.names,
                &material.fingerprint,
                material.not_after,
                Some(self.layout.dir()),
            ),
            timeout: self.reload_timeout,
        };
        let said = command
            .run(Output::Capture)
            .await
            .map_err(|e| DeployError::Target(format!("{}: {e}", self.layout.dir().display())))?;
        info!(dir = %self.layout.dir().display(), output = %said, "reloaded");
        Ok(())
    }

    /// The version `previous` was installed as, when it is on disk.
    async fn version_on_disk(&self, previous: Option<&DeployMaterial>) -> Option<String> {
        let version = version_of(&previous?.fingerprint);
        let check = version.clone();
        self.on_disk(move |l| Ok(l.has(&check)))
            .await
            .ok()?
            .then_some(version)
    }
}

#[async_trait]
impl DeployTarget for FilesTarget {
    async fn bound(&self, _recorded: Option<&str>) -> Result<Bound, DeployError> {
        self.on_disk(|l| {
            Ok(match l.current()? {
                Current::Version(v) => Bound {
                    fingerprints: l.fingerprint(&v).into_iter().collect(),
                    certificates: vec![v],
                },
                Current::Absent | Current::Directory => Bound::default(),
            })
        })
        .await
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        let material = request.certificate;
        let key = material.key.clone().ok_or_else(|| {
            DeployError::Config(format!(
                "{}: the files target writes privkey.pem, but no key was handed to it (a certificate whose key ACM or the target keeps cannot be deployed as files)",
                request.unit.name
            ))
        })?;
        let version = version_of(&material.fingerprint);
        let (fingerprint, chain) = (material.fingerprint.clone(), material.chain_pem.clone());
        let v = version.clone();
        let current = self
            .on_disk(move |l| {
                l.install(&v, &fingerprint, &chain, &key)?;
                let current = l.current()?;
                l.switch(&v)?;
                Ok(current)
            })
            .await?;
        let replaced = match current {
            Current::Version(v) if v != version => Some(v),
            Current::Directory => Some(super::layout::ADOPTED.to_owned()),
            // Already switched (a redelivered deploy): what it replaced then is the previous
            // certificate's version.
            Current::Version(_) => self.version_on_disk(request.previous).await,
            Current::Absent => None,
        };
        if let Ok(mut before) = self.before.lock() {
            before.clone_from(&replaced);
        }
        info!(dir = %self.layout.dir().display(), %version, "switched");
        // Reloaded every time, even when already switched: a run that stopped between the
        // switch and the reload must not leave the server on the old files.
        self.reload(request.id, material).await?;
        Ok(Deployed {
            handle: Some(version),
            replaced,
            added: false,
            check_after: None,
            prove_first: None,
        })
    }

    async fn finish(&self, deployed: &Deployed) -> Result<(), DeployError> {
        let keep: Vec<String> = deployed
            .handle
            .iter()
            .chain(deployed.replaced.iter())
            .cloned()
            .collect();
        let removed = self
            .on_disk(move |l| l.prune(&keep.iter().map(String::as_str).collect::<Vec<_>>()))
            .await?;
        if !removed.is_empty() {
            info!(dir = %self.layout.dir().display(), ?removed, "old versions removed");
        }
        Ok(())
    }

    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        deployed: Option<&Deployed>,
    ) -> Result<Option<String>, DeployError> {
        let remembered = self.before.lock().ok().and_then(|b| b.clone());
        let back = match deployed.and_then(|d| d.replaced.clone()).or(remembered) {
            Some(v) => Some(v),
            None => self.version_on_disk(request.previous).await,
        };
        match (back, request.previous) {
            (Some(v), _) => {
                let to = v.clone();
                self.on_disk(move |l| l.switch(&to)).await?;
                info!(dir = %self.layout.dir().display(), version = %v, "switched back");
                match request.previous {
                    Some(previous) => self.reload(request.id, previous).await?,
                    None => self.reload(request.id, request.certificate).await?,
                }
                Ok(None)
            }
            // The previous certificate was never written here (another target served it):
            // it is written now, with its key, and switched to.
            (None, Some(previous)) if previous.key.is_some() => {
                let mut again = request;
                again.certificate = previous;
                again.previous = None;
                self.deploy(again).await.map(|d| d.handle)
            }
            // Nothing was here before certpilot: take its symlink away again.
            (None, _) => self.on_disk(|l| l.unlink()).await.map(|_| None),
        }
    }
}
