//! The WAL against a simulated disk ([`crate::storage::sim_disk`]): random
//! writes, group commits, segment rotations and planned I/O faults, a power
//! cut at a random call, a restart, and a check that every acknowledged
//! write is there exactly once and whole. The whole server on the same
//! disk (persists, merges, layer moves, the orphan sweep) is
//! `crate::server::crash_sim`.
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
pub(crate) const START_NS: i64 = 1_700_000_000_000_000_000;
pub(crate) const HOUR_NS: i64 = 3_600_000_000_000;

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
pub(crate) fn tearing(choice: u64) -> Tearing {
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
                    if let Ok(gone) = wal.truncate_through(through).await {
                        model.truncated_through = model.truncated_through.max(through);
                        let most = model.truncated_through;
                        assert!(gone <= most, "the WAL says records past {most}, the most truncated, are gone: {gone}");
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

/// The seeds to run: `HOURGLASS_SIM_SEED` alone, or `0..HOURGLASS_SIM_SEEDS` (300).
pub(crate) fn seeds() -> std::ops::Range<u64> {
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
