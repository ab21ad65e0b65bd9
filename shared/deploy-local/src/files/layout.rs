//! The files on disk, and the only operations that change them.
//!
//! ```text
//! /etc/ssl/shop            -> shop.versions/3f2a9c0d1e2b4a5f   (a relative symlink)
//! /etc/ssl/shop.versions/  mode 0700: every version holds a private key
//!     3f2a9c0d1e2b4a5f/    cert.pem chain.pem fullchain.pem privkey.pem (0600)
//!     9b1c…/               the previous version (rollback)
//!     before-certpilot/    what DIR held when certpilot took it over, until pruned
//! ```
//!
//! A version is written complete into a temporary directory beside the others and renamed to
//! its name, so a version directory is whole or absent. `DIR` is switched by renaming a new
//! symlink over it; a real directory found at `DIR` is swapped for the symlink in one
//! `renameat2(RENAME_EXCHANGE)` and kept as the `before-certpilot` version. No reader ever
//! sees a missing `DIR`, nor a key of one version beside the certificate of another.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use certpilot_core::ports::SecretValue;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The version name of what `DIR` held before certpilot switched it to a symlink.
pub const ADOPTED: &str = "before-certpilot";

/// Where one `files` deployment keeps its versions.
#[derive(Clone, Debug)]
pub struct Layout {
    dir: PathBuf,
    parent: PathBuf,
    base: String,
    versions: PathBuf,
}

/// What `DIR` is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Current {
    /// Nothing: certpilot has not deployed here yet.
    Absent,
    /// A directory certpilot has not taken over yet.
    Directory,
    /// Certpilot's symlink to this version.
    Version(String),
}

fn io_at(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// The name of a certificate's version: the first 16 hex digits of its fingerprint.
pub fn version_of(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .take(16)
        .collect::<String>()
        .to_lowercase()
}

impl Layout {
    /// The layout of `dir`, which must be absolute and name a directory below `/`.
    pub fn new(dir: &Path) -> Result<Self, String> {
        if !dir.is_absolute() {
            return Err("not an absolute path".into());
        }
        if dir
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err("must not contain `.` or `..`".into());
        }
        let (Some(parent), Some(base)) = (dir.parent(), dir.file_name()) else {
            return Err("names no directory below /".into());
        };
        let base = base
            .to_str()
            .ok_or_else(|| "is not valid UTF-8".to_owned())?
            .to_owned();
        Ok(Layout {
            dir: dir.to_owned(),
            parent: parent.to_owned(),
            versions: parent.join(format!("{base}.versions")),
            base,
        })
    }

    /// `DIR`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR.versions`.
    pub fn versions(&self) -> &Path {
        &self.versions
    }

    fn version_dir(&self, version: &str) -> PathBuf {
        self.versions.join(version)
    }

    /// What `DIR` is now; a file, or a symlink certpilot did not make, is refused.
    pub fn current(&self) -> Result<Current, String> {
        let meta = match std::fs::symlink_metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Current::Absent),
            Err(e) => return Err(io_at(&self.dir, e)),
        };
        if meta.is_dir() {
            return Ok(Current::Directory);
        }
        if !meta.is_symlink() {
            return Err(format!(
                "{} is a file, not a directory: move it away or choose another dir",
                self.dir.display()
            ));
        }
        let to = std::fs::read_link(&self.dir).map_err(|e| io_at(&self.dir, e))?;
        let prefix = PathBuf::from(format!("{}.versions", self.base));
        match to
            .strip_prefix(&prefix)
            .ok()
            .map(|v| v.components().collect::<Vec<_>>())
        {
            Some(parts) if parts.len() == 1 => match parts[0] {
                Component::Normal(v) => Ok(Current::Version(v.to_string_lossy().into_owned())),
                _ => Err(self.foreign(&to)),
            },
            _ => Err(self.foreign(&to)),
        }
    }

    fn foreign(&self, to: &Path) -> String {
        format!(
            "{} is a symlink to {} that certpilot did not make; remove it (certpilot then creates its own) or choose another dir",
            self.dir.display(),
            to.display()
        )
    }

    /// Whether `version` is on disk.
    pub fn has(&self, version: &str) -> bool {
        self.version_dir(version).is_dir()
    }

    /// The SHA-256 fingerprint (hex) of the leaf in `version`'s `cert.pem`.
    pub fn fingerprint(&self, version: &str) -> Option<String> {
        let pem = std::fs::read(self.version_dir(version).join("cert.pem")).ok()?;
        let der = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
        Some(hex::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref()).as_ref(),
        ))
    }

    /// Writes `version` (the chain and its key) unless it is already there, whole.
    pub fn install(
        &self,
        version: &str,
        fingerprint: &str,
        chain_pem: &str,
        key: &SecretValue,
    ) -> Result<(), String> {
        if self.fingerprint(version).as_deref() == Some(fingerprint)
            && self.version_dir(version).join("privkey.pem").is_file()
        {
            return Ok(());
        }
        if !self.parent.is_dir() {
            return Err(format!(
                "{}: no such directory (certpilot creates {} in it, not its parents)",
                self.parent.display(),
                self.base
            ));
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.versions)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .and_then(|()| certpilot_files::atomic::check_private_directory(&self.versions))
            .map_err(|e| io_at(&self.versions, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{version}."))
            .tempdir_in(&self.versions)
            .map_err(|e| io_at(&self.versions, e))?;
        certpilot_files::live::export_live(tmp.path(), chain_pem, key)
            .map_err(|e| e.to_string())?;
        let target = self.version_dir(version);
        if target.exists() {
            // A version left incomplete by hand: replaced whole.
            std::fs::remove_dir_all(&target).map_err(|e| io_at(&target, e))?;
        }
        std::fs::rename(tmp.path(), &target).map_err(|e| io_at(&target, e))?;
        // Renamed: nothing left for the guard to remove.
        let _ = tmp.keep();
        Ok(())
    }

    /// Points `DIR` at `version` in one rename. A real directory at `DIR` is exchanged for
    /// the symlink atomically and kept as the [`ADOPTED`] version.
    pub fn switch(&self, version: &str) -> Result<(), String> {
        if !self.has(version) {
            return Err(format!(
                "{}: version {version} is not on disk",
                self.versions.display()
            ));
        }
        let current = self.current()?;
        if current == Current::Version(version.to_owned()) {
            return Ok(());
        }
        let link = self.new_link(version)?;
        if current == Current::Directory {
            let adopted = self.version_dir(ADOPTED);
            if adopted.exists() {
                let _ = std::fs::remove_file(&link);
                return Err(format!(
                    "{} is a directory and {} exists already: move one of them away",
                    self.dir.display(),
                    adopted.display()
                ));
            }
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &link,
                rustix::fs::CWD,
                &self.dir,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| {
                let _ = std::fs::remove_file(&link);
                io_at(&self.dir, e.into())
            })?;
            // `link` now names the server's old directory: kept as a version.
            return std::fs::rename(&link, &adopted).map_err(|e| io_at(&adopted, e));
        }
        std::fs::rename(&link, &self.dir).map_err(|e| {
            let _ = std::fs::remove_file(&link);
            io_at(&self.dir, e)
        })
    }

    /// A new symlink to `version` beside `DIR`, under a name no one else uses.
    fn new_link(&self, version: &str) -> Result<PathBuf, String> {
        let to = Path::new(&format!("{}.versions", self.base)).join(version);
        for attempt in 0..16u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let link = self.parent.join(format!(
                ".{}.certpilot-{}-{nanos}-{attempt}",
                self.base,
                std::process::id()
            ));
            match std::os::unix::fs::symlink(&to, &link) {
                Ok(()) => return Ok(link),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_at(&link, e)),
            }
        }
        Err(format!(
            "{}: cannot create a symlink beside it",
            self.dir.display()
        ))
    }

    /// Removes certpilot's symlink at `DIR` (nothing was there before certpilot).
    pub fn unlink(&self) -> Result<(), String> {
        match self.current()? {
            Current::Version(_) => std::fs::remove_file(&self.dir).map_err(|e| io_at(&self.dir, e)),
            _ => Ok(()),
        }
    }

    /// Removes every version but `keep` (and what `DIR` points at), and leftovers of
    /// interrupted writes: each holds a private key. Returns what was removed.
    pub fn prune(&self, keep: &[&str]) -> Result<Vec<String>, String> {
        let current = match self.current()? {
            Current::Version(v) => Some(v),
            _ => None,
        };
        let entries = match std::fs::read_dir(&self.versions) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&self.versions, e)),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_at(&self.versions, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&name.as_str()) || current.as_deref() == Some(name.as_str()) {
                continue;
            }
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|e| io_at(&path, e))?;
            removed.push(name);
        }
        removed.sort();
        Ok(removed)
    }
}
