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
mod decoder;
mod out;
mod text;

use std::sync::Mutex;

use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion_postgres::pgwire;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use crate::access::{Access, Privilege};
use crate::catalog::{ColumnType, TIME_COLUMN};
use crate::errors::Classified;
use crate::query::{identifier, name_parts, QueryEngine, QueryError};
pub(crate) use decoder::{CopyChunk, CopyDecoder};
pub(crate) use out::{CopyOut, CopyTo};

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
    /// The format its options give.
    pub(crate) fn format(&self) -> Format {
        self.format.clone()
    }

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
        Ok(CopyIn {
            access: access.clone(),
            database: resolved.database,
            table: resolved.table,
            decoder: CopyDecoder::new(self.format, columns, column_types, max_line_bytes),
            written: 0,
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
    decoder: CopyDecoder,
    /// Rows written (acknowledged) so far.
    written: usize,
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
        self.decoder.columns().len()
    }

    /// The format code announced in CopyInResponse: 1 for binary, else 0.
    pub(crate) fn format_code(&self) -> i8 {
        i8::from(self.decoder.is_binary())
    }

    /// Takes one CopyData message.
    pub(crate) async fn data(&mut self, engine: &QueryEngine, bytes: &[u8]) {
        if self.failed.is_some() || self.decoder.done() {
            return;
        }
        self.decoder.push(bytes);
        if let Err(e) = self.write_chunks(engine, false).await {
            self.failed = Some(e);
        }
    }

    /// Ends the load (CopyDone): writes what is left; returns the rows written.
    pub(crate) async fn finish(mut self, engine: &QueryEngine) -> PgWireResult<usize> {
        if self.failed.is_none() {
            if let Err(e) = self.write_chunks(engine, true).await {
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

    /// Writes every chunk the decoder has ready (with `at_end`, all it holds).
    async fn write_chunks(&mut self, engine: &QueryEngine, at_end: bool) -> PgWireResult<()> {
        while let Some(chunk) = self.decoder.next_chunk(at_end)? {
            self.write(engine, chunk).await?;
        }
        Ok(())
    }

    async fn write(&mut self, engine: &QueryEngine, chunk: CopyChunk) -> PgWireResult<()> {
        match engine.write_batch(&self.database, &self.table, chunk.batch, &self.access).await {
            Ok(rows) => {
                self.written += rows;
                Ok(())
            }
            Err(error) => {
                // The write path numbers rows from 1 within the chunk; say which line.
                let message = match error.bad_row() {
                    Some((row, problem)) => format!("line {}: {problem}", chunk.first_line + row as u64 - 1),
                    None => error.to_string(),
                };
                Err(copy_error(error.sqlstate(), message))
            }
        }
    }
}
