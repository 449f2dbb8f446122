//! `COPY <measurement> FROM STDIN` in Postgres' text and CSV formats, so that
//! `psql \copy` and drivers' copy APIs load files.
//!
//! Rows are decoded into text columns and written in chunks through the
//! engine's write path, which casts each value to its column's type: the same
//! schema rules, WAL and acknowledgement as `INSERT` and line protocol. Memory
//! stays bounded by the chunk, whatever the size of the file. Unlike Postgres,
//! a COPY is not one transaction: when a line is bad, the chunks before it are
//! already written, and the error says how many rows were.

use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion_postgres::pgwire;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use crate::catalog::TIME_COLUMN;
use crate::query::{identifier, name_parts, QueryEngine, QueryError, SCHEMA};

/// Rows written per chunk (one WAL record each).
const CHUNK_ROWS: usize = 16_384;
/// Text bytes buffered per chunk.
const CHUNK_BYTES: usize = 8 << 20;
/// The longest line accepted; a longer one is an error, not unbounded memory.
const MAX_LINE_BYTES: usize = 16 << 20;

/// The two text formats of COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Format {
    csv: bool,
    delimiter: u8,
    null: Vec<u8>,
    quote: u8,
    escape: u8,
    header: bool,
}

impl Format {
    fn text() -> Self {
        Format { csv: false, delimiter: b'\t', null: b"\\N".to_vec(), quote: b'"', escape: b'"', header: false }
    }

    fn csv(self) -> Self {
        Format { csv: true, delimiter: b',', null: Vec::new(), ..self }
    }
}

/// A `COPY ... FROM STDIN` statement, understood.
#[derive(Debug, Clone)]
pub(crate) struct CopyFrom {
    table: String,
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
    /// The COPY statement as a load from the client, or `None` when the
    /// statement is no `COPY ... FROM STDIN` (COPY TO and files are the engine's
    /// to refuse).
    pub(crate) fn from_statement(statement: &Statement) -> PgWireResult<Option<CopyFrom>> {
        let Statement::Copy { source, to: false, target: CopyTarget::Stdin, options, legacy_options, values } =
            statement
        else {
            return Ok(None);
        };
        let CopySource::Table { table_name, columns } = source else {
            return Err(copy_error("42601", "COPY FROM loads a table: COPY <measurement> [(columns)] FROM STDIN"));
        };
        if !values.is_empty() {
            return Err(copy_error("0A000", "COPY data inside the statement is not supported; send it after COPY"));
        }
        let mut format = Format::text();
        let mut csv_options: Vec<CopyOption> = Vec::new();
        for option in options {
            match option {
                CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                    "text" => format = Format { csv: false, ..format },
                    "csv" => format = format.csv(),
                    other => {
                        return Err(copy_error("0A000", format!("COPY format {other} is not supported (text, csv)")))
                    }
                },
                other => csv_options.push(other.clone()),
            }
        }
        for option in legacy_options {
            match option {
                CopyLegacyOption::Csv(more) => {
                    format = format.csv();
                    for csv in more {
                        csv_options.push(match csv {
                            CopyLegacyCsvOption::Header => CopyOption::Header(true),
                            CopyLegacyCsvOption::Quote(c) => CopyOption::Quote(*c),
                            CopyLegacyCsvOption::Escape(c) => CopyOption::Escape(*c),
                            other => return Err(copy_error("0A000", format!("COPY option {other} is not supported"))),
                        });
                    }
                }
                CopyLegacyOption::Delimiter(c) => csv_options.push(CopyOption::Delimiter(*c)),
                CopyLegacyOption::Null(null) => csv_options.push(CopyOption::Null(null.clone())),
                CopyLegacyOption::Binary => {
                    return Err(copy_error("0A000", "COPY binary format is not supported (text, csv)"))
                }
                other => return Err(copy_error("0A000", format!("COPY option {other} is not supported"))),
            }
        }
        // Options apply after the format, whatever their order.
        let mut escape = None;
        for option in csv_options {
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
        if format.header && !format.csv {
            return Err(copy_error("0A000", "COPY HEADER is available only in CSV mode"));
        }
        // COPY loads measurements, which live in schema public.
        let table = match name_parts(table_name).as_slice() {
            [table] => table.clone(),
            [schema, table] if schema == SCHEMA => table.clone(),
            [database, schema, table] if schema == SCHEMA => format!("{database}.{SCHEMA}.{table}"),
            _ => {
                return Err(copy_error(
                    "0A000",
                    format!("COPY FROM loads measurements (schema {SCHEMA}); {table_name} is not one"),
                ))
            }
        };
        Ok(Some(CopyFrom { table, columns: columns.iter().map(identifier).collect(), format }))
    }

    /// Checks the table and columns and starts the load; returns the number of
    /// columns each line carries.
    pub(crate) fn start(self, engine: &QueryEngine, database: &str) -> PgWireResult<CopyIn> {
        let (database, table, schema) = engine.resolve_table(database, &self.table).map_err(super::query_error)?;
        let columns: Vec<String> = if self.columns.is_empty() {
            schema.columns().iter().map(|c| c.name.to_string()).collect()
        } else {
            for column in &self.columns {
                if schema.column_type(column).is_none() {
                    return Err(super::query_error(QueryError::UnknownColumn(format!(
                        "column '{column}' of relation '{table}' does not exist"
                    ))));
                }
            }
            self.columns
        };
        if !columns.iter().any(|c| c == TIME_COLUMN) {
            return Err(copy_error("23502", "COPY into a measurement needs the 'time' column"));
        }
        let builders = columns.iter().map(|_| StringBuilder::new()).collect();
        Ok(CopyIn {
            database,
            table,
            columns,
            skip_header: self.format.header,
            format: self.format,
            pending: Vec::new(),
            scanner: LineScanner::default(),
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
    database: String,
    table: String,
    columns: Vec<String>,
    format: Format,
    skip_header: bool,
    /// Bytes after the last complete line.
    pending: Vec<u8>,
    scanner: LineScanner,
    builders: Vec<StringBuilder>,
    buffered_rows: usize,
    buffered_bytes: usize,
    /// Lines read so far.
    line: u64,
    chunk_first_line: u64,
    /// Rows written (acknowledged) so far.
    written: usize,
    /// `\.` was seen: the rest is ignored.
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

    /// Takes one CopyData message.
    pub(crate) async fn data(&mut self, engine: &QueryEngine, bytes: &[u8]) {
        if self.failed.is_some() || self.ended {
            return;
        }
        self.pending.extend_from_slice(bytes);
        if let Err(e) = self.take_lines(engine, false).await {
            self.failed = Some(e);
            self.pending = Vec::new();
        }
    }

    /// Ends the load (CopyDone): writes what is left; returns the rows written.
    pub(crate) async fn finish(mut self, engine: &QueryEngine) -> PgWireResult<usize> {
        if self.failed.is_none() && !self.ended {
            if let Err(e) = self.take_lines(engine, true).await {
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
            if self.buffered_rows >= CHUNK_ROWS || self.buffered_bytes >= CHUNK_BYTES {
                self.flush(engine).await?;
            }
        }
        let rest = &pending[start..];
        if at_end && !rest.is_empty() {
            self.line_in_order(engine, rest).await?;
        } else if rest.len() > MAX_LINE_BYTES {
            return Err(copy_error("54000", format!("line {} is longer than {MAX_LINE_BYTES} bytes", self.line + 1)));
        } else {
            pending.drain(..start);
            self.scanner.scanned -= start;
            self.pending = pending;
        }
        Ok(())
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
        let values = if self.format.csv { csv_fields(line, &self.format) } else { text_fields(line, &self.format) }
            .map_err(at)?;
        if values.len() != self.columns.len() {
            return Err(at(format!("expected {} columns, got {}", self.columns.len(), values.len())));
        }
        if self.buffered_rows == 0 {
            self.chunk_first_line = self.line;
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
        for (builder, text) in self.builders.iter_mut().zip(texts) {
            builder.append_option(text);
        }
        self.buffered_rows += 1;
        self.buffered_bytes += line.len();
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
        match engine.write_batch(&self.database, &self.table, batch).await {
            Ok(rows) => {
                self.written += rows;
                Ok(())
            }
            Err(error) => {
                let sqlstate = error.sqlstate();
                // The write path numbers rows from 1 within the chunk; say which line.
                let message = error.to_string();
                let message = match message.strip_prefix("row ").and_then(|r| r.split_once(": ")) {
                    Some((row, rest)) => match row.parse::<u64>() {
                        Ok(row) => format!("line {}: {rest}", first_line + row - 1),
                        Err(_) => message,
                    },
                    None => message,
                };
                Err(copy_error(sqlstate, message))
            }
        }
    }
}

/// The end of the first complete line: a newline, outside quotes in CSV.
/// Where the search for the end of the current line stands in the pending
/// bytes, and whether it is inside a quoted CSV value there.
#[derive(Debug, Default, Clone, Copy)]
struct LineScanner {
    scanned: usize,
    quoted: bool,
}

impl LineScanner {
    /// The end of the current line (a newline, outside quotes in CSV), from
    /// where the last search stopped; `None` when `bytes` holds no complete line.
    fn line_end(&mut self, bytes: &[u8], format: &Format) -> Option<usize> {
        if !format.csv {
            let found = memchr::memchr(b'\n', &bytes[self.scanned..]).map(|i| self.scanned + i);
            if found.is_none() {
                self.scanned = bytes.len();
            }
            return found;
        }
        let mut i = self.scanned;
        while i < bytes.len() {
            let b = bytes[i];
            if self.quoted {
                if b == format.escape && format.escape != format.quote {
                    if i + 1 >= bytes.len() {
                        // The escaped byte is in the next message: look again from here.
                        break;
                    }
                    i += 2;
                    continue;
                }
                if b == format.quote {
                    self.quoted = false;
                }
            } else if b == format.quote {
                self.quoted = true;
            } else if b == b'\n' {
                return Some(i);
            }
            i += 1;
        }
        self.scanned = i;
        None
    }
}

#[cfg(test)]
fn line_end(bytes: &[u8], format: &Format) -> Option<usize> {
    LineScanner::default().line_end(bytes, format)
}

/// The fields of a line in text format: `\N` is NULL, backslash escapes.
fn text_fields(line: &[u8], format: &Format) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i <= line.len() {
        if i == line.len() || line[i] == format.delimiter {
            let raw = &line[start..i];
            fields.push(if raw == format.null.as_slice() { None } else { Some(unescape_text(raw)?) });
            start = i + 1;
        } else if line[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    Ok(fields)
}

fn unescape_text(raw: &[u8]) -> Result<Vec<u8>, String> {
    if !raw.contains(&b'\\') {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&next) = raw.get(i) else { return Err("the line ends with a backslash".into()) };
        i += 1;
        out.push(match next {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                (value & 0xff) as u8
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d as u8;
                            i += 1;
                        }
                        None => break,
                    }
                }
                value
            }
            other => other,
        });
    }
    Ok(out)
}

/// The fields of a line in CSV format: an unquoted NULL string is NULL, a
/// quoted one is a value.
fn csv_fields(line: &[u8], format: &Format) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut value = Vec::new();
        let mut quoted_any = false;
        let start = i;
        while i < line.len() && line[i] != format.delimiter {
            if line[i] == format.quote {
                quoted_any = true;
                i += 1;
                loop {
                    let Some(&b) = line.get(i) else { return Err("a quoted value is not closed".into()) };
                    if b == format.escape && line.get(i + 1).is_some_and(|n| *n == format.quote || *n == format.escape)
                    {
                        // An escaped quote (or escape); with the default escape, `""`.
                        if format.escape != format.quote || line.get(i + 1) == Some(&format.quote) {
                            value.push(line[i + 1]);
                            i += 2;
                            continue;
                        }
                    }
                    i += 1;
                    if b == format.quote {
                        break;
                    }
                    value.push(b);
                }
            } else {
                value.push(line[i]);
                i += 1;
            }
        }
        let raw = &line[start..i];
        fields.push(if !quoted_any && raw == format.null.as_slice() { None } else { Some(value) });
        if i >= line.len() {
            break;
        }
        i += 1;
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(values: &[Option<&str>]) -> Vec<Option<Vec<u8>>> {
        values.iter().map(|v| v.map(|s| s.as_bytes().to_vec())).collect()
    }

    #[test]
    fn text_format_escapes_and_nulls() {
        let format = Format::text();
        assert_eq!(
            text_fields(b"a\\tb\t\\N\t1\\\\2\t\\101\\x41", &format),
            Ok(text(&[Some("a\tb"), None, Some("1\\2"), Some("AA")]))
        );
        assert_eq!(text_fields(b"", &format), Ok(text(&[Some("")])));
        assert_eq!(text_fields(b"a\\\tb", &format), Ok(text(&[Some("a\tb")])));
    }

    #[test]
    fn csv_format_quotes_and_nulls() {
        let format = Format::text().csv();
        assert_eq!(
            csv_fields(b"a,,\"\",\"x,\"\"y\"\"\nz\"", &format),
            Ok(text(&[Some("a"), None, Some(""), Some("x,\"y\"\nz")]))
        );
        assert!(csv_fields(b"\"open", &format).is_err());
        assert_eq!(line_end(b"\"a\nb\"\nrest", &format), Some(5));
        assert_eq!(line_end(b"a\nb", &Format::text()), Some(1));
    }

    #[test]
    fn a_line_split_across_messages_is_found_once_whole() {
        let format = Format::text().csv();
        let mut scanner = LineScanner::default();
        let mut bytes = b"x,\"a\n".to_vec();
        assert_eq!(scanner.line_end(&bytes, &format), None, "the newline is quoted");
        bytes.extend_from_slice(b"b\"\n");
        assert_eq!(scanner.line_end(&bytes, &format), Some(7));
        let escaped = Format { escape: b'\\', ..format };
        let mut scanner = LineScanner::default();
        let mut bytes = b"\"a\\".to_vec();
        assert_eq!(scanner.line_end(&bytes, &escaped), None);
        bytes.extend_from_slice(b"\"\"\n");
        assert_eq!(scanner.line_end(&bytes, &escaped), Some(5), "the escaped quote does not close the value");
    }
}
