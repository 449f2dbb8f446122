//! Crash-safe file writing on local disk, through a [`Disk`].
//!
//! A file that must survive a crash is written under a temporary name, fsynced,
//! renamed into place, and then its directory is fsynced, so after power loss it
//! is either absent or complete. New directories are fsynced into their parents.

use std::io;
use std::path::{Path, PathBuf};

use super::disk::{Disk, DiskFile};

/// Prefix of temporary files; anything starting with it is garbage after a crash.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Fsyncs a directory, so that entries created, renamed or removed in it persist.
pub fn sync_dir(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    disk.sync_dir(dir)
}

/// Creates `dir` and any missing parents, fsyncing each new entry into its parent.
pub fn create_dir_all_synced(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    if disk.is_dir(dir) {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut current = dir;
    while !disk.is_dir(current) {
        missing.push(current.to_path_buf());
        match current.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => current = parent,
            _ => break,
        }
    }
    for path in missing.iter().rev() {
        match disk.create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            disk.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// A temporary path next to `path`, in the same directory (so the rename is atomic).
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{TEMP_PREFIX}{}-{name}", uuid::Uuid::new_v4().simple()))
}

/// Why a crash-safe write failed, and whether it may have happened anyway.
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    /// Nothing changed: the file at the path is as it was.
    #[error(transparent)]
    NotWritten(io::Error),
    /// The new file was renamed into place, but the fsync of its directory
    /// failed: the new content is visible now, and whether it survives a
    /// power loss is unknown. Whoever relies on the file must not go on as
    /// if either outcome were certain.
    #[error(
        "{0} (the new file is in place but its directory could not be synced: whether it survives a crash is unknown)"
    )]
    OutcomeUnknown(io::Error),
}

impl From<AtomicWriteError> for io::Error {
    fn from(error: AtomicWriteError) -> io::Error {
        match error {
            AtomicWriteError::NotWritten(e) => e,
            unknown @ AtomicWriteError::OutcomeUnknown(_) => io::Error::other(unknown),
        }
    }
}

/// Writes a file atomically and durably: `write` fills a temporary file, which is
/// fsynced, renamed to `path`, and the directory fsynced. On error before the
/// rename the temporary file is removed and `path` is untouched
/// ([`AtomicWriteError::NotWritten`]); an error after it is
/// [`AtomicWriteError::OutcomeUnknown`].
pub fn write_atomic(
    disk: &dyn Disk,
    path: &Path,
    write: impl FnOnce(&mut dyn DiskFile) -> io::Result<()>,
) -> Result<(), AtomicWriteError> {
    let dir = path.parent().ok_or_else(|| {
        AtomicWriteError::NotWritten(io::Error::new(io::ErrorKind::InvalidInput, "path has no directory"))
    })?;
    create_dir_all_synced(disk, dir).map_err(AtomicWriteError::NotWritten)?;
    let temp = temp_path_for(path);
    let written = (|| {
        let mut file = disk.create(&temp)?;
        write(file.as_mut())?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        disk.rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = disk.remove_file(&temp);
        return Err(AtomicWriteError::NotWritten(e));
    }
    let subject = path.to_string_lossy();
    match crate::faults::injected("fs-sync-dir-after-rename", &subject) {
        Some(fault) => Err(AtomicWriteError::OutcomeUnknown(fault)),
        None => disk.sync_dir(dir).map_err(AtomicWriteError::OutcomeUnknown),
    }
}

/// [`write_atomic`] for bytes already in memory.
pub fn write_atomic_bytes(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_atomic(disk, path, |file| file.write_all(bytes))
}
