//! The `haproxy` kind: HAProxy on this host, changed through its Runtime API (`set ssl cert`
//! and `commit ssl cert` on the admin socket: no reload, no dropped connection), with the
//! certificate file it loads updated atomically so a restart keeps the new certificate; or,
//! for a HAProxy without an admin socket, the file and a reload command.
//!
//! ```text
//! certpilot certificates add shop.example.com \
//!     --deploy 'haproxy:cert-file=/etc/haproxy/certs/shop.pem,socket=/run/haproxy/admin.sock'
//! ```
//!
//! Like `files`, it runs on the host (the CLI there): a Lambda cannot reach an admin socket,
//! and the Runtime API is never exposed over TCP for it.

mod runtime;
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

pub use target::HaproxyTarget;

/// The `haproxy` kind.
pub struct Kind;

impl Kind {
    /// The kind's descriptor.
    pub fn descriptor() -> KindDescriptor {
        KindDescriptor {
            kind: "haproxy",
            family: "host",
            summary: "HAProxy on this host: its certificate file rewritten atomically and the running process changed through the Runtime API (or a reload)",
            settings: vec![
                Setting::required(
                    "cert-file",
                    "the PEM file a `bind … crt` line loads (chain and key together), rewritten atomically",
                )
                .of(ValueKind::Path),
                Setting::optional(
                    "socket",
                    "HAProxy's admin socket (`stats socket PATH level admin`): the certificate is changed there without a reload",
                )
                .of(ValueKind::Path),
                Setting::optional(
                    "reload",
                    "without a socket (HAProxy before 2.1): the command that reloads it",
                )
                .of(ValueKind::Command),
                Setting::optional(
                    "reload-timeout",
                    "how long the reload command may run (default 60s)",
                )
                .of(ValueKind::Duration),
            ],
            default_verify_deadline: Duration::from_secs(60),
            permissions: vec![
                "write access to the certificate file's directory (not writable by others)",
                "the admin socket (level admin) or whatever the reload command needs",
            ],
            key_types: KeyType::ALL.to_vec(),
            key_delivery: KeyDelivery::File,
            runs_in: RunsIn::Host,
            binds: true,
            can_roll_back: true,
            serves_only_with: None,
            check: Some(|s| {
                let file = s.get("cert-file").and_then(|v| v.as_str()).unwrap_or("");
                if !file.starts_with('/') {
                    return Err((
                        file.to_owned(),
                        "cert-file is an absolute path (the file a `bind … crt` line names)".into(),
                    ));
                }
                if s.get("socket").is_none() && s.get("reload").is_none() {
                    return Err((
                        file.to_owned(),
                        "give socket= (HAProxy's admin socket) or reload= (a command): without either HAProxy never loads the new file".into(),
                    ));
                }
                Ok(())
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
struct HaproxySettings {
    cert_file: PathBuf,
    socket: Option<PathBuf>,
    reload: Option<String>,
    /// Seconds.
    reload_timeout: Option<u64>,
}

#[async_trait]
impl TargetFactory for Kind {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        let s: HaproxySettings =
            settings_as(&unit.kind, &unit.settings).map_err(DeployError::Config)?;
        Ok(Box::new(HaproxyTarget {
            file: s.cert_file,
            runtime: s.socket.as_deref().map(runtime::Runtime::new),
            reload: s.reload,
            reload_timeout: s
                .reload_timeout
                .map_or(crate::files::DEFAULT_RELOAD_TIMEOUT, Duration::from_secs),
        }))
    }
}
