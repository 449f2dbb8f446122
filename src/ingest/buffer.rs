//! The write buffer: acknowledged rows not yet in Parquet files, by table and hour.
//!
//! The WAL writer appends to it in WAL order. The persister takes the whole buffer
//! as a [`Snapshot`]; a snapshot stays readable until each of its partitions is
//! committed to the catalog, so a row is always in the buffer, in a snapshot, or
//! in a file that the catalog lists (possibly for a moment in two of them, which
//! deduplication makes harmless), and never in none.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::RecordBatch;
use tokio::sync::Notify;

use crate::catalog::PartitionKey;
use crate::last_values::LastValueCache;

/// Rows of one table and hour partition, ready to be buffered.
#[derive(Debug, Clone)]
pub struct BufferedWrite {
    /// The database.
    pub database: Arc<str>,
    /// The table.
    pub table: Arc<str>,
    /// The hour partition every row belongs to.
    pub partition: PartitionKey,
    /// The rows.
    pub batch: RecordBatch,
}

type TableKey = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
struct BufferState {
    tables: HashMap<TableKey, BTreeMap<PartitionKey, Vec<RecordBatch>>>,
    bytes: usize,
    last_sequence: u64,
    persisting: Vec<Arc<Snapshot>>,
}

/// One table and hour of a snapshot.
#[derive(Debug)]
pub struct SnapshotPartition {
    /// The database.
    pub database: Arc<str>,
    /// The table.
    pub table: Arc<str>,
    /// The hour partition.
    pub partition: PartitionKey,
    /// The rows, in write order; emptied once the partition is in the catalog.
    batches: Mutex<Vec<RecordBatch>>,
    bytes: usize,
    done: AtomicBool,
}

impl SnapshotPartition {
    /// True once its file is in the catalog.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The rows, in write order (none once the partition is done).
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The buffer's content at one moment, being written to Parquet.
#[derive(Debug)]
pub struct Snapshot {
    /// Every WAL record up to this sequence is in the snapshot or in older ones.
    pub sequence: u64,
    /// Its partitions.
    pub partitions: Vec<SnapshotPartition>,
}

impl Snapshot {
    /// True once every partition is in the catalog.
    pub fn is_done(&self) -> bool {
        self.partitions.iter().all(SnapshotPartition::is_done)
    }
}

/// The write buffer, with its byte accounting.
#[derive(Debug)]
pub struct WriteBuffer {
    state: Mutex<BufferState>,
    /// Bytes in the buffer and in snapshots not yet persisted.
    total_bytes: AtomicUsize,
    max_bytes: usize,
    flush_bytes: usize,
    flush_wanted: Notify,
    /// Told of every write once it is in the buffer.
    last_values: Option<Arc<LastValueCache>>,
}

impl WriteBuffer {
    /// A buffer that refuses writes past `max_bytes`, asks for a flush past
    /// `flush_bytes`, and keeps `last_values` up to date.
    pub fn new(max_bytes: usize, flush_bytes: usize, last_values: Option<Arc<LastValueCache>>) -> Self {
        WriteBuffer {
            state: Mutex::new(BufferState::default()),
            total_bytes: AtomicUsize::new(0),
            max_bytes,
            flush_bytes,
            flush_wanted: Notify::new(),
            last_values,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BufferState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes held, snapshots being persisted included.
    pub fn bytes(&self) -> usize {
        self.total_bytes.load(Ordering::Relaxed)
    }

    /// The byte limit past which writes are refused until persistence catches up.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// True when new writes must wait.
    pub fn is_full(&self) -> bool {
        self.bytes() >= self.max_bytes
    }

    /// Resolves when the buffer has grown past its flush size.
    pub async fn flush_wanted(&self) {
        self.flush_wanted.notified().await
    }

    /// Appends the writes of WAL record `sequence`. Called in sequence order:
    /// the last write wins because later records come later.
    pub fn apply(&self, sequence: u64, writes: &[BufferedWrite]) {
        let mut added = 0;
        let buffered = {
            let mut state = self.lock();
            assert!(
                sequence > state.last_sequence || (sequence == 0 && state.last_sequence == 0),
                "WAL record {sequence} reached the buffer after record {}: the last write would not win",
                state.last_sequence
            );
            for write in writes {
                let bytes = write.batch.get_array_memory_size();
                added += bytes;
                state
                    .tables
                    .entry((Arc::clone(&write.database), Arc::clone(&write.table)))
                    .or_default()
                    .entry(write.partition)
                    .or_default()
                    .push(write.batch.clone());
            }
            state.bytes += added;
            state.last_sequence = state.last_sequence.max(sequence);
            state.bytes
        };
        self.total_bytes.fetch_add(added, Ordering::Relaxed);
        // After the rows are readable: a cache build that starts now reads
        // them, and one that started before takes them in here.
        if let Some(cache) = &self.last_values {
            for write in writes {
                cache.observe_write(&write.database, &write.table, &write.batch);
            }
        }
        if buffered >= self.flush_bytes {
            self.flush_wanted.notify_one();
        }
    }

    /// Moves everything buffered into a new snapshot, or returns `None` when the
    /// buffer is empty. The snapshot stays readable until [`Self::remove_snapshot`].
    pub fn take_snapshot(&self) -> Option<Arc<Snapshot>> {
        let mut state = self.lock();
        if state.tables.is_empty() {
            return None;
        }
        let tables = std::mem::take(&mut state.tables);
        state.bytes = 0;
        let mut partitions = Vec::new();
        for ((database, table), hours) in tables {
            for (partition, batches) in hours {
                let bytes = batches.iter().map(|b| b.get_array_memory_size()).sum();
                partitions.push(SnapshotPartition {
                    database: Arc::clone(&database),
                    table: Arc::clone(&table),
                    partition,
                    batches: Mutex::new(batches),
                    bytes,
                    done: AtomicBool::new(false),
                });
            }
        }
        partitions.sort_by(|a, b| (&a.database, &a.table, a.partition).cmp(&(&b.database, &b.table, b.partition)));
        let snapshot = Arc::new(Snapshot { sequence: state.last_sequence, partitions });
        state.persisting.push(Arc::clone(&snapshot));
        Some(snapshot)
    }

    /// Marks a partition of a snapshot as committed: its rows are now read from
    /// the catalog's files, and its memory is freed.
    pub fn partition_persisted(&self, snapshot: &Snapshot, index: usize) {
        let partition = &snapshot.partitions[index];
        if !partition.done.swap(true, Ordering::AcqRel) {
            partition.batches.lock().unwrap_or_else(|p| p.into_inner()).clear();
            self.total_bytes.fetch_sub(partition.bytes, Ordering::Relaxed);
        }
    }

    /// Snapshots taken and not yet wholly persisted, oldest first. This list is
    /// the one record of them: a persist round that is interrupted leaves its
    /// snapshot here for the next round.
    pub fn persisting(&self) -> Vec<Arc<Snapshot>> {
        self.lock().persisting.clone()
    }

    /// Forgets a snapshot whose partitions are all persisted.
    pub fn remove_snapshot(&self, snapshot: &Arc<Snapshot>) {
        self.lock().persisting.retain(|s| !Arc::ptr_eq(s, snapshot));
    }

    /// The buffered rows of a table, by hour partition, for the partitions that
    /// overlap `[min_ns, max_ns]`; within a partition the batches are oldest first,
    /// snapshots not yet persisted included.
    ///
    /// A reader must take these before it reads the catalog's files: a partition
    /// leaves the buffer only after its file is in the catalog, so in that order a
    /// row is always seen (possibly twice, which deduplication removes).
    pub fn partitions(
        &self,
        database: &str,
        table: &str,
        min_ns: i64,
        max_ns: i64,
    ) -> BTreeMap<PartitionKey, Vec<RecordBatch>> {
        let mut out: BTreeMap<PartitionKey, Vec<RecordBatch>> = BTreeMap::new();
        if min_ns > max_ns {
            return out;
        }
        let range = PartitionKey::for_time(min_ns)..=PartitionKey::for_time(max_ns);
        let state = self.lock();
        for snapshot in &state.persisting {
            for p in &snapshot.partitions {
                if !p.is_done() && &*p.database == database && &*p.table == table && range.contains(&p.partition) {
                    out.entry(p.partition).or_default().extend(p.batches());
                }
            }
        }
        let key: TableKey = (database.into(), table.into());
        if let Some(hours) = state.tables.get(&key) {
            for (partition, batches) in hours.range(range) {
                out.entry(*partition).or_default().extend(batches.iter().cloned());
            }
        }
        out.retain(|_, batches| !batches.is_empty());
        out
    }
}
