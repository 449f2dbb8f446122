//! The local catalog: JSON files beside the data, loaded into memory at start-up.
//!
//! Layout, under the data root:
//! ```text
//! <db>/<table>/schema.json                                 the table's columns
//! <db>/<table>/tombstones.json                             deletes not yet carried out
//! <db>/<table>/date=YYYY-MM-DD/hour=HH/metadata.json       the partition's files
//! <db>/dropped.json                                        measurements dropped lately
//! ```
//! Each is rewritten whole and atomically on every change. A dropped
//! measurement loses its `schema.json` first (it is no table without one),
//! then the rest of its directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::memory::{catalog_reads_from_view, CatalogView, PartitionState};
use super::names::{check_name, NameKind};
use super::schema::SchemaFile;
use super::{Catalog, CatalogError, Column, Commit, FileEntry, PartitionKey, TableSchema, Tombstone};
use crate::storage::disk::{Disk, RealDisk};
use crate::storage::fs::{remove_file_durably, write_atomic_bytes, AtomicWriteError, TEMP_PREFIX};

/// Name of the per-partition catalog file.
pub const PARTITION_FILE: &str = "metadata.json";

/// Name of the per-table schema file.
pub const SCHEMA_FILE: &str = "schema.json";

/// Name of the per-table file of live deletes.
pub const TOMBSTONES_FILE: &str = "tombstones.json";

/// The contents of `tombstones.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredTombstones {
    tombstones: Vec<Tombstone>,
}

/// Name of the per-database file of measurements dropped while the WAL may
/// still hold writes to them from before.
pub const DROPS_FILE: &str = "dropped.json";

/// The contents of `dropped.json`: each table's latest drop.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredDrops {
    drops: BTreeMap<String, TableDrop>,
}

/// A table's latest drop: its WAL sequence, and whether its directories on
/// the storage layers may still hold files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TableDrop {
    sequence: u64,
    #[serde(default)]
    files_left: bool,
    /// A table of the name was made after the drop (by a later write).
    #[serde(default)]
    remade: bool,
}

/// Each database's drops, by table.
type Drops = BTreeMap<String, BTreeMap<String, TableDrop>>;

const LOCK_SHARDS: usize = 64;

/// A file entry as stored in `metadata.json`, with GigAPI's extra fields so that
/// GigAPI tooling can read the partition.
#[derive(Debug, Serialize, Deserialize)]
struct StoredFile {
    #[serde(flatten)]
    entry: FileEntry,
    #[serde(default)]
    database: String,
    #[serde(default)]
    table: String,
    #[serde(default)]
    writer_id: String,
    #[serde(default = "one_hour")]
    range: String,
    #[serde(rename = "type", default = "compacted")]
    kind: String,
}

fn one_hour() -> String {
    "1h".into()
}

fn compacted() -> String {
    "compacted".into()
}

/// The contents of `metadata.json`, in GigAPI's shape.
#[derive(Debug, Serialize, Deserialize)]
struct StoredPartition {
    #[serde(rename = "type")]
    table: String,
    parquet_size_bytes: u64,
    row_count: u64,
    min_time: i64,
    max_time: i64,
    wal_sequence: u64,
    #[serde(default)]
    drop_queue: Vec<serde_json::Value>,
    files: Vec<StoredFile>,
}

/// The catalog kept in JSON files under the data root.
#[derive(Debug)]
pub struct LocalCatalog {
    /// Where its files are: the real file system, or a simulated disk in tests.
    disk: Arc<dyn Disk>,
    root: PathBuf,
    view: CatalogView,
    schema_lock: tokio::sync::Mutex<()>,
    partition_locks: Vec<tokio::sync::Mutex<()>>,
    /// Why the catalog takes no more changes, once a write's outcome is unknown.
    stopped: std::sync::Mutex<Option<String>>,
    /// Each database's `dropped.json`, as on disk.
    drops: std::sync::Mutex<Drops>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Io { path: path.display().to_string(), source }
}

fn read_dir_names(disk: &dyn Disk, dir: &Path) -> Result<Vec<String>, CatalogError> {
    let mut names: Vec<String> =
        disk.read_dir(dir).map_err(io_error(dir))?.into_iter().filter(|e| e.is_dir).map(|e| e.name).collect();
    names.sort();
    Ok(names)
}

fn read_json<T: for<'de> Deserialize<'de>>(disk: &dyn Disk, path: &Path) -> Result<Option<T>, CatalogError> {
    let bytes = match disk.read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CatalogError::Corrupt { path: path.display().to_string(), message: e.to_string() })
}

impl LocalCatalog {
    /// Loads the catalog under `root` (creating nothing).
    pub fn open(root: &Path) -> Result<Self, CatalogError> {
        LocalCatalog::open_on(Arc::new(RealDisk), root)
    }

    /// Loads the catalog under `root` on `disk` (creating nothing).
    pub fn open_on(disk: Arc<dyn Disk>, root: &Path) -> Result<Self, CatalogError> {
        let view = CatalogView::default();
        let mut drops = BTreeMap::new();
        let disk_ref = disk.as_ref();
        if disk_ref.is_dir(root) {
            for database in read_dir_names(disk_ref, root)? {
                if check_name(NameKind::Database, &database).is_err() {
                    continue;
                }
                let db_dir = root.join(&database);
                if let Some(stored) = read_json::<StoredDrops>(disk_ref, &db_dir.join(DROPS_FILE))? {
                    drops.insert(database.clone(), stored.drops);
                }
                for table in read_dir_names(disk_ref, &db_dir)? {
                    let table_dir = db_dir.join(&table);
                    let Some(schema) = read_json::<SchemaFile>(disk_ref, &table_dir.join(SCHEMA_FILE))? else {
                        if drops.get(&database).is_some_and(|d: &BTreeMap<String, TableDrop>| d.contains_key(&table)) {
                            // A dropped table whose directory was not all
                            // removed when the process stopped: its schema
                            // went first. A new table of the name must not
                            // find its partitions.
                            crate::storage::fs::remove_dir_all(disk_ref, &table_dir).map_err(io_error(&table_dir))?;
                        } else if !table.starts_with(TEMP_PREFIX) {
                            tracing::warn!(dir = %table_dir.display(), "directory has no {SCHEMA_FILE}; not a table");
                        }
                        continue;
                    };
                    let mut partitions = BTreeMap::new();
                    for date in read_dir_names(disk_ref, &table_dir)?.iter().filter(|d| d.starts_with("date=")) {
                        for hour in read_dir_names(disk_ref, &table_dir.join(date))? {
                            let path = table_dir.join(date).join(&hour).join(PARTITION_FILE);
                            let Some(stored) = read_json::<StoredPartition>(disk_ref, &path)? else { continue };
                            // A catalog file in a directory that names no hour would be lost
                            // silently if skipped.
                            let key =
                                PartitionKey::from_dir_names(date, &hour).ok_or_else(|| CatalogError::Corrupt {
                                    path: path.display().to_string(),
                                    message: "its directory is not a date=YYYY-MM-DD/hour=HH partition".into(),
                                })?;
                            let partition = PartitionState {
                                files: stored.files.into_iter().map(|f| f.entry).collect(),
                                wal_sequence: stored.wal_sequence,
                            };
                            partitions.insert(key, partition);
                        }
                    }
                    view.set_table(&database, &table, Arc::new(schema.into_schema()), 0, partitions);
                    if let Some(stored) = read_json::<StoredTombstones>(disk_ref, &table_dir.join(TOMBSTONES_FILE))? {
                        view.set_tombstones(&database, &table, stored.tombstones.into_iter().map(Arc::new).collect());
                    }
                }
            }
        }
        Ok(LocalCatalog {
            disk,
            root: root.to_path_buf(),
            view,
            schema_lock: tokio::sync::Mutex::new(()),
            partition_locks: (0..LOCK_SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
            stopped: std::sync::Mutex::new(None),
            drops: std::sync::Mutex::new(drops),
        })
    }

    /// The directory of a table.
    pub fn table_dir(&self, database: &str, table: &str) -> PathBuf {
        self.root.join(database).join(table)
    }

    /// The lock every commit to `partition` takes, so that commits to one
    /// partition (a persist and a merge, say) read and write its
    /// `metadata.json` one after the other. The hash must be the same on
    /// every call: a randomly seeded one (hashbrown's default) gives two
    /// commits of the same partition different locks, and the later one
    /// then writes a file without the earlier one's change.
    fn partition_lock(&self, database: &str, table: &str, partition: PartitionKey) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        (database, table, partition).hash(&mut hasher);
        &self.partition_locks[(hasher.finish() as usize) % LOCK_SHARDS]
    }
}

/// Runs a change to a catalog file on the blocking pool: the file written
/// whole, or removed, and its directory synced.
async fn change_file(
    disk: Arc<dyn Disk>,
    path: PathBuf,
    change: impl FnOnce(&dyn Disk, &Path) -> Result<(), AtomicWriteError> + Send + 'static,
) -> Result<(), CatalogError> {
    let display = path.display().to_string();
    match tokio::task::spawn_blocking(move || change(disk.as_ref(), &path)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(AtomicWriteError::NotWritten(source))) => Err(CatalogError::Io { path: display, source }),
        Ok(Err(AtomicWriteError::OutcomeUnknown(source))) => {
            Err(CatalogError::OutcomeUnknown { path: display, source })
        }
        // The blocking task died: whether it changed the file is unknown.
        Err(e) => Err(CatalogError::OutcomeUnknown { path: display, source: std::io::Error::other(e) }),
    }
}

/// Removes a partition's `metadata.json` durably, then the hour and date
/// directories above it if that leaves them empty (a directory that still
/// holds data files stays).
fn remove_partition_file(disk: &dyn Disk, path: &Path) -> Result<(), AtomicWriteError> {
    remove_file_durably(disk, path)?;
    if let Some(hour) = path.parent() {
        if disk.remove_dir(hour).is_ok() {
            if let Some(date) = hour.parent() {
                let _ = disk.remove_dir(date);
            }
        }
    }
    Ok(())
}

impl LocalCatalog {
    /// Writes a table's tombstones, then publishes them.
    async fn store_tombstones(
        &self,
        database: &str,
        table: &str,
        mut tombstones: Vec<Arc<Tombstone>>,
    ) -> Result<(), CatalogError> {
        tombstones.sort_by_key(|t| t.sequence);
        let stored = StoredTombstones { tombstones: tombstones.iter().map(|t| Tombstone::clone(t)).collect() };
        let path = self.table_dir(database, table).join(TOMBSTONES_FILE);
        let bytes = serde_json::to_vec_pretty(&stored)
            .map_err(|e| CatalogError::Encode { path: path.display().to_string(), message: e.to_string() })?;
        self.write_catalog_file(path, bytes).await?;
        self.view.set_tombstones(database, table, tombstones);
        Ok(())
    }

    /// Removes a partition's catalog file durably, unless the catalog has
    /// stopped (see [`remove_partition_file`]).
    async fn remove_partition_catalog_file(&self, path: PathBuf) -> Result<(), CatalogError> {
        self.check_running()?;
        let result = change_file(Arc::clone(&self.disk), path, remove_partition_file).await;
        self.stop_if_unknown(result)
    }

    /// A database's drops, as last stored.
    fn database_drops(&self, database: &str) -> BTreeMap<String, TableDrop> {
        self.drops.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(database).cloned().unwrap_or_default()
    }

    /// Writes a database's `dropped.json` (removed when it is empty), then
    /// publishes it.
    async fn store_drops(&self, database: &str, drops: BTreeMap<String, TableDrop>) -> Result<(), CatalogError> {
        let path = self.root.join(database).join(DROPS_FILE);
        if drops.is_empty() {
            self.check_running()?;
            let result = change_file(Arc::clone(&self.disk), path, remove_file_durably).await;
            self.stop_if_unknown(result)?;
        } else {
            let stored = StoredDrops { drops: drops.clone() };
            let bytes = serde_json::to_vec_pretty(&stored)
                .map_err(|e| CatalogError::Encode { path: path.display().to_string(), message: e.to_string() })?;
            self.write_catalog_file(path, bytes).await?;
        }
        let mut all = self.drops.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if drops.is_empty() {
            all.remove(database);
        } else {
            all.insert(database.to_owned(), drops);
        }
        Ok(())
    }

    /// Remembers the drop of a table (so that a replay of the WAL skips its
    /// older writes from then on, and its directories on the layers are
    /// cleared even after a crash), then removes its schema, durably, and
    /// the rest of its directory.
    async fn remove_dropped_table(&self, database: &str, table: &str, sequence: u64) -> Result<(), CatalogError> {
        let mut drops = self.database_drops(database);
        drops.insert(table.to_owned(), TableDrop { sequence, files_left: true, remade: false });
        self.store_drops(database, drops).await?;
        // The schema goes first, durably: a directory without it is no table
        // (and one a drop began is removed at the next start).
        let table_dir = self.table_dir(database, table);
        let result = change_file(Arc::clone(&self.disk), table_dir.join(SCHEMA_FILE), remove_file_durably).await;
        self.stop_if_unknown(result)?;
        self.view.remove_table(database, table);
        // The rest under the locks, so that a new table of the name does not
        // meet its partitions.
        let disk = Arc::clone(&self.disk);
        let dir = table_dir.clone();
        // A compactor's merge or move may be writing a file into it (its
        // commit is refused now): the directory is listed again until it
        // is empty. A disk error stops the catalog (see `drop_table`): the
        // next start removes what is left, before a table of the name could
        // take its partitions.
        let removed = tokio::task::spawn_blocking(move || {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match crate::storage::fs::remove_dir_all_durably(disk.as_ref(), &dir) {
                    Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempts < 5 => {
                        std::thread::sleep(std::time::Duration::from_millis(50 * attempts));
                    }
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => return Ok(()),
                }
            }
        })
        .await
        .map_err(|e| CatalogError::Io { path: table_dir.display().to_string(), source: std::io::Error::other(e) })?;
        removed.map_err(io_error(&table_dir))
    }

    /// Refuses changes once the catalog has stopped.
    fn check_running(&self) -> Result<(), CatalogError> {
        match self.stopped() {
            Some(reason) => Err(CatalogError::Stopped(reason)),
            None => Ok(()),
        }
    }

    /// Writes a catalog file, unless the catalog has stopped; a write whose
    /// outcome is unknown stops it, since memory no longer tells what the
    /// disk holds.
    async fn write_catalog_file(&self, path: PathBuf, bytes: Vec<u8>) -> Result<(), CatalogError> {
        self.check_running()?;
        let result =
            change_file(Arc::clone(&self.disk), path, move |disk, path| write_atomic_bytes(disk, path, &bytes)).await;
        self.stop_if_unknown(result)
    }

    /// Stops the catalog when a change's outcome is unknown, since memory no
    /// longer tells what the disk holds.
    fn stop_if_unknown(&self, result: Result<(), CatalogError>) -> Result<(), CatalogError> {
        if let Err(error @ CatalogError::OutcomeUnknown { .. }) = &result {
            tracing::error!(
                %error,
                "the catalog stopped: a change may or may not be on disk; no more changes and no deletions until \
                 the server restarts and reloads the catalog from disk"
            );
            let mut stopped = self.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            stopped.get_or_insert_with(|| error.to_string());
        }
        result
    }
}

#[async_trait]
impl Catalog for LocalCatalog {
    catalog_reads_from_view!();

    async fn add_columns(
        &self,
        database: &str,
        table: &str,
        columns: &[Column],
        max_columns: usize,
    ) -> Result<Arc<TableSchema>, CatalogError> {
        let _guard = self.schema_lock.lock().await;
        let current = self.table_schema(database, table);
        let base = current.clone().unwrap_or_default();
        let merged = match base.merged_with(table, columns, max_columns)? {
            Some(merged) => merged,
            None if current.is_some() => return Ok(base),
            None => TableSchema::clone(&base),
        };
        if current.is_none() {
            // Made again after a drop: a replay of that drop must leave it.
            let mut drops = self.database_drops(database);
            if let Some(drop) = drops.get_mut(table).filter(|d| !d.remade) {
                drop.remade = true;
                self.store_drops(database, drops).await?;
            }
        }
        let path = self.table_dir(database, table).join(SCHEMA_FILE);
        let bytes = serde_json::to_vec_pretty(&SchemaFile::from_schema(table, &merged))
            .map_err(|e| CatalogError::Encode { path: path.display().to_string(), message: e.to_string() })?;
        self.write_catalog_file(path, bytes).await?;
        let merged = Arc::new(merged);
        self.view.set_schema_version(database, table, Arc::clone(&merged), 0);
        Ok(merged)
    }

    async fn add_tombstone(
        &self,
        database: &str,
        table: &str,
        tombstone: Tombstone,
        max: usize,
    ) -> Result<(), CatalogError> {
        let _guard = self.schema_lock.lock().await;
        if self.view.table_schema(database, table).is_none() {
            // Dropped: it has no row left to hide.
            return Ok(());
        }
        let mut tombstones = self.view.tombstones(database, table);
        if tombstones.iter().any(|t| t.sequence == tombstone.sequence) {
            return Ok(());
        }
        if tombstones.len() >= max {
            return Err(CatalogError::TooManyTombstones { database: database.into(), table: table.into(), max });
        }
        tombstones.push(Arc::new(tombstone));
        self.store_tombstones(database, table, tombstones).await
    }

    fn records_deletes(&self) -> bool {
        true
    }

    async fn remove_tombstones(&self, database: &str, table: &str, sequences: &[u64]) -> Result<(), CatalogError> {
        let _guard = self.schema_lock.lock().await;
        let mut tombstones = self.view.tombstones(database, table);
        let before = tombstones.len();
        tombstones.retain(|t| !sequences.contains(&t.sequence));
        if tombstones.len() == before {
            return Ok(());
        }
        self.store_tombstones(database, table, tombstones).await
    }

    fn stopped(&self) -> Option<String> {
        self.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn dropped(&self, database: &str, table: &str) -> Option<u64> {
        self.drops.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(database)?.get(table).map(|d| d.sequence)
    }

    async fn drop_table(&self, database: &str, table: &str, sequence: u64) -> Result<(), CatalogError> {
        let _schema = self.schema_lock.lock().await;
        // Every partition's lock, in order: no commit lands between the
        // files listed here and the table's directory going.
        let mut _partitions = Vec::with_capacity(LOCK_SHARDS);
        for lock in &self.partition_locks {
            _partitions.push(lock.lock().await);
        }
        let files: Vec<FileEntry> =
            self.view.files(database, table, i64::MIN, i64::MAX).into_iter().flat_map(|p| p.files).collect();
        // A replay of a drop that finished: the table is gone, or is a new
        // one with files written after the drop. A table whose files are all
        // older did not finish going (the process stopped first); one with
        // no files may be either, and goes: a new one comes back with the
        // writes replayed after the drop.
        let recorded = self.database_drops(database).get(table).filter(|d| d.sequence >= sequence).cloned();
        let gone = recorded.as_ref().is_some_and(|d| d.remade || self.view.table_schema(database, table).is_none());
        if gone || files.iter().any(|f| f.wal_sequence > sequence) {
            return Ok(());
        }
        self.check_running()?;
        match self.remove_dropped_table(database, table, sequence).await {
            Ok(()) => Ok(()),
            Err(error) => {
                // The drop is in the WAL, and its rows already left the
                // buffer: the catalog must not go on without it. A restart
                // replays it.
                tracing::error!(%database, %table, %error, "the catalog stopped: a drop did not finish");
                let mut stopped = self.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                stopped.get_or_insert_with(|| format!("the drop of {database}.{table} did not finish: {error}"));
                Err(error)
            }
        }
    }

    async fn drop_database(&self, database: &str) -> Result<(), CatalogError> {
        let _schema = self.schema_lock.lock().await;
        self.view.remove_database(database);
        Ok(())
    }

    fn undeleted_drops(&self) -> Vec<(String, String)> {
        let drops = self.drops.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        drops
            .iter()
            .flat_map(|(database, tables)| {
                tables.iter().filter(|(_, drop)| drop.files_left).map(|(table, _)| (database.clone(), table.clone()))
            })
            .collect()
    }

    async fn drop_files_deleted(&self, database: &str, table: &str) -> Result<(), CatalogError> {
        let _schema = self.schema_lock.lock().await;
        let mut drops = self.database_drops(database);
        match drops.get_mut(table) {
            Some(drop) if drop.files_left => drop.files_left = false,
            _ => return Ok(()),
        }
        self.store_drops(database, drops).await
    }

    async fn expire_drops(&self, through: u64) -> Result<(), CatalogError> {
        let _schema = self.schema_lock.lock().await;
        let all = self.drops.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for (database, mut drops) in all {
            let before = drops.len();
            // A drop whose files are not all deleted stays until they are.
            drops.retain(|_, drop| drop.sequence > through || drop.files_left);
            if drops.len() != before {
                self.store_drops(&database, drops).await?;
            }
        }
        Ok(())
    }

    async fn commit(&self, commit: Commit) -> Result<(), CatalogError> {
        let _guard = self.partition_lock(&commit.database, &commit.table, commit.partition).lock().await;
        if self.view.table_schema(&commit.database, &commit.table).is_none() {
            // Dropped while a merge of its files ran: nothing is left to change.
            return Err(CatalogError::MissingTable { database: commit.database, table: commit.table });
        }
        let partition = self.view.partition(&commit.database, &commit.table, commit.partition).committed(&commit)?;

        let stored = StoredPartition {
            table: commit.table.clone(),
            parquet_size_bytes: partition.files.iter().map(|f| f.size_bytes).sum(),
            row_count: partition.files.iter().map(|f| f.row_count).sum(),
            min_time: partition.files.iter().map(|f| f.min_time).min().unwrap_or(0),
            max_time: partition.files.iter().map(|f| f.max_time).max().unwrap_or(0),
            wal_sequence: partition.wal_sequence,
            drop_queue: Vec::new(),
            files: partition
                .files
                .iter()
                .map(|entry| StoredFile {
                    entry: entry.clone(),
                    database: commit.database.clone(),
                    table: commit.table.clone(),
                    writer_id: String::new(),
                    range: one_hour(),
                    kind: compacted(),
                })
                .collect(),
        };
        let path =
            self.table_dir(&commit.database, &commit.table).join(commit.partition.dir_name()).join(PARTITION_FILE);
        if partition.files.is_empty() {
            // Every row of the partition was deleted (or expired): it leaves
            // the catalog, and its WAL sequence with it. A write it covered
            // that the WAL still holds is replayed again, and then so is the
            // later delete that removed it.
            self.remove_partition_catalog_file(path).await?;
            self.view.remove_partition(&commit.database, &commit.table, commit.partition);
            return Ok(());
        }
        let bytes = serde_json::to_vec(&stored)
            .map_err(|e| CatalogError::Encode { path: path.display().to_string(), message: e.to_string() })?;
        self.write_catalog_file(path, bytes).await?;

        self.view.set_partition(&commit.database, &commit.table, commit.partition, partition);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: usize) -> FileEntry {
        FileEntry {
            id: format!("f{id}"),
            layer: "default".into(),
            path: format!("date=2023-11-14/hour=22/f{id}.1.parquet"),
            level: 1,
            size_bytes: 100,
            row_count: 1,
            min_time: 1_700_000_000_000_000_000,
            max_time: 1_700_000_000_000_000_000,
            wal_sequence: id as u64,
            deletes_applied: 0,
            chunk_time: 0,
        }
    }

    #[test]
    fn every_commit_to_a_partition_takes_the_same_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = LocalCatalog::open(dir.path()).expect("open");
        let partition = PartitionKey::for_time(1_700_000_000_000_000_000);
        let first = catalog.partition_lock("db", "m", partition) as *const _;
        for _ in 0..100 {
            assert_eq!(catalog.partition_lock("db", "m", partition) as *const _, first);
        }
    }

    /// A persist and a merge commit to one partition at the same time: each
    /// must see the other's change, in memory and in `metadata.json`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_to_one_partition_lose_no_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Arc::new(LocalCatalog::open(dir.path()).expect("open"));
        let columns = [Column { name: "v".into(), column_type: super::super::ColumnType::Float }];
        catalog.add_columns("db", "m", &columns, 100).await.expect("schema");
        let partition = PartitionKey::for_time(1_700_000_000_000_000_000);
        let commits = (0..32).map(|id| {
            let catalog = Arc::clone(&catalog);
            tokio::spawn(async move {
                let commit = Commit {
                    database: "db".into(),
                    table: "m".into(),
                    partition,
                    add: vec![file(id)],
                    remove: Vec::new(),
                    wal_sequence: id as u64,
                    lease: None,
                };
                catalog.commit(commit).await.expect("commit");
            })
        });
        for commit in commits.collect::<Vec<_>>() {
            commit.await.expect("task");
        }
        let in_memory = catalog.view.partition("db", "m", partition).files.len();
        assert_eq!(in_memory, 32, "commits lost in memory");
        let reopened = LocalCatalog::open(dir.path()).expect("reopen");
        assert_eq!(reopened.view.partition("db", "m", partition).files.len(), 32, "commits lost on disk");
    }
}
