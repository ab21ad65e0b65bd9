//! Writing a file so that no one else can see, redirect or own it half-way.
//!
//! Every file is first written under an unpredictable name in the same directory, created
//! exclusively (`O_CREAT | O_EXCL`, so neither a planted file nor a planted symlink is ever
//! opened) with mode 0600 from the first byte, synced, given its final mode, and renamed over
//! the final name (a rename replaces a symlink there; it never follows it).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Why a directory is not safe to hold a private key.
fn unsafe_directory(dir: &Path) -> std::io::Result<Option<String>> {
    let meta = std::fs::metadata(dir)?;
    let mode = meta.mode() & 0o7777;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Ok(Some(format!(
            "it belongs to user {} (not to this user, {me}, nor to root), who could replace the files",
            meta.uid()
        )));
    }
    if mode & 0o002 != 0 {
        return Ok(Some(format!(
            "it is writable by every user (mode {mode:04o}); use a directory of your own"
        )));
    }
    if mode & 0o020 != 0 {
        return Ok(Some(format!(
            "it is writable by its group (mode {mode:04o}); `chmod g-w` it or use another"
        )));
    }
    Ok(None)
}

/// Refuses a directory that users other than this one (or root) could write into: they could
/// swap the files a server loads, or race for the private key.
pub fn check_private_directory(dir: &Path) -> std::io::Result<()> {
    match unsafe_directory(dir)? {
        None => Ok(()),
        Some(why) => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} is not safe for a private key: {why}", dir.display()),
        )),
    }
}

/// Writes `bytes` to `path` atomically with `mode`, as the module says.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if mode != 0o600 {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn planted_files_and_symlinks_at_the_old_temporary_names_are_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("stolen");
        std::fs::write(&elsewhere, "nothing").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("privkey.pem.tmp")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("privkey.tmp")).unwrap();
        let path = dir.path().join("privkey.pem");
        write_file(&path, b"KEY", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "nothing");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "KEY");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A symlink at the final name is replaced, not followed.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        write_file(&path, b"KEY2", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "nothing");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn directories_others_can_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        check_private_directory(dir.path()).unwrap();
        for mode in [0o777, 0o1777, 0o770] {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let e = check_private_directory(dir.path()).unwrap_err();
            assert!(e.to_string().contains("writable by"), "{mode:o}: {e}");
        }
    }
}
