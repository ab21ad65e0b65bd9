//! The local [`SecretStore`]: a directory of files readable only by their owner.
//!
//! Layout, per secret name (`certificate-key/shop`):
//!
//! ```text
//! <root>/certificate-key/shop/<version>.secret   one file per version, mode 0600
//! <root>/certificate-key/shop/CURRENT            the current version id
//! <root>/certificate-key/shop/PREVIOUS           the one before (rollback)
//! ```
//!
//! Directories are mode 0700. Every file is written to an unpredictable temporary name,
//! exclusively and 0600 from the first byte, and renamed into place ([`atomic`]), so a crash
//! never leaves a half-written key or pointer and a planted file or symlink never gets one. The stages mirror Secrets
//! Manager's `AWSCURRENT`/`AWSPREVIOUS`; a version that is neither is pending.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use certpilot_core::ports::{SecretError, SecretStore, SecretValue, SecretVersion};

pub mod atomic;
pub mod live;

/// Secrets in files under one root directory.
#[derive(Clone, Debug)]
pub struct FileSecretStore {
    root: PathBuf,
}

fn io(context: &Path, e: std::io::Error) -> SecretError {
    SecretError::Backend(format!("{}: {e}", context.display()))
}

fn checked_name(name: &str) -> Result<&str, SecretError> {
    let ok = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(name)
    } else {
        Err(SecretError::Backend(format!(
            "secret name {name:?} may hold only letters, digits, '-', '_', '.' and '/'"
        )))
    }
}

fn checked_version(version: &str) -> Result<&str, SecretError> {
    if !version.is_empty() && version.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(version)
    } else {
        Err(SecretError::NotFound(format!("version {version:?}")))
    }
}

/// Writes `bytes` to `path` atomically with mode 0600 (see [`atomic`]).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    atomic::write_file(path, bytes, 0o600).map_err(|e| io(path, e))
}

fn read_pointer(dir: &Path, stage: &str) -> Result<Option<String>, SecretError> {
    let path = dir.join(stage);
    match std::fs::read_to_string(&path) {
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path, e)),
    }
}

impl FileSecretStore {
    /// A store under `root` (created with mode 0700 when missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileSecretStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, name: &str) -> Result<PathBuf, SecretError> {
        Ok(self.root.join(checked_name(name)?))
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, SecretError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, SecretError> + Send + 'static,
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| SecretError::Backend(format!("secret store task failed: {e}")))?
    }
}

#[async_trait]
impl SecretStore for FileSecretStore {
    async fn delete(&self, name: &str) -> Result<bool, SecretError> {
        let dir = self.dir(name)?;
        self.blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&dir, e)),
        })
        .await
    }

    async fn put_pending(&self, name: &str, value: &SecretValue) -> Result<String, SecretError> {
        let dir = self.dir(name)?;
        let value = value.clone();
        self.blocking(move || {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io(&dir, e))?;
            // Directories created earlier by someone else keep their mode; tighten ours.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io(&dir, e))?;
            let mut id = [0u8; 16];
            aws_lc_rs::rand::fill(&mut id)
                .map_err(|_| SecretError::Backend("no randomness for a version id".into()))?;
            let version = hex::encode(id);
            write_private(&dir.join(format!("{version}.secret")), value.expose())?;
            Ok(version)
        })
        .await
    }

    async fn promote(&self, name: &str, version: &str) -> Result<(), SecretError> {
        let dir = self.dir(name)?;
        let version = checked_version(version)?.to_owned();
        let name = name.to_owned();
        self.blocking(move || {
            if !dir.join(format!("{version}.secret")).exists() {
                return Err(SecretError::NotFound(format!("{name} version {version}")));
            }
            let current = read_pointer(&dir, "CURRENT")?;
            if current.as_deref() == Some(version.as_str()) {
                return Ok(());
            }
            if let Some(current) = current {
                write_private(&dir.join("PREVIOUS"), current.as_bytes())?;
            }
            write_private(&dir.join("CURRENT"), version.as_bytes())
        })
        .await
    }

    async fn get(
        &self,
        name: &str,
        version: &SecretVersion,
    ) -> Result<Option<(String, SecretValue)>, SecretError> {
        let dir = self.dir(name)?;
        let version = version.clone();
        self.blocking(move || {
            let id = match version {
                SecretVersion::Current => read_pointer(&dir, "CURRENT")?,
                SecretVersion::Previous => read_pointer(&dir, "PREVIOUS")?,
                SecretVersion::Id(id) => Some(id),
            };
            let Some(id) = id else { return Ok(None) };
            let path = dir.join(format!("{}.secret", checked_version(&id)?));
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some((id, SecretValue::new(bytes)))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io(&path, e)),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn fresh() -> (FileSecretStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (FileSecretStore::new(dir.path().join("secrets")), dir)
    }

    certpilot_testkit::secret_store_contract!(fresh);

    fn value(s: &str) -> SecretValue {
        SecretValue::new(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn versions_are_pending_until_promoted_and_the_previous_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSecretStore::new(dir.path().join("secrets"));
        let name = "certificate-key/shop";
        assert!(
            store
                .get(name, &SecretVersion::Current)
                .await
                .unwrap()
                .is_none()
        );
        let v1 = store.put_pending(name, &value("one")).await.unwrap();
        assert!(
            store
                .get(name, &SecretVersion::Current)
                .await
                .unwrap()
                .is_none(),
            "pending is not current"
        );
        let (_, got) = store
            .get(name, &SecretVersion::Id(v1.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), b"one");
        store.promote(name, &v1).await.unwrap();
        store.promote(name, &v1).await.unwrap();
        let v2 = store.put_current(name, &value("two")).await.unwrap();
        let current = store
            .get(name, &SecretVersion::Current)
            .await
            .unwrap()
            .unwrap();
        let previous = store
            .get(name, &SecretVersion::Previous)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((current.0, current.1.expose()), (v2, &b"two"[..]));
        assert_eq!(
            (previous.0, previous.1.expose()),
            (v1, &b"one"[..]),
            "promoting twice kept v1 as previous"
        );
    }

    #[tokio::test]
    async fn files_are_private_and_names_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSecretStore::new(dir.path());
        let v = store.put_current("k/shop", &value("key")).await.unwrap();
        let file = dir.path().join(format!("k/shop/{v}.secret"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(dir.path().join("k/shop"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        for bad in ["../etc", "a//b", ".hidden", "a b"] {
            assert!(store.put_pending(bad, &value("x")).await.is_err(), "{bad}");
        }
        assert!(
            store
                .get("k/shop", &SecretVersion::Id("../../x".into()))
                .await
                .is_err()
        );
        assert!(matches!(
            store.promote("k/shop", "abcdef").await,
            Err(SecretError::NotFound(_))
        ));
    }
}
