//! `COPY`: loading a measurement from the client (`COPY <measurement> FROM
//! STDIN` in text, CSV and binary) and sending a table's or a query's rows to
//! it (`COPY <table> | (<query>) TO STDOUT` in text and CSV), so that
//! `psql \copy`, asyncpg's `copy_records_to_table` and the drivers' copy APIs
//! work.
//!
//! A load decodes rows into text columns and writes them in chunks through
//! the engine's write path, which casts each value to its column's type: the
//! same schema rules, WAL and acknowledgement as `INSERT` and line protocol.
//! Memory stays bounded by the chunk, whatever the size of the file. Unlike
//! Postgres, a COPY is not one transaction: when a row is bad, the chunks
//! before it are already written, and the error says how many rows were.

mod binary;
mod out;
mod text;

use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion_postgres::pgwire;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use crate::access::{Access, Privilege};
use crate::catalog::{ColumnType, TIME_COLUMN};
use crate::errors::Classified;
use crate::query::{identifier, name_parts, QueryEngine, QueryError};
use binary::{BinaryReader, Tuple};
pub(crate) use out::{CopyOut, CopyTo};
use text::LineScanner;

/// Rows written per chunk (one WAL record each).
const CHUNK_ROWS: usize = 16_384;
/// Text bytes buffered per chunk.
const CHUNK_BYTES: usize = 8 << 20;

/// The encodings of COPY data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Text,
    Csv,
    Binary,
}

/// A COPY format with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Format {
    encoding: Encoding,
    delimiter: u8,
    null: Vec<u8>,
    quote: u8,
    escape: u8,
    header: bool,
}

impl Format {
    fn text() -> Self {
        Format {
            encoding: Encoding::Text,
            delimiter: b'\t',
            null: b"\\N".to_vec(),
            quote: b'"',
            escape: b'"',
            header: false,
        }
    }

    fn csv(self) -> Self {
        Format { encoding: Encoding::Csv, delimiter: b',', null: Vec::new(), ..self }
    }

    fn is_csv(&self) -> bool {
        self.encoding == Encoding::Csv
    }

    /// The format a COPY statement's options describe, options applied after
    /// the format whatever their order.
    fn from_options(options: &[CopyOption], legacy_options: &[CopyLegacyOption]) -> PgWireResult<Format> {
        let mut format = Format::text();
        let mut rest: Vec<CopyOption> = Vec::new();
        for option in options {
            match option {
                CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                    "text" => format = Format::text(),
                    "csv" => format = format.csv(),
                    "binary" => format.encoding = Encoding::Binary,
                    other => {
                        return Err(copy_error(
                            "0A000",
                            format!("COPY format {other} is not supported (text, csv, binary)"),
                        ))
                    }
                },
                other => rest.push(other.clone()),
            }
        }
        for option in legacy_options {
            match option {
                CopyLegacyOption::Csv(more) => {
                    format = format.csv();
                    for csv in more {
                        rest.push(match csv {
                            CopyLegacyCsvOption::Header => CopyOption::Header(true),
                            CopyLegacyCsvOption::Quote(c) => CopyOption::Quote(*c),
                            CopyLegacyCsvOption::Escape(c) => CopyOption::Escape(*c),
                            other => return Err(copy_error("0A000", format!("COPY option {other} is not supported"))),
                        });
                    }
                }
                CopyLegacyOption::Binary => format.encoding = Encoding::Binary,
                CopyLegacyOption::Delimiter(c) => rest.push(CopyOption::Delimiter(*c)),
                CopyLegacyOption::Null(null) => rest.push(CopyOption::Null(null.clone())),
                other => return Err(copy_error("0A000", format!("COPY option {other} is not supported"))),
            }
        }
        let mut escape = None;
        for option in rest {
            match option {
                CopyOption::Delimiter(c) => format.delimiter = single_byte("DELIMITER", c)?,
                CopyOption::Null(null) => format.null = null.into_bytes(),
                CopyOption::Header(header) => format.header = header,
                CopyOption::Quote(c) => format.quote = single_byte("QUOTE", c)?,
                CopyOption::Escape(c) => escape = Some(single_byte("ESCAPE", c)?),
                CopyOption::Encoding(encoding)
                    if encoding.eq_ignore_ascii_case("utf8") || encoding.eq_ignore_ascii_case("utf-8") => {}
                CopyOption::Freeze(_) => {}
                other => return Err(copy_error("0A000", format!("COPY option {other} is not supported"))),
            }
        }
        format.escape = escape.unwrap_or(format.quote);
        if format.header && !format.is_csv() {
            return Err(copy_error("0A000", "COPY HEADER is available only in CSV mode"));
        }
        Ok(format)
    }
}

/// A COPY statement the Postgres front carries out.
#[derive(Debug, Clone)]
pub(crate) enum CopyStatement {
    /// `COPY <measurement> [(columns)] FROM STDIN`.
    From(CopyFrom),
    /// `COPY <table> [(columns)] | (<query>) TO STDOUT`.
    To(CopyTo),
}

impl CopyStatement {
    /// The statement as a COPY from or to the client, or `None` when it is
    /// not one (COPY from or to files is the engine's to refuse).
    pub(crate) fn from_statement(statement: &Statement) -> PgWireResult<Option<CopyStatement>> {
        let Statement::Copy { source, to, target, options, legacy_options, values } = statement else {
            return Ok(None);
        };
        match (to, target) {
            (false, CopyTarget::Stdin) => {}
            (true, CopyTarget::Stdout) => {
                let format = Format::from_options(options, legacy_options)?;
                return out::CopyTo::new(source, format).map(|copy| Some(CopyStatement::To(copy)));
            }
            _ => return Ok(None),
        }
        let CopySource::Table { table_name, columns } = source else {
            return Err(copy_error("42601", "COPY FROM loads a table: COPY <measurement> [(columns)] FROM STDIN"));
        };
        if !values.is_empty() {
            return Err(copy_error("0A000", "COPY data inside the statement is not supported; send it after COPY"));
        }
        let format = Format::from_options(options, legacy_options)?;
        Ok(Some(CopyStatement::From(CopyFrom {
            table: name_parts(table_name),
            columns: columns.iter().map(identifier).collect(),
            format,
        })))
    }
}

/// A `COPY ... FROM STDIN` statement, understood.
#[derive(Debug, Clone)]
pub(crate) struct CopyFrom {
    /// The measurement's name as the client wrote it, part by part.
    table: Vec<String>,
    columns: Vec<String>,
    format: Format,
}

fn copy_error(sqlstate: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".to_owned(), sqlstate.to_owned(), message.into())))
}

fn single_byte(option: &str, c: char) -> PgWireResult<u8> {
    u8::try_from(u32::from(c))
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| copy_error("0A000", format!("COPY {option} must be a single one-byte character")))
}

impl CopyFrom {
    /// Checks the table and columns and starts the load. A line (or binary
    /// row) longer than `max_line_bytes` ends it with an error.
    pub(crate) fn start(
        self,
        engine: &QueryEngine,
        database: &str,
        max_line_bytes: usize,
        access: &Access,
    ) -> PgWireResult<CopyIn> {
        let resolved = engine.resolve_table(database, &self.table, access).map_err(super::query_error)?;
        access.require(&resolved.database, Privilege::Write).map_err(|denied| super::query_error(denied.into()))?;
        let columns: Vec<String> = if self.columns.is_empty() {
            resolved.schema.columns().iter().map(|c| c.name.to_string()).collect()
        } else {
            for column in &self.columns {
                if resolved.schema.column_type(column).is_none() {
                    return Err(super::query_error(QueryError::UnknownColumn(format!(
                        "column '{column}' of relation '{}' does not exist",
                        resolved.table
                    ))));
                }
            }
            self.columns
        };
        if !columns.iter().any(|c| c == TIME_COLUMN) {
            return Err(copy_error("23502", "COPY into a measurement needs the 'time' column"));
        }
        let column_types =
            columns.iter().map(|c| resolved.schema.column_type(c).unwrap_or(ColumnType::String)).collect();
        let builders = columns.iter().map(|_| StringBuilder::new()).collect();
        Ok(CopyIn {
            access: access.clone(),
            database: resolved.database,
            table: resolved.table,
            columns,
            column_types,
            skip_header: self.format.header,
            format: self.format,
            max_line_bytes,
            pending: Vec::new(),
            scanner: LineScanner::default(),
            binary: BinaryReader::default(),
            builders,
            buffered_rows: 0,
            buffered_bytes: 0,
            line: 0,
            chunk_first_line: 1,
            written: 0,
            ended: false,
            failed: None,
        })
    }
}

/// A load in progress on one connection.
#[derive(Debug)]
pub(crate) struct CopyIn {
    /// What the connection may do: checked again by every chunk's write.
    access: Access,
    database: String,
    table: String,
    columns: Vec<String>,
    column_types: Vec<ColumnType>,
    format: Format,
    max_line_bytes: usize,
    skip_header: bool,
    /// Bytes after the last complete line or row.
    pending: Vec<u8>,
    scanner: LineScanner,
    binary: BinaryReader,
    builders: Vec<StringBuilder>,
    buffered_rows: usize,
    buffered_bytes: usize,
    /// Lines (or binary rows) read so far.
    line: u64,
    chunk_first_line: u64,
    /// Rows written (acknowledged) so far.
    written: usize,
    /// `\.` or the binary trailer was seen: the rest is ignored.
    ended: bool,
    /// The first error: the rest of the data is read and dropped, and the error
    /// is the answer to CopyDone, as in Postgres.
    failed: Option<PgWireError>,
}

/// Where a connection keeps its load between CopyData messages.
pub(crate) type CopySlot = Mutex<Option<CopyIn>>;

impl CopyIn {
    /// Rows written (acknowledged) so far.
    pub(crate) fn written(&self) -> usize {
        self.written
    }

    /// The column count announced in CopyInResponse.
    pub(crate) fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// The format code announced in CopyInResponse: 1 for binary, else 0.
    pub(crate) fn format_code(&self) -> i8 {
        i8::from(self.format.encoding == Encoding::Binary)
    }

    /// Takes one CopyData message.
    pub(crate) async fn data(&mut self, engine: &QueryEngine, bytes: &[u8]) {
        if self.failed.is_some() || self.ended {
            return;
        }
        self.pending.extend_from_slice(bytes);
        let taken = match self.format.encoding {
            Encoding::Binary => self.take_rows(engine).await,
            Encoding::Text | Encoding::Csv => self.take_lines(engine, false).await,
        };
        if let Err(e) = taken {
            self.failed = Some(e);
            self.pending = Vec::new();
        }
    }

    /// Ends the load (CopyDone): writes what is left; returns the rows written.
    pub(crate) async fn finish(mut self, engine: &QueryEngine) -> PgWireResult<usize> {
        if self.failed.is_none() && !self.ended {
            let taken = match self.format.encoding {
                Encoding::Binary if !self.pending.is_empty() => Err(copy_error(
                    "22P04",
                    format!("the binary COPY data ends inside row {} (or its header)", self.line + 1),
                )),
                Encoding::Binary => Ok(()),
                Encoding::Text | Encoding::Csv => self.take_lines(engine, true).await,
            };
            if let Err(e) = taken {
                self.failed = Some(e);
            }
        }
        if self.failed.is_none() {
            if let Err(e) = self.flush(engine).await {
                self.failed = Some(e);
            }
        }
        match self.failed {
            None => Ok(self.written),
            Some(PgWireError::UserError(mut info)) => {
                info.message =
                    format!("{} (COPY {}: {} rows were written before it)", info.message, self.table, self.written);
                Err(PgWireError::UserError(info))
            }
            Some(other) => Err(other),
        }
    }

    async fn take_lines(&mut self, engine: &QueryEngine, at_end: bool) -> PgWireResult<()> {
        let mut pending = std::mem::take(&mut self.pending);
        let mut start = 0;
        // Bytes already scanned are not scanned again, so a long line sent in
        // many small messages costs its length, not its length squared.
        while let Some(end) = self.scanner.line_end(&pending, &self.format) {
            let line = &pending[start..end];
            start = end + 1;
            self.scanner = LineScanner { scanned: start, quoted: false };
            self.line_in_order(engine, line).await?;
            if self.ended {
                return Ok(());
            }
            self.flush_if_full(engine).await?;
        }
        let rest = &pending[start..];
        if at_end && !rest.is_empty() {
            self.line_in_order(engine, rest).await?;
        } else if rest.len() > self.max_line_bytes {
            return Err(self.too_long());
        } else {
            pending.drain(..start);
            self.scanner.scanned -= start;
            self.pending = pending;
        }
        Ok(())
    }

    async fn take_rows(&mut self, engine: &QueryEngine) -> PgWireResult<()> {
        let pending = std::mem::take(&mut self.pending);
        let mut start = 0;
        loop {
            match self.binary.next(&pending[start..], &self.column_types) {
                Ok(Tuple::Row(values, used)) => {
                    start += used;
                    self.line += 1;
                    let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
                    self.push_row(&values, used);
                    self.flush_if_full(engine).await?;
                }
                Ok(Tuple::End(_)) => {
                    self.ended = true;
                    return Ok(());
                }
                Ok(Tuple::Incomplete) => break,
                Err(message) => {
                    self.flush(engine).await?;
                    return Err(copy_error("22P04", format!("row {}: {message}", self.line + 1)));
                }
            }
        }
        if pending.len() - start > self.max_line_bytes {
            return Err(self.too_long());
        }
        self.pending = pending[start..].to_vec();
        Ok(())
    }

    fn too_long(&self) -> PgWireError {
        copy_error(
            "54000",
            format!(
                "line {} is longer than {} bytes (HOURGLASS_MAX_COPY_LINE_BYTES)",
                self.line + 1,
                self.max_line_bytes
            ),
        )
    }

    /// Takes a line; when it is malformed, the rows before it are written
    /// first, so that the error reported is the first bad line's.
    async fn line_in_order(&mut self, engine: &QueryEngine, line: &[u8]) -> PgWireResult<()> {
        match self.line(line) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.flush(engine).await?;
                Err(error)
            }
        }
    }

    fn line(&mut self, line: &[u8]) -> PgWireResult<()> {
        self.line += 1;
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
        if self.buffered_rows == 0 {
            self.chunk_first_line = self.line;
        }
        for (builder, value) in self.builders.iter_mut().zip(values) {
            builder.append_option(*value);
        }
        self.buffered_rows += 1;
        self.buffered_bytes += bytes;
    }

    async fn flush_if_full(&mut self, engine: &QueryEngine) -> PgWireResult<()> {
        if self.buffered_rows >= CHUNK_ROWS || self.buffered_bytes >= CHUNK_BYTES {
            self.flush(engine).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, engine: &QueryEngine) -> PgWireResult<()> {
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let fields: Vec<Field> = self.columns.iter().map(|c| Field::new(c, DataType::Utf8, true)).collect();
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| copy_error("XX000", format!("building the COPY batch: {e}")))?;
        let first_line = self.chunk_first_line;
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        match engine.write_batch(&self.database, &self.table, batch, &self.access).await {
            Ok(rows) => {
                self.written += rows;
                Ok(())
            }
            Err(error) => {
                // The write path numbers rows from 1 within the chunk; say which line.
                let message = match error.bad_row() {
                    Some((row, problem)) => format!("line {}: {problem}", first_line + row as u64 - 1),
                    None => error.to_string(),
                };
                Err(copy_error(error.sqlstate(), message))
            }
        }
    }
}
