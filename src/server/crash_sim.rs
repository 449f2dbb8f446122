//! The server's durable parts together on the simulated disk
//! ([`crate::storage::sim_disk`]): WAL, write buffer, persister, the JSON
//! catalog, the relations document and the files of tables made by SQL,
//! two storage layers, the query engine and the compactor, wired by hand
//! in [`start`] as [`super::Components`] wires them for the JSON catalog.
//! Power cuts land anywhere: in writes, deletes, drops of the measurement,
//! persists, catalog commits, WAL deletions, merges (reading their inputs back, writing their output,
//! committing, deleting what they replaced), layer moves (copy, check,
//! commit, delete), orphan sweeps, and `CREATE TABLE ... AS` / `DROP
//! TABLE`. After each cut the restarted server sweeps orphans, as it does
//! at start, and then:
//!
//! - every file the catalog lists exists on its layer and reads back with
//!   the rows the catalog says, and no row is in two of them;
//! - no Parquet or temporary file in a partition directory outlives the
//!   sweep unless the catalog lists it;
//! - every table SQL made and was told so answers with its rows, and every
//!   table dropped so is gone.
//!
//! At the end, once the replayed rows are persisted, every acknowledged
//! row is in exactly one listed file and a query counts each once; no
//! refused write is there, and no write is there in part. A write whose
//! delete was acknowledged is hidden from queries, and gone from the files
//! once the compactor has run; one whose delete failed is whole or gone.
//!
//! Each seed is one run; `tests/run` runs a fixed range. More, or one:
//!
//! ```text
//! HOURGLASS_SIM_SEEDS=3000 cargo test --lib server::crash_sim       # seeds 0..300 here
//! HOURGLASS_SIM_SEED=1234 cargo test --lib server::crash_sim -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, DictionaryArray, Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};

use super::write_path::{BufferForQueries, InsertsToIngester, MergesThroughEngine};
use crate::access::Access;
use crate::catalog::local::LocalCatalog;
use crate::catalog::relations::{RelationFile, RelationFiles, RelationStore};
use crate::catalog::{time_data_type, Catalog, DeletePredicate, TagCondition, TIME_COLUMN};
use crate::compactor::{Compactor, CompactorOptions, MergeLevel, RunScope};
use crate::ingest::crash_sim::{seeds, tearing, HOUR_NS, START_NS};
use crate::ingest::wal::WalError;
use crate::ingest::{IngestError, IngestOptions, Ingester};
use crate::metrics::Metrics;
use crate::query::{BufferedRows, QueryEngine, QueryOptions, TableWriter};
use crate::storage::disk::Disk;
use crate::storage::sim_disk::{SimCall, SimDisk, SimFault};
use crate::storage::{file_path_in_layer, LayerConfig, LayerType, ParquetOptions, Storage};
use crate::testing::Lcg;

/// The data root: WAL, catalog, and the first layer.
const ROOT: &str = "/data";
/// The second layer, where files move once the first layer's TTL is over.
const COLD: &str = "/cold";
const DATABASE: &str = "db";
const TABLE: &str = "m";

/// The time of a write's first row; its rows (at most 30) follow it, and the
/// next write's start 1,000 ns later, so a delete of `[start, start + 999]`
/// takes one write's rows.
fn write_start(id: i64) -> i64 {
    START_NS + (id % 3) * HOUR_NS + id * 1_000
}

/// One write's rows: one series, every row its own time, across three hour
/// partitions (so merges and moves work on several partitions).
fn rows(id: i64, count: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("series", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), false),
        Field::new("id", DataType::Int64, false),
        Field::new("row", DataType::Int64, false),
        Field::new(TIME_COLUMN, time_data_type(), false),
    ]));
    let times: Vec<i64> = (0..count as i64).map(|row| write_start(id) + row).collect();
    let series: DictionaryArray<Int32Type> = vec!["s"; count].into_iter().collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(series),
            Arc::new(Int64Array::from(vec![id; count])),
            Arc::new(Int64Array::from((0..count as i64).collect::<Vec<_>>())),
            Arc::new(TimestampNanosecondArray::from(times).with_timezone(crate::catalog::TIME_ZONE)),
        ],
    )
    .expect("batch")
}

fn layer(name: &str, url: &str, ttl: Option<Duration>) -> LayerConfig {
    LayerConfig {
        name: name.into(),
        layer_type: LayerType::Fs,
        url: url.into(),
        global: false,
        ttl,
        auth_key: None,
        auth_secret: None,
    }
}

/// The directory of a layer, by name.
fn layer_root(name: &str) -> &'static str {
    if name == "cold" {
        COLD
    } else {
        ROOT
    }
}

/// The catalog and the layers as one process opens them on `disk`.
fn open_parts(disk: &SimDisk) -> Result<(Arc<dyn Catalog>, Arc<Storage>), String> {
    let disk: Arc<dyn Disk> = Arc::new(disk.process());
    let catalog = LocalCatalog::open_on(Arc::clone(&disk), Path::new(ROOT)).map_err(|e| e.to_string())?;
    // Every file moves at the first run that applies TTLs.
    let layers = vec![layer("hot", ROOT, Some(Duration::ZERO)), layer("cold", COLD, None)];
    let storage = Storage::open_on(layers, disk).map_err(|e| e.to_string())?;
    Ok((Arc::new(catalog), Arc::new(storage)))
}

/// One life of the server: what a test drives until the power goes.
struct Server {
    ingester: Arc<Ingester>,
    compactor: Compactor,
    engine: Arc<QueryEngine>,
}

async fn start(disk: &SimDisk, segment_bytes: u64, spill: &Path) -> Result<Server, String> {
    let (catalog, storage) = open_parts(disk)?;
    let process: Arc<dyn Disk> = Arc::new(disk.process());
    let metrics = Arc::new(Metrics::default());
    let options = IngestOptions {
        max_line_bytes: 1 << 20,
        max_columns_per_table: 100,
        max_tombstones: 100,
        max_buffer_bytes: 1 << 30,
        flush_buffer_bytes: 1 << 30,
        // Persists come when the test asks.
        save_interval: Duration::from_secs(3600),
        max_concurrent_writes: 64,
        write_queue_timeout: Duration::from_secs(30),
        wal_segment_bytes: segment_bytes,
        persist_concurrency: 2,
        parquet: ParquetOptions::default(),
    };
    let (ingester, _) = Ingester::open(
        Arc::clone(&process),
        Path::new(ROOT),
        Arc::clone(&catalog),
        Arc::clone(&storage),
        Arc::clone(&metrics),
        None,
        options,
    )
    .await
    .map_err(|e| e.to_string())?;
    let relation_files = RelationFiles::local(Arc::clone(&process), Path::new(ROOT)).map_err(|e| e.to_string())?;
    let relations =
        RelationStore::open(Arc::new(RelationFile::new(Arc::clone(&process), Path::new(ROOT))), relation_files, None)
            .await
            .map_err(|e| e.to_string())?;
    // As the server does at start on the JSON catalog.
    relations.remove_orphans(Duration::ZERO).await;
    let buffer = Arc::new(BufferForQueries(Arc::clone(ingester.buffer()))) as Arc<dyn BufferedRows>;
    let writer = Arc::new(InsertsToIngester(Arc::clone(&ingester))) as Arc<dyn TableWriter>;
    let engine = QueryEngine::new(
        Arc::clone(&catalog),
        Arc::clone(&storage),
        Some(buffer),
        Some(writer),
        relations,
        None,
        QueryOptions {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(60),
            target_partitions: 2,
            spill_dir: spill.to_path_buf(),
            max_concurrent: 4,
            max_queued: 16,
            queue_timeout: Duration::from_secs(60),
            writes_only: false,
        },
    )
    .map_err(|e| e.to_string())?;
    let engine = Arc::new(engine);
    let compactor = Compactor::new(
        catalog,
        storage,
        Arc::new(MergesThroughEngine(Arc::clone(&engine))),
        metrics,
        None,
        CompactorOptions {
            levels: vec![MergeLevel { interval: Duration::from_secs(3600), max_bytes: 1 << 30 }],
            background_merges: false,
            concurrency: 2,
            // The test drives one step at a time: no file is between its
            // write and its commit when the sweep runs.
            grace: Duration::ZERO,
            housekeeping_interval: Duration::from_secs(3600),
            max_files_per_merge: crate::compactor::MAX_FILES_PER_MERGE,
            lease_renew_every: Duration::from_secs(3600),
            parquet: ParquetOptions::MERGED,
        },
    );
    Ok(Server { ingester, compactor, engine })
}

/// Where each (write id, row) is: the files the catalog lists that hold it.
type RowsFound = BTreeMap<(i64, i64), Vec<String>>;

/// Reads every file the catalog lists from its layer: each must be there
/// and read back whole with the rows the catalog says.
fn rows_in_listed_files(disk: &SimDisk) -> Result<RowsFound, String> {
    let (catalog, _) = open_parts(disk)?;
    let mut found = RowsFound::new();
    for partition in catalog.files(DATABASE, TABLE, i64::MIN, i64::MAX) {
        for file in partition.files {
            let path = Path::new(layer_root(&file.layer)).join(file_path_in_layer(DATABASE, TABLE, &file.path));
            let bytes = disk.read(&path).map_err(|e| {
                format!("the catalog lists {} on layer '{}', which is missing: {e}", file.path, file.layer)
            })?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                    .and_then(|builder| builder.build())
                    .map_err(|e| format!("{} does not read back: {e}", path.display()))?;
            let mut rows = 0u64;
            for batch in reader {
                let batch = batch.map_err(|e| format!("{} does not read back: {e}", path.display()))?;
                rows += batch.num_rows() as u64;
                let column = |name: &str| {
                    batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
                };
                let (Some(ids), Some(numbers)) = (column("id"), column("row")) else { continue };
                for i in 0..ids.len() {
                    if ids.is_valid(i) {
                        found.entry((ids.value(i), numbers.value(i))).or_default().push(path.display().to_string());
                    }
                }
            }
            if rows != file.row_count {
                return Err(format!("{} holds {rows} rows; the catalog says {}", path.display(), file.row_count));
            }
        }
    }
    Ok(found)
}

/// Every Parquet or temporary file in a partition directory of either
/// layer that the catalog does not list (the partitions' `metadata.json`
/// is the catalog's own).
fn unlisted_files(disk: &SimDisk) -> Result<Vec<String>, String> {
    let (catalog, _) = open_parts(disk)?;
    let listed: BTreeSet<PathBuf> = catalog
        .files(DATABASE, TABLE, i64::MIN, i64::MAX)
        .into_iter()
        .flat_map(|p| p.files)
        .map(|f| Path::new(layer_root(&f.layer)).join(file_path_in_layer(DATABASE, TABLE, &f.path)))
        .collect();
    let partitions = [ROOT, COLD].map(|root| format!("{root}/{DATABASE}/{TABLE}/date="));
    Ok(disk
        .tree()
        .into_iter()
        .filter_map(|entry| entry.split(" (").next().map(str::to_owned))
        .filter(|path| partitions.iter().any(|p| path.starts_with(p.as_str())) && path.matches('/').count() == 6)
        .filter(|path| {
            let name = path.rsplit('/').next().unwrap_or_default();
            (name.ends_with(".parquet") || name.starts_with(crate::storage::fs::TEMP_PREFIX))
                && !listed.contains(Path::new(path))
        })
        .collect())
}

/// What a failing seed needs to show: the disk, and the catalog's files.
fn describe(disk: &SimDisk) -> String {
    let listed = open_parts(disk)
        .map(|(catalog, _)| {
            catalog
                .files(DATABASE, TABLE, i64::MIN, i64::MAX)
                .into_iter()
                .flat_map(|p| p.files)
                .map(|f| format!("{} on {} (level {}, WAL sequence {})", f.path, f.layer, f.level, f.wal_sequence))
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|e| vec![format!("the catalog does not open: {e}")]);
    format!("disk:\n{}\ncatalog:\n{}", disk.tree().join("\n"), listed.join("\n"))
}

/// What the test sent and what it was told.
#[derive(Debug, Default)]
struct Model {
    sent: BTreeMap<i64, usize>,
    acknowledged: Vec<i64>,
    refused: Vec<i64>,
    /// Writes whose rows a delete was acknowledged for: none may be left.
    deleted: BTreeSet<i64>,
    /// Writes a delete was sent for and failed: all or none may be left.
    maybe_deleted: BTreeSet<i64>,
    /// Tables made by SQL, by number: whether the last statement on each
    /// that was answered made it (true) or dropped it (false). One whose
    /// last statement failed may be either, and is not here.
    tables: BTreeMap<u64, bool>,
}

/// What the seeds did, to show that power cuts land in every kind of step.
#[derive(Debug, Default)]
struct Coverage {
    /// Power cuts, by the step they came in.
    cuts: BTreeMap<&'static str, u64>,
    merges: usize,
    moves: usize,
    orphans_swept: u64,
}

/// Runs `sql` and returns its first column's Int64 values (none for a
/// statement that answers no rows).
async fn int64_column(engine: &QueryEngine, sql: &str) -> Result<Vec<i64>, String> {
    use futures::TryStreamExt;
    let output = engine.sql(DATABASE, sql, &Access::Full).await.map_err(|e| e.to_string())?;
    let batches: Vec<RecordBatch> = output.stream.try_collect().await.map_err(|e| e.to_string())?;
    let mut values = Vec::new();
    for batch in batches.iter().filter(|b| b.num_columns() > 0) {
        if let Some(column) = batch.column(0).as_any().downcast_ref::<Int64Array>() {
            values.extend(column.values().iter().copied());
        }
    }
    Ok(values)
}

async fn count_rows(engine: &QueryEngine) -> Result<u64, String> {
    let counts = int64_column(engine, &format!("SELECT count(*) AS n FROM {TABLE}")).await?;
    let count = counts.first().copied().ok_or("no rows")?;
    u64::try_from(count).map_err(|e| e.to_string())
}

/// Every table SQL made or dropped, and was told so, is as it was told.
async fn check_tables(engine: &QueryEngine, model: &Model) -> Result<(), String> {
    for (n, made) in &model.tables {
        let answer = int64_column(engine, &format!("SELECT n FROM t{n}")).await;
        match (made, answer) {
            (true, Ok(values)) if values == vec![*n as i64; 3] => {}
            (true, answer) => {
                let described =
                    engine.sql(DATABASE, &format!("SELECT * FROM t{n}"), &Access::Full).await.map(|o| o.schema);
                return Err(format!("table t{n} was made; reading it gives {answer:?}; its columns: {described:?}"));
            }
            (false, Ok(values)) => return Err(format!("table t{n} was dropped; it still has {values:?}")),
            (false, Err(_)) => {}
        }
    }
    Ok(())
}

/// One random step of a life: writes, a persist, a merge, layer moves, or
/// the orphan sweep. Returns which.
async fn step(
    server: &Server,
    random: &mut Lcg,
    model: &mut Model,
    next_id: &mut i64,
    coverage: &mut Coverage,
) -> &'static str {
    match random.below(14) {
        13 if random.below(6) == 0 => {
            // The whole measurement: every write so far goes with it, and
            // the next write makes it anew.
            let before: Vec<i64> = model.sent.keys().copied().collect();
            match server.ingester.drop_table(DATABASE, TABLE).await {
                Ok(_) => model.deleted.extend(before),
                Err(_) => model.maybe_deleted.extend(before),
            }
            "drop"
        }
        13 => {
            // A delete of one earlier write's rows: its time range, and its
            // series now and then.
            let Some(&id) = model.sent.keys().nth(random.below(model.sent.len().max(1) as u64) as usize) else {
                return "delete";
            };
            let first = write_start(id);
            let tags = if random.below(2) == 0 {
                vec![TagCondition { tag: "series".into(), values: vec!["s".into()], negated: false }]
            } else {
                Vec::new()
            };
            let predicate = DeletePredicate { min_time: first, max_time: first + 999, tags };
            match server.ingester.delete(DATABASE, TABLE, predicate).await {
                Ok(_) => {
                    model.deleted.insert(id);
                }
                Err(_) => {
                    model.maybe_deleted.insert(id);
                }
            }
            "delete"
        }
        12 => {
            // A table made by SQL (three rows, in its own Parquet file and
            // the relations document), or dropped.
            let n = random.below(4);
            let sql = match model.tables.get(&n) {
                Some(true) => format!("DROP TABLE t{n}"),
                _ => format!("CREATE TABLE t{n} AS SELECT CAST({n} AS BIGINT) AS n FROM (VALUES (1), (2), (3))"),
            };
            let made = !sql.starts_with("DROP");
            match int64_column(&server.engine, &sql).await {
                Ok(_) => {
                    model.tables.insert(n, made);
                }
                // Made, dropped or neither: nothing is claimed of it.
                Err(_) => {
                    model.tables.remove(&n);
                }
            }
            "table"
        }
        0..=1 => {
            let _ = server.ingester.persist_now().await;
            "persist"
        }
        2 => {
            let scope = RunScope { levels: vec![0], ..RunScope::default() };
            coverage.merges += server.compactor.run_once(&scope).await.merges.len();
            "merge"
        }
        3 => {
            let scope = RunScope { layers: true, ..RunScope::default() };
            coverage.moves += server.compactor.run_once(&scope).await.moves.len();
            "move"
        }
        4 => {
            coverage.orphans_swept += server.compactor.remove_orphans().await.0;
            "sweep"
        }
        _ => {
            let group = 1 + random.below(6) as usize;
            let writes: Vec<(i64, RecordBatch)> = (0..group)
                .map(|_| {
                    let id = *next_id;
                    *next_id += 1;
                    let count = 1 + random.below(30) as usize;
                    model.sent.insert(id, count);
                    (id, rows(id, count))
                })
                .collect();
            let answers = futures::future::join_all(writes.iter().map(|(id, batch)| async move {
                (*id, server.ingester.write_batch(DATABASE, TABLE, batch, true).await)
            }))
            .await;
            for (id, answer) in answers {
                match answer {
                    Ok(_) => model.acknowledged.push(id),
                    Err(IngestError::Wal(WalError::DiskFull { .. } | WalError::NotWritten { .. })) => {
                        model.refused.push(id)
                    }
                    Err(_) => {}
                }
            }
            "write"
        }
    }
}

async fn run_seed(seed: u64, coverage: &mut Coverage) {
    let mut random = Lcg(seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x2545_F491_4F6C_DD1D);
    let disk = SimDisk::new(seed);
    disk.set_tearing(tearing(random.below(3)));
    let segment_bytes = 2048 + random.below(16384);
    let spill = tempfile::tempdir().expect("spill directory");
    let mut model = Model::default();
    let mut next_id = 0i64;
    let context = |disk: &SimDisk| format!("seed {seed}; {}", describe(disk));
    for life in 0..3 {
        let server = start(&disk, segment_bytes, spill.path())
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: start after power cut {life} failed: {e}"));
        // As the server does at start: what a crash left is swept.
        let (swept, errors) = server.compactor.remove_orphans().await;
        coverage.orphans_swept += swept;
        assert!(errors.is_empty(), "seed {seed}: the sweep after power cut {life} failed: {errors:?}");
        let unlisted = unlisted_files(&disk).expect("listing");
        assert!(unlisted.is_empty(), "files outlived a sweep after power cut {life}: {unlisted:?}; {}", context(&disk));
        match rows_in_listed_files(&disk) {
            Ok(found) => {
                if let Some(((id, row), files)) = found.iter().find(|(_, files)| files.len() > 1) {
                    panic!("after power cut {life}: row {row} of write {id} is in {files:?}; {}", context(&disk));
                }
            }
            Err(e) => panic!("after power cut {life}: {e}; {}", context(&disk)),
        }
        if let Err(e) = check_tables(&server.engine, &model).await {
            panic!("seed {seed}, after power cut {life}: {e}; {}", context(&disk));
        }
        if random.below(3) == 0 {
            let calls = [
                SimCall::Write,
                SimCall::Sync,
                SimCall::Open,
                SimCall::SyncDir,
                SimCall::Rename,
                SimCall::Read,
                SimCall::ReadDir,
                SimCall::Stat,
                SimCall::Remove,
            ];
            let call = calls[random.below(calls.len() as u64) as usize];
            let fault = if random.below(2) == 0 { SimFault::Io } else { SimFault::DiskFull };
            disk.fail_call(call, random.below(60), fault);
        }
        disk.power_cut_at(disk.calls() + 1 + random.below(1500));
        for _step in 0..150 {
            if !disk.is_powered() {
                break;
            }
            let kind = step(&server, &mut random, &mut model, &mut next_id, coverage).await;
            if !disk.is_powered() {
                *coverage.cuts.entry(kind).or_default() += 1;
            }
        }
        disk.power_cut();
        let _ = server.ingester.shutdown().await;
        disk.restart();
    }
    // The last life persists what it replays, merges and moves it all,
    // and sweeps; then every check.
    let server = start(&disk, segment_bytes, spill.path())
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: the last start failed: {e}"));
    server.ingester.persist_now().await.unwrap_or_else(|e| panic!("seed {seed}: the last persist failed: {e}"));
    // Before merges, which keep one row per key, would hide a row persisted twice.
    let persisted = rows_in_listed_files(&disk).unwrap_or_else(|e| panic!("{e}; {}", context(&disk)));
    if let Some(((id, row), files)) = persisted.iter().find(|(_, files)| files.len() > 1) {
        panic!("row {row} of write {id} is in {files:?}; {}", context(&disk));
    }
    // Deleted rows are hidden before the compactor carries the deletes out.
    let table_exists = server.engine.measurement_exists(DATABASE, TABLE);
    for id in model.deleted.iter().filter(|_| table_exists) {
        let sql = format!("SELECT count(*) AS n FROM {TABLE} WHERE id = {id}");
        let left = int64_column(&server.engine, &sql).await.unwrap_or_else(|e| panic!("seed {seed}: {sql}: {e}"));
        assert_eq!(left, [0], "seed {seed}: write {id}'s rows were deleted and a query sees them");
    }
    let report = server.compactor.run_now(None, None).await;
    assert!(
        report.errors.is_empty(),
        "seed {seed}: the last compaction failed: {:?}; {}",
        report.errors,
        context(&disk)
    );
    let counted = match table_exists {
        true => count_rows(&server.engine).await.unwrap_or_else(|e| panic!("seed {seed}: count(*): {e}")),
        false => 0,
    };
    check_tables(&server.engine, &model).await.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    server.ingester.shutdown().await.unwrap_or_else(|e| panic!("seed {seed}: the last shutdown failed: {e}"));
    let unlisted = unlisted_files(&disk).expect("listing");
    assert!(unlisted.is_empty(), "seed {seed}: files outlived the last sweep: {unlisted:?}; {}", context(&disk));
    let found = rows_in_listed_files(&disk).unwrap_or_else(|e| panic!("{e}; {}", context(&disk)));
    for ((id, row), files) in &found {
        assert_eq!(files.len(), 1, "row {row} of write {id} is in {files:?}; {}", context(&disk));
        assert!(
            model.sent.get(id).is_some_and(|count| (*row as usize) < *count),
            "row {row} of write {id} was never sent"
        );
    }
    assert_eq!(counted, found.len() as u64, "seed {seed}: count(*) differs from the rows in the files");
    for id in &model.deleted {
        assert!(
            !found.keys().any(|(found_id, _)| found_id == id),
            "seed {seed}: write {id}'s rows were deleted and compaction kept some; {}",
            context(&disk)
        );
    }
    for id in model.acknowledged.iter().filter(|id| !model.deleted.contains(id) && !model.maybe_deleted.contains(id)) {
        for row in 0..model.sent[id] as i64 {
            assert!(
                found.contains_key(&(*id, row)),
                "acknowledged row {row} of write {id} is lost; {}",
                context(&disk)
            );
        }
    }
    for id in &model.refused {
        assert!(!found.contains_key(&(*id, 0)), "seed {seed}: write {id} was refused and came back");
    }
    for (id, count) in &model.sent {
        let present = (0..*count as i64).filter(|row| found.contains_key(&(*id, *row))).count();
        assert!(
            present == 0 || present == *count,
            "write {id} came back in part ({present} of {count}); {}",
            context(&disk)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_survive_power_cuts_in_persists_merges_moves_and_sweeps() {
    let seeds = seeds();
    // Each seed here runs the whole server: a tenth as many as the WAL's.
    let count = (seeds.end - seeds.start).div_ceil(10).max(1);
    let mut coverage = Coverage::default();
    for seed in seeds.start..seeds.start + count {
        run_seed(seed, &mut coverage).await;
    }
    println!("{count} seeds: {coverage:?}");
    // The rarer steps (one in 14 or fewer) take more seeds to be cut in for sure.
    let kinds: &[&str] = match count {
        0..30 => &[],
        30..100 => &["write", "persist", "merge", "move", "sweep"],
        _ => &["write", "persist", "merge", "move", "sweep", "table", "delete", "drop"],
    };
    for kind in kinds {
        assert!(coverage.cuts.contains_key(kind), "no power cut came in a {kind} step: {coverage:?}");
    }
    if count >= 30 {
        assert!(coverage.merges > 0 && coverage.moves > 0 && coverage.orphans_swept > 0, "{coverage:?}");
    }
}
