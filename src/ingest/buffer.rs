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

use crate::catalog::{DeletePredicate, PartitionKey, Tombstone};
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

/// A delete of one table's rows, in its place among the writes.
#[derive(Debug, Clone)]
pub struct BufferedDelete {
    /// The database.
    pub database: Arc<str>,
    /// The table.
    pub table: Arc<str>,
    /// The rows it removes.
    pub predicate: DeletePredicate,
    /// When it was issued (nanoseconds since the epoch).
    pub issued_at: i64,
    /// A drop of the table: the catalog forgets the table rather than
    /// keeping a tombstone.
    pub drop: bool,
    /// The delete's sequence in the shared catalog, which ordered it and
    /// keeps its tombstone (see [`crate::catalog::SharedDeletes`]); None for
    /// a delete this process's WAL orders.
    pub shared_sequence: Option<u64>,
}

/// A delete applied to the buffer, with the table it is of: the snapshot
/// that follows it records its tombstone before the WAL lets go of it.
pub type AppliedDelete = (Arc<str>, Arc<str>, Tombstone);

type TableKey = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
struct BufferState {
    tables: HashMap<TableKey, BTreeMap<PartitionKey, Vec<RecordBatch>>>,
    bytes: usize,
    last_sequence: u64,
    persisting: Vec<Arc<Snapshot>>,
    /// Deletes applied since the last snapshot.
    deletes: Vec<AppliedDelete>,
    /// Per table, the newest shared delete carried out on its rows: every
    /// row buffered since is past it, and so is every file made from them.
    shared_deletes: HashMap<TableKey, u64>,
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
    /// The rows, and the shared deletes carried out on them.
    rows: Mutex<SnapshotRows>,
    bytes: usize,
    done: AtomicBool,
}

/// A snapshot partition's rows, with what was done to them: read together,
/// so that a file never claims a delete its rows missed.
#[derive(Debug, Clone, Default)]
pub struct SnapshotRows {
    /// The rows, in write order; emptied once the partition is in the catalog.
    pub batches: Vec<RecordBatch>,
    /// The newest shared delete carried out on them (0: none), the file's
    /// `deletes_applied`.
    pub deletes_applied: u64,
}

impl SnapshotPartition {
    /// True once its file is in the catalog.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The rows, in write order (none once the partition is done).
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.rows().batches
    }

    /// The rows with the shared deletes carried out on them.
    pub fn rows(&self) -> SnapshotRows {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The buffer's content at one moment, being written to Parquet.
#[derive(Debug)]
pub struct Snapshot {
    /// Every WAL record up to this sequence is in the snapshot or in older ones.
    pub sequence: u64,
    /// Its partitions.
    pub partitions: Vec<SnapshotPartition>,
    /// The deletes applied since the snapshot before: their tombstones go to
    /// the catalog before the WAL records them no more (the delete's own
    /// path records them too, unless a crash came first).
    pub deletes: Vec<AppliedDelete>,
}

impl Snapshot {
    /// True once every partition is in the catalog.
    pub fn is_done(&self) -> bool {
        self.partitions.iter().all(SnapshotPartition::is_done)
    }
}

/// Memory the write path holds outside the buffer, counted against the
/// buffer's limit (`HOURGLASS_MAX_BUFFER_BYTES`) so that the limit bounds
/// the whole write path, not only rows waiting to be persisted.
#[derive(Debug)]
pub struct Reservation<'a> {
    buffer: &'a WriteBuffer,
    bytes: usize,
}

impl Reservation<'_> {
    /// Bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The limit the reservation counts against.
    pub fn limit(&self) -> usize {
        self.buffer.max_bytes
    }

    /// Reserves `bytes` more unless the write path would then hold more than
    /// the buffer's limit while holding anything besides this reservation;
    /// on refusal nothing changes and the error is the bytes held. A write
    /// alone always fits (its body is bounded by `HOURGLASS_MAX_BODY_BYTES`),
    /// so a limit smaller than one write does not refuse it forever.
    /// Concurrent callers may pass the limit together by at most what each
    /// asked for.
    pub fn try_grow(&mut self, bytes: usize) -> Result<(), usize> {
        let held = self.buffer.held_bytes();
        if held.saturating_add(bytes) > self.buffer.max_bytes && held > self.bytes {
            return Err(held);
        }
        self.set(self.bytes.saturating_add(bytes));
        Ok(())
    }

    /// Makes the reservation exactly `bytes`, whatever the limit: for memory
    /// already taken (a parsed write, a sorted copy).
    pub fn set(&mut self, bytes: usize) {
        let counter = &self.buffer.reserved_bytes;
        if bytes >= self.bytes {
            counter.fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            counter.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.buffer.reserved_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The write buffer, with its byte accounting.
#[derive(Debug)]
pub struct WriteBuffer {
    state: Mutex<BufferState>,
    /// Bytes in the buffer and in snapshots not yet persisted.
    total_bytes: AtomicUsize,
    /// Bytes the write path holds outside the buffer: request bodies being
    /// read and parsed, and the persister's sorted copies ([`Reservation`]).
    reserved_bytes: AtomicUsize,
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
            reserved_bytes: AtomicUsize::new(0),
            max_bytes,
            flush_bytes,
            flush_wanted: Notify::new(),
            last_values,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BufferState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cache of latest values this buffer keeps up to date.
    pub fn last_values(&self) -> Option<&Arc<LastValueCache>> {
        self.last_values.as_ref()
    }

    /// Bytes held, snapshots being persisted included.
    pub fn bytes(&self) -> usize {
        self.total_bytes.load(Ordering::Relaxed)
    }

    /// Bytes the write path holds: the buffer, its snapshots, and every
    /// [`Reservation`] (writes in flight, sorted copies being persisted).
    pub fn held_bytes(&self) -> usize {
        self.bytes().saturating_add(self.reserved_bytes.load(Ordering::Relaxed))
    }

    /// The byte limit past which writes are refused until persistence catches up.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// True when new writes must wait.
    pub fn is_full(&self) -> bool {
        self.held_bytes() >= self.max_bytes
    }

    /// Counts `bytes` held outside the buffer against its limit until the
    /// reservation is dropped. Never refused: the persister and writes
    /// already parsed must go on; new writes ask [`Reservation::try_grow`].
    pub fn reserve(&self, bytes: usize) -> Reservation<'_> {
        let mut reservation = Reservation { buffer: self, bytes: 0 };
        reservation.set(bytes);
        reservation
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

    /// Removes the rows a delete (WAL record `sequence`) matches from the
    /// buffer and from the snapshots being persisted, so that no query sees
    /// them again: a snapshot's file may still hold them, and the delete's
    /// tombstone hides them there (the file's WAL sequence is below it).
    /// Rows written after this call are not touched.
    pub fn apply_delete(&self, sequence: u64, delete: &BufferedDelete) -> Result<(), arrow::error::ArrowError> {
        let predicate = &delete.predicate;
        let in_range = |key: &PartitionKey| predicate.overlaps(key.start_ns(), key.end_ns());
        let mut removed = 0usize;
        {
            let mut state = self.lock();
            assert!(
                sequence > state.last_sequence || (sequence == 0 && state.last_sequence == 0),
                "WAL record {sequence} reached the buffer after record {}: a delete would miss rows written before it",
                state.last_sequence
            );
            let key: TableKey = (Arc::clone(&delete.database), Arc::clone(&delete.table));
            if let Some(hours) = state.tables.get_mut(&key) {
                for (_, batches) in hours.iter_mut().filter(|(key, _)| in_range(key)) {
                    for batch in batches.iter_mut() {
                        let kept = predicate.remove_from(batch)?;
                        removed += batch.get_array_memory_size().saturating_sub(kept.get_array_memory_size());
                        *batch = kept;
                    }
                    batches.retain(|b| b.num_rows() > 0);
                }
                hours.retain(|_, batches| !batches.is_empty());
                if hours.is_empty() {
                    state.tables.remove(&key);
                }
            }
            for snapshot in &state.persisting {
                for p in &snapshot.partitions {
                    if p.database != delete.database || p.table != delete.table {
                        continue;
                    }
                    // Its bytes stay counted until the partition is persisted.
                    let mut rows = p.rows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if in_range(&p.partition) {
                        for batch in rows.batches.iter_mut() {
                            *batch = predicate.remove_from(batch)?;
                        }
                        // An emptied batch of a dropped table has its columns: a
                        // new table of that name may have others.
                        rows.batches.retain(|b| b.num_rows() > 0);
                    }
                    if let Some(shared) = delete.shared_sequence {
                        rows.deletes_applied = rows.deletes_applied.max(shared);
                    }
                }
            }
            state.bytes = state.bytes.saturating_sub(removed);
            state.last_sequence = state.last_sequence.max(sequence);
            match delete.shared_sequence {
                Some(shared) => {
                    let applied = state.shared_deletes.entry(key).or_default();
                    *applied = (*applied).max(shared);
                }
                None if !delete.drop => {
                    let tombstone = Tombstone {
                        sequence,
                        issued_at: delete.issued_at,
                        predicate: predicate.clone(),
                        shared: false,
                    };
                    state.deletes.push((Arc::clone(&delete.database), Arc::clone(&delete.table), tombstone));
                }
                None => {}
            }
        }
        let _ =
            self.total_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(removed)));
        if let Some(cache) = &self.last_values {
            cache.forget(&delete.database, &delete.table);
        }
        Ok(())
    }

    /// Moves everything buffered into a new snapshot, or returns `None` when the
    /// buffer is empty. The snapshot stays readable until [`Self::remove_snapshot`].
    pub fn take_snapshot(&self) -> Option<Arc<Snapshot>> {
        let mut state = self.lock();
        if state.tables.is_empty() && state.deletes.is_empty() {
            return None;
        }
        let tables = std::mem::take(&mut state.tables);
        let deletes = std::mem::take(&mut state.deletes);
        state.bytes = 0;
        let mut partitions = Vec::new();
        for ((database, table), hours) in tables {
            let deletes_applied = state.shared_deletes.get(&(Arc::clone(&database), Arc::clone(&table))).copied();
            for (partition, batches) in hours {
                let bytes = batches.iter().map(|b| b.get_array_memory_size()).sum();
                partitions.push(SnapshotPartition {
                    database: Arc::clone(&database),
                    table: Arc::clone(&table),
                    partition,
                    rows: Mutex::new(SnapshotRows { batches, deletes_applied: deletes_applied.unwrap_or(0) }),
                    bytes,
                    done: AtomicBool::new(false),
                });
            }
        }
        partitions.sort_by(|a, b| (&a.database, &a.table, a.partition).cmp(&(&b.database, &b.table, b.partition)));
        let snapshot = Arc::new(Snapshot { sequence: state.last_sequence, partitions, deletes });
        state.persisting.push(Arc::clone(&snapshot));
        Some(snapshot)
    }

    /// Marks a partition of a snapshot as committed: its rows are now read from
    /// the catalog's files, and its memory is freed.
    pub fn partition_persisted(&self, snapshot: &Snapshot, index: usize) {
        let partition = &snapshot.partitions[index];
        if !partition.done.swap(true, Ordering::AcqRel) {
            partition.rows.lock().unwrap_or_else(|p| p.into_inner()).batches.clear();
            self.total_bytes.fetch_sub(partition.bytes, Ordering::Relaxed);
        }
    }

    /// The newest shared delete carried out on a table's buffered rows (0:
    /// none).
    pub fn shared_deletes_applied(&self, database: &str, table: &str) -> u64 {
        let key: TableKey = (database.into(), table.into());
        self.lock().shared_deletes.get(&key).copied().unwrap_or(0)
    }

    /// Records that the shared deletes of a table up to `through` were
    /// carried out on every row this buffer holds or will hold (a restarted
    /// writer whose WAL no longer has their records: the shared catalog
    /// knew it had carried them out).
    pub fn raise_shared_deletes_applied(&self, database: &str, table: &str, through: u64) {
        let key: TableKey = (database.into(), table.into());
        let mut state = self.lock();
        let applied = state.shared_deletes.entry(key).or_default();
        *applied = (*applied).max(through);
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
                    out.entry(p.partition).or_default().extend(p.batches().into_iter().filter(|b| b.num_rows() > 0));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_against_the_limit_until_dropped() {
        let buffer = WriteBuffer::new(100, 50, None);
        let mut first = buffer.reserve(0);
        first.try_grow(60).expect("a write alone always fits");
        first.try_grow(60).expect("a write alone always fits, even past the limit");
        assert_eq!(buffer.held_bytes(), 120);
        assert!(buffer.is_full());

        let mut second = buffer.reserve(0);
        assert_eq!(second.try_grow(1), Err(120), "another write is refused while the path is full");
        assert_eq!(second.bytes(), 0, "a refusal reserves nothing");

        first.set(30);
        assert_eq!(buffer.held_bytes(), 30);
        second.try_grow(70).expect("fits exactly");
        assert_eq!(second.try_grow(1), Err(100));

        let sorted = buffer.reserve(500);
        assert_eq!(buffer.held_bytes(), 600, "forced reservations are never refused");
        drop(sorted);
        drop(first);
        assert_eq!(buffer.held_bytes(), 70);
        drop(second);
        assert_eq!(buffer.held_bytes(), 0);
        assert!(!buffer.is_full());
    }
}
