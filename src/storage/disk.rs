//! The file operations the durable parts of the server do, behind one small
//! interface: the real file system, or (in tests) a simulated disk that can
//! lose power, tear writes and fail calls on purpose ([`super::sim_disk`]).
//!
//! The interface holds what the durable parts do with local files: creating,
//! appending, syncing, renaming and removing files, creating, listing,
//! syncing and removing directories, reading files back, and serving a
//! directory as an object store for queries and merges. Whatever goes
//! through it can be tested against a power cut at any call.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;

/// An entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEntry {
    /// The entry's name within its directory.
    pub name: String,
    /// Its full path.
    pub path: PathBuf,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// What [`Disk::stat`] tells of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStat {
    /// Its size in bytes (0 for a directory).
    pub len: u64,
    /// When it was last written: what the orphan sweep judges a file's age by.
    pub modified: std::time::SystemTime,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// A file opened for writing through a [`Disk`].
pub trait DiskFile: Write + Send + std::fmt::Debug {
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;

    /// Makes the file's data and metadata durable (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;

    /// Cuts the file (or extends it with zeros) to `len` bytes and moves the
    /// write position there, so the next write continues at `len`.
    fn truncate_to(&mut self, len: u64) -> io::Result<()>;
}

/// File operations, as the operating system offers them: nothing here is
/// durable until a sync says so (a file's data by [`DiskFile::sync_data`], a
/// directory's entries by [`Disk::sync_dir`]).
pub trait Disk: Send + Sync + std::fmt::Debug {
    /// Creates the directory `path`, whose parent must exist.
    fn create_dir(&self, path: &Path) -> io::Result<()>;

    /// Whether `path` is an existing directory.
    fn is_dir(&self, path: &Path) -> bool;

    /// The entries of the directory `dir`, in no particular order.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DiskEntry>>;

    /// The whole content of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// The size and age of what is at `path`.
    fn stat(&self, path: &Path) -> io::Result<DiskStat>;

    /// Creates the file at `path`, or empties it if it exists, for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;

    /// Opens the existing file at `path` for writing, at its start.
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;

    /// Renames the file `from` to `to`, replacing what `to` was.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes the empty directory at `path`.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;

    /// Makes the entries created, renamed or removed in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// The directories this process has made sure are durable in their
    /// parents (see [`super::fs::create_dir_all_synced`]).
    fn durable_dirs(&self) -> &Mutex<BTreeSet<PathBuf>>;

    /// The directory `root` (which exists) as an object store, through
    /// which queries, merges and copies read a local layer.
    fn object_store(&self, root: &Path) -> Result<Arc<dyn ObjectStore>, String>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealDisk;

/// A real file, opened through [`RealDisk`].
#[derive(Debug)]
struct RealFile(File);

impl Write for RealFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl DiskFile for RealFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn truncate_to(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        self.0.seek(SeekFrom::Start(len)).map(|_| ())
    }
}

impl Disk for RealDisk {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DiskEntry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            entries.push(DiskEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                path: entry.path(),
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        Ok(entries)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn stat(&self, path: &Path) -> io::Result<DiskStat> {
        let metadata = std::fs::metadata(path)?;
        Ok(DiskStat { len: metadata.len(), modified: metadata.modified()?, is_dir: metadata.is_dir() })
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(RealFile(OpenOptions::new().write(true).open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn durable_dirs(&self) -> &Mutex<BTreeSet<PathBuf>> {
        static DURABLE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
        &DURABLE
    }

    fn object_store(&self, root: &Path) -> Result<Arc<dyn ObjectStore>, String> {
        let local = object_store::local::LocalFileSystem::new_with_prefix(root).map_err(|e| e.to_string())?;
        Ok(Arc::new(local))
    }
}

/// Whether an I/O error means the disk is full (`ENOSPC`, `EDQUOT`): the
/// write may succeed once space is freed, so it is refused, not fatal.
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}
