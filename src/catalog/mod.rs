//! The metadata catalog: which databases and tables exist, their schemas, and
//! which Parquet files hold each hour partition.
//!
//! The catalog is the truth about which files exist: a file it does not list is
//! not part of any table. It is served from memory; every change goes to disk
//! first (for the local catalog: `metadata.json` per hour partition and
//! `schema.json` per table, each written atomically) and is published in memory
//! only after that. [`Catalog::commit`] adds and removes files of one partition in
//! one atomic step, which is what lets the compactor swap files under readers.

pub mod local;
mod memory;
pub mod names;
pub mod redis;
pub mod relations;
mod schema;
pub mod tokens;
pub mod tombstones;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::errors::{Classified, ErrorKind};

pub use local::LocalCatalog;
pub use redis::{RedisCatalog, RedisOptions, RedisTokens};
pub use schema::{
    tag_data_type, time_data_type, Column, ColumnType, SchemaConflict, TableSchema, TIME_COLUMN, TIME_ZONE,
};
pub use tombstones::{DeletePredicate, TagCondition, Tombstone};

/// The database used when a client names none.
pub const DEFAULT_DATABASE: &str = "default";

/// Nanoseconds in an hour.
pub const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// One hour of event time: the unit of partitioning. Ordered by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey(pub i64);

impl PartitionKey {
    /// The partition that holds the event time `ns` (nanoseconds since the epoch).
    pub fn for_time(ns: i64) -> Self {
        PartitionKey(ns.div_euclid(NANOS_PER_HOUR))
    }

    /// The first nanosecond of the partition.
    pub fn start_ns(self) -> i64 {
        self.0.saturating_mul(NANOS_PER_HOUR)
    }

    /// The last nanosecond of the partition.
    pub fn end_ns(self) -> i64 {
        self.start_ns().saturating_add(NANOS_PER_HOUR - 1)
    }

    /// The start of the hour, in whole seconds: seconds do not saturate where
    /// nanoseconds do (the first hour of the i64 range starts before it).
    fn datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.0.checked_mul(3600)?, 0)
    }

    /// The partition's directory relative to its table: `date=YYYY-MM-DD/hour=HH`.
    pub fn dir_name(self) -> String {
        match self.datetime() {
            Some(t) => format!("date={:04}-{:02}-{:02}/hour={:02}", t.year(), t.month(), t.day(), t.hour()),
            // Outside chrono's range, which no nanosecond timestamp reaches.
            None => format!("date=hours-{}/hour=00", self.0),
        }
    }

    /// Parses the two directory names `date=YYYY-MM-DD` and `hour=HH`.
    pub fn from_dir_names(date: &str, hour: &str) -> Option<Self> {
        let date = chrono::NaiveDate::parse_from_str(date.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
        let hour: u32 = hour.strip_prefix("hour=")?.parse().ok()?;
        let seconds = date.and_hms_opt(hour, 0, 0)?.and_utc().timestamp();
        Some(PartitionKey(seconds.div_euclid(3600)))
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dir_name())
    }
}

/// A Parquet file the catalog knows. Field names follow GigAPI's `metadata.json`,
/// plus `id`, `level` and `wal_sequence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Unique id of the file (the UUID in its name).
    pub id: String,
    /// The storage layer that holds the file.
    pub layer: String,
    /// The file's path relative to its table's directory on that layer:
    /// `date=YYYY-MM-DD/hour=HH/<uuid>.<level>.parquet`.
    pub path: String,
    /// Compaction level: 1 for files written from the write buffer.
    pub level: u8,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Rows in the file.
    pub row_count: u64,
    /// Smallest event time in the file (ns).
    pub min_time: i64,
    /// Largest event time in the file (ns).
    pub max_time: i64,
    /// The highest WAL sequence whose rows the file may hold.
    pub wal_sequence: u64,
    /// The newest delete (tombstone sequence) the compactor carried out on
    /// the file's rows when it wrote them: deletes up to it no longer apply.
    #[serde(default)]
    pub deletes_applied: u64,
    /// When the file was written (ns); drives merges and layer TTLs.
    pub chunk_time: i64,
}

/// The files of one hour partition and the WAL sequence the partition covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionFiles {
    /// The partition.
    pub partition: Option<PartitionKey>,
    /// Its files.
    pub files: Vec<FileEntry>,
    /// Every WAL record up to this sequence is in the files, as far as it touched
    /// this partition; replay skips those records here.
    pub wal_sequence: u64,
}

/// How much a table holds, from the catalog alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    /// Hour partitions with a catalog entry.
    pub partitions: usize,
    /// Files in them.
    pub files: usize,
    /// Rows in those files.
    pub rows: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// The earliest time in those files (ns), if any.
    pub min_time: Option<i64>,
    /// The latest time in those files (ns), if any.
    pub max_time: Option<i64>,
}

/// A change to one partition, applied atomically.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// The partition.
    pub partition: PartitionKey,
    /// Files to add.
    pub add: Vec<FileEntry>,
    /// Ids of files to remove.
    pub remove: Vec<String>,
    /// Raise the partition's WAL sequence to this (it never goes down).
    pub wal_sequence: u64,
    /// The compaction lease token this change is made under (see
    /// [`Catalog::compaction_lease`]): a shared catalog refuses the change if
    /// the lease has passed to another process since. None for writes.
    pub lease: Option<u64>,
}

/// What can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A schema change conflicts with the schema.
    #[error(transparent)]
    Conflict(#[from] SchemaConflict),
    /// A file to remove is not in the partition (someone else removed it).
    #[error("file {id} is not in {database}.{table} {partition}")]
    MissingFile {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// The partition.
        partition: PartitionKey,
        /// The file id.
        id: String,
    },
    /// The table is not in the catalog (any more): a commit to a measurement
    /// dropped meanwhile.
    #[error("{database}.{table} is not in the catalog: it was dropped")]
    MissingTable {
        /// The database.
        database: String,
        /// The table.
        table: String,
    },
    /// The catalog could not be read or written.
    #[error("catalog I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A catalog file on disk is not what it should be.
    #[error("catalog file {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A change was encoded wrongly: a fault of the server.
    #[error("encoding catalog file {path}: {message}")]
    Encode {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A change reached the file but may not survive a crash (its
    /// directory's fsync failed): whether it happened is unknown, so the
    /// catalog takes no more changes until it is reloaded from disk.
    #[error(
        "catalog write to {path} may or may not have reached the disk ({source}); the catalog takes no more \
         changes: restart the server to reload it from disk"
    )]
    OutcomeUnknown {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A table has as many live deletes as it may: the compactor must carry
    /// some out (rewrite the files they hide rows of) first.
    #[error(
        "{database}.{table} has {max} deletes the compactor has not yet carried out, the most it may have \
         (HOURGLASS_MAX_TOMBSTONES): retry once compaction has rewritten the files, or delete more at once"
    )]
    TooManyTombstones {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// The limit.
        max: usize,
    },
    /// What this catalog does not do.
    #[error("{0}")]
    Unsupported(String),
    /// The shared catalog cannot be reached now: retry shortly.
    #[error("{0}")]
    Unavailable(String),
    /// The shared catalog refused a change or answered something unexpected.
    #[error("the shared catalog: {0}")]
    Shared(String),
    /// A compactor's change made under a lease that has since expired or
    /// passed to another process: the other process compacts this table now.
    #[error("the compaction lease on {database}.{table} is no longer this process's (held by {holder})")]
    Fenced {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// Who holds the lease now.
        holder: String,
    },
    /// The catalog stopped after an earlier change whose outcome is unknown.
    #[error("the catalog takes no changes since a write whose outcome is unknown ({0}); restart the server to reload it from disk")]
    Stopped(String),
}

impl Classified for CatalogError {
    fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::Conflict(_) => ErrorKind::Invalid,
            CatalogError::Unavailable(_) | CatalogError::Fenced { .. } | CatalogError::TooManyTombstones { .. } => {
                ErrorKind::Unavailable
            }
            CatalogError::Unsupported(_) => ErrorKind::Unsupported,
            CatalogError::MissingTable { .. } => ErrorKind::Missing,
            CatalogError::MissingFile { .. }
            | CatalogError::Io { .. }
            | CatalogError::Corrupt { .. }
            | CatalogError::Encode { .. }
            | CatalogError::OutcomeUnknown { .. }
            | CatalogError::Shared(_)
            | CatalogError::Stopped(_) => ErrorKind::Internal,
        }
    }

    fn sqlstate(&self) -> &'static str {
        match self {
            CatalogError::Conflict(_) => "42804",
            CatalogError::MissingTable { .. } => "42P01",
            CatalogError::MissingFile { .. } | CatalogError::Encode { .. } | CatalogError::Shared(_) => "XX000",
            // cannot_connect_now: the client retries.
            CatalogError::Unavailable(_) => "57P03",
            // lock_not_available
            CatalogError::Fenced { .. } => "55P03",
            // program_limit_exceeded
            CatalogError::TooManyTombstones { .. } => "54000",
            CatalogError::Unsupported(_) => "0A000",
            CatalogError::Io { .. } | CatalogError::OutcomeUnknown { .. } | CatalogError::Stopped(_) => "58030",
            CatalogError::Corrupt { .. } => "XX001",
        }
    }
}

/// The catalog interface. The local JSON catalog (one process) and the Redis
/// catalog (shared by writers, readers and a compactor) implement it; reads
/// are answered from memory. With several writers, WAL sequences are each
/// writer's own: [`Catalog::partition_wal_sequence`], [`Catalog::max_wal_sequence`]
/// and [`Commit::wal_sequence`] speak of this process's writer.
#[async_trait]
pub trait Catalog: Send + Sync + fmt::Debug {
    /// Every database, sorted. `default` is always among them.
    fn databases(&self) -> Vec<String>;

    /// Every table of a database, sorted (empty for an unknown database).
    fn tables(&self, database: &str) -> Vec<String>;

    /// The schema of a table.
    fn table_schema(&self, database: &str, table: &str) -> Option<Arc<TableSchema>>;

    /// Adds columns to a table, creating the database and the table if needed,
    /// and returns the new schema. Fails without changing anything on a conflict.
    async fn add_columns(
        &self,
        database: &str,
        table: &str,
        columns: &[Column],
        max_columns: usize,
    ) -> Result<Arc<TableSchema>, CatalogError>;

    /// The partitions of a table that overlap `[min_ns, max_ns]`, each with only
    /// the files whose time range overlaps it, in time order.
    fn files(&self, database: &str, table: &str, min_ns: i64, max_ns: i64) -> Vec<PartitionFiles>;

    /// Partition and file counts of a table (zero for an unknown table).
    fn table_summary(&self, database: &str, table: &str) -> TableSummary;

    /// Files and their bytes by compaction level, over every table: read in
    /// place, for `/metrics`.
    fn files_by_level(&self) -> std::collections::BTreeMap<u8, (u64, u64)>;

    /// The WAL sequence a partition's files cover (0 for an unknown partition).
    fn partition_wal_sequence(&self, database: &str, table: &str, partition: PartitionKey) -> u64;

    /// The highest WAL sequence any partition covers.
    fn max_wal_sequence(&self) -> u64;

    /// Takes or renews this process's lease on compacting a table, and
    /// returns its token; None while another process holds it. Merges, layer
    /// moves, expiry and the orphan sweep of a table happen only under its
    /// lease, and their commits carry the token, so that a compactor whose
    /// lease expired (paused, partitioned) cannot commit over its successor.
    /// A local catalog has one process: the lease is always its own.
    async fn compaction_lease(&self, _database: &str, _table: &str) -> Result<Option<u64>, CatalogError> {
        Ok(Some(0))
    }

    /// How long ago this process's view last matched a shared catalog's
    /// store; None for a catalog that is its own store (always current).
    fn lag(&self) -> Option<std::time::Duration> {
        None
    }

    /// Brings this process's view up to date with the catalog's store, for
    /// decisions that must not rest on a view a poll behind (what to merge,
    /// what is an orphan). A local catalog is always up to date.
    async fn refresh(&self) -> Result<(), CatalogError> {
        Ok(())
    }

    /// Applies a change to one partition: on disk, then in memory.
    async fn commit(&self, commit: Commit) -> Result<(), CatalogError>;

    /// The deletes of a table that may still hide rows of its files, oldest
    /// first.
    fn tombstones(&self, database: &str, table: &str) -> Vec<Arc<Tombstone>>;

    /// Whether this catalog records deletes this process's WAL orders:
    /// checked before a delete's WAL record, which could not be undone.
    fn records_deletes(&self) -> bool {
        false
    }

    /// The deletes of a catalog several writers share, which the catalog
    /// orders itself (see [`SharedDeletes`]); None where this process's WAL
    /// orders them.
    fn shared_deletes(&self) -> Option<&dyn SharedDeletes> {
        None
    }

    /// The registry of a cluster's live readers, over which a query is
    /// spread (see [`ReaderRegistry`]); None where there is no cluster.
    fn readers(&self) -> Option<&dyn ReaderRegistry> {
        None
    }

    /// Records a delete of a table's rows, unless one of its sequence is
    /// there already (a WAL replay records it again). Refused when the table
    /// has `max` live ones.
    async fn add_tombstone(
        &self,
        database: &str,
        table: &str,
        _tombstone: Tombstone,
        _max: usize,
    ) -> Result<(), CatalogError> {
        Err(CatalogError::Unsupported(format!(
            "DELETE on {database}.{table}: this catalog does not record deletes yet; use the local catalog"
        )))
    }

    /// Forgets deletes that hide no row any longer: every file they could
    /// hide rows of was rewritten without them or written after them.
    async fn remove_tombstones(&self, _database: &str, _table: &str, _sequences: &[u64]) -> Result<(), CatalogError> {
        Ok(())
    }

    /// The WAL sequence of the latest drop of `table`, while the WAL may
    /// still hold writes to it from before: a replay skips those (they were
    /// of the dropped table, whose schema may differ from a new one's).
    fn dropped(&self, _database: &str, _table: &str) -> Option<u64> {
        None
    }

    /// Drops a measurement at WAL sequence `sequence`: remembers the drop
    /// (see [`Catalog::dropped`]), with its files still to delete (see
    /// [`Catalog::undeleted_drops`]), then forgets its schema, files and
    /// tombstones. A replay of a drop that finished does nothing.
    async fn drop_table(&self, database: &str, table: &str, _sequence: u64) -> Result<(), CatalogError> {
        Err(CatalogError::Unsupported(format!(
            "dropping {database}.{table}: this catalog does not drop measurements yet; use the local catalog"
        )))
    }

    /// Forgets a database whose measurements were all dropped (`DROP
    /// DATABASE`): it is no longer listed. A database keeps being listed
    /// when only its last measurement is dropped.
    async fn drop_database(&self, _database: &str) -> Result<(), CatalogError> {
        Ok(())
    }

    /// The dropped tables, by database, whose directories on the storage
    /// layers may still hold files: kept until [`Catalog::drop_files_deleted`],
    /// so that a crash between a drop and the deletion of its files (or of
    /// files no entry listed) leaves none behind.
    fn undeleted_drops(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Records that a dropped table's directories are gone from every layer.
    async fn drop_files_deleted(&self, _database: &str, _table: &str) -> Result<(), CatalogError> {
        Ok(())
    }

    /// Forgets the drops at WAL sequence `through` or before: the WAL holds
    /// no write from before them any more.
    async fn expire_drops(&self, _through: u64) -> Result<(), CatalogError> {
        Ok(())
    }

    /// Why the catalog takes no more changes, if it stopped: a change whose
    /// outcome is unknown makes its in-memory view possibly wrong, and
    /// nothing may be deleted on the strength of that view until the catalog
    /// is reloaded from disk (a restart).
    fn stopped(&self) -> Option<String>;
}

/// How often a writer tells a shared catalog it is alive (see
/// [`SharedDeletes::heartbeat`]).
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The live readers of a cluster: each reader beats every
/// [`HEARTBEAT_EVERY`] with the URL of its FlightSQL port, where it serves
/// a worker, and learns the others'.
#[async_trait]
pub trait ReaderRegistry: Send + Sync + fmt::Debug {
    /// Records that the reader at `url` is alive, and returns the URLs of
    /// every reader that beat within the last five heartbeats (itself
    /// among them).
    async fn reader_heartbeat(&self, url: &str) -> Result<Vec<String>, CatalogError>;

    /// Removes the reader at `url`, which is stopping: coordinators stop
    /// sending it stages at their next heartbeat rather than after five.
    async fn reader_leave(&self, url: &str) -> Result<(), CatalogError>;

    /// The secret every reader of the cluster shows the others' workers,
    /// made once by the first reader that asks (whoever can read it can
    /// already rewrite the catalog).
    async fn worker_secret(&self) -> Result<String, CatalogError>;
}

/// Deletes in a catalog several writers share, each with a WAL of its own,
/// so that no WAL orders them: the catalog gives a delete the table's next
/// change sequence and keeps its tombstone (marked `shared`); every writer
/// carries it out on its write buffer, with a WAL record of its own, and
/// says so; the files it writes from then on are stamped past it
/// (`deletes_applied`). A tombstone is forgotten once every writer has
/// carried it out and no listed file holds rows it hides.
#[async_trait]
pub trait SharedDeletes: Send + Sync + fmt::Debug {
    /// Records a delete of a table's rows issued at `issued_at` (ns) and
    /// returns its tombstone, published in this process's view; refused
    /// when the table has `max` live ones.
    async fn record(
        &self,
        database: &str,
        table: &str,
        predicate: DeletePredicate,
        issued_at: i64,
        max: usize,
    ) -> Result<Tombstone, CatalogError>;

    /// The newest delete of a table this writer said it carried out (0: none).
    async fn applied_here(&self, database: &str, table: &str) -> Result<u64, CatalogError>;

    /// Says this writer carried out a table's deletes up to `through` on
    /// its write buffer, durably: its WAL holds them, and it stamps its
    /// files past them.
    async fn set_applied_here(&self, database: &str, table: &str, through: u64) -> Result<(), CatalogError>;

    /// The live writers (a heartbeat within [`SharedDeletes::heartbeat`]'s
    /// window) that have not yet said they carried out delete `sequence`.
    async fn writers_behind(&self, database: &str, table: &str, sequence: u64) -> Result<Vec<String>, CatalogError>;

    /// The newest delete of a table that every writer the catalog knows
    /// (live or not) has carried out: a writer that is down may still hold
    /// rows in its WAL that an older one hides.
    async fn applied_everywhere(&self, database: &str, table: &str) -> Result<u64, CatalogError>;

    /// Tells the other processes this writer is alive: a delete waits for
    /// the live writers to carry it out.
    async fn heartbeat(&self) -> Result<(), CatalogError>;

    /// Changes whenever this process's view of some table's tombstones does.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}
