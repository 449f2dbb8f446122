//! The WAL against a simulated disk ([`crate::storage::sim_disk`]): random
//! writes, group commits, segment rotations and planned I/O faults, a power
//! cut at a random call, a restart, and a check that every acknowledged
//! write is there exactly once and whole.
//!
//! Each seed is one run. `tests/run` runs a fixed range; more, or one:
//!
//! ```text
//! HOURGLASS_SIM_SEEDS=5000 cargo test --lib crash_sim          # seeds 0..5000
//! HOURGLASS_SIM_SEED=1234 cargo test --lib crash_sim -- --nocapture   # one seed
//! ```
//!
//! The seed decides the writes, the faults, what the power cut keeps and the
//! call it comes at; which writes share a group commit depends on thread
//! timing, so a failing seed fails the same way almost always, not always.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::buffer::WriteBuffer;
use super::wal::{Wal, WalError, WalOptions, WalWrite};
use crate::catalog::local::LocalCatalog;
use crate::catalog::{time_data_type, Catalog, TIME_COLUMN};
use crate::metrics::Metrics;
use crate::storage::disk::Disk;
use crate::storage::sim_disk::{SimCall, SimDisk, SimFault, Tearing};
use crate::testing::Lcg;

const WAL_DIR: &str = "/data/_wal";
/// 2023-11-14T22:13:20Z.
const START_NS: i64 = 1_700_000_000_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

/// What the test sent, and what the WAL said of it.
#[derive(Debug, Default)]
struct Model {
    /// Rows of each write, by write id.
    rows: BTreeMap<i64, usize>,
    /// Writes acknowledged as durable, with their WAL sequences.
    durable: BTreeMap<i64, u64>,
    /// Writes refused whole after a failed append or fsync was undone:
    /// they must never come back.
    refused: BTreeSet<i64>,
    /// Segments holding only records up to this sequence may have been
    /// deleted (as after a persist): those writes need not be replayed.
    truncated_through: u64,
}

fn write_batch(id: i64, rows: usize, random: &mut Lcg) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(TIME_COLUMN, time_data_type(), false),
        Field::new("id", DataType::Int64, false),
        Field::new("row", DataType::Int64, false),
    ]));
    // Spread over three hours, so one write reaches several partitions.
    let times: Vec<i64> = (0..rows).map(|_| START_NS + random.below(3 * HOUR_NS as u64) as i64).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampNanosecondArray::from(times).with_timezone(crate::catalog::TIME_ZONE)),
            Arc::new(Int64Array::from(vec![id; rows])),
            Arc::new(Int64Array::from((0..rows as i64).collect::<Vec<_>>())),
        ],
    )
    .expect("batch")
}

/// Opens the WAL as a restarted server would: replay into a new buffer.
async fn open(
    disk: &SimDisk,
    catalog: &Arc<dyn Catalog>,
    segment_bytes: u64,
) -> Result<(Wal, Arc<WriteBuffer>), WalError> {
    let buffer = Arc::new(WriteBuffer::new(usize::MAX / 4, usize::MAX / 4, None));
    let (wal, _) = Wal::open(
        Arc::new(disk.process()) as Arc<dyn Disk>,
        Path::new(WAL_DIR),
        catalog.as_ref(),
        Arc::clone(&buffer),
        Arc::new(Metrics::default()),
        WalOptions { segment_bytes, queue_depth: 64 },
    )
    .await?;
    Ok((wal, buffer))
}

/// The row numbers of each write, by write id.
type RowsById = BTreeMap<i64, BTreeSet<i64>>;

/// The rows of each write in the buffer, and any (write, row) seen twice.
fn buffered_rows(buffer: &WriteBuffer) -> (RowsById, Vec<(i64, i64)>) {
    let mut rows = RowsById::new();
    let mut twice = Vec::new();
    let Some(snapshot) = buffer.take_snapshot() else {
        return (rows, twice);
    };
    for partition in &snapshot.partitions {
        for batch in partition.batches() {
            let column = |name: &str| {
                batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned()).expect(name)
            };
            let (ids, numbers) = (column("id"), column("row"));
            for (id, row) in ids.values().iter().zip(numbers.values()) {
                if !rows.entry(*id).or_default().insert(*row) {
                    twice.push((*id, *row));
                }
            }
        }
    }
    (rows, twice)
}

/// Checks what replay put in the buffer against the model: every durable
/// write whole and once, nothing that was never sent, no write in part.
fn check(seed: u64, epoch: usize, model: &Model, buffer: &WriteBuffer, disk: &SimDisk) {
    let (rows, twice) = buffered_rows(buffer);
    let context = || format!("seed {seed}, after power cut {epoch}; disk: {:?}", disk.tree());
    assert!(twice.is_empty(), "rows replayed twice: {twice:?}; {}", context());
    for (id, sequence) in &model.durable {
        if *sequence > model.truncated_through {
            assert!(rows.contains_key(id), "acknowledged write {id} (record {sequence}) is lost; {}", context());
        }
    }
    for id in &model.refused {
        assert!(!rows.contains_key(id), "write {id} was refused and came back; {}", context());
    }
    for (id, present) in &rows {
        let Some(sent) = model.rows.get(id) else {
            panic!("write {id} was never sent; {}", context());
        };
        assert_eq!(present.len(), *sent, "write {id} came back in part; {}", context());
    }
}

/// What a seed's power cuts keep of unsynced writes, one of three by `choice`.
fn tearing(choice: u64) -> Tearing {
    match choice % 3 {
        0 => Tearing::None,
        1 => Tearing::Prefix,
        _ => Tearing::Pages,
    }
}

/// One seed: several lives of the WAL, each ended by a power cut.
async fn run_seed(seed: u64) {
    let mut random = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
    let disk = SimDisk::new(seed);
    disk.set_tearing(tearing(random.below(3)));
    let catalog_dir = tempfile::tempdir().expect("tempdir");
    let catalog: Arc<dyn Catalog> = Arc::new(LocalCatalog::open(catalog_dir.path()).expect("catalog"));
    let segment_bytes = 1024 + random.below(8192);
    let mut model = Model::default();
    let mut next_id = 0i64;

    for epoch in 0..3 {
        let (wal, buffer) = match open(&disk, &catalog, segment_bytes).await {
            Ok(opened) => opened,
            Err(e) => panic!("seed {seed}: replay after power cut {epoch} failed: {e}; disk: {:?}", disk.tree()),
        };
        check(seed, epoch, &model, &buffer, &disk);

        // A fault, sometimes, before the power cut at a random call ahead.
        // The WAL recovers from each of these by itself; a failed cut-back
        // (a fault on Truncate) stops it, as it must.
        let mut may_stop = false;
        if random.below(3) == 0 {
            let call = match random.below(10) {
                0..=3 => SimCall::Write,
                4..=6 => SimCall::Sync,
                7 => SimCall::Open,
                8 => SimCall::SyncDir,
                _ => {
                    may_stop = true;
                    SimCall::Truncate
                }
            };
            let fault = if random.below(2) == 0 { SimFault::Io } else { SimFault::DiskFull };
            disk.fail_call(call, random.below(30), fault);
        }
        disk.power_cut_at(disk.calls() + 1 + random.below(250));

        for _step in 0..400 {
            if !disk.is_powered() {
                break;
            }
            if random.below(10) == 0 {
                // Rotates to a new segment; the rows it takes are still in the WAL.
                let _ = wal.snapshot().await;
                continue;
            }
            if random.below(20) == 0 {
                // As after a persist: segments up to an acknowledged record go.
                if let Some(&sequence) = model.durable.values().max() {
                    let through = sequence.saturating_sub(random.below(20));
                    if wal.truncate_through(through).await.is_ok() {
                        model.truncated_through = model.truncated_through.max(through);
                    }
                }
                continue;
            }
            let group = 1 + random.below(8) as usize;
            let mut writes = Vec::new();
            for _ in 0..group {
                let id = next_id;
                next_id += 1;
                let rows = 1 + random.below(20) as usize;
                let sync = random.below(10) != 0;
                let batch = write_batch(id, rows, &mut random);
                model.rows.insert(id, rows);
                let encoded = WalWrite::encode(&"db".into(), &[("m".into(), batch)], sync).expect("encode");
                writes.push((id, sync, encoded));
            }
            let answers = futures::future::join_all(writes.into_iter().map(|(id, sync, write)| {
                let wal = &wal;
                async move { (id, sync, wal.write(write).await) }
            }))
            .await;
            for (id, sync, answer) in answers {
                match answer {
                    Ok(sequence) if sync => {
                        model.durable.insert(id, sequence);
                    }
                    Ok(_) => {}
                    Err(WalError::DiskFull { .. } | WalError::NotWritten { .. }) => {
                        model.refused.insert(id);
                    }
                    Err(_) => {}
                }
            }
            if disk.is_powered() && !may_stop {
                assert!(
                    wal.failure().is_none(),
                    "seed {seed}: the WAL stopped after a fault it could recover from: {:?}",
                    wal.failure()
                );
            }
        }
        disk.power_cut();
        wal.close().await;
        disk.restart();
    }
    let (_wal, buffer) = open(&disk, &catalog, segment_bytes).await.unwrap_or_else(|e| {
        panic!("seed {seed}: the last replay failed: {e}; disk: {:?}", disk.tree());
    });
    check(seed, 3, &model, &buffer, &disk);
}

fn seeds() -> std::ops::Range<u64> {
    if let Some(seed) = std::env::var("HOURGLASS_SIM_SEED").ok().and_then(|s| s.parse::<u64>().ok()) {
        return seed..seed + 1;
    }
    let count = std::env::var("HOURGLASS_SIM_SEEDS").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(300);
    0..count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_power_cuts_and_faults_exactly_once() {
    for seed in seeds() {
        run_seed(seed).await;
    }
}

/// A write whose append fails may have reached the device whole (written,
/// then an error; and written back by the kernel): the cut that refuses it
/// must be synced, or a power cut brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_append_never_comes_back_after_a_power_cut() {
    let mut refused = 0;
    for seed in 0..200 {
        let disk = SimDisk::new(seed);
        disk.set_tearing(Tearing::None);
        let catalog_dir = tempfile::tempdir().expect("tempdir");
        let catalog: Arc<dyn Catalog> = Arc::new(LocalCatalog::open(catalog_dir.path()).expect("catalog"));
        let (wal, _) = open(&disk, &catalog, 1 << 20).await.expect("open");
        let mut random = Lcg(seed);
        let write = |id: i64, random: &mut Lcg| {
            WalWrite::encode(&"db".into(), &[("m".into(), write_batch(id, 10, random))], true).expect("encode")
        };
        wal.write(write(0, &mut random)).await.expect("the first write");
        disk.fail_call(SimCall::Write, 0, SimFault::Io);
        if let Err(WalError::NotWritten { .. }) = wal.write(write(1, &mut random)).await {
            refused += 1;
        }
        disk.power_cut();
        wal.close().await;
        disk.restart();
        let (_wal, buffer) = open(&disk, &catalog, 1 << 20).await.expect("replay");
        let (rows, _) = buffered_rows(&buffer);
        assert_eq!(rows.keys().copied().collect::<Vec<_>>(), vec![0], "seed {seed}: the refused write came back");
    }
    assert_eq!(refused, 200, "every second write was refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_whole_and_the_wal_goes_on_once_there_is_room() {
    let disk = SimDisk::new(11);
    let catalog_dir = tempfile::tempdir().expect("tempdir");
    let catalog: Arc<dyn Catalog> = Arc::new(LocalCatalog::open(catalog_dir.path()).expect("catalog"));
    let (wal, buffer) = open(&disk, &catalog, 1 << 20).await.expect("open");
    let mut random = Lcg(5);
    let write = |id: i64, random: &mut Lcg| {
        WalWrite::encode(&"db".into(), &[("m".into(), write_batch(id, 10, random))], true).expect("encode")
    };
    wal.write(write(0, &mut random)).await.expect("room for the first");

    disk.set_capacity(Some(disk.used_bytes() + 100));
    for id in 1..5 {
        match wal.write(write(id, &mut random)).await {
            Err(WalError::DiskFull { .. }) => {}
            other => panic!("write {id} on a full disk: {other:?}"),
        }
    }
    assert!(wal.failure().is_none(), "a full disk must not stop the WAL: {:?}", wal.failure());
    let (rows, _) = buffered_rows(&buffer);
    assert_eq!(rows.keys().copied().collect::<Vec<_>>(), vec![0], "a refused write must not be visible");

    disk.set_capacity(None);
    for id in 5..8 {
        wal.write(write(id, &mut random)).await.expect("room again");
    }
    disk.power_cut();
    wal.close().await;
    disk.restart();
    let (_wal, buffer) = open(&disk, &catalog, 1 << 20).await.expect("replay");
    let (rows, _) = buffered_rows(&buffer);
    assert_eq!(rows.keys().copied().collect::<Vec<_>>(), vec![0, 5, 6, 7], "refused writes never come back");
}

/// The whole write path on the simulated disk: WAL, write buffer, persister,
/// the JSON catalog and the Parquet files of layer 0. Power cuts land in
/// writes, persists, catalog commits and WAL deletions alike; after each,
/// the restarted path persists what it replayed, and every acknowledged row
/// must be in exactly one file the catalog lists. Merges and layer moves
/// read files back through the object store, which the simulated disk does
/// not serve yet: they are not in this test.
mod persisted {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use arrow::array::{Array, DictionaryArray, Int64Array, RecordBatch, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use super::{seeds, HOUR_NS, START_NS};
    use crate::catalog::local::LocalCatalog;
    use crate::catalog::{time_data_type, Catalog, TIME_COLUMN};
    use crate::ingest::wal::WalError;
    use crate::ingest::{IngestError, IngestOptions, Ingester};
    use crate::metrics::Metrics;
    use crate::storage::disk::Disk;
    use crate::storage::sim_disk::{SimCall, SimDisk, SimFault};
    use crate::storage::{file_path_in_layer, LayerConfig, LayerType, ParquetOptions, Storage};
    use crate::testing::Lcg;

    const ROOT: &str = "/data";

    fn rows(id: i64, count: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("series", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), false),
            Field::new("id", DataType::Int64, false),
            Field::new("row", DataType::Int64, false),
            Field::new(TIME_COLUMN, time_data_type(), false),
        ]));
        // One series; every row its own time, across three hour partitions.
        let times: Vec<i64> = (0..count as i64).map(|row| START_NS + (id % 3) * HOUR_NS + id * 1_000 + row).collect();
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

    fn open_parts(disk: &SimDisk) -> Result<(Arc<dyn Catalog>, Arc<Storage>), String> {
        let disk: Arc<dyn Disk> = Arc::new(disk.process());
        let catalog = LocalCatalog::open_on(Arc::clone(&disk), Path::new(ROOT)).map_err(|e| e.to_string())?;
        let layer = LayerConfig {
            name: "default".into(),
            layer_type: LayerType::Fs,
            url: ROOT.into(),
            global: false,
            ttl: None,
            auth_key: None,
            auth_secret: None,
        };
        let storage = Storage::open_on(vec![layer], disk).map_err(|e| e.to_string())?;
        Ok((Arc::new(catalog), Arc::new(storage)))
    }

    async fn open_ingester(disk: &SimDisk, segment_bytes: u64) -> Result<Arc<Ingester>, String> {
        let (catalog, storage) = open_parts(disk)?;
        let options = IngestOptions {
            max_line_bytes: 1 << 20,
            max_columns_per_table: 100,
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
        let disk: Arc<dyn Disk> = Arc::new(disk.process());
        let (ingester, _) =
            Ingester::open(disk, Path::new(ROOT), catalog, storage, Arc::new(Metrics::default()), None, options)
                .await
                .map_err(|e| e.to_string())?;
        Ok(ingester)
    }

    /// Rows per (write id, row) in the files the catalog lists, read from the disk.
    fn rows_in_files(disk: &SimDisk) -> BTreeMap<(i64, i64), usize> {
        let (catalog, _) = open_parts(disk).expect("catalog");
        let mut found = BTreeMap::new();
        for partition in catalog.files("db", "m", i64::MIN, i64::MAX) {
            for file in partition.files {
                let path = Path::new(ROOT).join(file_path_in_layer("db", "m", &file.path));
                let bytes = disk.read(&path).unwrap_or_else(|e| panic!("a listed file is missing: {e}"));
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                        .and_then(|builder| builder.build())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                for batch in reader {
                    let batch = batch.expect("batch");
                    let column = |name: &str| {
                        batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
                    };
                    let (Some(ids), Some(numbers)) = (column("id"), column("row")) else { continue };
                    for i in 0..ids.len() {
                        if ids.is_valid(i) {
                            *found.entry((ids.value(i), numbers.value(i))).or_default() += 1;
                        }
                    }
                }
            }
        }
        found
    }

    /// Every Parquet file on the disk, whether the catalog lists it, and the
    /// writes in it: what a failing seed needs to show.
    fn describe(disk: &SimDisk) -> String {
        let (catalog, _) = open_parts(disk).expect("catalog");
        let listed: std::collections::BTreeMap<String, u64> = catalog
            .files("db", "m", i64::MIN, i64::MAX)
            .into_iter()
            .flat_map(|p| p.files)
            .map(|f| (f.path.clone(), f.wal_sequence))
            .collect();
        let mut lines = Vec::new();
        for entry in disk.tree() {
            let path = entry.split(" (").next().unwrap_or_default().to_owned();
            if !path.ends_with(".parquet") {
                lines.push(entry);
                continue;
            }
            let bytes = disk.read(Path::new(&path)).unwrap_or_default();
            let ids: std::collections::BTreeSet<i64> =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                    .and_then(|builder| builder.build())
                    .map(|reader| {
                        reader
                            .flatten()
                            .filter_map(|b| {
                                b.column_by_name("id").and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
                            })
                            .flat_map(|ids| ids.values().to_vec())
                            .collect()
                    })
                    .unwrap_or_default();
            let relative = path.split("/m/").nth(1).unwrap_or_default();
            let status = match listed.get(relative) {
                Some(sequence) => format!("listed, WAL sequence {sequence}"),
                None => "not listed".into(),
            };
            lines.push(format!("{path} ({status}): writes {ids:?}"));
        }
        lines.join("\n")
    }

    async fn run_seed(seed: u64) {
        let mut random = Lcg(seed.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x9FB2_1C65_1E98_DF25);
        let disk = SimDisk::new(seed);
        disk.set_tearing(super::tearing(random.below(3)));
        let segment_bytes = 2048 + random.below(16384);
        let mut sent: BTreeMap<i64, usize> = BTreeMap::new();
        let mut acknowledged: Vec<i64> = Vec::new();
        let mut refused: Vec<i64> = Vec::new();
        let mut next_id = 0i64;
        for life in 0..3 {
            let ingester = open_ingester(&disk, segment_bytes)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: start after power cut {life} failed: {e}"));
            if random.below(3) == 0 {
                let call = [SimCall::Write, SimCall::Sync, SimCall::Open, SimCall::SyncDir, SimCall::Rename]
                    [random.below(5) as usize];
                let fault = if random.below(2) == 0 { SimFault::Io } else { SimFault::DiskFull };
                disk.fail_call(call, random.below(40), fault);
            }
            disk.power_cut_at(disk.calls() + 1 + random.below(400));
            for _step in 0..200 {
                if !disk.is_powered() {
                    break;
                }
                if random.below(4) == 0 {
                    let _ = ingester.persist_now().await;
                    continue;
                }
                let group = 1 + random.below(6) as usize;
                let writes: Vec<(i64, RecordBatch)> = (0..group)
                    .map(|_| {
                        let id = next_id;
                        next_id += 1;
                        let count = 1 + random.below(30) as usize;
                        sent.insert(id, count);
                        (id, rows(id, count))
                    })
                    .collect();
                let answers = futures::future::join_all(writes.iter().map(|(id, batch)| {
                    let ingester = &ingester;
                    async move { (*id, ingester.write_batch("db", "m", batch, true).await) }
                }))
                .await;
                for (id, answer) in answers {
                    match answer {
                        Ok(_) => acknowledged.push(id),
                        Err(IngestError::Wal(WalError::DiskFull { .. } | WalError::NotWritten { .. })) => {
                            refused.push(id)
                        }
                        Err(_) => {}
                    }
                }
            }
            disk.power_cut();
            let _ = ingester.shutdown().await;
            disk.restart();
        }
        // The last restart persists what it replays, then the files are read.
        let ingester = open_ingester(&disk, segment_bytes)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: the last start failed: {e}"));
        ingester.shutdown().await.unwrap_or_else(|e| panic!("seed {seed}: the last persist failed: {e}"));
        let found = rows_in_files(&disk);
        let context = || format!("seed {seed}; {}", describe(&disk));
        for ((id, row), copies) in &found {
            assert_eq!(*copies, 1, "row {row} of write {id} is in the files {copies} times; {}", context());
            assert!(
                sent.get(id).is_some_and(|count| (*row as usize) < *count),
                "row {row} of write {id} was never sent"
            );
        }
        for id in &acknowledged {
            for row in 0..sent[id] as i64 {
                assert!(found.contains_key(&(*id, row)), "acknowledged row {row} of write {id} is lost; {}", context());
            }
        }
        for id in &refused {
            assert!(!found.contains_key(&(*id, 0)), "write {id} was refused and came back; {}", context());
        }
        for (id, count) in &sent {
            let present = (0..*count as i64).filter(|row| found.contains_key(&(*id, *row))).count();
            assert!(
                present == 0 || present == *count,
                "write {id} came back in part ({present} of {count}); {}",
                context()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_acknowledged_row_is_in_one_listed_file_after_power_cuts_in_persists() {
        let seeds = seeds();
        // Each seed here does much more than one of the WAL alone.
        let count = (seeds.end - seeds.start).div_ceil(3);
        for seed in seeds.start..seeds.start + count.max(1) {
            run_seed(seed).await;
        }
    }
}
