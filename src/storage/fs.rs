//! Crash-safe file writing on local disk, through a [`Disk`].
//!
//! A file that must survive a crash is written under a temporary name, fsynced,
//! renamed into place, and then its directory is fsynced, so after power loss it
//! is either absent or complete. New directories are fsynced into their parents.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::disk::{Disk, DiskFile};

/// Prefix of temporary files; anything starting with it is garbage after a crash.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Fsyncs a directory, so that entries created, renamed or removed in it persist.
pub fn sync_dir(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    disk.sync_dir(dir)
}

/// Directories this process created whose fsync into their parent failed:
/// they exist, but may not survive a power cut. Held (locked) while
/// directories are checked and created, so that a thread that finds a
/// directory another thread has just created waits until it is synced.
/// Together: a directory this process finds exists and is not in the set is
/// durable (it was created and synced under the lock, or was there at start,
/// and a crash leaves only what is durable visible). Otherwise a writer could
/// commit a file inside a directory a power cut then takes with it.
static UNSYNCED_DIRS: std::sync::Mutex<BTreeSet<PathBuf>> = std::sync::Mutex::new(BTreeSet::new());

/// Creates `dir` and any missing parents, fsyncing each new entry into its
/// parent; an existing one whose earlier fsync failed is fsynced now.
pub fn create_dir_all_synced(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    let mut unsynced = UNSYNCED_DIRS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut missing = Vec::new();
    let mut current = dir;
    loop {
        let exists = disk.is_dir(current);
        if !exists || unsynced.contains(current) {
            missing.push((current.to_path_buf(), exists));
        }
        match current.parent() {
            Some(parent) if !parent.as_os_str().is_empty() && (!exists || !unsynced.is_empty()) => current = parent,
            _ => break,
        }
    }
    for (path, exists) in missing.iter().rev() {
        if !exists {
            match disk.create_dir(path) {
                Ok(()) => {}
                // Made by another process since the check: synced into its
                // parent all the same, since it may not have done it yet.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Err(e) = disk.sync_dir(parent) {
                unsynced.insert(path.clone());
                return Err(e);
            }
        }
        unsynced.remove(path);
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

/// A file that counts the bytes written through it: the size of a file
/// written once, front to back, without asking the disk.
#[derive(Debug)]
struct Counted<'a> {
    file: &'a mut dyn DiskFile,
    bytes: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl DiskFile for Counted<'_> {
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn truncate_to(&mut self, len: u64) -> io::Result<()> {
        self.file.truncate_to(len)?;
        self.bytes = len;
        Ok(())
    }
}

/// Writes a file atomically and durably: `write` fills a temporary file, which is
/// fsynced, renamed to `path`, and the directory fsynced. On error before the
/// rename the temporary file is removed and `path` is untouched
/// ([`AtomicWriteError::NotWritten`]); an error after it is
/// [`AtomicWriteError::OutcomeUnknown`]. Returns the file's size.
pub fn write_atomic(
    disk: &dyn Disk,
    path: &Path,
    write: impl FnOnce(&mut dyn DiskFile) -> io::Result<()>,
) -> Result<u64, AtomicWriteError> {
    let dir = path.parent().ok_or_else(|| {
        AtomicWriteError::NotWritten(io::Error::new(io::ErrorKind::InvalidInput, "path has no directory"))
    })?;
    create_dir_all_synced(disk, dir).map_err(AtomicWriteError::NotWritten)?;
    let temp = temp_path_for(path);
    let written = (|| {
        let mut file = disk.create(&temp)?;
        let mut counted = Counted { file: file.as_mut(), bytes: 0 };
        write(&mut counted)?;
        counted.flush()?;
        let size = counted.bytes;
        file.sync_all()?;
        drop(file);
        disk.rename(&temp, path)?;
        Ok(size)
    })();
    let size = match written {
        Ok(size) => size,
        Err(e) => {
            let _ = disk.remove_file(&temp);
            return Err(AtomicWriteError::NotWritten(e));
        }
    };
    let subject = path.to_string_lossy();
    match crate::faults::injected("fs-sync-dir-after-rename", &subject) {
        Some(fault) => Err(AtomicWriteError::OutcomeUnknown(fault)),
        None => disk.sync_dir(dir).map(|()| size).map_err(AtomicWriteError::OutcomeUnknown),
    }
}

/// [`write_atomic`] for bytes already in memory.
pub fn write_atomic_bytes(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_atomic(disk, path, |file| file.write_all(bytes)).map(|_| ())
}
