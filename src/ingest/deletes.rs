//! Deletes on the write path: a WAL record ordered with the writes, the
//! write buffer's rows removed, and a tombstone in the catalog for the rows
//! in files (see [`crate::catalog::tombstones`]).

use std::sync::Arc;

use super::wal::WalWrite;
use super::{IngestError, Ingester};
use crate::catalog::{CatalogError, ColumnType, DeletePredicate, Tombstone};

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
            let issued_at = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
            let record = WalWrite::encode_delete(&database, &table, predicate.clone(), issued_at, false)?;
            let sequence = ingester.wal.write(record).await?;
            let tombstone = Tombstone { sequence, issued_at, predicate };
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
                let issued_at = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                let record =
                    WalWrite::encode_delete(&database, &table, DeletePredicate::everything(), issued_at, true)?;
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
