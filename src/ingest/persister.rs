//! The persister: turns the write buffer into level-1 Parquet files.
//!
//! Every save interval, or sooner when the buffer passes its flush size, it asks
//! the WAL for a snapshot and writes one file per table and hour partition: rows
//! sorted by tags then time and deduplicated, written crash-safely to layer 0,
//! then committed to the catalog with the snapshot's WAL sequence. Only when every
//! partition of a snapshot is committed are the WAL segments behind it deleted.
//! A partition that fails is retried on the next round; nothing is dropped.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::buffer::{Snapshot, SnapshotRows, WriteBuffer};
use super::wal::{Wal, WalError};
use crate::catalog::{Catalog, Commit, FileEntry};
use crate::metrics::Metrics;
use crate::storage::{
    file_path_in_layer, file_path_in_table, sort_and_deduplicate, time_range, ParquetOptions, Storage,
};

/// Settings of the persister.
#[derive(Debug, Clone, Copy)]
pub struct PersistOptions {
    /// How often the buffer is written out (`GIGAPI_SAVE_TIMEOUT_S`).
    pub interval: Duration,
    /// Partitions written at once.
    pub concurrency: usize,
    /// How level-1 files are encoded.
    pub parquet: ParquetOptions,
}

/// What one persist round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PersistReport {
    /// Files written and committed.
    pub files: u64,
    /// Rows in them.
    pub rows: u64,
    /// Partitions that failed and wait for the next round.
    pub failed: u64,
}

/// Writes buffer snapshots to Parquet.
#[derive(Debug)]
pub struct Persister {
    catalog: Arc<dyn Catalog>,
    storage: Arc<Storage>,
    buffer: Arc<WriteBuffer>,
    wal: Arc<Wal>,
    metrics: Arc<Metrics>,
    options: PersistOptions,
    /// One round at a time.
    round: tokio::sync::Mutex<()>,
    /// Whether the log already says persisting waits for a stopped catalog.
    told_stopped: std::sync::atomic::AtomicBool,
    /// The WAL sequence the last snapshot wholly persisted covers: the
    /// deletes up to it may be forgotten once no file needs them.
    persisted_through: std::sync::atomic::AtomicU64,
}

impl Persister {
    /// A persister over the given parts, whose WAL had every record up to
    /// `persisted_through` persisted when it opened.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        storage: Arc<Storage>,
        buffer: Arc<WriteBuffer>,
        wal: Arc<Wal>,
        persisted_through: u64,
        metrics: Arc<Metrics>,
        options: PersistOptions,
    ) -> Self {
        Persister {
            catalog,
            storage,
            buffer,
            wal,
            metrics,
            options,
            round: tokio::sync::Mutex::new(()),
            told_stopped: Default::default(),
            persisted_through: std::sync::atomic::AtomicU64::new(persisted_through),
        }
    }

    /// Persists on the interval and whenever the buffer asks, until `stop` fires.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        // Rows replayed from the WAL go to Parquet at once; then every interval.
        if self.buffer.bytes() > 0 {
            if let Err(error) = self.persist().await {
                tracing::error!(%error, "persisting the replayed write buffer failed");
            }
        }
        let start = tokio::time::Instant::now() + self.options.interval;
        let mut ticker = tokio::time::interval_at(start, self.options.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Rounds in a row that left a partition unwritten (a storage outage).
        let mut failed_rounds: u32 = 0;
        loop {
            // `stop` first: after shutdown's final persist, no other round
            // may start (it would find the WAL closed).
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                _ = ticker.tick() => {}
                _ = self.buffer.flush_wanted() => {}
            }
            if failed_rounds > 0 {
                // A full buffer asks for a round at once and every tick does;
                // after failures the next try waits longer, so an outage of
                // the storage gets a try every few seconds, not a flood.
                let pause = retry_pause(self.options.interval, failed_rounds);
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            match self.persist().await {
                Ok(report) if report.failed == 0 => failed_rounds = 0,
                Ok(report) => {
                    failed_rounds = failed_rounds.saturating_add(1);
                    tracing::warn!(
                        partitions = report.failed,
                        failed_rounds,
                        next_try_s =
                            (self.options.interval + retry_pause(self.options.interval, failed_rounds)).as_secs_f64(),
                        "persisting is retried with a growing pause while it fails"
                    );
                }
                Err(WalError::Closed) => {}
                Err(error) => {
                    failed_rounds = failed_rounds.saturating_add(1);
                    tracing::error!(%error, "persisting the write buffer failed");
                }
            }
        }
    }

    /// Waits for the round in progress, if any, and holds off the next one
    /// while the guard lives: a drop must not race a commit of the table.
    pub async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.round.lock().await
    }

    /// One round: finish the snapshots that earlier rounds left (oldest first),
    /// then, if they are all done, snapshot the buffer and write that. While an
    /// old snapshot keeps failing no new one is taken, so failures do not pile up.
    pub async fn persist(&self) -> Result<PersistReport, WalError> {
        let _round = self.round.lock().await;
        let mut report = PersistReport::default();
        // A file written now could not be committed, and would wait as an
        // orphan the stopped compactor does not sweep: the rows stay in the
        // buffer and the WAL until a restart.
        if let Some(reason) = self.catalog.stopped() {
            if !self.told_stopped.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::error!(%reason, "the catalog stopped: the write buffer is not persisted until a restart");
            }
            return Ok(report);
        }
        if self.persist_pending(&mut report).await? {
            if self.wal.snapshot().await?.is_some() {
                self.persist_pending(&mut report).await?;
            } else {
                // Nothing new to persist: deletes the compactor has carried
                // out since the last snapshot are forgotten now, not at the
                // next write.
                self.expire_tombstones(self.persisted_through.load(std::sync::atomic::Ordering::Acquire)).await;
            }
        }
        Ok(report)
    }

    /// Forgets the deletes up to WAL sequence `through` (every snapshot up
    /// to it is in the catalog, so no file written from the buffer can come
    /// with older rows) that no listed file has rows for any more.
    async fn expire_tombstones(&self, through: u64) {
        for database in self.catalog.databases() {
            for table in self.catalog.tables(&database) {
                // Shared deletes are not this WAL's to expire (the compactor does).
                let tombstones: Vec<_> =
                    self.catalog.tombstones(&database, &table).into_iter().filter(|t| !t.shared).collect();
                if tombstones.is_empty() {
                    continue;
                }
                let files: Vec<FileEntry> = self
                    .catalog
                    .files(&database, &table, i64::MIN, i64::MAX)
                    .into_iter()
                    .flat_map(|p| p.files)
                    .collect();
                let expired = crate::catalog::tombstones::carried_out(&tombstones, &files, through);
                if expired.is_empty() {
                    continue;
                }
                match self.catalog.remove_tombstones(&database, &table, &expired).await {
                    Ok(()) => tracing::debug!(%database, %table, deletes = expired.len(), "deletes carried out"),
                    Err(error) => tracing::warn!(%database, %table, %error, "could not forget carried-out deletes"),
                }
            }
        }
    }

    /// Writes the buffer's unfinished snapshots in order; true when none is left.
    async fn persist_pending(&self, report: &mut PersistReport) -> Result<bool, WalError> {
        for snapshot in self.buffer.persisting() {
            self.persist_snapshot(&snapshot, report).await;
            if !snapshot.is_done() {
                return Ok(false);
            }
            for (database, table, tombstone) in &snapshot.deletes {
                // Its WAL record goes next: the catalog must have it first.
                if let Err(error) = self.catalog.add_tombstone(database, table, tombstone.clone(), usize::MAX).await {
                    tracing::error!(%database, %table, %error, "could not record a delete; the WAL keeps it, retried");
                    return Ok(false);
                }
                if let Some(cache) = self.buffer.last_values() {
                    cache.forget(database, table);
                }
            }
            self.buffer.remove_snapshot(&snapshot);
            let gone = self.wal.truncate_through(snapshot.sequence).await?;
            self.persisted_through.fetch_max(snapshot.sequence, std::sync::atomic::Ordering::AcqRel);
            self.expire_tombstones(snapshot.sequence).await;
            // A drop is remembered while the WAL may replay a write from
            // before it: until its segment is gone for sure.
            if let Err(error) = self.catalog.expire_drops(gone).await {
                tracing::warn!(%error, "could not forget the drops the WAL no longer needs; retried");
            }
        }
        Ok(true)
    }

    async fn persist_snapshot(&self, snapshot: &Arc<Snapshot>, report: &mut PersistReport) {
        let todo: Vec<usize> = (0..snapshot.partitions.len()).filter(|&i| !snapshot.partitions[i].is_done()).collect();
        let results: Vec<(usize, Result<Option<FileEntry>, String>)> = stream::iter(todo)
            .map(|index| async move { (index, self.persist_partition(snapshot, index).await) })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        for (index, result) in results {
            let partition = &snapshot.partitions[index];
            match result {
                Ok(None) => {}
                Ok(Some(file)) => {
                    report.files += 1;
                    report.rows += file.row_count;
                    self.metrics.persisted_files.add(1);
                    self.metrics.persisted_bytes.add(file.size_bytes);
                    self.metrics.persisted_rows.add(file.row_count);
                }
                Err(error) => {
                    report.failed += 1;
                    self.metrics.persist_errors.add(1);
                    tracing::error!(
                        database = %partition.database,
                        table = %partition.table,
                        partition = %partition.partition,
                        %error,
                        "could not persist a partition; it stays in the buffer and the WAL and is retried"
                    );
                }
            }
        }
    }

    async fn persist_partition(&self, snapshot: &Snapshot, index: usize) -> Result<Option<FileEntry>, String> {
        let partition = &snapshot.partitions[index];
        let SnapshotRows { batches, deletes_applied } = partition.rows();
        if batches.iter().all(|b| b.num_rows() == 0) {
            // A delete or a drop took every row (the table may be gone from
            // the catalog): there is no file to write, and the WAL records
            // go once the snapshot is done.
            self.buffer.partition_persisted(snapshot, index);
            return Ok(None);
        }
        let schema = self
            .catalog
            .table_schema(&partition.database, &partition.table)
            .ok_or_else(|| "the table is missing from the catalog".to_string())?;
        let order = schema.row_order();
        let sort_order = order.clone();
        let batch = tokio::task::spawn_blocking(move || sort_and_deduplicate(&batches, &sort_order))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("sorting: {e}"))?;
        // The sorted copy is memory the write path holds beside the snapshot,
        // until the file is written.
        let sorted = self.buffer.reserve(batch.get_array_memory_size());
        if batch.num_rows() == 0 {
            // A delete took every row: there is no file to write, and the
            // WAL records go once the snapshot is done.
            self.buffer.partition_persisted(snapshot, index);
            return Ok(None);
        }
        let (min_time, max_time) = time_range(&batch, order.time).ok_or("no rows")?;
        let row_count = batch.num_rows() as u64;

        let id = uuid::Uuid::new_v4().to_string();
        let path = file_path_in_table(&partition.partition.dir_name(), &id, 1);
        let layer = self.storage.first();
        let size_bytes = layer
            .write_parquet(
                &file_path_in_layer(&partition.database, &partition.table, &path),
                batch,
                order,
                self.options.parquet,
            )
            .await
            .map_err(|e| e.to_string())?;
        drop(sorted);
        let entry = FileEntry {
            id,
            layer: layer.name().to_owned(),
            path,
            level: 1,
            size_bytes,
            row_count,
            min_time,
            max_time,
            wal_sequence: snapshot.sequence,
            deletes_applied,
            chunk_time: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX),
        };
        self.catalog
            .commit(Commit {
                database: partition.database.to_string(),
                table: partition.table.to_string(),
                partition: partition.partition,
                add: vec![entry.clone()],
                remove: Vec::new(),
                wal_sequence: snapshot.sequence,
                lease: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        self.buffer.partition_persisted(snapshot, index);
        Ok(Some(entry))
    }
}

/// The pause added to the interval before the next round after
/// `failed_rounds` failed ones, so that the time between tries doubles with
/// each failure; at most [`MAX_RETRY_PAUSE`], so that a store that is back
/// is written to soon.
fn retry_pause(interval: Duration, failed_rounds: u32) -> Duration {
    let factor = 1u32 << failed_rounds.min(6);
    interval.saturating_mul(factor - 1).min(MAX_RETRY_PAUSE)
}

/// The longest pause between persist rounds that fail.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_between_failed_rounds_doubles_up_to_a_bound() {
        let second = Duration::from_secs(1);
        let between = |failed| second + retry_pause(second, failed);
        assert_eq!([between(1), between(2), between(3)], [2 * second, 4 * second, 8 * second]);
        assert_eq!(retry_pause(second, 40), MAX_RETRY_PAUSE);
    }
}
