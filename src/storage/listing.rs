//! Listing the files of a layer's hour partitions, for the orphan sweep.

use std::path::{Path, PathBuf};

use super::layer::Backend;
use super::{Layer, StorageError};

/// A file found by listing a layer: what the orphan sweep needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Path relative to the layer root: `<db>/<table>/date=../hour=../<name>`.
    pub relative: String,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

impl Layer {
    /// The files inside hour-partition directories
    /// (`<db>/<table>/date=YYYY-MM-DD/hour=HH/<name>`): Parquet files and
    /// temporary files, listed so that files no catalog entry names can be
    /// found. Nothing else under the root (the WAL, catalog files of other
    /// kinds) is listed.
    pub async fn list_partition_files(&self) -> Result<Vec<StoredObject>, StorageError> {
        fn in_partition(relative: &str) -> bool {
            let parts: Vec<&str> = relative.split('/').collect();
            parts.len() == 5 && parts[2].starts_with("date=") && parts[3].starts_with("hour=")
        }
        match &self.backend {
            Backend::Fs { root, .. } => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || list_local_partition_files(&root))
                    .await
                    .map_err(|e| StorageError::Io { path: String::new(), source: std::io::Error::other(e) })?
            }
            Backend::ObjectStore => {
                use futures::TryStreamExt;
                let objects: Vec<object_store::ObjectMeta> =
                    self.store.list(None).try_collect().await.map_err(self.store_error())?;
                Ok(objects
                    .into_iter()
                    .map(|o| StoredObject { relative: o.location.to_string(), modified: o.last_modified.into() })
                    .filter(|o| in_partition(&o.relative))
                    .collect())
            }
        }
    }
}

impl Layer {
    /// Every file under the directory `prefix` (a path relative to the layer
    /// root), at any depth; none when it does not exist.
    pub async fn list_under(&self, prefix: &str) -> Result<Vec<StoredObject>, StorageError> {
        match &self.backend {
            Backend::Fs { root, .. } => {
                let (root, dir) = (root.clone(), root.join(prefix.trim_end_matches('/')));
                let shown = dir.display().to_string();
                tokio::task::spawn_blocking(move || {
                    let mut found = Vec::new();
                    list_local_tree(&root, &dir, &mut found)?;
                    Ok(found)
                })
                .await
                .map_err(|e| StorageError::Io { path: shown, source: std::io::Error::other(e) })?
            }
            Backend::ObjectStore => {
                use futures::TryStreamExt;
                let prefix = object_store::path::Path::from(prefix);
                let objects: Vec<object_store::ObjectMeta> =
                    self.store.list(Some(&prefix)).try_collect().await.map_err(self.store_error())?;
                Ok(objects
                    .into_iter()
                    .map(|o| StoredObject { relative: o.location.to_string(), modified: o.last_modified.into() })
                    .collect())
            }
        }
    }
}

/// Adds every file under `dir` to `found`, with its path relative to `root`.
fn list_local_tree(root: &Path, dir: &Path, found: &mut Vec<StoredObject>) -> Result<(), StorageError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StorageError::Io { path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let metadata = entry.metadata().map_err(io(&path))?;
        if metadata.is_dir() {
            list_local_tree(root, &path, found)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let modified = metadata.modified().map_err(io(&path))?;
            found.push(StoredObject { relative: relative.to_string_lossy().into_owned(), modified });
        }
    }
    Ok(())
}

/// Walks `<root>/<db>/<table>/date=*/hour=*/` for files (see
/// [`Layer::list_partition_files`]).
fn list_local_partition_files(root: &Path) -> Result<Vec<StoredObject>, StorageError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StorageError::Io { path, source }
    };
    let dirs = |dir: &Path, prefix: Option<&str>| -> Result<Vec<(String, PathBuf)>, StorageError> {
        let mut found = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(io(dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(dir))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            let is_dir = entry.file_type().map_err(io(dir))?.is_dir();
            if is_dir && prefix.is_none_or(|p| name.starts_with(p)) && !name.starts_with('_') {
                found.push((name, entry.path()));
            }
        }
        Ok(found)
    };
    let mut files = Vec::new();
    for (database, db_dir) in dirs(root, None)? {
        for (table, table_dir) in dirs(&db_dir, None)? {
            for (date, date_dir) in dirs(&table_dir, Some("date="))? {
                for (hour, hour_dir) in dirs(&date_dir, Some("hour="))? {
                    for entry in std::fs::read_dir(&hour_dir).map_err(io(&hour_dir))? {
                        let entry = entry.map_err(io(&hour_dir))?;
                        let Ok(name) = entry.file_name().into_string() else { continue };
                        let metadata = entry.metadata().map_err(io(&entry.path()))?;
                        if !metadata.is_file() {
                            continue;
                        }
                        files.push(StoredObject {
                            relative: format!("{database}/{table}/{date}/{hour}/{name}"),
                            modified: metadata.modified().map_err(io(&entry.path()))?,
                        });
                    }
                }
            }
        }
    }
    Ok(files)
}
