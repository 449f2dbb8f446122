//! Where the definitions of schemas, tables and views are stored: a JSON
//! document with a version that grows by one per change. One process keeps
//! it in `<root>/_catalog/relations.json`; processes that share the Redis
//! catalog keep it there (`src/catalog/redis/relations.rs`) and follow it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::RelationError;
use crate::storage::disk::Disk;
use crate::storage::fs::{create_dir_all_synced, write_atomic_bytes, AtomicWriteError};

/// The store of the relations document.
#[async_trait]
pub trait RelationLog: Send + Sync + std::fmt::Debug {
    /// The stored document and its version (0 and None before the first change).
    async fn load(&self) -> Result<(u64, Option<String>), RelationError>;

    /// The stored version alone: what a follower polls.
    async fn version(&self) -> Result<u64, RelationError>;

    /// Stores `json` as version `expected + 1` if the stored version is
    /// still `expected`. A change that names files written since
    /// `files_since` is refused ([`StoreOutcome::Late`]) where another
    /// process's orphan sweep may already have judged them.
    async fn store(
        &self,
        expected: u64,
        json: &str,
        files_since: Option<std::time::SystemTime>,
    ) -> Result<StoreOutcome, RelationError>;

    /// Whether other processes change the document too, so that this one
    /// must follow it.
    fn shared(&self) -> bool;
}

/// What became of a [`RelationLog::store`]: nothing changed unless `Stored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The document is the new version.
    Stored,
    /// Another change came first: make the change again on its document.
    Conflict,
    /// Too late for the files the change names.
    Late,
}

/// `<root>/_catalog/relations.json`, replaced atomically on every change,
/// so a crash leaves either the old document or the new one. Only its own
/// process changes it: the version counts this process's changes.
#[derive(Debug)]
pub struct RelationFile {
    /// The disk it is on (a simulated one in crash tests).
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    version: Arc<AtomicU64>,
    /// Held while a change is checked and written.
    writing: Arc<std::sync::Mutex<()>>,
}

impl RelationFile {
    /// The document of the data root `root` on `disk`.
    pub fn new(disk: Arc<dyn Disk>, root: &std::path::Path) -> RelationFile {
        RelationFile { disk, dir: root.join("_catalog"), version: Arc::new(AtomicU64::new(0)), writing: Arc::default() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("relations.json")
    }
}

#[async_trait]
impl RelationLog for RelationFile {
    async fn load(&self) -> Result<(u64, Option<String>), RelationError> {
        let (path, disk) = (self.path(), Arc::clone(&self.disk));
        let version = self.version.load(Ordering::SeqCst);
        let shown = path.display().to_string();
        let io = |message: String| RelationError::Io { path: shown.clone(), message };
        let read = tokio::task::spawn_blocking(move || disk.read(&path)).await.map_err(|e| io(e.to_string()))?;
        match read {
            Ok(bytes) => String::from_utf8(bytes).map(|json| (version, Some(json))).map_err(|e| io(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((version, None)),
            Err(e) => Err(io(e.to_string())),
        }
    }

    async fn version(&self) -> Result<u64, RelationError> {
        Ok(self.version.load(Ordering::SeqCst))
    }

    /// One process alone changes the file, so no change is ever late.
    async fn store(
        &self,
        expected: u64,
        json: &str,
        _files_since: Option<std::time::SystemTime>,
    ) -> Result<StoreOutcome, RelationError> {
        let (dir, path, bytes) = (self.dir.clone(), self.path(), json.as_bytes().to_vec());
        let shown = path.display().to_string();
        let io = |e: &dyn std::fmt::Display| RelationError::Io { path: shown.clone(), message: e.to_string() };
        let (version, writing, disk) = (Arc::clone(&self.version), Arc::clone(&self.writing), Arc::clone(&self.disk));
        // The check, the file and its version change together, even if the
        // statement is cancelled meanwhile (a blocking task runs to its end)
        // and the next statement's store starts before this one ends.
        let written = tokio::task::spawn_blocking(move || {
            let _one_at_a_time = writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if version.load(Ordering::SeqCst) != expected {
                return Ok(false);
            }
            create_dir_all_synced(disk.as_ref(), &dir).map_err(AtomicWriteError::NotWritten)?;
            let written = write_atomic_bytes(disk.as_ref(), &path, &bytes);
            if !matches!(written, Err(AtomicWriteError::NotWritten(_))) {
                version.fetch_add(1, Ordering::SeqCst);
            }
            written.map(|()| true)
        })
        .await
        .map_err(|e| io(&e))?;
        match written {
            Ok(true) => Ok(StoreOutcome::Stored),
            Ok(false) => Ok(StoreOutcome::Conflict),
            Err(AtomicWriteError::NotWritten(e)) => Err(io(&e)),
            Err(AtomicWriteError::OutcomeUnknown(e)) => {
                Err(RelationError::OutcomeUnknown { path: shown.clone(), message: e.to_string() })
            }
        }
    }

    fn shared(&self) -> bool {
        false
    }
}
