//! Process-wide counters, served at `/metrics` in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Line protocol lines accepted.
    pub lines_accepted: Counter,
    /// Line protocol lines rejected.
    pub lines_rejected: Counter,
    /// Request body bytes received by the write endpoints (after decompression).
    pub write_bytes: Counter,
    /// Rows acknowledged, from any front.
    pub rows_written: Counter,
    /// Deletes acknowledged (SQL `DELETE`).
    pub deletes: Counter,
    /// Write requests refused because the buffer was full.
    pub writes_refused_buffer_full: Counter,
    /// WAL records appended.
    pub wal_records: Counter,
    /// WAL bytes appended.
    pub wal_bytes: Counter,
    /// WAL fsyncs (one per group commit).
    pub wal_fsyncs: Counter,
    /// Writes the WAL refused after a failed append or fsync (a full disk,
    /// an I/O error), with their records cut off.
    pub wal_writes_refused: Counter,
    /// Parquet files written by the persister.
    pub persisted_files: Counter,
    /// Bytes of Parquet written by the persister.
    pub persisted_bytes: Counter,
    /// Rows written to Parquet by the persister.
    pub persisted_rows: Counter,
    /// Persist attempts that failed (and will be retried).
    pub persist_errors: Counter,
    /// Merges committed by the compactor.
    pub merges: Counter,
    /// Files those merges replaced.
    pub merged_files: Counter,
    /// Bytes of Parquet the merges wrote.
    pub merged_bytes_written: Counter,
    /// Files moved to the next storage layer.
    pub layer_moves: Counter,
    /// Files deleted by retention (the last layer's TTL).
    pub files_expired: Counter,
    /// Replaced, moved or expired files deleted after their grace period.
    pub files_deleted: Counter,
    /// Files no catalog entry named, deleted by the orphan sweep.
    pub orphans_deleted: Counter,
    /// Merges, moves and deletions that failed (and will be retried).
    pub compaction_errors: Counter,
}

/// Values read at the moment of a scrape, from the parts that hold them.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Bytes in the write buffer, not yet in Parquet.
    pub buffered_bytes: u64,
    /// Bytes the write path holds (buffer, writes in flight, sorted copies
    /// being persisted): what `HOURGLASS_MAX_BUFFER_BYTES` bounds.
    pub write_held_bytes: u64,
    /// Queries running.
    pub queries_running: u64,
    /// Queries spread over a cluster's readers since the start.
    pub queries_spread: u64,
    /// Queries waiting for a slot.
    pub queries_queued: u64,
    /// Milliseconds since the view of a shared catalog last matched Redis (0
    /// for the local catalog).
    pub catalog_lag_ms: u64,
    /// Memory the last-value cache holds.
    pub last_value_cache_bytes: u64,
    /// Queries the last-value cache answered (a counter, kept by the cache).
    pub last_value_cache_hits: u64,
    /// Times a table's last-value cache was built by reading the table (a counter).
    pub last_value_cache_builds: u64,
    /// Files the catalog lists, and their bytes, by compaction level.
    pub files_by_level: std::collections::BTreeMap<u8, (u64, u64)>,
}

impl Metrics {
    /// Renders every metric, with the gauges read now.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter("hourglass_lines_accepted_total", "Line protocol lines accepted.", self.lines_accepted.get());
        counter("hourglass_lines_rejected_total", "Line protocol lines rejected.", self.lines_rejected.get());
        counter("hourglass_write_bytes_total", "Write request body bytes, decompressed.", self.write_bytes.get());
        counter("hourglass_rows_written_total", "Rows acknowledged.", self.rows_written.get());
        counter("hourglass_deletes_total", "Deletes acknowledged.", self.deletes.get());
        counter(
            "hourglass_writes_refused_buffer_full_total",
            "Writes refused with 503 because the write buffer was full.",
            self.writes_refused_buffer_full.get(),
        );
        counter("hourglass_wal_records_total", "WAL records appended.", self.wal_records.get());
        counter("hourglass_wal_bytes_total", "WAL bytes appended.", self.wal_bytes.get());
        counter("hourglass_wal_fsyncs_total", "WAL fsyncs (group commits).", self.wal_fsyncs.get());
        counter(
            "hourglass_wal_writes_refused_total",
            "Writes refused because the WAL's append or fsync failed (a full disk, an I/O error); none was kept.",
            self.wal_writes_refused.get(),
        );
        counter(
            "hourglass_persisted_files_total",
            "Parquet files written from the buffer.",
            self.persisted_files.get(),
        );
        counter(
            "hourglass_persisted_bytes_total",
            "Parquet bytes written from the buffer.",
            self.persisted_bytes.get(),
        );
        counter(
            "hourglass_persisted_rows_total",
            "Rows written to Parquet from the buffer.",
            self.persisted_rows.get(),
        );
        counter("hourglass_persist_errors_total", "Failed persist attempts.", self.persist_errors.get());
        counter("hourglass_merges_total", "Merges committed by the compactor.", self.merges.get());
        counter("hourglass_merged_files_total", "Files replaced by merges.", self.merged_files.get());
        counter("hourglass_merged_bytes_total", "Parquet bytes written by merges.", self.merged_bytes_written.get());
        counter("hourglass_layer_moves_total", "Files moved to the next storage layer.", self.layer_moves.get());
        counter("hourglass_files_expired_total", "Files deleted by retention.", self.files_expired.get());
        counter(
            "hourglass_files_deleted_total",
            "Replaced, moved or expired files deleted after the grace period.",
            self.files_deleted.get(),
        );
        counter(
            "hourglass_orphan_files_deleted_total",
            "Files no catalog entry named, deleted by the sweep.",
            self.orphans_deleted.get(),
        );
        counter(
            "hourglass_compaction_errors_total",
            "Failed merges, moves and deletions (retried).",
            self.compaction_errors.get(),
        );
        let mut gauge = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        gauge("hourglass_buffered_bytes", "Bytes in the write buffer, not yet in Parquet.", gauges.buffered_bytes);
        gauge(
            "hourglass_write_held_bytes",
            "Bytes the write path holds: the buffer, writes in flight and sorted copies being persisted (HOURGLASS_MAX_BUFFER_BYTES).",
            gauges.write_held_bytes,
        );
        if let Some(resident) = resident_bytes() {
            gauge("process_resident_memory_bytes", "Resident memory of the server process.", resident);
        }
        gauge("hourglass_queries_running", "Queries running.", gauges.queries_running);
        gauge(
            "hourglass_catalog_lag_ms",
            "Milliseconds since this process's view of the shared (Redis) catalog last matched it; 0 for the local catalog.",
            gauges.catalog_lag_ms,
        );
        gauge(
            "hourglass_queries_queued",
            "Queries waiting for a slot (HOURGLASS_MAX_CONCURRENT_QUERIES).",
            gauges.queries_queued,
        );
        gauge(
            "hourglass_last_value_cache_bytes",
            "Memory the last-value cache holds (HOURGLASS_LAST_VALUE_CACHE_BYTES).",
            gauges.last_value_cache_bytes,
        );
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(
            "hourglass_queries_spread_total",
            "Queries this reader spread over the cluster's readers (distributed queries).",
            gauges.queries_spread,
        );
        counter(
            "hourglass_last_value_cache_hits_total",
            "Scans answered from the last-value cache.",
            gauges.last_value_cache_hits,
        );
        counter(
            "hourglass_last_value_cache_builds_total",
            "Times a table's last-value cache was built by reading the table.",
            gauges.last_value_cache_builds,
        );
        for (name, help, pick) in [
            ("hourglass_files", "Files the catalog lists, by compaction level.", 0),
            ("hourglass_file_bytes", "Bytes of the files the catalog lists, by compaction level.", 1),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (level, (files, bytes)) in &gauges.files_by_level {
                let _ = writeln!(out, "{name}{{level=\"{level}\"}} {}", if pick == 0 { files } else { bytes });
            }
        }
        out
    }
}

/// The process's resident memory, from `VmRSS` in `/proc/self/status`
/// (Linux only; kB there are KiB, whatever the page size).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
