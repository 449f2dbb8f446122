//! The compactor: merges each hour partition's small files into larger levels,
//! moves files down the storage layers as their TTL passes, deletes them at the
//! end of the last layer's TTL (retention), and removes files no catalog entry
//! names.
//!
//! Every change reaches readers through one atomic catalog commit per
//! partition (outputs in, inputs out), and a file leaves storage only a grace
//! period after it left the catalog, so a query that listed it keeps reading
//! it. A merge writes exactly what queries read: the rows come from a
//! [`FileMerger`], which the server backs with the query engine's own
//! deduplicating merge, so there is one last-write-wins rule for both.

mod garbage;
pub mod plan;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use serde::Serialize;

use crate::catalog::{Catalog, Commit, FileEntry, PartitionKey};
use crate::last_values::LastValueCache;
use crate::metrics::Metrics;
use crate::storage::{file_path_in_layer, file_path_in_table, ParquetOptions, Storage};
use garbage::Garbage;
use plan::{plan_level, LevelPlan};

/// The rows of a merge, sorted by tags then time.
pub type MergedRows = BoxStream<'static, Result<RecordBatch, ArrowError>>;

/// Produces the rows a merge writes: the files' rows merged and deduplicated
/// exactly as queries merge them.
#[async_trait]
pub trait FileMerger: Send + Sync + fmt::Debug {
    /// The rows of `files` (oldest first) of one table, merged.
    async fn merged_rows(&self, database: &str, table: &str, files: Vec<FileEntry>) -> Result<MergedRows, String>;
}

/// One merge level: level `n` files become a level `n + 1` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergeLevel {
    /// How often the level is merged by the background task.
    pub interval: Duration,
    /// Largest file the level writes (the inputs' sizes add up to at most this).
    pub max_bytes: u64,
}

/// Settings of the compactor.
#[derive(Debug, Clone)]
pub struct CompactorOptions {
    /// The merge levels: `levels[0]` merges level 1 into level 2, and so on.
    pub levels: Vec<MergeLevel>,
    /// Whether the background task merges (`GIGAPI_NO_MERGES` turns it off;
    /// layer moves and retention still run, and a manual run still merges).
    pub background_merges: bool,
    /// Partitions worked on at once.
    pub concurrency: usize,
    /// How long a file stays on storage after leaving the catalog.
    pub grace: Duration,
    /// How often the background task looks at layer TTLs and deletes files
    /// whose grace period is over.
    pub housekeeping_interval: Duration,
    /// Most files one merge reads at once (each holds a batch in memory).
    pub max_files_per_merge: usize,
    /// How often a long merge or layer move renews its table's compaction
    /// lease (a third of the lease's life), so that the work is not fenced
    /// for taking longer than the lease.
    pub lease_renew_every: Duration,
    /// How merged files are encoded.
    pub parquet: ParquetOptions,
}

/// Most files one merge reads: a merge holds a row group's worth of batches
/// per input file, so this bounds its memory whatever the level's size.
pub const MAX_FILES_PER_MERGE: usize = 100;

/// Most merges of one level of one partition in one run (after a bulk load a
/// level may hold thousands of files).
const MAX_MERGES_PER_LEVEL: usize = 100;

/// A merge that ran.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MergeDone {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// The hour partition (`date=YYYY-MM-DD/hour=HH`).
    pub partition: String,
    /// The level merged.
    pub from_level: u8,
    /// The level written.
    pub to_level: u8,
    /// The layer of the inputs and the output.
    pub layer: String,
    /// Files merged.
    pub input_files: usize,
    /// Their bytes.
    pub input_bytes: u64,
    /// Their rows (rewritten points counted once per file).
    pub input_rows: u64,
    /// The file written, relative to the table directory.
    pub output_file: String,
    /// Its bytes.
    pub output_bytes: u64,
    /// Its rows.
    pub output_rows: u64,
}

/// A file that moved up a level without being rewritten.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PromotionDone {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// The file, relative to the table directory.
    pub file: String,
    /// Its level before.
    pub from_level: u8,
    /// Its level now.
    pub to_level: u8,
    /// Its bytes.
    pub bytes: u64,
}

/// A file copied to the next layer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MoveDone {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// The file, relative to the table directory.
    pub file: String,
    /// The layer it left.
    pub from_layer: String,
    /// The layer it is on now.
    pub to_layer: String,
    /// Its bytes.
    pub bytes: u64,
}

/// A file deleted because the last layer's TTL passed (retention).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExpiryDone {
    /// The database.
    pub database: String,
    /// The table.
    pub table: String,
    /// The file, relative to the table directory.
    pub file: String,
    /// The layer it was on.
    pub layer: String,
    /// Its rows, gone from the table.
    pub rows: u64,
    /// Its bytes.
    pub bytes: u64,
    /// Its newest event time (ns).
    pub max_time: i64,
}

/// What one compaction run did: what the admin call and `hourglass compact`
/// report.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CompactionReport {
    /// Merges, in the order they committed.
    pub merges: Vec<MergeDone>,
    /// Files moved up a level unchanged.
    pub promotions: Vec<PromotionDone>,
    /// Files moved to the next layer.
    pub moves: Vec<MoveDone>,
    /// Files removed by retention.
    pub expired: Vec<ExpiryDone>,
    /// Replaced files deleted from storage in this run (their grace period over).
    pub files_deleted: u64,
    /// Files no catalog entry names, deleted in this run.
    pub orphans_deleted: u64,
    /// Replaced files still inside their grace period, deleted later.
    pub files_waiting_for_deletion: usize,
    /// What failed; the files involved are untouched and tried again next run.
    pub errors: Vec<String>,
}

impl CompactionReport {
    fn absorb(&mut self, other: CompactionReport) {
        self.merges.extend(other.merges);
        self.promotions.extend(other.promotions);
        self.moves.extend(other.moves);
        self.expired.extend(other.expired);
        self.errors.extend(other.errors);
    }
}

/// Which work a run does.
#[derive(Debug, Clone, Default)]
pub struct RunScope {
    /// Merge levels to run (indexes into [`CompactorOptions::levels`]).
    pub levels: Vec<usize>,
    /// Whether to apply layer TTLs (moves and retention).
    pub layers: bool,
    /// Only this database.
    pub database: Option<String>,
    /// Only this table.
    pub table: Option<String>,
}

/// Merges, moves and expires files; see the module docs.
#[derive(Debug)]
pub struct Compactor {
    catalog: Arc<dyn Catalog>,
    storage: Arc<Storage>,
    merger: Arc<dyn FileMerger>,
    metrics: Arc<Metrics>,
    options: CompactorOptions,
    garbage: Garbage,
    /// Told when retention removes a table's rows, which may be a series'
    /// last ones.
    last_values: Option<Arc<LastValueCache>>,
    /// One run at a time: a manual run waits for the background one.
    run: tokio::sync::Mutex<()>,
}

/// The partition a compaction step works on, and the lease it works under.
#[derive(Debug, Clone, Copy)]
struct PartitionAt<'a> {
    database: &'a str,
    table: &'a str,
    partition: PartitionKey,
    lease: Option<u64>,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Compactor {
    /// A compactor over the given parts.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        storage: Arc<Storage>,
        merger: Arc<dyn FileMerger>,
        metrics: Arc<Metrics>,
        last_values: Option<Arc<LastValueCache>>,
        options: CompactorOptions,
    ) -> Self {
        let garbage = Garbage::new(options.grace);
        Compactor { catalog, storage, merger, metrics, options, garbage, last_values, run: tokio::sync::Mutex::new(()) }
    }

    /// The settings.
    pub fn options(&self) -> &CompactorOptions {
        &self.options
    }

    /// Everything at once, as the admin call asks: every merge level (a
    /// level's output can merge at the next level in the same run), layer
    /// TTLs, deletion of files whose grace period is over, and the sweep of
    /// files no catalog entry names.
    pub async fn run_now(&self, database: Option<String>, table: Option<String>) -> CompactionReport {
        let scope = RunScope { levels: (0..self.options.levels.len()).collect(), layers: true, database, table };
        let _one_at_a_time = self.run.lock().await;
        let mut report = self.run_locked(&scope).await;
        let (orphans, errors) = self.remove_orphans_locked().await;
        report.orphans_deleted = orphans;
        self.metrics.compaction_errors.add(errors.len() as u64);
        report.errors.extend(errors);
        report
    }

    /// One run over every partition in `scope`.
    pub async fn run_once(&self, scope: &RunScope) -> CompactionReport {
        let _one_at_a_time = self.run.lock().await;
        self.run_locked(scope).await
    }

    /// Why the compactor must do nothing now: its catalog stopped, so the
    /// view it would merge, move and delete by may be wrong until a restart
    /// reloads it from disk.
    fn catalog_stopped(&self) -> Option<String> {
        self.catalog
            .stopped()
            .map(|reason| format!("nothing is merged, moved or deleted while the catalog is stopped: {reason}"))
    }

    async fn run_locked(&self, scope: &RunScope) -> CompactionReport {
        if let Some(reason) = self.catalog_stopped() {
            self.metrics.compaction_errors.add(1);
            return CompactionReport { errors: vec![reason], ..CompactionReport::default() };
        }
        // Plans from the latest state a shared catalog has, not a view a poll behind.
        if let Err(error) = self.catalog.refresh().await {
            self.metrics.compaction_errors.add(1);
            return CompactionReport {
                errors: vec![format!("nothing is merged or moved: {error}")],
                ..Default::default()
            };
        }
        let mut partitions = Vec::new();
        for database in self.catalog.databases() {
            if scope.database.as_ref().is_some_and(|d| d != &database) {
                continue;
            }
            for table in self.catalog.tables(&database) {
                if scope.table.as_ref().is_some_and(|t| t != &table) {
                    continue;
                }
                for listed in self.catalog.files(&database, &table, i64::MIN, i64::MAX) {
                    if let Some(partition) = listed.partition.filter(|_| !listed.files.is_empty()) {
                        partitions.push((database.clone(), table.clone(), partition));
                    }
                }
            }
        }
        let reports: Vec<CompactionReport> = stream::iter(partitions)
            .map(|(database, table, partition)| async move {
                self.compact_partition(&database, &table, partition, scope).await
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        let mut report = CompactionReport::default();
        for partial in reports {
            report.absorb(partial);
        }
        report.errors.extend(self.expire_shared_deletes(scope).await);
        // A commit of this run may have stopped the catalog.
        if let Some(reason) = self.catalog_stopped() {
            report.errors.push(reason);
        } else {
            let (deleted, errors) = self.garbage.delete_due(&self.storage).await;
            report.files_deleted = deleted;
            report.errors.extend(errors);
        }
        report.files_waiting_for_deletion = self.garbage.waiting();
        self.metrics.files_deleted.add(report.files_deleted);
        self.metrics.compaction_errors.add(report.errors.len() as u64);
        report
    }

    /// Forgets the shared deletes (see [`crate::catalog::SharedDeletes`]) of
    /// the tables this process compacts that every writer has carried out
    /// and no listed file holds rows of any more; returns what failed.
    async fn expire_shared_deletes(&self, scope: &RunScope) -> Vec<String> {
        let Some(shared) = self.catalog.shared_deletes() else { return Vec::new() };
        let mut errors = Vec::new();
        let mut carried_out_by_writers = Vec::new();
        for database in self.catalog.databases() {
            for table in self.catalog.tables(&database) {
                let out_of_scope = scope.database.as_ref().is_some_and(|d| d != &database)
                    || scope.table.as_ref().is_some_and(|t| t != &table);
                if out_of_scope || !self.catalog.tombstones(&database, &table).iter().any(|t| t.shared) {
                    continue;
                }
                if !matches!(self.catalog.compaction_lease(&database, &table).await, Ok(Some(_))) {
                    continue;
                }
                match shared.applied_everywhere(&database, &table).await {
                    Ok(through) => carried_out_by_writers.push((database.clone(), table, through)),
                    Err(error) => errors.push(format!("{database}.{table}: {error}")),
                }
            }
        }
        if carried_out_by_writers.is_empty() {
            return errors;
        }
        // The files as they are now, after the writers said so: a file a
        // writer commits later is stamped past what it carried out.
        if let Err(error) = self.catalog.refresh().await {
            errors.push(format!("no delete is forgotten: {error}"));
            return errors;
        }
        for (database, table, through) in carried_out_by_writers {
            let files: Vec<FileEntry> =
                self.catalog.files(&database, &table, i64::MIN, i64::MAX).into_iter().flat_map(|p| p.files).collect();
            let tombstones = self.catalog.tombstones(&database, &table);
            let expired = crate::catalog::tombstones::carried_out(&tombstones, &files, through);
            if expired.is_empty() {
                continue;
            }
            match self.catalog.remove_tombstones(&database, &table, &expired).await {
                Ok(()) => tracing::info!(%database, %table, deletes = expired.len(), "deletes carried out everywhere"),
                Err(error) => errors.push(format!("forgetting the deletes of {database}.{table}: {error}")),
            }
        }
        errors
    }

    /// Deletes the files in partition directories that no catalog entry names
    /// and that are older than the grace period (what a crash leaves behind);
    /// returns how many and what failed.
    pub async fn remove_orphans(&self) -> (u64, Vec<String>) {
        // Never beside a merge or a move: their new files are not in the
        // catalog until they commit, however old their modification time.
        let _one_at_a_time = self.run.lock().await;
        self.remove_orphans_locked().await
    }

    async fn remove_orphans_locked(&self) -> (u64, Vec<String>) {
        if let Some(reason) = self.catalog_stopped() {
            return (0, vec![reason]);
        }
        // Only in tables this process holds the lease on: their compactor
        // is the one that knows which of its files are committed.
        let mut leased = std::collections::HashSet::new();
        let mut errors = Vec::new();
        for database in self.catalog.databases() {
            for table in self.catalog.tables(&database) {
                match self.catalog.compaction_lease(&database, &table).await {
                    Ok(Some(_)) => {
                        leased.insert(format!("{database}/{table}"));
                    }
                    Ok(None) => {}
                    Err(error) => errors.push(format!("{database}.{table}: {error}")),
                }
            }
        }
        let (removed, mut swept_errors) = self.garbage.remove_orphans(&self.catalog, &self.storage, &leased).await;
        swept_errors.extend(errors);
        let errors = swept_errors;
        self.metrics.orphans_deleted.add(removed);
        (removed, errors)
    }

    /// Runs in the background until `stop` fires: each merge level on its own
    /// interval, layer TTLs and deletions every housekeeping interval, the
    /// orphan sweep at start and then every hour.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        const SWEEP_EVERY: Duration = Duration::from_secs(3600);
        let sweep = async {
            let (removed, errors) = self.remove_orphans().await;
            if removed > 0 {
                tracing::info!(files = removed, "removed files no catalog entry names (left by a crash)");
            }
            for error in errors {
                tracing::warn!(%error, "could not remove a file no catalog entry names");
            }
        };
        tokio::select! {
            _ = sweep => {}
            _ = stop.changed() => return,
        }
        let started = Instant::now();
        let mut last_merge: Vec<Instant> = vec![started; self.options.levels.len()];
        let mut last_sweep = started;
        let tick_every = self
            .options
            .levels
            .iter()
            .map(|l| l.interval)
            .chain([self.options.housekeeping_interval])
            .min()
            .unwrap_or(self.options.housekeeping_interval)
            .max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick_every, tick_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_housekeeping = started;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let now = Instant::now();
            let mut scope = RunScope::default();
            if self.options.background_merges {
                for (index, level) in self.options.levels.iter().enumerate() {
                    if now.duration_since(last_merge[index]) + Duration::from_millis(50) >= level.interval {
                        scope.levels.push(index);
                        last_merge[index] = now;
                    }
                }
            }
            if now.duration_since(last_housekeeping) + Duration::from_millis(50) >= self.options.housekeeping_interval {
                scope.layers = true;
                last_housekeeping = now;
            }
            let run = async {
                if !scope.levels.is_empty() || scope.layers {
                    let report = self.run_once(&scope).await;
                    log_report(&report);
                }
                if now.duration_since(last_sweep) >= SWEEP_EVERY {
                    last_sweep = now;
                    let (_, errors) = self.remove_orphans().await;
                    self.metrics.compaction_errors.add(errors.len() as u64);
                    for error in errors {
                        tracing::warn!(%error, "could not remove a file no catalog entry names");
                    }
                }
            };
            tokio::select! {
                _ = run => {}
                // A merge cut short leaves a temporary file, which the next
                // start's sweep removes.
                _ = stop.changed() => return,
            }
        }
    }

    async fn compact_partition(
        &self,
        database: &str,
        table: &str,
        partition: PartitionKey,
        scope: &RunScope,
    ) -> CompactionReport {
        let mut report = CompactionReport::default();
        // Taken or renewed per partition, so that a long run keeps it.
        let lease = match self.catalog.compaction_lease(database, table).await {
            Ok(Some(token)) => Some(token),
            Ok(None) => return report,
            Err(error) => {
                report.errors.push(format!("{database}.{table}: {error}"));
                return report;
            }
        };
        let at = PartitionAt { database, table, partition, lease };
        if !scope.levels.is_empty() {
            // Files that deletes hide rows of are rewritten without them, each
            // alone at its level, so the deletes' tombstones can go.
            let tombstones = self.catalog.tombstones(database, table);
            for file in self.partition_files(database, table, partition) {
                if !tombstones.iter().any(|t| t.applies_to(&file)) {
                    continue;
                }
                let level = file.level;
                if let Err(error) = self.merge(&at, vec![file], level, &mut report).await {
                    report.errors.push(format!("carrying out deletes in {database}.{table} {partition}: {error}"));
                    return report;
                }
            }
        }
        let last = self.options.levels.len().saturating_sub(1);
        for &index in &scope.levels {
            let Some(level) = self.options.levels.get(index) else { continue };
            let from_level = u8::try_from(index + 1).unwrap_or(u8::MAX);
            let mut steps = vec![from_level];
            // The last level's files merge among themselves (up to its size),
            // so a partition no longer written ends with one file per level.
            if index == last {
                steps.push(from_level.saturating_add(1));
            }
            for step in steps {
                let is_final = step > from_level;
                // Until the level has nothing left to merge: after a bulk load
                // it may hold far more files than one merge takes.
                for _ in 0..MAX_MERGES_PER_LEVEL {
                    let files = self.partition_files(database, table, partition);
                    let outcome = match plan_level(&files, step, level.max_bytes, self.options.max_files_per_merge) {
                        LevelPlan::Nothing => break,
                        LevelPlan::Promote(_) if is_final => break,
                        LevelPlan::Promote(file) => self.promote(&at, file, &mut report).await,
                        LevelPlan::Merge(inputs) => {
                            let to_level = if is_final { step } else { step.saturating_add(1) };
                            self.merge(&at, inputs, to_level, &mut report).await
                        }
                    };
                    if let Err(error) = outcome {
                        report.errors.push(format!("merging level {step} of {database}.{table} {partition}: {error}"));
                        tracing::warn!(%database, %table, %partition, level = step, %error, "merge failed; retried on the next run");
                        return report;
                    }
                }
            }
        }
        if scope.layers {
            for file in self.partition_files(database, table, partition) {
                if let Err(error) = self.apply_ttl(&at, file, &mut report).await {
                    report.errors.push(format!("{database}.{table} {partition}: {error}"));
                    tracing::warn!(%database, %table, %partition, %error, "layer move or expiry failed; retried on the next run");
                }
            }
        }
        report
    }

    fn partition_files(&self, database: &str, table: &str, partition: PartitionKey) -> Vec<FileEntry> {
        self.catalog
            .files(database, table, partition.start_ns(), partition.end_ns())
            .into_iter()
            .filter(|p| p.partition == Some(partition))
            .flat_map(|p| p.files)
            .collect()
    }

    async fn merge(
        &self,
        at: &PartitionAt<'_>,
        inputs: Vec<FileEntry>,
        to_level: u8,
        report: &mut CompactionReport,
    ) -> Result<(), String> {
        let PartitionAt { database, table, partition, .. } = *at;
        let schema = self.catalog.table_schema(database, table).ok_or("the table is missing from the catalog")?;
        let Some(first) = inputs.first() else { return Ok(()) };
        let layer_name = first.layer.clone();
        let layer = self
            .storage
            .layer(&layer_name)
            .ok_or_else(|| format!("storage layer '{layer_name}' is not configured (GIGAPI_LAYERS_<i>_NAME)"))?;
        let from_level = first.level;
        let id = uuid::Uuid::new_v4().to_string();
        let path = file_path_in_table(&partition.dir_name(), &id, to_level);
        let relative = file_path_in_layer(database, table, &path);
        // Read before the merge reads them: the merge carries out these
        // deletes at least (a later one stays a tombstone on the output).
        // An input stamped past a delete gone since stays past it.
        let deletes_applied = self
            .catalog
            .tombstones(database, table)
            .iter()
            .map(|t| t.sequence)
            .chain(inputs.iter().map(|f| f.deletes_applied))
            .max()
            .unwrap_or(0);
        let written = self
            .under_lease(at, async {
                let rows = self.merger.merged_rows(database, table, inputs.clone()).await?;
                layer
                    .write_parquet_stream(&relative, rows, &schema.row_order(), self.options.parquet)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
        // A test stops here to crash with the merged file written and not committed.
        crate::faults::stall("merge-before-commit");
        let remove: Vec<String> = inputs.iter().map(|f| f.id.clone()).collect();
        let mut add = Vec::new();
        if written.row_count > 0 {
            add.push(FileEntry {
                id,
                layer: layer_name.clone(),
                path: path.clone(),
                level: to_level,
                size_bytes: written.size_bytes,
                row_count: written.row_count,
                min_time: written.min_time,
                max_time: written.max_time,
                wal_sequence: inputs.iter().map(|f| f.wal_sequence).max().unwrap_or(0),
                deletes_applied,
                // The data has been in this layer since its newest input came:
                // the layer's TTL counts from then.
                chunk_time: inputs.iter().map(|f| f.chunk_time).max().unwrap_or_else(now_ns),
            });
        }
        if let Err(error) = self.swap(at, add, remove).await {
            // The commit may have reached disk before it failed: the file is
            // left for the orphan sweep, which deletes it only if no catalog
            // entry names it.
            return Err(error.to_string());
        }
        if written.row_count == 0 {
            let _ = layer.delete(&relative).await;
        }
        for input in &inputs {
            self.garbage.schedule(&input.layer, file_path_in_layer(database, table, &input.path));
        }
        let done = MergeDone {
            database: database.to_owned(),
            table: table.to_owned(),
            partition: partition.dir_name(),
            from_level,
            to_level,
            layer: layer_name,
            input_files: inputs.len(),
            input_bytes: inputs.iter().map(|f| f.size_bytes).sum(),
            input_rows: inputs.iter().map(|f| f.row_count).sum(),
            output_file: path,
            output_bytes: written.size_bytes,
            output_rows: written.row_count,
        };
        self.metrics.merges.add(1);
        self.metrics.merged_files.add(done.input_files as u64);
        self.metrics.merged_bytes_written.add(done.output_bytes);
        tracing::debug!(?done, "merged");
        report.merges.push(done);
        Ok(())
    }

    /// Runs `work`, renewing the table's compaction lease meanwhile; gives
    /// up (dropping the work) once another process holds the lease.
    async fn under_lease<T>(
        &self,
        at: &PartitionAt<'_>,
        work: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let renew = async {
            let mut ticker = tokio::time::interval(self.options.lease_renew_every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match self.catalog.compaction_lease(at.database, at.table).await {
                    Ok(token) if token == at.lease => {}
                    Ok(_) => {
                        return format!(
                            "the compaction lease on {}.{} passed to another process during the work",
                            at.database, at.table
                        )
                    }
                    // Redis unreachable: if the lease passes on meanwhile, the commit is fenced.
                    Err(error) => tracing::debug!(%error, "could not renew a compaction lease"),
                }
            }
        };
        tokio::select! {
            result = work => result,
            lost = renew => Err(lost),
        }
    }

    /// Replaces files of a partition in one catalog commit. The partition's
    /// WAL sequence stays as it is: the rows were already covered.
    async fn swap(&self, at: &PartitionAt<'_>, add: Vec<FileEntry>, remove: Vec<String>) -> Result<(), String> {
        let PartitionAt { database, table, partition, lease } = *at;
        let commit = Commit {
            database: database.to_owned(),
            table: table.to_owned(),
            partition,
            add,
            remove,
            wal_sequence: 0,
            lease,
        };
        self.catalog.commit(commit).await.map_err(|e| e.to_string())
    }

    async fn promote(
        &self,
        at: &PartitionAt<'_>,
        file: FileEntry,
        report: &mut CompactionReport,
    ) -> Result<(), String> {
        let PartitionAt { database, table, .. } = *at;
        let from_level = file.level;
        let promoted = FileEntry { level: from_level.saturating_add(1), ..file.clone() };
        self.swap(at, vec![promoted], vec![file.id.clone()]).await?;
        report.promotions.push(PromotionDone {
            database: database.to_owned(),
            table: table.to_owned(),
            file: file.path,
            from_level,
            to_level: from_level.saturating_add(1),
            bytes: file.size_bytes,
        });
        Ok(())
    }

    /// Moves `file` to the next layer, or deletes it on the last one, once it
    /// has been on its layer longer than the layer's TTL.
    async fn apply_ttl(
        &self,
        at: &PartitionAt<'_>,
        file: FileEntry,
        report: &mut CompactionReport,
    ) -> Result<(), String> {
        let PartitionAt { database, table, .. } = *at;
        let layers = self.storage.layers();
        let Some(index) = layers.iter().position(|l| l.name() == file.layer) else {
            return Err(format!(
                "{} is on storage layer '{}', which is not configured (GIGAPI_LAYERS_<i>_NAME)",
                file.path, file.layer
            ));
        };
        let Some(ttl) = layers[index].config().ttl else { return Ok(()) };
        let age = now_ns().saturating_sub(file.chunk_time);
        if age < i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX) {
            return Ok(());
        }
        let relative = file_path_in_layer(database, table, &file.path);
        match layers.get(index + 1) {
            Some(next) => {
                self.under_lease(at, async {
                    next.copy_from(&layers[index], &relative, file.size_bytes, file.row_count)
                        .await
                        .map_err(|e| format!("copying {} to layer '{}': {e}", file.path, next.name()))
                })
                .await?;
                let moved = FileEntry { layer: next.name().to_owned(), chunk_time: now_ns(), ..file.clone() };
                // On a failed commit the copy is left for the orphan sweep (see `merge`).
                self.swap(at, vec![moved], vec![file.id.clone()]).await?;
                self.garbage.schedule(&file.layer, relative);
                self.metrics.layer_moves.add(1);
                report.moves.push(MoveDone {
                    database: database.to_owned(),
                    table: table.to_owned(),
                    file: file.path,
                    from_layer: file.layer,
                    to_layer: next.name().to_owned(),
                    bytes: file.size_bytes,
                });
            }
            None => {
                let swapped = self.swap(at, Vec::new(), vec![file.id.clone()]).await;
                // Also after a failed swap: the commit may have taken effect.
                if let Some(cache) = &self.last_values {
                    cache.expired(database, table, file.max_time);
                }
                swapped?;
                self.garbage.schedule(&file.layer, relative);
                self.metrics.files_expired.add(1);
                report.expired.push(ExpiryDone {
                    database: database.to_owned(),
                    table: table.to_owned(),
                    file: file.path,
                    layer: file.layer,
                    rows: file.row_count,
                    bytes: file.size_bytes,
                    max_time: file.max_time,
                });
            }
        }
        Ok(())
    }
}

fn log_report(report: &CompactionReport) {
    if !report.merges.is_empty() || !report.moves.is_empty() || !report.expired.is_empty() {
        tracing::info!(
            merges = report.merges.len(),
            files_merged = report.merges.iter().map(|m| m.input_files).sum::<usize>(),
            moves = report.moves.len(),
            expired = report.expired.len(),
            deleted = report.files_deleted,
            "compaction run"
        );
    }
}
