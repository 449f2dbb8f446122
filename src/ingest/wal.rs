//! The write-ahead log: every acknowledged write is here until its rows are in
//! Parquet files that the catalog lists.
//!
//! One thread owns the log. It takes every write that arrived while it was busy,
//! appends them with one `write`, fsyncs once for the whole group (group
//! commit), then applies them to the write buffer in sequence order and answers
//! each request. A row is visible to queries only once it is acknowledged:
//! after the fsync, or for a `no_sync` write (answered before the fsync) after
//! the append.
//!
//! On disk, under `<root>/_wal/`: segment files named by the first sequence they
//! may hold (`00000000000000000042.wal`), each a header then records:
//! ```text
//! header: b"HGWAL\0\0\x02"
//! record: len u32 LE | crc32 u32 LE (of seq, synced and payload) | seq u64 LE | synced u64 LE | payload[len]
//! payload: db_len u16 | db | tables u32 | (table_len u16 | table | ipc_len u32 | Arrow IPC stream)*
//! delete:  db_len u16 | db | 0xFFFFFFFF | table_len u16 | table | json_len u32 | DeleteRecord as JSON
//! ```
//! A delete is a record of its own, so that it is ordered with the writes:
//! it removes the rows written before it and none written after.
//! `synced` is how many bytes of the segment were durable (fsynced) when the
//! record was appended. Segments of version 1 (`\x01`), written before it
//! existed, have records without it and are still read.
//! The persister asks for a snapshot: the thread rotates to a new segment and
//! takes the buffer, so the segments before it hold only records of that snapshot
//! or older; once the snapshot is in the catalog they are deleted.
//!
//! Replay at start-up reads every segment in order. A torn record at the end of
//! the last segment (a crash mid-write; never acknowledged) is cut off, and so
//! is everything after it when every whole record there was appended while
//! the torn bytes were not yet durable: a file system may write the pages of
//! one append back in any order, and no record of that append can have been
//! acknowledged, since its fsync would have made the torn bytes durable. Rows of a
//! record whose partition's files already cover its sequence are skipped, so
//! replay is exact: nothing lost, nothing twice.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use tokio::sync::{mpsc, oneshot};

use super::buffer::{BufferedDelete, BufferedWrite, Snapshot, WriteBuffer};
use super::split_by_partition;
use crate::catalog::{Catalog, Column, ColumnType, DeletePredicate, Tombstone};
use crate::errors::{Classified, ErrorKind};
use crate::metrics::Metrics;
use crate::storage::disk::{is_disk_full, Disk, DiskFile};
use crate::storage::fs::create_dir_all_synced;

/// The header of every segment this version writes.
const HEADER: &[u8; 8] = b"HGWAL\0\0\x02";
/// The header of segments written before records carried `synced`.
const HEADER_V1: &[u8; 8] = b"HGWAL\0\0\x01";
/// Length, checksum, sequence and the durable length of the segment.
const RECORD_HEADER: usize = 24;
/// Length, checksum and sequence.
const RECORD_HEADER_V1: usize = 16;
/// Writes gathered into one group commit at most.
const MAX_GROUP: usize = 4096;

/// What can go wrong with the WAL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// Disk I/O failed while opening, replaying or starting a segment.
    #[error("WAL I/O error on {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        message: String,
    },
    /// A segment is damaged somewhere other than its end.
    #[error(
        "WAL segment {path} is corrupt at byte {offset}: {message}. Move the file away to start without it \
         (the rows in it that are not yet in Parquet will be lost)"
    )]
    Corrupt {
        /// The segment.
        path: String,
        /// Where.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// The disk is full: the write's record was not kept (the segment was
    /// cut back), and the write may be sent again once there is space.
    #[error(
        "the disk holding the WAL is full ({path}: {message}); the write was not taken. Free space, or wait for \
         the buffer to be persisted and old WAL segments deleted, and send it again"
    )]
    DiskFull {
        /// The segment.
        path: String,
        /// The error.
        message: String,
    },
    /// The append or fsync of a group failed, and the segment was cut back
    /// to what an earlier fsync made durable: the writes were not
    /// acknowledged, are not visible, and will not come back after a restart.
    #[error(
        "WAL {operation} failed on {path}: {message}. The write was not acknowledged and was removed from the WAL; \
         send it again"
    )]
    NotWritten {
        /// `append` or `fsync`.
        operation: &'static str,
        /// The segment.
        path: String,
        /// The error.
        message: String,
    },
    /// The fsync of a group failed and the segment could not be cut back:
    /// its writes were not acknowledged, and whether they survive a restart
    /// is unknown (their records were written).
    #[error(
        "WAL fsync failed on {path}: {message}. The write was not acknowledged and is not visible; whether it \
         survives a restart is unknown. The WAL takes no more writes: restart the server"
    )]
    SyncFailed {
        /// The segment.
        path: String,
        /// The error.
        message: String,
    },
    /// An earlier I/O error stopped the WAL.
    #[error("the WAL stopped after an I/O error ({0}); restart the server to replay it")]
    Failed(String),
    /// The WAL is closed (the server is shutting down).
    #[error("the server is shutting down")]
    Closed,
    /// Replaying a record failed.
    #[error("WAL replay: {0}")]
    Replay(String),
    /// A write cannot be encoded as one WAL record (it is too large).
    #[error("{0}; split the write")]
    TooLarge(String),
}

impl Classified for WalError {
    fn kind(&self) -> ErrorKind {
        match self {
            WalError::Closed | WalError::NotWritten { .. } => ErrorKind::Unavailable,
            WalError::DiskFull { .. } => ErrorKind::StorageFull,
            WalError::TooLarge(_) => ErrorKind::TooLarge,
            WalError::Io { .. }
            | WalError::SyncFailed { .. }
            | WalError::Corrupt { .. }
            | WalError::Failed(_)
            | WalError::Replay(_) => ErrorKind::Internal,
        }
    }

    fn sqlstate(&self) -> &'static str {
        match self {
            WalError::Closed => "57P01",
            WalError::TooLarge(_) => "54000",
            WalError::DiskFull { .. } => "53100",
            WalError::Io { .. } | WalError::NotWritten { .. } | WalError::SyncFailed { .. } | WalError::Failed(_) => {
                "58030"
            }
            WalError::Corrupt { .. } => "XX001",
            WalError::Replay(_) => "XX000",
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> WalError {
    WalError::Io { path: path.display().to_string(), message: e.to_string() }
}

impl WalError {
    /// A write refused whole after `operation` failed on the segment at
    /// `path` and was undone: a full disk, or another I/O error.
    fn refused(operation: &'static str, path: &Path, e: &std::io::Error) -> WalError {
        let path = path.display().to_string();
        match is_disk_full(e) {
            true => WalError::DiskFull { path, message: e.to_string() },
            false => WalError::NotWritten { operation, path, message: e.to_string() },
        }
    }
}

/// A write, encoded and split, waiting for its place in the log.
#[derive(Debug)]
pub struct WalWrite {
    /// The rows, per table and partition, for the buffer.
    pub writes: Vec<BufferedWrite>,
    /// The encoded record payload.
    pub payload: Vec<u8>,
    /// CRC of the payload.
    pub payload_crc: crc32fast::Hasher,
    /// Acknowledge only after the fsync.
    pub sync: bool,
    /// The delete this record is, if it is one.
    pub delete: Option<BufferedDelete>,
}

/// The tables count that marks a delete record.
const DELETE_MARK: u32 = u32::MAX;

/// A delete as its WAL record holds it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DeleteRecord {
    predicate: DeletePredicate,
    issued_at: i64,
    /// The table itself goes: its schema too, and the writes to it from
    /// before are skipped by a replay once the catalog has the drop.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    drop: bool,
    /// A delete the shared catalog ordered and keeps the tombstone of: this
    /// writer carried it out on its buffer here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shared_sequence: Option<u64>,
}

impl WalWrite {
    /// Encodes the tables of one database as a WAL record and splits their rows by
    /// hour partition for the buffer.
    pub fn encode(database: &Arc<str>, tables: &[(Arc<str>, RecordBatch)], sync: bool) -> Result<WalWrite, WalError> {
        let encode_error = |e: arrow::error::ArrowError| WalError::TooLarge(format!("encoding a WAL record: {e}"));
        let mut payload = Vec::with_capacity(
            tables.iter().map(|(_, b)| b.get_array_memory_size()).sum::<usize>() + 64 + database.len(),
        );
        put_str(&mut payload, database)?;
        let too_large = |what: &str| WalError::TooLarge(format!("{what} does not fit in one WAL record"));
        payload
            .extend_from_slice(&u32::try_from(tables.len()).map_err(|_| too_large("the table count"))?.to_le_bytes());
        let mut writes = Vec::new();
        for (table, batch) in tables {
            put_str(&mut payload, table)?;
            let length_at = payload.len();
            payload.extend_from_slice(&[0; 4]);
            let mut writer = StreamWriter::try_new(&mut payload, &batch.schema()).map_err(encode_error)?;
            writer.write(batch).map_err(encode_error)?;
            writer.finish().map_err(encode_error)?;
            drop(writer);
            let ipc_len = u32::try_from(payload.len() - length_at - 4).map_err(|_| too_large("a write over 4 GiB"))?;
            payload[length_at..length_at + 4].copy_from_slice(&ipc_len.to_le_bytes());
            for (partition, part) in split_by_partition(batch).map_err(encode_error)? {
                writes.push(BufferedWrite {
                    database: Arc::clone(database),
                    table: Arc::clone(table),
                    partition,
                    batch: part,
                });
            }
        }
        u32::try_from(payload.len()).map_err(|_| too_large("a write over 4 GiB"))?;
        let mut payload_crc = crc32fast::Hasher::new();
        payload_crc.update(&payload);
        Ok(WalWrite { writes, payload, payload_crc, sync, delete: None })
    }

    /// Encodes a delete of a table's rows, or its drop (with a predicate of
    /// every row); always synced: a delete is acknowledged once durable.
    pub fn encode_delete(delete: BufferedDelete) -> Result<WalWrite, WalError> {
        let mut payload = Vec::new();
        put_str(&mut payload, &delete.database)?;
        payload.extend_from_slice(&DELETE_MARK.to_le_bytes());
        put_str(&mut payload, &delete.table)?;
        let record = DeleteRecord {
            predicate: delete.predicate.clone(),
            issued_at: delete.issued_at,
            drop: delete.drop,
            shared_sequence: delete.shared_sequence,
        };
        let json = serde_json::to_vec(&record).map_err(|e| WalError::TooLarge(format!("encoding a delete: {e}")))?;
        let len = u32::try_from(json.len()).map_err(|_| WalError::TooLarge("a delete over 4 GiB".into()))?;
        payload.extend_from_slice(&len.to_le_bytes());
        payload.extend_from_slice(&json);
        let mut payload_crc = crc32fast::Hasher::new();
        payload_crc.update(&payload);
        Ok(WalWrite { writes: Vec::new(), payload, payload_crc, sync: true, delete: Some(delete) })
    }
}

/// Puts a record's rows or delete into the buffer.
fn apply_to_buffer(buffer: &WriteBuffer, sequence: u64, write: &WalWrite) -> Result<(), String> {
    match &write.delete {
        Some(delete) => buffer.apply_delete(sequence, delete).map_err(|e| format!("applying a delete: {e}")),
        None => {
            buffer.apply(sequence, &write.writes);
            Ok(())
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), WalError> {
    let len = u16::try_from(s.len()).map_err(|_| WalError::TooLarge(format!("name too long: {s}")))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A decoded WAL record payload.
struct DecodedRecord {
    database: Arc<str>,
    tables: Vec<(Arc<str>, Vec<RecordBatch>)>,
    delete: Option<(Arc<str>, DeleteRecord)>,
}

fn decode_payload(payload: &[u8]) -> Result<DecodedRecord, String> {
    let mut cursor = Cursor::new(payload);
    let read_str = |cursor: &mut Cursor<&[u8]>| -> Result<Arc<str>, String> {
        let mut len = [0u8; 2];
        cursor.read_exact(&mut len).map_err(|e| e.to_string())?;
        let mut bytes = vec![0u8; u16::from_le_bytes(len) as usize];
        cursor.read_exact(&mut bytes).map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map(Arc::from).map_err(|e| e.to_string())
    };
    let database = read_str(&mut cursor)?;
    let mut count = [0u8; 4];
    cursor.read_exact(&mut count).map_err(|e| e.to_string())?;
    if u32::from_le_bytes(count) == DELETE_MARK {
        let table = read_str(&mut cursor)?;
        let mut len = [0u8; 4];
        cursor.read_exact(&mut len).map_err(|e| e.to_string())?;
        let start = cursor.position() as usize;
        let json =
            payload.get(start..start + u32::from_le_bytes(len) as usize).ok_or("a delete runs past the record")?;
        let record: DeleteRecord = serde_json::from_slice(json).map_err(|e| format!("a delete record: {e}"))?;
        return Ok(DecodedRecord { database, tables: Vec::new(), delete: Some((table, record)) });
    }
    let mut tables = Vec::new();
    for _ in 0..u32::from_le_bytes(count) {
        let table = read_str(&mut cursor)?;
        let mut len = [0u8; 4];
        cursor.read_exact(&mut len).map_err(|e| e.to_string())?;
        let start = cursor.position() as usize;
        let end = start + u32::from_le_bytes(len) as usize;
        let ipc = payload.get(start..end).ok_or("IPC stream runs past the record")?;
        let reader = StreamReader::try_new(Cursor::new(ipc), None).map_err(|e| e.to_string())?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        tables.push((table, batches));
        cursor.set_position(end as u64);
    }
    Ok(DecodedRecord { database, tables, delete: None })
}

enum Command {
    Write(WalWrite, oneshot::Sender<Result<u64, WalError>>),
    Snapshot(oneshot::Sender<Result<Option<Arc<Snapshot>>, WalError>>),
    Truncate(u64, oneshot::Sender<u64>),
    Close(oneshot::Sender<()>),
}

struct Segment {
    first_sequence: u64,
    path: PathBuf,
}

fn segment_path(dir: &Path, first_sequence: u64) -> PathBuf {
    dir.join(format!("{first_sequence:020}.wal"))
}

/// What replay found.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayReport {
    /// Segments read.
    pub segments: usize,
    /// Records read.
    pub records: u64,
    /// Rows put back into the buffer.
    pub rows_replayed: u64,
    /// Rows skipped because Parquet files already hold them.
    pub rows_skipped: u64,
    /// Deletes applied again.
    pub deletes: u64,
    /// Bytes cut off the end of the last segment as a torn tail: a torn
    /// record, and any whole records after it that were appended since the
    /// last fsync.
    pub torn_bytes: u64,
    /// Every record up to this sequence was persisted before the restart
    /// (its segment is gone): the deletes up to it need no more WAL.
    pub persisted_through: u64,
}

/// Settings of the WAL.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// A segment is closed once it grows past this many bytes.
    pub segment_bytes: u64,
    /// Most writes waiting for the WAL thread at once; further writers wait.
    pub queue_depth: usize,
}

/// The handle through which writes reach the WAL thread.
#[derive(Debug)]
pub struct Wal {
    sender: mpsc::Sender<Command>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Why the WAL stopped, once an I/O error stopped it.
    failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl Wal {
    /// Replays the WAL under `dir` on `disk` into `buffer`, then starts the
    /// WAL thread.
    pub async fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        catalog: &dyn Catalog,
        buffer: Arc<WriteBuffer>,
        metrics: Arc<Metrics>,
        options: WalOptions,
    ) -> Result<(Wal, ReplayReport), WalError> {
        create_dir_all_synced(disk.as_ref(), dir).map_err(|e| io_error(dir, e))?;
        let mut segments = list_segments(disk.as_ref(), dir)?;
        // Segments at the end that never held a record (a rotation that
        // failed, or a crash before a new segment's header was durable) are
        // dropped, so that the one before them is read as the last: a crash
        // may have torn its tail. Their first sequences stay used.
        let mut claimed = 0;
        let mut dropped = false;
        while let Some(last) = segments.last() {
            let bytes = disk.read(&last.path).map_err(|e| io_error(&last.path, e))?;
            if !never_held_a_record(&bytes) {
                break;
            }
            claimed = last.first_sequence.saturating_sub(1).max(claimed);
            match disk.remove_file(&last.path) {
                Ok(()) => dropped = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&last.path, e)),
            }
            segments.pop();
        }
        if dropped {
            disk.sync_dir(dir).map_err(|e| io_error(dir, e))?;
        }
        let mut report = ReplayReport { segments: segments.len(), ..Default::default() };
        let mut last_sequence = 0;
        let segment_count = segments.len();
        for (index, segment) in segments.iter().enumerate() {
            let is_last = index + 1 == segment_count;
            let records = read_segment(disk.as_ref(), &segment.path, segment.first_sequence, is_last, &mut report)?;
            for record in records {
                replay_record(record.sequence, &record.payload, catalog, &buffer, &mut report).await.map_err(
                    |message| WalError::Corrupt {
                        path: segment.path.display().to_string(),
                        offset: record.offset as u64,
                        message,
                    },
                )?;
                last_sequence = last_sequence.max(record.sequence);
                report.records += 1;
            }
        }
        // Never reuse a sequence a catalog entry already claims to cover.
        let next_sequence = last_sequence
            .max(claimed)
            .max(catalog.max_wal_sequence())
            .max(segments.last().map_or(0, |s| s.first_sequence.saturating_sub(1)))
            .checked_add(1)
            .ok_or_else(|| WalError::Replay("WAL sequence numbers are exhausted".into()))?;
        if segments.last().is_some_and(|s| s.first_sequence == next_sequence) {
            // An empty last segment: it is reopened below.
            segments.pop();
        }
        let active = open_segment(disk.as_ref(), dir, next_sequence)?;
        segments.push(Segment { first_sequence: next_sequence, path: active.1.clone() });
        // Segments go only once a persisted snapshot covers every record in them.
        report.persisted_through = segments.first().map_or(next_sequence, |s| s.first_sequence).saturating_sub(1);

        let (sender, receiver) = mpsc::channel(options.queue_depth.max(1));
        let failure = Arc::new(std::sync::Mutex::new(None));
        let thread_state = WalThread {
            failure: Arc::clone(&failure),
            disk,
            dir: dir.to_path_buf(),
            file: active.0,
            file_path: active.1,
            file_bytes: HEADER.len() as u64,
            synced_bytes: HEADER.len() as u64,
            unsynced: false,
            segments,
            next_sequence,
            buffer,
            metrics,
            options,
        };
        let thread = std::thread::Builder::new()
            .name("hourglass-wal".into())
            .spawn(move || thread_state.run(receiver))
            .map_err(|e| io_error(dir, e))?;
        Ok((Wal { sender, thread: std::sync::Mutex::new(Some(thread)), failure }, report))
    }

    /// Appends a write; resolves with its sequence once it is durable (or, for
    /// `no_sync`, once it is written and buffered).
    pub async fn write(&self, write: WalWrite) -> Result<u64, WalError> {
        let (reply, answer) = oneshot::channel();
        self.sender.send(Command::Write(write, reply)).await.map_err(|_| WalError::Closed)?;
        answer.await.map_err(|_| WalError::Closed)?
    }

    /// Why the WAL takes no more writes, if an I/O error stopped it.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Rotates to a new segment and takes the buffer as a snapshot.
    pub async fn snapshot(&self) -> Result<Option<Arc<Snapshot>>, WalError> {
        let (reply, answer) = oneshot::channel();
        self.sender.send(Command::Snapshot(reply)).await.map_err(|_| WalError::Closed)?;
        answer.await.map_err(|_| WalError::Closed)?
    }

    /// Deletes the segments whose records all have sequences up to
    /// `sequence`. Answers the sequence through which no record is left in
    /// the WAL, durably (the directory is synced): what a replay can no
    /// longer bring back. It may be below `sequence` (the active segment
    /// stays, a deletion may fail).
    pub async fn truncate_through(&self, sequence: u64) -> Result<u64, WalError> {
        let (reply, answer) = oneshot::channel();
        self.sender.send(Command::Truncate(sequence, reply)).await.map_err(|_| WalError::Closed)?;
        answer.await.map_err(|_| WalError::Closed)
    }

    /// Answers every queued write, fsyncs, and stops the WAL thread. Later writes
    /// fail with [`WalError::Closed`].
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.sender.send(Command::Close(reply)).await.is_ok() {
            let _ = answer.await;
        }
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn list_segments(disk: &dyn Disk, dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    for entry in disk.read_dir(dir).map_err(|e| io_error(dir, e))? {
        if let Some(first) = entry.name.strip_suffix(".wal").and_then(|n| n.parse::<u64>().ok()) {
            segments.push(Segment { first_sequence: first, path: entry.path });
        }
    }
    segments.sort_by_key(|s| s.first_sequence);
    Ok(segments)
}

/// Creates the segment that starts at `first_sequence`, its header durable
/// before any record goes in: a segment holding records always has one.
fn open_segment(disk: &dyn Disk, dir: &Path, first_sequence: u64) -> Result<(Box<dyn DiskFile>, PathBuf), WalError> {
    let path = segment_path(dir, first_sequence);
    let created = (|| {
        let mut file = disk.create(&path)?;
        file.write_all(HEADER)?;
        file.sync_all()?;
        disk.sync_dir(dir)?;
        Ok(file)
    })();
    match created {
        Ok(file) => Ok((file, path.clone())),
        Err(e) => {
            // What is left holds no record; replay reads it as empty, and
            // drops it when it is the last.
            if disk.remove_file(&path).is_ok() {
                let _ = disk.sync_dir(dir);
            }
            Err(WalError::refused("start a segment", &path, &e))
        }
    }
}

/// Whether a segment's bytes show it never held a record: no more than its
/// header, or the start of one, or zeros where a crash came before the
/// header was on the device. Records go in only after the header's fsync,
/// so a segment that held one has its whole header.
fn never_held_a_record(bytes: &[u8]) -> bool {
    bytes.len() <= HEADER.len()
        && (HEADER.starts_with(bytes) || HEADER_V1.starts_with(bytes) || bytes.iter().all(|b| *b == 0))
}

/// The two layouts of a record, told apart by the segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordFormat {
    /// Records without `synced` (segments of version 1).
    V1,
    /// Records with `synced`.
    V2,
}

impl RecordFormat {
    fn header_len(self) -> usize {
        match self {
            RecordFormat::V1 => RECORD_HEADER_V1,
            RecordFormat::V2 => RECORD_HEADER,
        }
    }
}

/// One record read back from a segment.
struct ReadRecord {
    offset: usize,
    sequence: u64,
    /// Bytes of the segment that were durable when the record was appended
    /// (none for a version 1 record).
    synced: Option<u64>,
    payload: Vec<u8>,
}

impl ReadRecord {
    /// Where the next record starts.
    fn end(&self, format: RecordFormat) -> usize {
        self.offset + format.header_len() + self.payload.len()
    }
}

/// The record header this version writes: length, checksum, sequence, and
/// `synced`, the bytes of the segment that are durable as the record goes in.
fn record_header(payload_len: u32, payload_crc: &crc32fast::Hasher, sequence: u64, synced: u64) -> [u8; RECORD_HEADER] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&sequence.to_le_bytes());
    crc.update(&synced.to_le_bytes());
    crc.combine(payload_crc);
    let mut header = [0u8; RECORD_HEADER];
    header[0..4].copy_from_slice(&payload_len.to_le_bytes());
    header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    header[8..16].copy_from_slice(&sequence.to_le_bytes());
    header[16..24].copy_from_slice(&synced.to_le_bytes());
    header
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The record at `offset`, if a whole one with a valid checksum is there.
fn record_at(bytes: &[u8], offset: usize, format: RecordFormat) -> Result<ReadRecord, &'static str> {
    let header = bytes.get(offset..offset + format.header_len()).ok_or("truncated record header")?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let start = offset + format.header_len();
    let payload = bytes.get(start..start + len).ok_or("truncated record")?;
    let mut hasher = crc32fast::Hasher::new();
    // The sequence, and in version 2 `synced` after it.
    hasher.update(&header[8..]);
    hasher.update(payload);
    if hasher.finalize() != crc {
        return Err("checksum mismatch");
    }
    let synced = (format == RecordFormat::V2).then(|| u64_at(header, 16));
    if synced.is_some_and(|synced| synced > offset as u64) {
        // Only bytes before a record can have been durable when it went in.
        return Err("durable length past the record");
    }
    Ok(ReadRecord { offset, sequence: u64_at(header, 8), synced, payload: payload.to_vec() })
}

/// A whole record found after a bad one: where it is, its sequence, and
/// what it says was durable when it went in.
struct WholeRecord {
    offset: usize,
    sequence: u64,
    synced: Option<u64>,
}

/// The whole records that follow a bad one at `bad`, found by trying every
/// offset after it (a torn record's length cannot be trusted to skip it).
/// `before` is the sequence of the last good record before it, or one less
/// than the segment's first sequence; a record of this segment has a
/// sequence after it, which filters most offsets before their checksum is
/// computed.
fn records_after(bytes: &[u8], bad: usize, before: u64, format: RecordFormat) -> Vec<WholeRecord> {
    let mut found = Vec::new();
    let mut at = bad + 1;
    while at + format.header_len() <= bytes.len() {
        let plausible = u64_at(bytes, at + 8).wrapping_sub(before).wrapping_sub(1) < 1 << 32;
        match plausible.then(|| record_at(bytes, at, format)) {
            Some(Ok(record)) => {
                at = record.end(format);
                found.push(WholeRecord { offset: record.offset, sequence: record.sequence, synced: record.synced });
            }
            _ => at += 1,
        }
    }
    found
}

/// Reads the records of one segment, whose records have sequences from
/// `first_sequence` on.
///
/// A bad record is a torn write only when it is in the last segment and every
/// whole record after it was appended while the bad bytes were not durable
/// (by its `synced`; a version 1 segment cannot say, so there no whole record
/// may follow): a crash during the last appends since the last fsync, none of
/// which was acknowledged but `no_sync` writes. Then the tail is cut off,
/// after its bytes are saved beside the segment as `<segment>.torn-<offset>`.
/// Anything else is corruption, and replay stops with an error rather than
/// drop acknowledged writes.
fn read_segment(
    disk: &dyn Disk,
    path: &Path,
    first_sequence: u64,
    is_last: bool,
    report: &mut ReplayReport,
) -> Result<Vec<ReadRecord>, WalError> {
    let bytes = disk.read(path).map_err(|e| io_error(path, e))?;
    let corrupt = |offset: usize, message: String| WalError::Corrupt {
        path: path.display().to_string(),
        offset: offset as u64,
        message,
    };
    if never_held_a_record(&bytes) {
        // Such a segment may be followed by others when its removal was
        // lost in a crash.
        return Ok(Vec::new());
    }
    let format = match bytes.get(..HEADER.len()) {
        Some(header) if header == HEADER.as_slice() => RecordFormat::V2,
        Some(header) if header == HEADER_V1.as_slice() => RecordFormat::V1,
        Some(header) if header[..7] == HEADER[..7] => {
            return Err(WalError::Replay(format!(
                "WAL segment {} is of version {}, newer than this HourglassDB reads (1 and 2): start the \
                 release that wrote it, and let it persist its WAL before going back to this one",
                path.display(),
                header[7]
            )))
        }
        _ => return Err(corrupt(0, "missing segment header".into())),
    };
    let mut records: Vec<ReadRecord> = Vec::new();
    let mut offset = HEADER.len();
    while offset < bytes.len() {
        match record_at(&bytes, offset, format) {
            Ok(record) => {
                offset = record.end(format);
                records.push(record);
            }
            Err(problem) => {
                if !is_last {
                    return Err(corrupt(offset, problem.into()));
                }
                // A whole record after the bad bytes is a torn tail's only
                // if it went in while those bytes were not durable: then its
                // fsync never finished, and it was never acknowledged. A
                // version 1 record does not say, so it is corruption.
                let before = records.last().map_or(first_sequence.saturating_sub(1), |r| r.sequence);
                let after = records_after(&bytes, offset, before, format);
                if let Some(next) = after.iter().find(|r| r.synced.is_none_or(|synced| synced > offset as u64)) {
                    let why = match next.synced {
                        Some(synced) => format!("bytes up to {synced} were durable when it was written"),
                        None => "a version 1 segment cannot tell a torn tail from damage".into(),
                    };
                    return Err(corrupt(
                        offset,
                        format!("{problem}, and a valid record follows at byte {}: {why}", next.offset),
                    ));
                }
                let torn = &bytes[offset..];
                let saved = path.with_extension(format!("wal.torn-{offset}"));
                crate::storage::fs::write_atomic_bytes(disk, &saved, torn).map_err(|e| io_error(&saved, e.into()))?;
                let whole_records_dropped = after.len();
                let dropped_sequences = match (after.first(), after.last()) {
                    (Some(first), Some(last)) => format!("{}..={}", first.sequence, last.sequence),
                    _ => "none".to_owned(),
                };
                tracing::warn!(
                    segment = %path.display(),
                    offset,
                    torn_bytes = torn.len(),
                    whole_records_dropped,
                    dropped_sequences,
                    saved = %saved.display(),
                    "cutting off a torn tail of the WAL ({problem}): appended after the last fsync, so never \
                     acknowledged (but for no_sync writes)"
                );
                let mut file = disk.open_write(path).map_err(|e| io_error(path, e))?;
                file.truncate_to(offset as u64).map_err(|e| io_error(path, e))?;
                file.sync_all().map_err(|e| io_error(path, e))?;
                report.torn_bytes += torn.len() as u64;
                break;
            }
        }
    }
    Ok(records)
}

async fn replay_record(
    sequence: u64,
    payload: &[u8],
    catalog: &dyn Catalog,
    buffer: &WriteBuffer,
    report: &mut ReplayReport,
) -> Result<(), String> {
    let record = decode_payload(payload)?;
    // Of a table dropped after this record: its rows are gone, and its
    // columns may clash with those of the table of that name now. (The
    // drop's own record goes on: the catalog finishes a drop it began.)
    let dropped_later = |table: &str| catalog.dropped(&record.database, table).is_some_and(|at| at > sequence);
    if let Some((table, delete)) = record.delete {
        report.deletes += 1;
        if dropped_later(&table) {
            return Ok(());
        }
        let buffered = BufferedDelete {
            database: Arc::clone(&record.database),
            table: Arc::clone(&table),
            predicate: delete.predicate.clone(),
            issued_at: delete.issued_at,
            drop: delete.drop,
            shared_sequence: delete.shared_sequence,
        };
        buffer.apply_delete(sequence, &buffered).map_err(|e| format!("replaying a delete: {e}"))?;
        // Recorded again in case the crash came before the catalog had it
        // (a shared delete's tombstone went to the catalog first).
        if delete.drop {
            catalog.drop_table(&record.database, &table, sequence).await.map_err(|e| e.to_string())?;
        } else if delete.shared_sequence.is_none() {
            let tombstone =
                Tombstone { sequence, issued_at: delete.issued_at, predicate: delete.predicate, shared: false };
            catalog.add_tombstone(&record.database, &table, tombstone, usize::MAX).await.map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    let mut writes = Vec::new();
    for (table, batches) in record.tables {
        if dropped_later(&table) {
            report.rows_skipped += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            continue;
        }
        for batch in batches {
            // The schema was committed before the record was written; adding the
            // columns again is a no-op unless the schema file was lost.
            let columns: Vec<Column> = batch
                .schema()
                .fields()
                .iter()
                .filter_map(|f| {
                    let column_type = ColumnType::from_data_type(f.data_type())?;
                    (column_type != ColumnType::Time).then(|| Column { name: f.name().as_str().into(), column_type })
                })
                .collect();
            catalog.add_columns(&record.database, &table, &columns, usize::MAX).await.map_err(|e| e.to_string())?;
            for (partition, part) in split_by_partition(&batch).map_err(|e| e.to_string())? {
                if catalog.partition_wal_sequence(&record.database, &table, partition) >= sequence {
                    report.rows_skipped += part.num_rows() as u64;
                    continue;
                }
                report.rows_replayed += part.num_rows() as u64;
                writes.push(BufferedWrite {
                    database: Arc::clone(&record.database),
                    table: Arc::clone(&table),
                    partition,
                    batch: part,
                });
            }
        }
    }
    buffer.apply(sequence, &writes);
    Ok(())
}

struct WalThread {
    /// Shared with [`Wal`]: why the thread stopped taking writes.
    failure: Arc<std::sync::Mutex<Option<String>>>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    file: Box<dyn DiskFile>,
    file_path: PathBuf,
    /// Bytes written to the active segment.
    file_bytes: u64,
    /// Bytes of the active segment an fsync made durable: where a failed
    /// append or fsync cuts it back to.
    synced_bytes: u64,
    unsynced: bool,
    segments: Vec<Segment>,
    next_sequence: u64,
    buffer: Arc<WriteBuffer>,
    metrics: Arc<Metrics>,
    options: WalOptions,
}

type PendingWrite = (WalWrite, oneshot::Sender<Result<u64, WalError>>);

impl WalThread {
    fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut group: Vec<PendingWrite> = Vec::new();
        let mut closing = None;
        while let Some(first) = receiver.blocking_recv() {
            let mut command = Some(first);
            loop {
                match command.take() {
                    Some(Command::Write(write, reply)) => group.push((write, reply)),
                    Some(Command::Close(reply)) => {
                        closing = Some(reply);
                        break;
                    }
                    Some(other) => {
                        self.commit(&mut group);
                        self.handle(other);
                    }
                    None => {}
                }
                if group.len() >= MAX_GROUP {
                    break;
                }
                match receiver.try_recv() {
                    Ok(next) => command = Some(next),
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
            if closing.is_some() {
                break;
            }
        }
        receiver.close();
        while let Ok(command) = receiver.try_recv() {
            if let Command::Write(_, reply) = command {
                let _ = reply.send(Err(WalError::Closed));
            }
        }
        if self.unsynced {
            let _ = self.file.sync_data();
        }
        if let Some(reply) = closing {
            let _ = reply.send(());
        }
    }

    /// Why the thread takes no more writes, once it failed.
    fn failed(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn fail(&mut self, error: &WalError) {
        tracing::error!(%error, "the WAL failed; writes are refused until restart");
        *self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
    }

    /// Appends, fsyncs, buffers and answers a group of writes. A write
    /// becomes visible to queries (enters the buffer) only once it is as
    /// durable as it asked: `no_sync` writes right after the append, the
    /// others after the fsync, so a failed fsync leaves no row visible that
    /// a restart would lose.
    fn commit(&mut self, group: &mut Vec<PendingWrite>) {
        if group.is_empty() {
            return;
        }
        if let Some(failed) = self.failed() {
            for (_, reply) in group.drain(..) {
                let _ = reply.send(Err(WalError::Failed(failed.clone())));
            }
            return;
        }
        // `no_sync` writes take the group's first sequences: they enter the
        // buffer before the fsync, and the buffer takes records in sequence
        // order. Writes of one group arrived together, so any order is theirs.
        group.sort_by_key(|(write, _)| write.sync);
        let mut bytes = Vec::with_capacity(group.iter().map(|(w, _)| w.payload.len() + RECORD_HEADER).sum());
        debug_assert!(self.synced_bytes <= self.file_bytes, "the durable part of a segment is part of it");
        let first = self.next_sequence;
        let Some(next) = first.checked_add(group.len() as u64) else {
            let error = WalError::Failed("WAL sequence numbers are exhausted".into());
            self.fail(&error);
            for (_, reply) in group.drain(..) {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        };
        self.next_sequence = next;
        for (index, (write, _)) in group.iter().enumerate() {
            let sequence = first + index as u64;
            // `encode` checked that the payload fits in a u32.
            let len = write.payload.len() as u32;
            bytes.extend_from_slice(&record_header(len, &write.payload_crc, sequence, self.synced_bytes));
            bytes.extend_from_slice(&write.payload);
        }
        if let Err(e) = self.file.write_all(&bytes) {
            // Part of the group may be in the file (and may reach the device
            // on its own): cut it back to where the group began and make the
            // cut durable, so the refused records cannot come back.
            let error = match self.cut_back(self.file_bytes).map_err(|cut| format!("cutting back: {cut}")) {
                Ok(()) => match self.sync() {
                    Ok(()) => WalError::refused("append", &self.file_path, &e),
                    Err(error) => error,
                },
                Err(cut) => {
                    let error = WalError::SyncFailed {
                        path: self.file_path.display().to_string(),
                        message: format!("{e}; {cut}"),
                    };
                    self.fail(&error);
                    error
                }
            };
            self.metrics.wal_writes_refused.add(group.len() as u64);
            for (_, reply) in group.drain(..) {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        }
        self.file_bytes += bytes.len() as u64;
        self.unsynced = true;
        self.metrics.wal_records.add(group.len() as u64);
        self.metrics.wal_bytes.add(bytes.len() as u64);

        let mut durable = Vec::with_capacity(group.len());
        for (index, (write, reply)) in group.drain(..).enumerate() {
            let sequence = first + index as u64;
            if write.sync {
                durable.push((write, reply, sequence));
            } else {
                let _ = reply.send(self.apply(sequence, &write));
            }
        }
        if !durable.is_empty() {
            crate::faults::stall("wal-before-fsync");
            if let Err(error) = self.sync() {
                self.metrics.wal_writes_refused.add(durable.len() as u64);
                for (_, reply, _) in durable {
                    let _ = reply.send(Err(error.clone()));
                }
                return;
            }
            for (write, reply, sequence) in durable {
                let _ = reply.send(self.apply(sequence, &write));
            }
        }
        if self.file_bytes >= self.options.segment_bytes {
            if let Err(error) = self.rotate() {
                // The active segment only grows past its size; the next group
                // tries again.
                tracing::warn!(%error, "could not start a new WAL segment");
            }
        }
    }

    /// Puts an appended record into the buffer. A delete that cannot be
    /// applied (a fault of the server: its predicate reads only the key
    /// columns) stops the log, since rows it should have removed would stay
    /// visible.
    fn apply(&mut self, sequence: u64, write: &WalWrite) -> Result<u64, WalError> {
        match apply_to_buffer(&self.buffer, sequence, write) {
            Ok(()) => Ok(sequence),
            Err(message) => {
                let error = WalError::SyncFailed { path: self.file_path.display().to_string(), message };
                self.fail(&error);
                Err(error)
            }
        }
    }

    /// Fsyncs the active segment. When the fsync fails, whatever it left of
    /// the records since the last good one is cut off and the cut made
    /// durable: then nothing written since that fsync can come back after a
    /// crash, so the writes waiting for this fsync are refused exactly, and
    /// the WAL goes on. `no_sync` writes since the last fsync lose their
    /// records, which is what they accepted; their rows are in the buffer.
    /// The failed fsync is never retried (after one, the kernel may have
    /// dropped the pages it could not write). Only if the cut fails too does
    /// the WAL stop.
    fn sync(&mut self) -> Result<(), WalError> {
        let synced = match crate::faults::injected("wal-fsync", &self.file_path.to_string_lossy()) {
            Some(fault) => Err(fault),
            None => self.file.sync_data(),
        };
        let Err(e) = synced else {
            self.synced_bytes = self.file_bytes;
            self.unsynced = false;
            self.metrics.wal_fsyncs.add(1);
            return Ok(());
        };
        match self.cut_back(self.synced_bytes).and_then(|()| self.file.sync_all()) {
            Ok(()) => {
                self.unsynced = false;
                Err(WalError::refused("fsync", &self.file_path, &e))
            }
            Err(cut) => {
                let path = self.file_path.display().to_string();
                let error = WalError::SyncFailed { path, message: format!("{e}; cutting back: {cut}") };
                self.fail(&error);
                Err(error)
            }
        }
    }

    /// Cuts the active segment back to `len` bytes, the end of a whole record.
    fn cut_back(&mut self, len: u64) -> std::io::Result<()> {
        self.file.truncate_to(len)?;
        self.file_bytes = len;
        self.synced_bytes = self.synced_bytes.min(len);
        Ok(())
    }

    /// Starts a new segment once the active one is durable. A failure leaves
    /// the active segment in place, still taking writes.
    fn rotate(&mut self) -> Result<(), WalError> {
        if self.unsynced {
            self.sync()?;
        }
        let (file, path) = open_segment(self.disk.as_ref(), &self.dir, self.next_sequence)?;
        self.segments.push(Segment { first_sequence: self.next_sequence, path: path.clone() });
        self.file = file;
        self.file_path = path;
        self.file_bytes = HEADER.len() as u64;
        self.synced_bytes = HEADER.len() as u64;
        Ok(())
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Write(..) | Command::Close(_) => unreachable!("run() handles writes and close"),
            Command::Snapshot(reply) => {
                if let Some(failed) = self.failed() {
                    let _ = reply.send(Err(WalError::Failed(failed)));
                    return;
                }
                // A failed rotation refuses this snapshot only: the persister
                // asks again later.
                let result = (|| {
                    if self.file_bytes > HEADER.len() as u64 {
                        self.rotate()?;
                    }
                    Ok(self.buffer.take_snapshot())
                })();
                let _ = reply.send(result);
            }
            Command::Truncate(sequence, reply) => {
                // Segment i holds sequences [first_i, first_{i+1}); the active one stays.
                let mut keep_from = 0;
                for i in 0..self.segments.len().saturating_sub(1) {
                    if self.segments[i + 1].first_sequence.saturating_sub(1) <= sequence {
                        if let Err(e) = self.disk.remove_file(&self.segments[i].path) {
                            if e.kind() != std::io::ErrorKind::NotFound {
                                tracing::warn!(segment = %self.segments[i].path.display(), error = %e, "could not delete WAL segment");
                                break;
                            }
                        }
                        keep_from = i + 1;
                    } else {
                        break;
                    }
                }
                self.segments.drain(..keep_from);
                // Until the directory is synced, a crash may bring a deleted
                // segment back: nothing is gone for sure.
                let oldest = self.segments.first().map_or(0, |s| s.first_sequence);
                let gone = match self.disk.sync_dir(&self.dir) {
                    Ok(()) => oldest.saturating_sub(1),
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), error = %e, "could not sync the WAL directory");
                        0
                    }
                };
                let _ = reply.send(gone);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::storage::sim_disk::SimDisk;

    /// A segment of records with these payloads, sequences from `first`,
    /// each appended when the segment was durable up to `synced(offset)` for
    /// a record at `offset`.
    fn segment_from(
        first: u64,
        header: &[u8; 8],
        payloads: &[&[u8]],
        synced: impl Fn(usize) -> u64,
    ) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = header.to_vec();
        let mut offsets = Vec::new();
        for (index, payload) in payloads.iter().enumerate() {
            offsets.push(bytes.len());
            let sequence = first + index as u64;
            let mut payload_crc = crc32fast::Hasher::new();
            payload_crc.update(payload);
            if header == HEADER {
                bytes.extend_from_slice(&record_header(
                    payload.len() as u32,
                    &payload_crc,
                    sequence,
                    synced(bytes.len()),
                ));
            } else {
                let mut crc = crc32fast::Hasher::new();
                crc.update(&sequence.to_le_bytes());
                crc.combine(&payload_crc);
                bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                bytes.extend_from_slice(&crc.finalize().to_le_bytes());
                bytes.extend_from_slice(&sequence.to_le_bytes());
            }
            bytes.extend_from_slice(payload);
        }
        (bytes, offsets)
    }

    /// [`segment_from`] with sequences from 1.
    fn segment(header: &[u8; 8], payloads: &[&[u8]], synced: impl Fn(usize) -> u64) -> (Vec<u8>, Vec<usize>) {
        segment_from(1, header, payloads, synced)
    }

    /// Reads `bytes` as the last segment, whose sequences start at `first`, as replay does.
    fn read_from(first: u64, bytes: &[u8]) -> (Result<Vec<ReadRecord>, WalError>, ReplayReport, Vec<u8>) {
        let disk = SimDisk::new(1);
        let path = segment_path(Path::new("/"), first);
        let mut file = disk.create(&path).unwrap();
        file.write_all(bytes).unwrap();
        let mut report = ReplayReport::default();
        let records = read_segment(&disk, &path, first, true, &mut report);
        (records, report, disk.read(&path).unwrap())
    }

    fn read(bytes: &[u8]) -> (Result<Vec<ReadRecord>, WalError>, ReplayReport, Vec<u8>) {
        read_from(1, bytes)
    }

    const PAYLOADS: [&[u8]; 3] = [&[1; 40], &[2; 40], &[3; 40]];

    #[test]
    fn a_hole_before_records_of_the_same_unsynced_append_is_a_torn_tail() {
        // One group appended after the header's fsync; a power cut kept the
        // pages of its last two records but not of its first.
        let (mut bytes, offsets) = segment(HEADER, &PAYLOADS, |_| HEADER.len() as u64);
        bytes[offsets[0]..offsets[1]].fill(0);
        let (records, report, left) = read(&bytes);
        assert!(records.unwrap().is_empty());
        assert_eq!(report.torn_bytes, (bytes.len() - offsets[0]) as u64);
        assert_eq!(left, HEADER, "the tail is cut off from the hole on");
    }

    #[test]
    fn a_hole_in_bytes_durable_before_a_later_record_is_corruption() {
        // Each record went in after the one before it was fsynced.
        let (mut bytes, offsets) = segment(HEADER, &PAYLOADS, |offset| offset as u64);
        bytes[offsets[1] + 30] ^= 0x55;
        let (records, _, left) = read(&bytes);
        let error = records.err().expect("corruption").to_string();
        assert!(error.contains("a valid record follows") && error.contains("were durable"), "{error}");
        assert_eq!(left, bytes, "a corrupt segment is left as it is");
    }

    #[test]
    fn damage_to_the_first_record_of_a_segment_of_high_sequences_is_still_found() {
        // Past 2^32 writes, the records after the damage must still be found
        // by their sequences, which follow the segment's first.
        let first = (1 << 33) + 5;
        let (mut bytes, offsets) = segment_from(first, HEADER, &PAYLOADS, |offset| offset as u64);
        bytes[offsets[0] + 30] ^= 0x55;
        let error = read_from(first, &bytes).0.err().expect("corruption").to_string();
        assert!(error.contains(&format!("a valid record follows at byte {}", offsets[1])), "{error}");
    }

    #[test]
    fn a_segment_of_a_newer_version_is_refused_by_name() {
        let mut header = *HEADER;
        header[7] = 3;
        let (bytes, _) = segment(&header, &PAYLOADS, |_| 8);
        let error = read(&bytes).0.err().expect("refused").to_string();
        assert!(error.contains("version 3, newer than this HourglassDB reads"), "{error}");
    }

    #[test]
    fn version_1_segments_are_read_and_a_hole_in_them_is_corruption() {
        let (bytes, _) = segment(HEADER_V1, &PAYLOADS, |_| 0);
        let (records, _, _) = read(&bytes);
        let records = records.unwrap();
        assert_eq!(records.iter().map(|r| r.sequence).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(records[2].payload, PAYLOADS[2]);
        assert!(records.iter().all(|r| r.synced.is_none()));

        let (mut bytes, offsets) = segment(HEADER_V1, &PAYLOADS, |_| 0);
        bytes[offsets[0]..offsets[1]].fill(0);
        let error = read(&bytes).0.err().expect("corruption").to_string();
        assert!(error.contains("version 1"), "{error}");
    }

    #[test]
    fn a_record_claiming_durable_bytes_past_itself_is_not_a_record() {
        let (bytes, offsets) = segment(HEADER, &PAYLOADS[..1], |offset| offset as u64 + 1);
        assert_eq!(record_at(&bytes, offsets[0], RecordFormat::V2).err(), Some("durable length past the record"));
    }
}
