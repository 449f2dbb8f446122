//! The rows of `COPY ... FROM STDIN` data, decoded from the bytes as they
//! come, in any pieces: text, CSV or binary into chunks of text columns. No
//! I/O happens here, so the load (`CopyIn`) writes what this returns, and the
//! fuzz targets and `tests/it/fuzz.rs` drive it with arbitrary bytes.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion_postgres::pgwire::error::PgWireError;

use super::binary::{BinaryReader, Tuple};
use super::text::{self, LineScanner};
use super::{copy_error, Encoding, Format};
use crate::catalog::ColumnType;

/// Rows per chunk (one WAL record each).
const CHUNK_ROWS: usize = 16_384;
/// Text bytes buffered per chunk.
const CHUNK_BYTES: usize = 8 << 20;

/// Rows decoded together: one text column per COPY column.
#[derive(Debug)]
pub(crate) struct CopyChunk {
    /// The rows, every column `Utf8` (the write path casts them).
    pub(crate) batch: RecordBatch,
    /// The line (or binary row) number of the first row, from 1.
    pub(crate) first_line: u64,
}

/// Decodes COPY data into chunks of rows.
///
/// Bytes go in with [`CopyDecoder::push`]; [`CopyDecoder::next_chunk`] hands
/// out each full chunk, the last partial one at the end, and the first error
/// after the rows before it, so that the rows a client sent before a bad line
/// are written and the error names that line. After an error, or after the
/// end-of-data marker, nothing more is decoded.
pub(crate) struct CopyDecoder {
    format: Format,
    columns: Vec<String>,
    column_types: Vec<ColumnType>,
    max_line_bytes: usize,
    skip_header: bool,
    /// Bytes not yet decoded, from `start` on.
    pending: Vec<u8>,
    start: usize,
    scanner: LineScanner,
    binary: BinaryReader,
    builders: Vec<StringBuilder>,
    buffered_rows: usize,
    buffered_bytes: usize,
    /// Lines (or binary rows) read so far.
    line: u64,
    chunk_first_line: u64,
    /// `\.` or the binary trailer was seen: the rest is ignored.
    ended: bool,
    /// The first error, held until the rows before it are handed out.
    error: Option<PgWireError>,
    /// The error was handed out: the decoder is done.
    failed: bool,
}

/// Without the rows: a client's data has no place in logs.
impl std::fmt::Debug for CopyDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyDecoder")
            .field("format", &self.format)
            .field("columns", &self.columns)
            .field("pending_bytes", &self.pending.len().saturating_sub(self.start))
            .field("buffered_rows", &self.buffered_rows)
            .field("line", &self.line)
            .field("ended", &self.ended)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl CopyDecoder {
    /// A decoder of `format` for these columns (names and types, in the
    /// order the data has them). A line (or binary row) longer than
    /// `max_line_bytes` is an error.
    pub(crate) fn new(
        format: Format,
        columns: Vec<String>,
        column_types: Vec<ColumnType>,
        max_line_bytes: usize,
    ) -> CopyDecoder {
        debug_assert_eq!(columns.len(), column_types.len());
        CopyDecoder {
            skip_header: format.header,
            format,
            builders: columns.iter().map(|_| StringBuilder::new()).collect(),
            columns,
            column_types,
            max_line_bytes,
            pending: Vec::new(),
            start: 0,
            scanner: LineScanner::default(),
            binary: BinaryReader::default(),
            buffered_rows: 0,
            buffered_bytes: 0,
            line: 0,
            chunk_first_line: 1,
            ended: false,
            error: None,
            failed: false,
        }
    }

    /// The column names, in the order the data has them.
    pub(crate) fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Whether the data is binary (the format code of CopyInResponse).
    pub(crate) fn is_binary(&self) -> bool {
        self.format.encoding == Encoding::Binary
    }

    /// Whether nothing more will be decoded: the end marker was read, or an
    /// error was handed out.
    pub(crate) fn done(&self) -> bool {
        self.ended || self.failed
    }

    /// Takes the next piece of data (one CopyData message).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if !self.done() && self.error.is_none() {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// The next full chunk; with `at_end` (the client sent CopyDone), also the
    /// last partial one, and an error if the data stops inside a row. `None`
    /// when more data is needed (or, at the end, when all was handed out).
    pub(crate) fn next_chunk(&mut self, at_end: bool) -> Result<Option<CopyChunk>, PgWireError> {
        if self.failed {
            return Ok(None);
        }
        while !self.full() && !self.ended && self.error.is_none() {
            match self.take_one(at_end) {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    self.error = Some(error);
                    self.pending = Vec::new();
                    self.start = 0;
                    self.scanner = LineScanner::default();
                }
            }
        }
        if self.buffered_rows > 0 && (self.full() || at_end || self.ended || self.error.is_some()) {
            return self.take_chunk().map(Some);
        }
        match self.error.take() {
            Some(error) => {
                self.failed = true;
                Err(error)
            }
            None => Ok(None),
        }
    }

    fn full(&self) -> bool {
        self.buffered_rows >= CHUNK_ROWS || self.buffered_bytes >= CHUNK_BYTES
    }

    /// Decodes one line or row (or the header, or the end); `false` when the
    /// pending bytes hold none whole.
    fn take_one(&mut self, at_end: bool) -> Result<bool, PgWireError> {
        match self.format.encoding {
            Encoding::Binary => self.take_row(at_end),
            Encoding::Text | Encoding::Csv => self.take_line(at_end),
        }
    }

    fn take_line(&mut self, at_end: bool) -> Result<bool, PgWireError> {
        // The scanner keeps its place, so a long line sent in many small
        // messages costs its length, not its length squared.
        if let Some(end) = self.scanner.line_end(&self.pending, &self.format) {
            let (from, to) = (self.start, end);
            self.start = end + 1;
            self.scanner = LineScanner { scanned: self.start, quoted: false };
            self.with_pending(from, to, CopyDecoder::line)?;
            return Ok(true);
        }
        let rest = self.pending.len() - self.start;
        if at_end && rest > 0 {
            let (from, to) = (self.start, self.pending.len());
            self.start = to;
            self.scanner = LineScanner { scanned: to, quoted: false };
            self.with_pending(from, to, CopyDecoder::line)?;
            return Ok(true);
        }
        if rest > self.max_line_bytes {
            return Err(self.too_long(self.line + 1));
        }
        self.compact();
        Ok(false)
    }

    fn take_row(&mut self, at_end: bool) -> Result<bool, PgWireError> {
        match self.binary.next(&self.pending[self.start..], &self.column_types, self.max_line_bytes) {
            Ok(Tuple::Header(used)) => {
                if used > self.max_line_bytes {
                    return Err(self.too_long(self.line + 1));
                }
                self.start += used;
                Ok(true)
            }
            Ok(Tuple::Row(values, used)) => {
                self.start += used;
                self.line += 1;
                let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
                self.push_row(&values, used);
                Ok(true)
            }
            Ok(Tuple::TooLong(_)) => Err(self.too_long(self.line + 1)),
            Ok(Tuple::End(used)) => {
                self.start += used;
                self.ended = true;
                Ok(true)
            }
            Ok(Tuple::Incomplete) => {
                let rest = self.pending.len() - self.start;
                if at_end && rest > 0 {
                    return Err(copy_error(
                        "22P04",
                        format!("the binary COPY data ends inside row {} (or its header)", self.line + 1),
                    ));
                }
                if rest > self.max_line_bytes {
                    return Err(self.too_long(self.line + 1));
                }
                self.compact();
                Ok(false)
            }
            Err(message) => Err(copy_error("22P04", format!("row {}: {message}", self.line + 1))),
        }
    }

    /// Drops the bytes already decoded, keeping the scanner's place.
    fn compact(&mut self) {
        self.pending.drain(..self.start);
        self.scanner.scanned -= self.start.min(self.scanner.scanned);
        self.start = 0;
    }

    /// Runs `f` on the pending bytes `from..to` (which it cannot borrow
    /// while it changes the decoder).
    fn with_pending(
        &mut self,
        from: usize,
        to: usize,
        f: fn(&mut CopyDecoder, &[u8]) -> Result<(), PgWireError>,
    ) -> Result<(), PgWireError> {
        let pending = std::mem::take(&mut self.pending);
        let result = f(self, &pending[from..to]);
        self.pending = pending;
        result
    }

    /// Line (or row) `line` is longer than the bound. The same error
    /// whether the line came whole or in pieces.
    fn too_long(&self, line: u64) -> PgWireError {
        copy_error(
            "54000",
            format!("line {line} is longer than {} bytes (HOURGLASS_MAX_COPY_LINE_BYTES)", self.max_line_bytes),
        )
    }

    fn line(&mut self, line: &[u8]) -> Result<(), PgWireError> {
        self.line += 1;
        if line.len() > self.max_line_bytes {
            return Err(self.too_long(self.line));
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if std::mem::take(&mut self.skip_header) {
            return Ok(());
        }
        let at = |e: String| copy_error("22P04", format!("line {}: {e}", self.line));
        let values = if self.format.is_csv() {
            text::csv_fields(line, &self.format)
        } else {
            text::text_fields(line, &self.format)
        }
        .map_err(at)?;
        if values.len() != self.columns.len() {
            return Err(at(format!("expected {} columns, got {}", self.columns.len(), values.len())));
        }
        // Every value is checked before any is appended, so a bad value
        // leaves the columns of the rows before it aligned.
        let mut texts: Vec<Option<&str>> = Vec::with_capacity(values.len());
        for value in &values {
            texts.push(match value {
                None => None,
                Some(bytes) => Some(
                    std::str::from_utf8(bytes)
                        .map_err(|_| copy_error("22021", format!("line {}: the data is not valid UTF-8", self.line)))?,
                ),
            });
        }
        self.push_row(&texts, line.len());
        Ok(())
    }

    /// Appends one row of values, as many as there are columns.
    fn push_row(&mut self, values: &[Option<&str>], bytes: usize) {
        debug_assert_eq!(values.len(), self.builders.len());
        if self.buffered_rows == 0 {
            self.chunk_first_line = self.line;
        }
        for (builder, value) in self.builders.iter_mut().zip(values) {
            builder.append_option(*value);
        }
        self.buffered_rows += 1;
        self.buffered_bytes += bytes;
    }

    fn take_chunk(&mut self) -> Result<CopyChunk, PgWireError> {
        let fields: Vec<Field> = self.columns.iter().map(|c| Field::new(c, DataType::Utf8, true)).collect();
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| copy_error("XX000", format!("building the COPY batch: {e}")))?;
        Ok(CopyChunk { batch, first_line: self.chunk_first_line })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_debug_form_shows_no_row_data() {
        let mut decoder = CopyDecoder::new(Format::text(), vec!["host".into()], vec![ColumnType::Tag], 1 << 20);
        // No newline yet: the bytes wait, undecoded.
        decoder.push(b"secret-host-name");
        let shown = format!("{decoder:?}");
        // Neither as text nor as the bytes a derived Debug would list.
        assert!(!shown.contains("secret") && !shown.contains("115, 101, 99"), "{shown}");
        assert!(shown.contains("pending_bytes: 16"), "{shown}");
    }
}
