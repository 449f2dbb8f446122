//! `COPY <table> [(columns)] TO STDOUT` and `COPY (<query>) TO STDOUT`, in
//! text and CSV (with `HEADER`): the rows of a table or query, streamed to
//! the client one CopyData message per row, each value written as the
//! Postgres front writes it in query results.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{CopySource, Query, Statement};
use datafusion_postgres::pgwire;
use futures::{Stream, StreamExt};
use pgwire::api::portal::Format as WireFormat;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use super::text::push_value;
use super::{copy_error, Encoding, Format};
use crate::access::Access;
use crate::query::{identifier, name_parts, postgres_sql, quote_identifier, QueryEngine};
use crate::server::postgres::cancel::QuerySignal;
use crate::server::postgres::{query_error, results};

/// What a COPY TO sends.
#[derive(Debug, Clone)]
enum Source {
    /// A table's (or view's) columns, by name part.
    Table { name: Vec<String>, columns: Vec<String> },
    /// A query's result.
    Query(Box<Query>),
}

/// A `COPY ... TO STDOUT` statement, understood.
#[derive(Debug, Clone)]
pub(crate) struct CopyTo {
    source: Source,
    format: Format,
}

/// The rows of a COPY TO, ready to send.
pub(crate) struct CopyOut {
    /// Columns per row.
    pub(crate) columns: usize,
    /// The CopyData messages: the header line (CSV `HEADER`), then a row each.
    pub(crate) data: std::pin::Pin<Box<dyn Stream<Item = PgWireResult<CopyData>> + Send>>,
    /// Whether the first message is a header line, which is not a row.
    pub(crate) has_header: bool,
}

impl CopyTo {
    pub(super) fn new(source: &CopySource, format: Format) -> PgWireResult<CopyTo> {
        if format.encoding == Encoding::Binary {
            return Err(copy_error("0A000", "COPY TO STDOUT is sent in text or CSV; binary is not supported"));
        }
        let source = match source {
            CopySource::Table { table_name, columns } => {
                Source::Table { name: name_parts(table_name), columns: columns.iter().map(identifier).collect() }
            }
            CopySource::Query(query) => Source::Query(query.clone()),
        };
        Ok(CopyTo { source, format })
    }

    /// Runs the COPY's query in `database` and encodes its rows; a cancel
    /// request on `signal` (the connection's) ends them with 57014.
    pub(crate) async fn run(
        self,
        engine: &QueryEngine,
        database: &str,
        options: FormatOptions,
        signal: Option<Arc<QuerySignal>>,
        access: &Access,
    ) -> PgWireResult<CopyOut> {
        let (plan, names) = match self.source {
            Source::Table { name, columns } => {
                // The names travel quoted, so a measurement named "cpu.load" is one name.
                let list = if columns.is_empty() {
                    "*".to_owned()
                } else {
                    columns.iter().map(|c| quote_identifier(c)).collect::<Vec<_>>().join(", ")
                };
                let table = name.iter().map(|p| quote_identifier(p)).collect::<Vec<_>>().join(".");
                let plan =
                    engine.plan(database, &format!("SELECT {list} FROM {table}"), access).await.map_err(query_error)?;
                (plan, Vec::new())
            }
            Source::Query(query) => {
                let statement = Statement::Query(query);
                let planned =
                    engine.plan_statement(database, DfStatement::Statement(Box::new(statement.clone())), access);
                let plan = planned.await.map_err(query_error)?;
                let names = postgres_sql::column_names(&statement, plan.schema().fields().len());
                (plan, names)
            }
        };
        let output = engine.execute(database, plan).await.map_err(query_error)?;
        let output = match signal {
            Some(signal) => output.cancellable(signal.next_cancel()),
            None => output,
        };
        let fields = Arc::new(results::fields(&output.schema, &names, &WireFormat::UnifiedText, Arc::new(options))?);
        let columns = fields.len();
        let format = Arc::new(self.format);
        let header = format.header.then(|| {
            let mut line = Vec::new();
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    line.push(format.delimiter);
                }
                push_value(&mut line, Some(field.name().as_bytes()), &format);
            }
            line.push(b'\n');
            Ok(CopyData::new(Bytes::from(line)))
        });
        let line_format = Arc::clone(&format);
        let rows = results::rows(output.stream, fields)
            .map(move |row| row.and_then(|row| copy_line(&row, &line_format)).map(CopyData::new));
        let has_header = header.is_some();
        let data = futures::stream::iter(header).chain(rows);
        Ok(CopyOut { columns, data: Box::pin(data), has_header })
    }
}

/// A row, as the text values of a DataRow, as one line of COPY data.
fn copy_line(row: &DataRow, format: &Format) -> PgWireResult<Bytes> {
    let bytes = &row.data[..];
    let mut line = Vec::with_capacity(bytes.len() + 8);
    let mut at = 0;
    for i in 0..row.field_count.max(0) as usize {
        let malformed = || PgWireError::ApiError("a result row is malformed".into());
        let length = bytes.get(at..at + 4).ok_or_else(malformed)?;
        let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        at += 4;
        if i > 0 {
            line.push(format.delimiter);
        }
        if length < 0 {
            push_value(&mut line, None, format);
        } else {
            let value = bytes.get(at..at + length as usize).ok_or_else(malformed)?;
            at += length as usize;
            push_value(&mut line, Some(value), format);
        }
    }
    line.push(b'\n');
    Ok(Bytes::from(line))
}
