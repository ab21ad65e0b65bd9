//! The `files` kind: PEM files on the host for a server that reads them (nginx, HAProxy,
//! Postfix…), then a reload command — the certbot-and-reload case of a VM, as a deploy target
//! like any other:
//!
//! ```text
//! certpilot certificates add shop.example.com \
//!     --deploy 'files:dir=/etc/ssl/shop,reload="systemctl reload nginx"'
//! ```
//!
//! The server reads `DIR/cert.pem`, `DIR/chain.pem`, `DIR/fullchain.pem` and `DIR/privkey.pem`
//! (0600). `DIR` is a symlink to one version directory in `DIR.versions/` (see [`layout`]),
//! switched with one atomic rename, so no reader ever pairs one version's key with another's
//! certificate. The handle recorded is the version's name; rollback switches back and reloads.

pub mod layout;
mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::Unit;
use certpilot_core::model::deploy_kind::{
    KeyDelivery, KindDescriptor, RunsIn, Setting, ValueKind, settings_as,
};
use certpilot_core::ports::{DeployError, DeployTarget, TargetFactory};

pub use target::FilesTarget;

/// How long a reload command may run unless the deployment says otherwise.
pub const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// The `files` kind.
pub struct Kind;

impl Kind {
    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "files",
            family: "host",
            summary: "PEM files for a server on this host (cert, chain, fullchain, privkey), switched atomically, then a reload command",
            settings: vec![
                Setting::required(
                    "dir",
                    "the directory the server reads; certpilot makes it a symlink to the current version in DIR.versions/",
                )
                .of(ValueKind::Path),
                Setting::optional(
                    "reload",
                    "the command that makes the server load the new files (run by sh, with the deploy hook's CERTPILOT_* variables)",
                )
                .of(ValueKind::Command),
                Setting::optional(
                    "reload-timeout",
                    "how long the reload command may run before it and its children are ended (default 60s)",
                )
                .of(ValueKind::Duration),
            ],
            default_verify_deadline: Duration::from_secs(2 * 60),
            permissions: vec![
                "write access to DIR's parent directory",
                "whatever the reload command needs (often root, for systemctl)",
            ],
            key_types: KeyType::ALL.to_vec(),
            key_delivery: KeyDelivery::File,
            runs_in: RunsIn::Host,
            binds: true,
            can_roll_back: true,
            serves_only_with: None,
            check: Some(|s| {
                let dir = s.get("dir").and_then(|v| v.as_str()).unwrap_or("");
                layout::Layout::new(dir.as_ref())
                    .map(|_| ())
                    .map_err(|reason| (dir.to_owned(), reason))
            }),
        }
    }

    /// The kind as a registry entry.
    pub fn entry() -> (KindDescriptor, Arc<dyn TargetFactory>) {
        (Kind::descriptor(), Arc::new(Kind))
    }
}

/// The settings the kind reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FilesSettings {
    dir: PathBuf,
    reload: Option<String>,
    /// Seconds.
    reload_timeout: Option<u64>,
}

#[async_trait]
impl TargetFactory for Kind {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        let settings: FilesSettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        let layout = layout::Layout::new(&settings.dir)
            .map_err(|e| DeployError::Config(format!("{}: dir: {e}", unit.name)))?;
        Ok(Box::new(FilesTarget::new(
            layout,
            settings.reload,
            settings
                .reload_timeout
                .map_or(DEFAULT_RELOAD_TIMEOUT, Duration::from_secs),
        )))
    }
}
