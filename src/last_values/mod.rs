//! The last-value cache: the last row of every series of every table, kept
//! by the write path, so that "the latest value of each series" (`DISTINCT
//! ON (series) ... ORDER BY series, time DESC`, `last_value(x ORDER BY time)`
//! per series, Grafana's latest-value panels) and "the tag values there are"
//! (`SELECT DISTINCT host FROM cpu`, Grafana's template variables) read a
//! few thousand rows from memory instead of every row on disk.
//!
//! Per table it is in one of four phases:
//! - *unknown*: not built (after a start, or after retention removed data);
//!   writes pass it by. The first query that can use it builds it, by reading
//!   the table once while writes are already being taken in.
//! - *building*, then *ready*: every acknowledged write updates it before
//!   its acknowledgement.
//! - *off*: it would pass the memory bound (all tables together), or holds a
//!   column it cannot; queries read the table as if there were no cache.
//!
//! A table seen first by a write with no file in the catalog starts ready:
//! everything it has went through the write path.
//!
//! It is only right where every write of a table passes through this
//! process: the server uses it in the `aio` mode over the local catalog.

mod series;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;

use crate::catalog::Catalog;
use series::{Origin, SeriesRows};

#[derive(Debug)]
enum Phase {
    Unknown,
    Building,
    Ready,
    Off,
}

#[derive(Debug)]
struct TableCache {
    phase: Phase,
    /// Grows each time the table's data is forgotten, so that a build that
    /// read data retention then removed is not kept.
    epoch: u64,
    rows: SeriesRows,
    /// The bytes of `rows` counted in the cache's total.
    counted_bytes: usize,
    /// Grows with every change, so that an unchanged cache answers with the
    /// batch it made last.
    generation: u64,
    made: Option<(u64, SchemaRef, RecordBatch)>,
}

#[derive(Debug)]
struct TableEntry {
    state: Mutex<TableCache>,
    /// One build at a time; queries that want the cache meanwhile wait for it.
    build: tokio::sync::Mutex<()>,
}

impl TableEntry {
    fn lock(&self) -> MutexGuard<'_, TableCache> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type TableKey = (Arc<str>, Arc<str>);

/// What a table's cache can do for a query planned now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePhase {
    /// Built: the query reads it.
    Ready,
    /// Not built yet (or being built): the query builds it or waits for it.
    NotBuilt,
    /// Off for the table: the query reads the table.
    Off,
}

/// The last row of every series, per table; see the module docs.
#[derive(Debug)]
pub struct LastValueCache {
    catalog: Arc<dyn Catalog>,
    max_bytes: usize,
    bytes: AtomicUsize,
    tables: Mutex<HashMap<TableKey, Arc<TableEntry>>>,
    hits: AtomicU64,
    builds: AtomicU64,
}

impl LastValueCache {
    /// A cache of at most `max_bytes` over all tables of `catalog`.
    pub fn new(catalog: Arc<dyn Catalog>, max_bytes: usize) -> Self {
        LastValueCache {
            catalog,
            max_bytes,
            bytes: AtomicUsize::new(0),
            tables: Mutex::default(),
            hits: AtomicU64::new(0),
            builds: AtomicU64::new(0),
        }
    }

    /// Memory held, roughly.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Queries answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Times a table's cache was built by reading the table.
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    fn entry(&self, database: &str, table: &str, first_phase: impl FnOnce() -> Phase) -> Arc<TableEntry> {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = tables.get(&(Arc::from(database), Arc::from(table))) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(TableEntry {
            state: Mutex::new(TableCache {
                phase: first_phase(),
                epoch: 0,
                rows: SeriesRows::default(),
                counted_bytes: 0,
                generation: 0,
                made: None,
            }),
            build: tokio::sync::Mutex::new(()),
        });
        tables.insert((database.into(), table.into()), Arc::clone(&entry));
        entry
    }

    /// Where `table`'s cache stands, for planning: a plan that suits only the
    /// cache's few rows is chosen when it is ready.
    pub fn phase(&self, database: &str, table: &str) -> CachePhase {
        let entry =
            self.tables.lock().unwrap_or_else(|p| p.into_inner()).get(&(database.into(), table.into())).cloned();
        let Some(entry) = entry else { return CachePhase::NotBuilt };
        let phase = match entry.lock().phase {
            Phase::Ready => CachePhase::Ready,
            Phase::Off => CachePhase::Off,
            Phase::Unknown | Phase::Building => CachePhase::NotBuilt,
        };
        phase
    }

    /// Takes in rows of `table` that were just made visible to queries. The
    /// write path calls it in acknowledgement order, after the rows are in the
    /// write buffer and before they are acknowledged.
    pub fn observe_write(&self, database: &str, table: &str, batch: &RecordBatch) {
        let entry = self.entry(database, table, || {
            if self.catalog.table_summary(database, table).files == 0 {
                Phase::Ready
            } else {
                Phase::Unknown
            }
        });
        let mut cache = entry.lock();
        if matches!(cache.phase, Phase::Building | Phase::Ready) {
            self.take_in(database, table, &mut cache, batch, Origin::Write);
        }
    }

    fn take_in(&self, database: &str, table: &str, cache: &mut TableCache, batch: &RecordBatch, origin: Origin) {
        if let Err(unsupported) = cache.rows.observe(batch, origin) {
            tracing::warn!(
                database,
                table,
                "the last-value cache is off for this table: it cannot hold {}",
                unsupported.0
            );
            self.turn_off(cache);
            return;
        }
        cache.generation += 1;
        // The batch made for the last query is out of date: free it now.
        cache.made = None;
        self.account(database, table, cache);
    }

    /// Counts what the table holds (its rows and the batch made from them)
    /// in the total, and turns the table's cache off past the bound. True
    /// when it stays on.
    fn account(&self, database: &str, table: &str, cache: &mut TableCache) -> bool {
        let now = cache.rows.bytes() + cache.made.as_ref().map_or(0, |(_, _, batch)| batch.get_array_memory_size());
        let total = if now >= cache.counted_bytes {
            self.bytes.fetch_add(now - cache.counted_bytes, Ordering::Relaxed) + (now - cache.counted_bytes)
        } else {
            self.bytes.fetch_sub(cache.counted_bytes - now, Ordering::Relaxed) - (cache.counted_bytes - now)
        };
        cache.counted_bytes = now;
        if total <= self.max_bytes {
            return true;
        }
        tracing::warn!(
            database,
            table,
            series = cache.rows.len(),
            max_bytes = self.max_bytes,
            "the last-value cache is off for this table: it would pass HOURGLASS_LAST_VALUE_CACHE_BYTES; \
             its latest-value queries read the table"
        );
        self.turn_off(cache);
        false
    }

    fn release(&self, cache: &mut TableCache) {
        self.bytes.fetch_sub(cache.counted_bytes, Ordering::Relaxed);
        cache.counted_bytes = 0;
        cache.rows = SeriesRows::default();
        cache.made = None;
        cache.generation += 1;
    }

    fn turn_off(&self, cache: &mut TableCache) {
        self.release(cache);
        cache.phase = Phase::Off;
    }

    /// Retention removed rows of `table` up to `max_time`: a series whose
    /// last row is newer keeps it, so the cache is forgotten only when some
    /// last row is that old (a series that stopped), or while it is built.
    pub fn expired(&self, database: &str, table: &str, max_time: i64) {
        let entry =
            self.tables.lock().unwrap_or_else(|p| p.into_inner()).get(&(database.into(), table.into())).cloned();
        let Some(entry) = entry else { return };
        let unaffected = {
            let cache = entry.lock();
            matches!(cache.phase, Phase::Ready) && cache.rows.oldest_time().is_none_or(|oldest| oldest > max_time)
        };
        if !unaffected {
            self.forget(database, table);
        }
    }

    /// Drops what the cache knows of `table`, to be built again when next
    /// wanted: data was removed, so a series' last row may be gone.
    pub fn forget(&self, database: &str, table: &str) {
        let entry =
            self.tables.lock().unwrap_or_else(|p| p.into_inner()).get(&(database.into(), table.into())).cloned();
        if let Some(entry) = entry {
            let mut cache = entry.lock();
            cache.epoch += 1;
            if !matches!(cache.phase, Phase::Off) {
                self.release(&mut cache);
                cache.phase = Phase::Unknown;
            }
        }
    }

    /// The last row of every series of `table`, as columns of `schema`; built
    /// first from `scan` (every row of the table) when the cache does not hold
    /// it. `None` when the cache is off for the table, or data was removed
    /// while it was built: the caller reads the table instead.
    pub async fn last_rows<F, Fut>(
        &self,
        database: &str,
        table: &str,
        schema: &SchemaRef,
        scan: F,
    ) -> Result<Option<RecordBatch>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<SendableRecordBatchStream>>,
    {
        let entry = self.entry(database, table, || Phase::Unknown);
        let _build = entry.build.lock().await;
        let epoch = {
            let mut cache = entry.lock();
            match cache.phase {
                Phase::Ready => {
                    let rows = self.made(database, table, &mut cache, schema)?;
                    if rows.is_some() {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(rows);
                }
                Phase::Off => return Ok(None),
                // A build that was cancelled left `Building`: start again.
                Phase::Unknown | Phase::Building => {
                    self.release(&mut cache);
                    cache.phase = Phase::Building;
                    cache.epoch
                }
            }
        };
        // From here every write is taken in; the scan starts after, so a row
        // is in the scan, taken in as a write, or both.
        self.builds.fetch_add(1, Ordering::Relaxed);
        let mut rows = match scan().await {
            Ok(rows) => rows,
            Err(e) => {
                self.abandon(&entry, epoch);
                return Err(e);
            }
        };
        while let Some(batch) = rows.next().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    self.abandon(&entry, epoch);
                    return Err(e);
                }
            };
            let mut cache = entry.lock();
            if cache.epoch != epoch || !matches!(cache.phase, Phase::Building) {
                return Ok(None);
            }
            self.take_in(database, table, &mut cache, &batch, Origin::Scan);
        }
        let mut cache = entry.lock();
        if cache.epoch != epoch || !matches!(cache.phase, Phase::Building) {
            return Ok(None);
        }
        cache.phase = Phase::Ready;
        tracing::info!(
            database,
            table,
            series = cache.rows.len(),
            bytes = cache.rows.bytes(),
            "last-value cache built"
        );
        self.made(database, table, &mut cache, schema)
    }

    fn abandon(&self, entry: &TableEntry, epoch: u64) {
        let mut cache = entry.lock();
        if cache.epoch == epoch && matches!(cache.phase, Phase::Building) {
            self.release(&mut cache);
            cache.phase = Phase::Unknown;
        }
    }

    /// The rows as a batch of `schema`, made once per change; `None` when
    /// holding the batch too would pass the bound.
    fn made(
        &self,
        database: &str,
        table: &str,
        cache: &mut TableCache,
        schema: &SchemaRef,
    ) -> Result<Option<RecordBatch>> {
        if let Some((generation, made_schema, batch)) = &cache.made {
            if *generation == cache.generation && made_schema == schema {
                return Ok(Some(batch.clone()));
            }
        }
        let batch = cache.rows.to_batch(schema).map_err(|e| DataFusionError::ArrowError(Box::new(e), None))?;
        cache.made = Some((cache.generation, Arc::clone(schema), batch.clone()));
        Ok(self.account(database, table, cache).then_some(batch))
    }
}
