//! The catalog's in-memory view, shared by every implementation: each serves
//! reads from it and publishes a change into it only once the change is
//! stored (in JSON files, or in Redis).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::tombstones::Tombstone;
use super::{
    CatalogError, Commit, FileEntry, PartitionFiles, PartitionKey, TableSchema, TableSummary, DEFAULT_DATABASE,
};

/// One hour partition: its files and the WAL sequence this process's writer
/// has persisted into them.
#[derive(Debug, Default, Clone)]
pub(crate) struct PartitionState {
    pub(crate) files: Vec<FileEntry>,
    pub(crate) wal_sequence: u64,
}

impl PartitionState {
    /// The highest WAL sequence the partition names: its own, and the
    /// deletes its files had carried out. The WAL must never hand out one of
    /// them again, or a later delete would pass as carried out on a file.
    pub(crate) fn highest_sequence(&self) -> u64 {
        self.files.iter().map(|f| f.deletes_applied).fold(self.wal_sequence, u64::max)
    }

    /// The partition after `commit`, or the file it removes that is not there
    /// (another process removed it first): a commit states what it expects.
    pub(crate) fn committed(&self, commit: &Commit) -> Result<PartitionState, CatalogError> {
        let mut next = self.clone();
        for id in &commit.remove {
            let before = next.files.len();
            next.files.retain(|f| &f.id != id);
            if next.files.len() == before {
                return Err(CatalogError::MissingFile {
                    database: commit.database.clone(),
                    table: commit.table.clone(),
                    partition: commit.partition,
                    id: id.clone(),
                });
            }
        }
        next.files.extend(commit.add.iter().cloned());
        next.wal_sequence = next.wal_sequence.max(commit.wal_sequence);
        Ok(next)
    }
}

#[derive(Debug, Default)]
struct TableState {
    schema: Arc<TableSchema>,
    /// The shared catalog's version of `schema` (0 for the local catalog):
    /// an older read never replaces a newer schema.
    schema_version: u64,
    partitions: BTreeMap<PartitionKey, PartitionState>,
    /// Deletes not yet carried out by rewriting every file they hide rows of,
    /// oldest first.
    tombstones: Vec<Arc<Tombstone>>,
}

#[derive(Debug, Default)]
struct State {
    databases: BTreeMap<String, BTreeMap<String, TableState>>,
    max_wal_sequence: u64,
}

/// Databases, tables, schemas and files, as the process last saw them.
#[derive(Debug)]
pub(crate) struct CatalogView {
    state: RwLock<State>,
}

impl Default for CatalogView {
    fn default() -> Self {
        let mut state = State::default();
        // Clients that name no database use `default`; it exists, empty, from the first start so
        // that `SHOW TABLES` and a Postgres connection to it work before anything is written.
        state.databases.entry(DEFAULT_DATABASE.to_owned()).or_default();
        CatalogView { state: RwLock::new(state) }
    }
}

impl CatalogView {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn databases(&self) -> Vec<String> {
        self.read().databases.keys().cloned().collect()
    }

    pub(crate) fn tables(&self, database: &str) -> Vec<String> {
        self.read().databases.get(database).map(|t| t.keys().cloned().collect()).unwrap_or_default()
    }

    pub(crate) fn table_schema(&self, database: &str, table: &str) -> Option<Arc<TableSchema>> {
        self.read().databases.get(database)?.get(table).map(|t| Arc::clone(&t.schema))
    }

    /// Publishes version `version` of a table's schema (0 for the local
    /// catalog), creating the database and table if needed, unless the view
    /// already has a later one: a schema only grows, and a persister working
    /// from an older version would drop the newer columns' values.
    pub(crate) fn set_schema_version(&self, database: &str, table: &str, schema: Arc<TableSchema>, version: u64) {
        let mut state = self.write();
        let entry = state.databases.entry(database.to_owned()).or_default().entry(table.to_owned()).or_default();
        if version >= entry.schema_version {
            entry.schema = schema;
            entry.schema_version = version;
        }
    }

    pub(crate) fn files(&self, database: &str, table: &str, min_ns: i64, max_ns: i64) -> Vec<PartitionFiles> {
        if min_ns > max_ns {
            return Vec::new();
        }
        let state = self.read();
        let Some(table) = state.databases.get(database).and_then(|t| t.get(table)) else {
            return Vec::new();
        };
        table
            .partitions
            .range(PartitionKey::for_time(min_ns)..=PartitionKey::for_time(max_ns))
            .map(|(key, p)| PartitionFiles {
                partition: Some(*key),
                files: p.files.iter().filter(|f| f.max_time >= min_ns && f.min_time <= max_ns).cloned().collect(),
                wal_sequence: p.wal_sequence,
            })
            .collect()
    }

    pub(crate) fn table_summary(&self, database: &str, table: &str) -> TableSummary {
        let state = self.read();
        let Some(table) = state.databases.get(database).and_then(|t| t.get(table)) else {
            return TableSummary::default();
        };
        let mut summary = TableSummary { partitions: table.partitions.len(), ..TableSummary::default() };
        for partition in table.partitions.values() {
            summary.files += partition.files.len();
            for file in &partition.files {
                summary.rows += file.row_count;
                summary.bytes += file.size_bytes;
                summary.min_time = Some(summary.min_time.map_or(file.min_time, |t| t.min(file.min_time)));
                summary.max_time = Some(summary.max_time.map_or(file.max_time, |t| t.max(file.max_time)));
            }
        }
        summary
    }

    pub(crate) fn files_by_level(&self) -> BTreeMap<u8, (u64, u64)> {
        let state = self.read();
        let mut levels = BTreeMap::new();
        let files = state.databases.values().flat_map(|t| t.values()).flat_map(|t| t.partitions.values());
        for file in files.flat_map(|p| &p.files) {
            let (count, bytes) = levels.entry(file.level).or_insert((0u64, 0u64));
            *count += 1;
            *bytes += file.size_bytes;
        }
        levels
    }

    /// A partition as it stands (empty for an unknown one).
    pub(crate) fn partition(&self, database: &str, table: &str, partition: PartitionKey) -> PartitionState {
        self.read()
            .databases
            .get(database)
            .and_then(|t| t.get(table))
            .and_then(|t| t.partitions.get(&partition))
            .cloned()
            .unwrap_or_default()
    }

    /// Publishes a partition's new state.
    pub(crate) fn set_partition(&self, database: &str, table: &str, key: PartitionKey, partition: PartitionState) {
        let mut state = self.write();
        state.max_wal_sequence = state.max_wal_sequence.max(partition.highest_sequence());
        let table = state.databases.entry(database.to_owned()).or_default().entry(table.to_owned()).or_default();
        table.partitions.insert(key, partition);
    }

    /// Forgets a dropped table: schema, files and tombstones. Its database
    /// stays (it may hold tables and views SQL made). The highest WAL
    /// sequence seen stays.
    pub(crate) fn remove_table(&self, database: &str, table: &str) {
        let mut state = self.write();
        if let Some(tables) = state.databases.get_mut(database) {
            tables.remove(table);
        }
    }

    /// Forgets a database that has no table left (`DROP DATABASE`).
    pub(crate) fn remove_database(&self, database: &str) {
        let mut state = self.write();
        if state.databases.get(database).is_some_and(BTreeMap::is_empty) {
            state.databases.remove(database);
        }
    }

    /// Forgets a partition that has no files left. The highest WAL sequence
    /// seen stays: sequences only grow.
    pub(crate) fn remove_partition(&self, database: &str, table: &str, key: PartitionKey) {
        let mut state = self.write();
        if let Some(table) = state.databases.get_mut(database).and_then(|t| t.get_mut(table)) {
            table.partitions.remove(&key);
        }
    }

    /// Replaces a whole table's files (the local catalog's load, or a reload
    /// from the shared catalog), with version `schema_version` of its schema
    /// unless the view already has a later one.
    pub(crate) fn set_table(
        &self,
        database: &str,
        table: &str,
        schema: Arc<TableSchema>,
        schema_version: u64,
        partitions: BTreeMap<PartitionKey, PartitionState>,
    ) {
        let mut state = self.write();
        let highest = partitions.values().map(PartitionState::highest_sequence).max().unwrap_or(0);
        state.max_wal_sequence = state.max_wal_sequence.max(highest);
        let entry = state.databases.entry(database.to_owned()).or_default().entry(table.to_owned()).or_default();
        if schema_version >= entry.schema_version {
            entry.schema = schema;
            entry.schema_version = schema_version;
        }
        entry.partitions = partitions;
    }

    pub(crate) fn max_wal_sequence(&self) -> u64 {
        self.read().max_wal_sequence
    }

    pub(crate) fn tombstones(&self, database: &str, table: &str) -> Vec<Arc<Tombstone>> {
        self.read().databases.get(database).and_then(|t| t.get(table)).map(|t| t.tombstones.clone()).unwrap_or_default()
    }

    /// Publishes a table's tombstones, ordered by sequence.
    pub(crate) fn set_tombstones(&self, database: &str, table: &str, mut tombstones: Vec<Arc<Tombstone>>) {
        tombstones.sort_by_key(|t| t.sequence);
        let mut state = self.write();
        // A delete's sequence is a WAL sequence too: the WAL must never hand
        // it out again, even when every segment is gone. (A shared one's is
        // the shared catalog's.)
        let newest = tombstones.iter().filter(|t| !t.shared).map(|t| t.sequence).max().unwrap_or(0);
        state.max_wal_sequence = state.max_wal_sequence.max(newest);
        let entry = state.databases.entry(database.to_owned()).or_default().entry(table.to_owned()).or_default();
        entry.tombstones = tombstones;
    }
}

/// The reads of [`super::Catalog`] that every implementation answers from
/// its `view` field (a [`CatalogView`]), written once.
macro_rules! catalog_reads_from_view {
    () => {
        fn databases(&self) -> Vec<String> {
            self.view.databases()
        }

        fn tables(&self, database: &str) -> Vec<String> {
            self.view.tables(database)
        }

        fn table_schema(&self, database: &str, table: &str) -> Option<std::sync::Arc<$crate::catalog::TableSchema>> {
            self.view.table_schema(database, table)
        }

        fn files(&self, database: &str, table: &str, min_ns: i64, max_ns: i64) -> Vec<$crate::catalog::PartitionFiles> {
            self.view.files(database, table, min_ns, max_ns)
        }

        fn table_summary(&self, database: &str, table: &str) -> $crate::catalog::TableSummary {
            self.view.table_summary(database, table)
        }

        fn files_by_level(&self) -> std::collections::BTreeMap<u8, (u64, u64)> {
            self.view.files_by_level()
        }

        fn partition_wal_sequence(&self, database: &str, table: &str, partition: $crate::catalog::PartitionKey) -> u64 {
            self.view.partition(database, table, partition).wal_sequence
        }

        fn max_wal_sequence(&self) -> u64 {
            self.view.max_wal_sequence()
        }

        fn tombstones(&self, database: &str, table: &str) -> Vec<std::sync::Arc<$crate::catalog::Tombstone>> {
            self.view.tombstones(database, table)
        }
    };
}
pub(crate) use catalog_reads_from_view;
