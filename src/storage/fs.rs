//! Crash-safe file writing on local disk, through a [`Disk`].
//!
//! A file that must survive a crash is written under a temporary name, fsynced,
//! renamed into place, and then its directory is fsynced, so after power loss it
//! is either absent or complete. New directories are fsynced into their parents.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::disk::{Disk, DiskEntry, DiskFile, DiskStat};

/// Prefix of temporary files; anything starting with it is garbage after a crash.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Creates `dir` and any missing parents, and makes sure each is durable in
/// its parent before anything is written in it.
///
/// "It exists" does not mean "it survives a power cut": another thread may
/// have just created it, an earlier fsync into its parent may have failed,
/// or a process killed before that fsync left it in the page cache. So the
/// first time a process uses a directory, its entry is fsynced into its
/// parent, up the tree to the first directory the process already knows is
/// durable ([`Disk::durable_dirs`]), under that set's lock. Later calls for
/// the same directory cost a set lookup and a `stat`. A directory that was
/// there before whose parent this process may not open (traversable but not
/// readable, above the data root) is taken as it is.
pub fn create_dir_all_synced(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    let mut durable = disk.durable_dirs().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // A directory known durable may have been deleted since (a dropped
    // table): then it is made again.
    let known = |path: &Path, durable: &mut std::collections::BTreeSet<PathBuf>| {
        durable.contains(path) && (disk.is_dir(path) || !durable.remove(path))
    };
    let mut unknown = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current.filter(|p| !p.as_os_str().is_empty()) {
        if known(path, &mut durable) {
            break;
        }
        unknown.push(path.to_path_buf());
        current = path.parent();
    }
    for path in unknown.iter().rev() {
        let existed = disk.is_dir(path);
        if !existed {
            match disk.create_dir(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            match disk.sync_dir(parent) {
                Ok(()) => {}
                Err(e) if existed && e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(e) => return Err(e),
            }
        }
        durable.insert(path.clone());
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

/// Removes the directory `dir` and everything under it, as
/// `std::fs::remove_dir_all` does, through `disk`. Nothing is synced: what
/// a crash brings back is found by the orphan sweep.
pub fn remove_dir_all(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    remove_tree(disk, dir, false)
}

/// [`remove_dir_all`], durably: each directory is synced once emptied and
/// its parent once it is gone, so that a crash brings nothing back.
pub fn remove_dir_all_durably(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    remove_tree(disk, dir, true)
}

fn remove_tree(disk: &dyn Disk, dir: &Path, durably: bool) -> io::Result<()> {
    for entry in disk.read_dir(dir)? {
        let removed =
            if entry.is_dir { remove_tree(disk, &entry.path, durably) } else { disk.remove_file(&entry.path) };
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    if durably {
        disk.sync_dir(dir)?;
    }
    disk.remove_dir(dir)?;
    match dir.parent().filter(|_| durably) {
        Some(parent) => disk.sync_dir(parent),
        None => Ok(()),
    }
}

/// Removes the file at `path` and syncs its directory, so that a crash
/// cannot bring it back; a file already gone is fine.
pub fn remove_file_durably(disk: &dyn Disk, path: &Path) -> Result<(), AtomicWriteError> {
    match disk.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(AtomicWriteError::NotWritten(e)),
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    disk.sync_dir(&dir).map_err(AtomicWriteError::OutcomeUnknown)
}

/// Every file under `dir`, at any depth, with what [`Disk::stat`] says of
/// it: none if `dir` does not exist, and not those removed between the
/// listing and their stat (a listing races with deletions).
pub fn files_under(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<(DiskEntry, DiskStat)>> {
    let mut found = Vec::new();
    let entries = match disk.read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        if entry.is_dir {
            found.extend(files_under(disk, &entry.path)?);
            continue;
        }
        match disk.stat(&entry.path) {
            Ok(stat) => found.push((entry, stat)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}
