//! Deletes on the write path: a WAL record ordered with the writes, the
//! write buffer's rows removed, and a tombstone in the catalog for the rows
//! in files (see [`crate::catalog::tombstones`]).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::buffer::BufferedDelete;
use super::wal::WalWrite;
use super::{IngestError, Ingester};
use crate::catalog::{CatalogError, ColumnType, DeletePredicate, Tombstone, HEARTBEAT_EVERY};

/// How long a delete on a shared catalog waits for the live writers to say
/// they carried it out on their buffers before it answers anyway.
const CONFIRM_WAIT: Duration = Duration::from_secs(10);

/// What a delete by series (InfluxDB's `/api/v2/delete`) did: the
/// measurements it recorded a delete in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesDelete {
    /// The measurements deleted from, in the order they were.
    pub measurements: Vec<String>,
}

impl Ingester {
    /// Deletes the rows of `table` that `predicate` matches and were written
    /// before: a WAL record (so it is ordered with the writes and survives a
    /// crash), applied to the write buffer, then a tombstone in the catalog
    /// that hides the rows in files until the compactor rewrites them.
    /// Returns the delete's WAL sequence once every step is durable.
    pub async fn delete(
        self: &Arc<Self>,
        database: &str,
        table: &str,
        predicate: DeletePredicate,
    ) -> Result<u64, IngestError> {
        if self.catalog.shared_deletes().is_some() {
            return self.delete_shared(database, table, predicate).await;
        }
        if !self.catalog.records_deletes() {
            return Err(IngestError::Catalog(CatalogError::Unsupported(format!(
                "DELETE on {database}.{table}: the shared catalog does not record deletes yet"
            ))));
        }
        let live = self.catalog.tombstones(database, table).len();
        if live >= self.options.max_tombstones {
            return Err(IngestError::Catalog(CatalogError::TooManyTombstones {
                database: database.into(),
                table: table.into(),
                max: self.options.max_tombstones,
            }));
        }
        // Spawned, so that a client going away cannot leave the delete in
        // the WAL without its tombstone; one at a time, so that tombstones
        // reach the catalog in sequence order (a merge records the newest it
        // saw as carried out, and must not skip an older one still coming).
        let ingester = Arc::clone(self);
        let (database, table): (Arc<str>, Arc<str>) = (database.into(), table.into());
        let task = tokio::spawn(async move {
            // The slot first: a drop holds `deletes` while writes, which
            // hold slots, finish.
            let _slot = ingester.slot().await?;
            let _one_at_a_time = ingester.deletes.lock().await;
            let issued_at = now_ns();
            let record = WalWrite::encode_delete(BufferedDelete {
                database: Arc::clone(&database),
                table: Arc::clone(&table),
                predicate: predicate.clone(),
                issued_at,
                drop: false,
                shared_sequence: None,
            })?;
            let sequence = ingester.wal.write(record).await?;
            let tombstone = Tombstone { sequence, issued_at, predicate, shared: false };
            // The limit was checked before the record: a durable delete is not refused now.
            ingester.catalog.add_tombstone(&database, &table, tombstone, usize::MAX).await?;
            if let Some(cache) = ingester.buffer.last_values() {
                // Again, now the tombstone hides the rows in files too: a
                // cache built in between read them.
                cache.forget(&database, &table);
            }
            ingester.metrics.deletes.add(1);
            Ok(sequence)
        });
        task.await.map_err(|e| IngestError::Internal(format!("the delete's task: {e}")))?
    }

    /// Drops the measurement `table`: its rows leave the buffer, the catalog
    /// forgets it (schema, files, tombstones) and its files are deleted. A
    /// WAL record orders the drop with the writes: no write waits in between
    /// (they are held off meanwhile), and a later write makes a new table.
    /// Returns whether there was a table to drop.
    pub async fn drop_table(self: &Arc<Self>, database: &str, table: &str) -> Result<bool, IngestError> {
        // Checked before the WAL record, which a replay would carry out.
        if !self.catalog.records_deletes() {
            return Err(IngestError::Catalog(CatalogError::Unsupported(format!(
                "DROP TABLE {database}.{table}: the shared catalog does not drop measurements yet"
            ))));
        }
        let ingester = Arc::clone(self);
        let (database, table): (Arc<str>, Arc<str>) = (database.into(), table.into());
        // Spawned, so that a client going away cannot stop it half done.
        let task = tokio::spawn(async move {
            let sequence = {
                // In this order: a delete takes its write slot before
                // `deletes`, and a write holds its slot while it waits for
                // `writes`.
                let _one_at_a_time = ingester.deletes.lock().await;
                let _no_persist = ingester.persister.hold().await;
                let _no_writes = ingester.writes.write().await;
                if ingester.catalog.table_schema(&database, &table).is_none() {
                    return Ok(false);
                }
                let record = WalWrite::encode_delete(BufferedDelete {
                    database: Arc::clone(&database),
                    table: Arc::clone(&table),
                    predicate: DeletePredicate::everything(),
                    issued_at: now_ns(),
                    drop: true,
                    shared_sequence: None,
                })?;
                let sequence = ingester.wal.write(record).await?;
                ingester.catalog.drop_table(&database, &table, sequence).await?;
                if let Some(cache) = ingester.buffer.last_values() {
                    cache.forget(&database, &table);
                }
                // Before a write can make the table anew in the same directories.
                ingester.clear_dropped_table(&database, &table).await;
                sequence
            };
            ingester.metrics.deletes.add(1);
            tracing::info!(%database, %table, sequence, "table dropped");
            Ok(true)
        });
        task.await.map_err(|e| IngestError::Internal(format!("the drop's task: {e}")))?
    }

    /// A delete on a catalog several writers share: recorded there first
    /// (which orders it, and hides the rows in files from every reader at
    /// its next poll), then awaited from every live writer, this one
    /// included (each carries it out on its buffer as soon as its view has
    /// it: [`follow_shared_deletes`]), so that a write any of them takes
    /// after this returns is not deleted. Returns the delete's sequence in
    /// the catalog.
    async fn delete_shared(
        self: &Arc<Self>,
        database: &str,
        table: &str,
        predicate: DeletePredicate,
    ) -> Result<u64, IngestError> {
        let ingester = Arc::clone(self);
        let (database, table) = (database.to_owned(), table.to_owned());
        // Spawned, so that a client going away cannot stop it half done.
        let task = tokio::spawn(async move {
            let shared = ingester
                .catalog
                .shared_deletes()
                .ok_or_else(|| IngestError::Internal("the catalog stopped sharing deletes".into()))?;
            let tombstone =
                shared.record(&database, &table, predicate, now_ns(), ingester.options.max_tombstones).await?;
            ingester.metrics.deletes.add(1);
            let deadline = Instant::now() + CONFIRM_WAIT;
            loop {
                let behind = match shared.writers_behind(&database, &table, tombstone.sequence).await {
                    Ok(behind) if behind.is_empty() => break,
                    Ok(behind) => behind.join(", "),
                    Err(error) => error.to_string(),
                };
                if Instant::now() >= deadline {
                    tracing::warn!(
                        %database,
                        %table,
                        sequence = tombstone.sequence,
                        waiting_for = %behind,
                        "a delete is recorded, but not every live writer said within {} s that it carried it out: \
                         rows written to those writers meanwhile may be deleted too",
                        CONFIRM_WAIT.as_secs()
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(tombstone.sequence)
        });
        task.await.map_err(|e| IngestError::Internal(format!("the delete's task: {e}")))?
    }

    /// Carries out on this writer's buffer the shared deletes of a table it
    /// has not carried out yet: a WAL record each (a replay does them
    /// again), then the catalog is told, so that the tombstones can go once
    /// every writer has and no file needs them.
    pub(super) async fn carry_out_shared_deletes(&self, database: &str, table: &str) -> Result<(), IngestError> {
        let Some(shared) = self.catalog.shared_deletes() else { return Ok(()) };
        let _one_at_a_time = self.deletes.lock().await;
        let applied = self.buffer.shared_deletes_applied(database, table);
        let told = self.shared_deletes_told(database, table);
        let pending: Vec<Arc<Tombstone>> =
            self.catalog.tombstones(database, table).into_iter().filter(|t| t.shared && t.sequence > applied).collect();
        if pending.is_empty() && told >= applied {
            return Ok(());
        }
        let newest = pending.last().map_or(applied, |t| t.sequence);
        // No persist until the catalog knows: a persist could truncate the
        // records from the WAL while the catalog still had them as not done
        // here, and a restart would carry them out again, on rows written
        // after them.
        let _no_persist = self.persister.hold().await;
        let (db, tb): (Arc<str>, Arc<str>) = (database.into(), table.into());
        for tombstone in &pending {
            let record = WalWrite::encode_delete(BufferedDelete {
                database: Arc::clone(&db),
                table: Arc::clone(&tb),
                predicate: tombstone.predicate.clone(),
                issued_at: tombstone.issued_at,
                drop: false,
                shared_sequence: Some(tombstone.sequence),
            })?;
            self.wal.write(record).await?;
        }
        // Until Redis takes it, whatever it answers: persists wait for Redis
        // too, so holding them costs nothing more, and letting one go first
        // could lose the records the catalog does not know of.
        let mut delay = Duration::from_millis(20);
        let mut failures = 0u32;
        while let Err(error) = shared.set_applied_here(database, table, newest).await {
            if failures.is_multiple_of(20) {
                tracing::warn!(%database, %table, %error, "waiting for Redis to record a carried-out delete; persists wait");
            }
            failures = failures.wrapping_add(1);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        self.set_shared_deletes_told(database, table, newest);
        tracing::debug!(%database, %table, through = newest, "shared deletes carried out on the write buffer");
        Ok(())
    }

    /// The newest shared delete of a table this writer told the catalog it
    /// carried out (it may be behind the buffer's after a failure: then it
    /// is told again).
    fn shared_deletes_told(&self, database: &str, table: &str) -> u64 {
        let told = self.shared_told.lock().unwrap_or_else(|p| p.into_inner());
        told.get(&(database.to_owned(), table.to_owned())).copied().unwrap_or(0)
    }

    fn set_shared_deletes_told(&self, database: &str, table: &str, through: u64) {
        let mut told = self.shared_told.lock().unwrap_or_else(|p| p.into_inner());
        let entry = told.entry((database.to_owned(), table.to_owned())).or_default();
        *entry = (*entry).max(through);
    }

    /// Carries out on a restarted writer's buffer the shared deletes it has
    /// not carried out yet (see [`restore_shared_deletes_applied`] for the
    /// ones it had). Done before the writer takes writes.
    pub(super) async fn catch_up_shared_deletes(&self) -> Result<(), IngestError> {
        let Some(shared) = self.catalog.shared_deletes() else { return Ok(()) };
        shared.heartbeat().await?;
        // Live from now on: a delete recorded from here waits for this
        // writer, and one recorded before is in the catalog as read now.
        self.catalog.refresh().await?;
        for database in self.catalog.databases() {
            for table in self.catalog.tables(&database) {
                self.carry_out_shared_deletes(&database, &table).await?;
            }
        }
        Ok(())
    }

    /// Deletes a dropped table's directory from every layer: its files, and
    /// any a crash had left unlisted. The catalog keeps the drop until this
    /// is done; one that fails (a layer that does not answer) is tried again
    /// at the next start.
    pub(super) async fn clear_dropped_table(&self, database: &str, table: &str) {
        let dir = format!("{database}/{table}");
        // A table of that name made since shares the directories: its
        // orphans are the sweep's, and its files are its own.
        let remade = self.catalog.table_schema(database, table).is_some();
        for layer in self.storage.layers().iter().filter(|_| !remade) {
            if let Err(error) = layer.delete_dir_durably(&dir).await {
                tracing::warn!(layer = layer.name(), %dir, %error, "a dropped table's files stay until the next start");
                return;
            }
        }
        if let Err(error) = self.catalog.drop_files_deleted(database, table).await {
            tracing::warn!(%database, %table, %error, "could not record a dropped table's files as deleted");
        }
    }

    /// Deletes the rows that `predicate` matches from `measurement`, or from
    /// every measurement of `database` when it is `None`: InfluxDB's delete by
    /// series and time. A measurement that lacks a tag the predicate names
    /// has no row it can match (a missing tag meets no condition) and is left
    /// alone; a condition on one of its fields is the caller's mistake when
    /// the measurement was named, and leaves it alone when it was not.
    pub async fn delete_series(
        self: &Arc<Self>,
        database: &str,
        measurement: Option<&str>,
        predicate: DeletePredicate,
    ) -> Result<SeriesDelete, IngestError> {
        let tables = match measurement {
            Some(table) => vec![table.to_owned()],
            None => self.catalog.tables(database),
        };
        let mut done = SeriesDelete::default();
        for table in tables {
            let Some(schema) = self.catalog.table_schema(database, &table) else { continue };
            let mut tags_only = true;
            let mut all_present = true;
            for tag in predicate.tag_names() {
                match schema.column_type(tag) {
                    Some(ColumnType::Tag) => {}
                    Some(kind) => {
                        tags_only = false;
                        if measurement.is_some() {
                            return Err(IngestError::Schema(format!(
                                "'{tag}' is a {} column of {database}.{table}, not a tag: a delete selects rows by \
                                 their tags and time",
                                kind
                            )));
                        }
                    }
                    None => all_present = false,
                }
            }
            if !(tags_only && all_present) {
                continue;
            }
            if let Err(error) = self.delete(database, &table, predicate.clone()).await {
                if done.measurements.is_empty() {
                    return Err(error);
                }
                // The earlier deletes are durable: say so, with what failed.
                return Err(IngestError::Partial {
                    done: done.measurements.join(", "),
                    failed: table,
                    error: Box::new(error),
                });
            }
            done.measurements.push(table);
        }
        Ok(done)
    }
}

/// After a WAL replay, and before anything of the buffer is persisted:
/// marks the buffer past the shared deletes the catalog says this writer
/// carried out. Their WAL records may be gone with a persisted snapshot,
/// and then every row replayed was written after them; a file of those rows
/// stamped below them would have them hidden.
/// Returns what the catalog knows this writer carried out, per table.
pub(super) async fn restore_shared_deletes_applied(
    catalog: &dyn crate::catalog::Catalog,
    buffer: &super::buffer::WriteBuffer,
) -> Result<HashMap<(String, String), u64>, IngestError> {
    let mut told = HashMap::new();
    let Some(shared) = catalog.shared_deletes() else { return Ok(told) };
    for database in catalog.databases() {
        for table in catalog.tables(&database) {
            if !catalog.tombstones(&database, &table).iter().any(|t| t.shared) {
                continue;
            }
            let here = shared.applied_here(&database, &table).await?;
            let replayed = buffer.shared_deletes_applied(&database, &table);
            if replayed > here {
                // A crash came between a delete's WAL record and the catalog
                // hearing of it: the replay carried it out again.
                shared.set_applied_here(&database, &table, replayed).await?;
            } else {
                buffer.raise_shared_deletes_applied(&database, &table, here);
            }
            told.insert((database.clone(), table), here.max(replayed));
        }
    }
    Ok(told)
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A writer's heartbeat every [`HEARTBEAT_EVERY`], until the ingester
/// stops: a delete waits for the live writers. On a task of its own, so
/// that a delete being carried out (which waits for a persist round) does
/// not hold it up.
pub(super) async fn beat_for_shared_deletes(ingester: Weak<Ingester>, mut stop: watch::Receiver<bool>) {
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = beat.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(ingester) = ingester.upgrade() else { return };
        let Some(shared) = ingester.catalog.shared_deletes() else { return };
        if let Err(error) = shared.heartbeat().await {
            tracing::debug!(%error, "could not send this writer's heartbeat");
        }
    }
}

/// Carries every new delete in the shared catalog out on the writer's
/// buffer, until the ingester stops: at once when the view has it, and
/// every [`HEARTBEAT_EVERY`] for one whose telling failed.
pub(super) async fn follow_shared_deletes(
    ingester: Weak<Ingester>,
    mut changes: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut retry = tokio::time::interval(HEARTBEAT_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = retry.tick() => {}
            changed = changes.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        let Some(ingester) = ingester.upgrade() else { return };
        for database in ingester.catalog.databases() {
            for table in ingester.catalog.tables(&database) {
                let applied = ingester.buffer.shared_deletes_applied(&database, &table);
                let pending =
                    ingester.catalog.tombstones(&database, &table).iter().any(|t| t.shared && t.sequence > applied);
                if !pending && ingester.shared_deletes_told(&database, &table) >= applied {
                    continue;
                }
                if let Err(error) = ingester.carry_out_shared_deletes(&database, &table).await {
                    tracing::warn!(%database, %table, %error, "could not carry out a delete on the write buffer; retried");
                }
            }
        }
    }
}
