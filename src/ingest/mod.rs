//! The write path: parse, check against the schema, append to the WAL, buffer,
//! and persist to Parquet.
//!
//! Every front (HTTP line protocol, Postgres INSERT/COPY, FlightSQL ingest) writes
//! through [`Ingester`], so every write gets the same schema rules, the same WAL
//! and the same acknowledgement: after the fsync of its WAL record.

pub mod batches;
pub mod buffer;
pub mod columns;
mod deletes;
pub use deletes::SeriesDelete;
#[cfg(test)]
pub(crate) mod crash_sim;
pub mod line_protocol;
pub mod persister;
pub mod wal;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::error::ArrowError;
use bytes::Bytes;
use tokio::sync::{watch, Semaphore};

use crate::catalog::{Catalog, CatalogError, PartitionKey, TIME_COLUMN};
use crate::errors::{Classified, ErrorKind};
use crate::metrics::Metrics;
use crate::storage::{ParquetOptions, Storage};
use buffer::{Reservation, WriteBuffer};
use line_protocol::{LineError, LineProtocolParser, ParseOptions, Precision, SchemaSource, TableWrite};
use persister::{PersistOptions, PersistReport, Persister};
use wal::{ReplayReport, Wal, WalError, WalOptions, WalWrite};

/// Settings of the write path.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Lines longer than this are rejected.
    pub max_line_bytes: usize,
    /// Tables may not grow past this many columns.
    pub max_columns_per_table: usize,
    /// Deletes a table may have that the compactor has not carried out.
    pub max_tombstones: usize,
    /// Writes are refused (503) while the buffer holds this many bytes.
    pub max_buffer_bytes: usize,
    /// The buffer is persisted early once it holds this many bytes.
    pub flush_buffer_bytes: usize,
    /// How often the buffer is persisted.
    pub save_interval: Duration,
    /// Most write requests being parsed or waiting for the WAL at once.
    pub max_concurrent_writes: usize,
    /// How long a write may wait for a slot before it is refused (503).
    pub write_queue_timeout: Duration,
    /// WAL segment size.
    pub wal_segment_bytes: u64,
    /// Partitions persisted at once.
    pub persist_concurrency: usize,
    /// Level-1 Parquet encoding.
    pub parquet: ParquetOptions,
}

/// What can go wrong with a write, by what the client should do about it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The write path holds its limit (rows waiting to be persisted and writes
    /// in flight): retry later (HTTP 503 with Retry-After).
    #[error(
        "the write path is full: it holds {buffered} of {limit} bytes (HOURGLASS_MAX_BUFFER_BYTES) in rows waiting \
         to be persisted and writes in flight; retry shortly"
    )]
    BufferFull {
        /// Bytes the write path holds.
        buffered: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many writes in flight: retry later (503).
    #[error("too many concurrent writes (HOURGLASS_MAX_CONCURRENT_WRITES); retry shortly")]
    Busy,
    /// The write conflicts with the schema (400).
    #[error("{0}")]
    Schema(String),
    /// A column the write names is not in the table, and this kind of write
    /// does not add columns (SQL `INSERT` and `COPY`).
    #[error("{0}")]
    UnknownColumn(String),
    /// A row lacks what every point needs: a time, a field value.
    #[error("row {row}: {message}")]
    IncompletePoint {
        /// The row of the write, from 1.
        row: usize,
        /// What it lacks.
        message: String,
    },
    /// A value does not convert to its column's type.
    #[error("row {row}: {message}")]
    BadValue {
        /// The row of the write, from 1.
        row: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The WAL failed (500) or is closed (503).
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The catalog failed (500).
    #[error(transparent)]
    Catalog(CatalogError),
    /// Encoding the write failed (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// A delete over several measurements failed part way: the deletes from
    /// `done` are durable, the one from `failed` and those after it are not.
    #[error(
        "deleted from {done}; the delete from {failed} failed, and no later measurement was deleted from: {error}"
    )]
    Partial {
        /// The measurements deleted from.
        done: String,
        /// The measurement whose delete failed.
        failed: String,
        /// Why.
        error: Box<IngestError>,
    },
}

impl Classified for IngestError {
    fn kind(&self) -> ErrorKind {
        match self {
            IngestError::BufferFull { .. } | IngestError::Busy => ErrorKind::Unavailable,
            IngestError::Schema(_) | IngestError::IncompletePoint { .. } | IngestError::BadValue { .. } => {
                ErrorKind::Invalid
            }
            IngestError::UnknownColumn(_) => ErrorKind::Missing,
            IngestError::Wal(e) => e.kind(),
            IngestError::Catalog(e) => e.kind(),
            IngestError::Internal(_) => ErrorKind::Internal,
            IngestError::Partial { error, .. } => error.kind(),
        }
    }

    fn sqlstate(&self) -> &'static str {
        match self {
            IngestError::BufferFull { .. } | IngestError::Busy => "53000",
            IngestError::Schema(_) => "42804",
            IngestError::UnknownColumn(_) => "42703",
            IngestError::IncompletePoint { .. } => "23502",
            IngestError::BadValue { .. } => "22P02",
            IngestError::Wal(e) => e.sqlstate(),
            IngestError::Catalog(e) => e.sqlstate(),
            IngestError::Internal(_) => "XX000",
            IngestError::Partial { error, .. } => error.sqlstate(),
        }
    }

    fn bad_row(&self) -> Option<(usize, String)> {
        match self {
            IngestError::IncompletePoint { row, message } | IngestError::BadValue { row, message } => {
                Some((*row, message.clone()))
            }
            _ => None,
        }
    }
}

impl From<CatalogError> for IngestError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Conflict(conflict) => IngestError::Schema(conflict.to_string()),
            other => IngestError::Catalog(other),
        }
    }
}

/// How a line protocol write is to be taken.
#[derive(Debug, Clone, Copy)]
pub struct LineProtocolWrite {
    /// The unit of the timestamps.
    pub precision: Precision,
    /// Write the good lines even when some are bad (InfluxDB 3 `accept_partial`).
    pub accept_partial: bool,
    /// Acknowledge before the WAL fsync.
    pub no_sync: bool,
    /// When the request arrived (ns): the timestamp of lines without one.
    pub received_at_ns: i64,
}

/// The result of a line protocol write that was processed.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    /// Lines written.
    pub accepted_lines: usize,
    /// Lines rejected (all of them).
    pub rejected_lines: usize,
    /// The first rejected lines, with reasons.
    pub errors: Vec<LineError>,
    /// Rows acknowledged (0 when an all-or-nothing write had a bad line).
    pub rows_written: usize,
}

/// Splits a batch into one batch per hour partition of its `time` column.
pub fn split_by_partition(batch: &RecordBatch) -> Result<Vec<(PartitionKey, RecordBatch)>, ArrowError> {
    let time = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| ArrowError::SchemaError("batch has no nanosecond time column".into()))?;
    if time.null_count() > 0 {
        return Err(ArrowError::InvalidArgumentError("time column has nulls".into()));
    }
    let values = time.values();
    let Some(&first) = values.first() else {
        return Ok(Vec::new());
    };
    let first = PartitionKey::for_time(first);
    if values.iter().all(|&t| PartitionKey::for_time(t) == first) {
        return Ok(vec![(first, batch.clone())]);
    }
    if u32::try_from(values.len()).is_err() {
        return Err(ArrowError::ComputeError("more than 4 Gi rows in one write".into()));
    }
    let mut groups: std::collections::BTreeMap<PartitionKey, Vec<u32>> = Default::default();
    for (row, &t) in values.iter().enumerate() {
        groups.entry(PartitionKey::for_time(t)).or_default().push(row as u32);
    }
    groups.into_iter().map(|(key, rows)| Ok((key, take_record_batch(batch, &UInt32Array::from(rows))?))).collect()
}

/// Looks schemas up in the catalog for one database.
struct CatalogSchemas<'a> {
    catalog: &'a dyn Catalog,
    database: &'a str,
}

impl SchemaSource for CatalogSchemas<'_> {
    fn table_schema(&self, table: &str) -> Option<Arc<crate::catalog::TableSchema>> {
        self.catalog.table_schema(self.database, table)
    }
}

/// What one byte of a request body may cost until its rows are in the
/// buffer: the body, its parsed rows and its WAL record. Parsed line
/// protocol is smaller than its text, so three is an upper estimate; the
/// reservation is set to what was really taken once the record is encoded.
const BODY_EXPANSION: usize = 3;

/// A write's place among the writes in flight, and the memory it holds
/// until its rows are in the buffer; both are freed when it is dropped.
#[derive(Debug)]
pub struct WriteSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    memory: Reservation<'a>,
    metrics: &'a Metrics,
}

impl WriteSlot<'_> {
    /// Counts a request body of `body_bytes` (declared, read so far, or
    /// decompressed), and what it will cost once parsed, against
    /// `HOURGLASS_MAX_BUFFER_BYTES`, in place of what was counted for it
    /// before. Growing is refused with [`IngestError::BufferFull`] when the
    /// write path would pass its limit while holding anything else, before
    /// anything of the write is kept.
    pub fn hold_body(&mut self, body_bytes: usize) -> Result<(), IngestError> {
        let wanted = body_bytes.saturating_mul(BODY_EXPANSION);
        let counted = self.memory.bytes();
        if wanted <= counted {
            self.memory.set(wanted);
            return Ok(());
        }
        self.memory.try_grow(wanted - counted).map_err(|buffered| {
            self.metrics.writes_refused_buffer_full.add(1);
            IngestError::BufferFull { buffered, limit: self.memory.limit() }
        })
    }
}

/// The write path, shared by every front.
#[derive(Debug)]
pub struct Ingester {
    catalog: Arc<dyn Catalog>,
    /// Where the files are: a drop deletes its table's.
    storage: Arc<Storage>,
    buffer: Arc<WriteBuffer>,
    wal: Arc<Wal>,
    persister: Arc<Persister>,
    metrics: Arc<Metrics>,
    options: IngestOptions,
    slots: Semaphore,
    stop: watch::Sender<bool>,
    /// Held while a delete goes to the WAL and the catalog.
    deletes: tokio::sync::Mutex<()>,
    /// Shared by every write from its schema read to its rows in the
    /// buffer; a drop holds it alone, so no write parsed against the
    /// dropped table's schema lands after the drop.
    writes: tokio::sync::RwLock<()>,
    /// Per table, the newest shared delete the catalog was told this writer
    /// carried out (see [`crate::catalog::SharedDeletes`]).
    shared_told: std::sync::Mutex<std::collections::HashMap<(String, String), u64>>,
}

impl Ingester {
    /// Replays the WAL under `root` on `disk` and starts the WAL thread and
    /// the persister.
    pub async fn open(
        disk: Arc<dyn crate::storage::disk::Disk>,
        root: &Path,
        catalog: Arc<dyn Catalog>,
        storage: Arc<Storage>,
        metrics: Arc<Metrics>,
        last_values: Option<Arc<crate::last_values::LastValueCache>>,
        options: IngestOptions,
    ) -> Result<(Arc<Ingester>, ReplayReport), IngestError> {
        let buffer = Arc::new(WriteBuffer::new(options.max_buffer_bytes, options.flush_buffer_bytes, last_values));
        let (wal, report) = Wal::open(
            disk,
            &root.join("_wal"),
            catalog.as_ref(),
            Arc::clone(&buffer),
            Arc::clone(&metrics),
            WalOptions { segment_bytes: options.wal_segment_bytes, queue_depth: options.max_concurrent_writes },
        )
        .await?;
        let shared_told = deletes::restore_shared_deletes_applied(catalog.as_ref(), &buffer).await?;
        let wal = Arc::new(wal);
        let persister = Arc::new(Persister::new(
            Arc::clone(&catalog),
            Arc::clone(&storage),
            Arc::clone(&buffer),
            Arc::clone(&wal),
            report.persisted_through,
            Arc::clone(&metrics),
            PersistOptions {
                interval: options.save_interval,
                concurrency: options.persist_concurrency,
                parquet: options.parquet,
            },
        ));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(Arc::clone(&persister).run(stopped));
        let slots = Semaphore::new(options.max_concurrent_writes.max(1));
        let ingester = Arc::new(Ingester {
            catalog,
            storage,
            buffer,
            wal,
            persister,
            metrics,
            options,
            slots,
            stop,
            deletes: tokio::sync::Mutex::new(()),
            writes: tokio::sync::RwLock::new(()),
            shared_told: std::sync::Mutex::new(shared_told),
        });
        // What drops before a crash (or a layer that did not answer) left.
        for (database, table) in ingester.catalog.undeleted_drops() {
            ingester.clear_dropped_table(&database, &table).await;
        }
        if let Some(shared) = ingester.catalog.shared_deletes() {
            ingester.catch_up_shared_deletes().await?;
            tokio::spawn(deletes::beat_for_shared_deletes(Arc::downgrade(&ingester), ingester.stop.subscribe()));
            tokio::spawn(deletes::follow_shared_deletes(
                Arc::downgrade(&ingester),
                shared.changes(),
                ingester.stop.subscribe(),
            ));
        }
        Ok((ingester, report))
    }

    /// The write buffer, which queries read for rows not yet in Parquet.
    pub fn buffer(&self) -> &Arc<WriteBuffer> {
        &self.buffer
    }

    /// Why the write path takes no more writes, if its WAL stopped after an
    /// I/O error.
    pub fn failure(&self) -> Option<String> {
        self.wal.failure()
    }

    /// The metrics this path updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn check_buffer(&self) -> Result<(), IngestError> {
        if self.buffer.is_full() {
            self.metrics.writes_refused_buffer_full.add(1);
            return Err(IngestError::BufferFull { buffered: self.buffer.held_bytes(), limit: self.buffer.max_bytes() });
        }
        Ok(())
    }

    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, IngestError> {
        match tokio::time::timeout(self.options.write_queue_timeout, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(IngestError::Wal(WalError::Closed)),
            Err(_) => Err(IngestError::Busy),
        }
    }

    /// A place among the writes in flight (`HOURGLASS_MAX_CONCURRENT_WRITES`),
    /// once the buffer has room: taken before a request's body is read, so
    /// that waiting writes hold no bodies.
    pub async fn admit(&self) -> Result<WriteSlot<'_>, IngestError> {
        self.check_buffer()?;
        let permit = self.slot().await?;
        Ok(WriteSlot { _permit: permit, memory: self.buffer.reserve(0), metrics: &self.metrics })
    }

    /// Writes line protocol into `database`, in the place `slot` holds.
    /// Returns the outcome, with the rejected lines; nothing is written when
    /// a line is bad and `accept_partial` is off.
    pub async fn write_line_protocol(
        &self,
        mut slot: WriteSlot<'_>,
        database: &str,
        body: Bytes,
        write: LineProtocolWrite,
    ) -> Result<WriteOutcome, IngestError> {
        // The slot's reservation already counts the body against the limit,
        // so the write is not refused by its own size here.
        self.metrics.write_bytes.add(body.len() as u64);
        let _no_drop = self.writes.read().await;
        let options = ParseOptions {
            precision: write.precision,
            default_time_ns: write.precision.truncate(write.received_at_ns),
            max_line_bytes: self.options.max_line_bytes,
            max_columns_per_table: self.options.max_columns_per_table,
        };
        let catalog = Arc::clone(&self.catalog);
        let db = database.to_owned();
        let parsed = tokio::task::spawn_blocking(move || {
            let schemas = CatalogSchemas { catalog: catalog.as_ref(), database: &db };
            let mut parser = LineProtocolParser::new(&schemas, options);
            parser.parse(&body);
            parser.finish_with_errors()
        })
        .await
        .map_err(|e| IngestError::Internal(e.to_string()))?
        .map_err(|e| IngestError::Internal(e.to_string()))?;
        slot.memory.set(parsed.writes.iter().map(|w| w.batch.get_array_memory_size()).sum());

        self.metrics.lines_rejected.add(parsed.rejected_lines as u64);
        let mut outcome = WriteOutcome {
            accepted_lines: parsed.accepted_lines,
            rejected_lines: parsed.rejected_lines,
            errors: parsed.errors,
            rows_written: 0,
        };
        if parsed.rejected_lines > 0 && !write.accept_partial {
            outcome.accepted_lines = 0;
            return Ok(outcome);
        }
        outcome.rows_written = self.write_held(database, parsed.writes, !write.no_sync, &mut slot.memory).await?;
        self.metrics.lines_accepted.add(outcome.accepted_lines as u64);
        Ok(outcome)
    }

    /// Writes already-typed tables into `database`: schema commit, WAL,
    /// buffer. Returns the rows written. The caller holds `writes` from the
    /// schema read the tables were typed by.
    async fn write_tables(&self, database: &str, writes: Vec<TableWrite>, sync: bool) -> Result<usize, IngestError> {
        if writes.is_empty() {
            return Ok(0);
        }
        self.check_buffer()?;
        let mut memory = self.buffer.reserve(writes.iter().map(|w| w.batch.get_array_memory_size()).sum());
        self.write_held(database, writes, sync, &mut memory).await
    }

    /// The schema commit, WAL record and buffer of a write whose rows
    /// `memory` counts; the record's bytes are counted too until the WAL has
    /// taken it.
    async fn write_held(
        &self,
        database: &str,
        writes: Vec<TableWrite>,
        sync: bool,
        memory: &mut Reservation<'_>,
    ) -> Result<usize, IngestError> {
        if writes.is_empty() {
            return Ok(0);
        }
        for write in &writes {
            self.catalog
                .add_columns(database, &write.table, &write.new_columns, self.options.max_columns_per_table)
                .await?;
        }
        let rows: usize = writes.iter().map(|w| w.batch.num_rows()).sum();
        let database: Arc<str> = database.into();
        let tables: Vec<(Arc<str>, RecordBatch)> = writes.into_iter().map(|w| (w.table, w.batch)).collect();
        let record = tokio::task::spawn_blocking(move || WalWrite::encode(&database, &tables, sync))
            .await
            .map_err(|e| IngestError::Internal(e.to_string()))??;
        memory.set(memory.bytes().saturating_add(record.payload.len()));
        self.wal.write(record).await?;
        self.metrics.rows_written.add(rows as u64);
        Ok(rows)
    }

    /// Writes an Arrow batch into `table` of `database` (SQL `INSERT`, Postgres
    /// `COPY`, FlightSQL ingest): converted by [`batches::table_write`], then
    /// the same schema commit, WAL and buffer as line protocol. Returns the rows
    /// written, acknowledged after the WAL fsync.
    pub async fn write_batch(
        &self,
        database: &str,
        table: &str,
        batch: &RecordBatch,
        allow_new_columns: bool,
    ) -> Result<usize, IngestError> {
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        self.check_buffer()?;
        let _slot = self.slot().await?;
        let _no_drop = self.writes.read().await;
        let current = self.catalog.table_schema(database, table);
        let write = batches::table_write(table, current.as_deref(), batch, allow_new_columns)?;
        self.metrics.write_bytes.add(batch.get_array_memory_size() as u64);
        self.write_tables(database, vec![write], true).await
    }

    /// Writes the buffer out now (also used by tests and the admin API).
    pub async fn persist_now(&self) -> Result<PersistReport, IngestError> {
        Ok(self.persister.persist().await?)
    }

    /// Stops the persister, writes the buffer out, and closes the WAL.
    pub async fn shutdown(&self) -> Result<PersistReport, IngestError> {
        let _ = self.stop.send(true);
        self.slots.close();
        let report = self.persister.persist().await;
        self.wal.close().await;
        Ok(report?)
    }
}
