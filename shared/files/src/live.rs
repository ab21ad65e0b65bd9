//! Exporting a certificate for a server to read, like certbot's `live/<name>/` directory.
//!
//! ```text
//! <dir>/cert.pem        the leaf
//! <dir>/chain.pem       the intermediates
//! <dir>/fullchain.pem   leaf then intermediates (what nginx's ssl_certificate wants)
//! <dir>/privkey.pem     the private key, mode 0600
//! ```
//!
//! Each file is written to an unpredictable temporary name, exclusively and 0600 from the
//! first byte ([`crate::atomic`]), and renamed into place; a directory other users may write
//! is refused. The key is written first, so a server reloading mid-export never pairs a new certificate with an old key for
//! longer than the renames take, and never reads a half-written file.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use certpilot_core::ports::SecretValue;

/// The files an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveFiles {
    /// The leaf.
    pub cert: PathBuf,
    /// The intermediates.
    pub chain: PathBuf,
    /// Leaf and intermediates.
    pub fullchain: PathBuf,
    /// The private key (mode 0600).
    pub privkey: PathBuf,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The stored chain holds no certificate.
    #[error("the stored chain holds no PEM certificate")]
    EmptyChain,
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Splits a PEM chain into its certificate blocks, in order.
fn pem_blocks(chain_pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = chain_pem;
    while let Some(begin) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[begin..].find(END) else {
            break;
        };
        let stop = begin + end + END.len();
        blocks.push(format!("{}\n", &rest[begin..stop]));
        rest = &rest[stop..];
    }
    blocks
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ExportError> {
    crate::atomic::write_file(path, bytes, mode).map_err(|source| ExportError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `chain_pem` and `key` into `dir` (created when missing).
pub fn export_live(
    dir: &Path,
    chain_pem: &str,
    key: &SecretValue,
) -> Result<LiveFiles, ExportError> {
    let blocks = pem_blocks(chain_pem);
    let Some((leaf, intermediates)) = blocks.split_first() else {
        return Err(ExportError::EmptyChain);
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .and_then(|()| crate::atomic::check_private_directory(dir))
        .map_err(|source| ExportError::Io {
            path: dir.to_owned(),
            source,
        })?;
    let files = LiveFiles {
        cert: dir.join("cert.pem"),
        chain: dir.join("chain.pem"),
        fullchain: dir.join("fullchain.pem"),
        privkey: dir.join("privkey.pem"),
    };
    write_file(&files.privkey, key.expose(), 0o600)?;
    write_file(&files.cert, leaf.as_bytes(), 0o644)?;
    write_file(&files.chain, intermediates.concat().as_bytes(), 0o644)?;
    write_file(&files.fullchain, blocks.concat().as_bytes(), 0o644)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const CHAIN: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\
                         -----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";

    #[test]
    fn the_live_directory_splits_the_chain_and_keeps_the_key_private() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("shop");
        let key = SecretValue::new(b"-----BEGIN PRIVATE KEY-----\nKEY\n".to_vec());
        let files = export_live(&live, CHAIN, &key).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert!(read(&files.cert).contains("AAAA") && !read(&files.cert).contains("BBBB"));
        assert!(read(&files.chain).contains("BBBB") && !read(&files.chain).contains("AAAA"));
        assert!(read(&files.fullchain).find("AAAA") < read(&files.fullchain).find("BBBB"));
        assert_eq!(read(&files.privkey), "-----BEGIN PRIVATE KEY-----\nKEY\n");
        let mode = std::fs::metadata(&files.privkey)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Exporting again (a renewal) replaces the files in place.
        export_live(&live, CHAIN.replace("AAAA", "CCCC").as_str(), &key).unwrap();
        assert!(read(&files.cert).contains("CCCC"));
        assert_eq!(
            std::fs::read_dir(&live).unwrap().count(),
            4,
            "no temporary files left"
        );
    }

    #[test]
    fn an_empty_chain_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("shop");
        let err = export_live(&live, "garbage", &SecretValue::new(vec![1])).unwrap_err();
        assert!(matches!(err, ExportError::EmptyChain));
        assert!(!live.exists());
    }
}
