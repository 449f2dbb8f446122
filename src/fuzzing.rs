//! Every parser that takes bytes from a client, each behind one function of
//! bytes, for the fuzz targets (`fuzz/`) and the bounded mutation runs of
//! `tests/it/fuzz.rs`. Each function runs exactly the code a front runs on
//! those bytes, up to the point where the engine would take over, and turns
//! the outcome into plain values a test can compare.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::access::Access;
use crate::catalog::ColumnType;
use crate::query::postgres_sql::{column_names, PostgresParser};
use crate::server::auth::{Credentials, Users};
use crate::server::flight::{StatementHandle, TicketQuery};
use crate::server::http::query_request::{QueryEndpoint, QueryRequest};
use crate::server::postgres::copy::{CopyDecoder, CopyStatement};

/// `COPY` statements in each format, and the columns they load, for the
/// COPY fuzz targets and tests.
pub const COPY_TEXT: &str = "COPY cpu (host, usage, n, time) FROM STDIN";
/// CSV with a header line.
pub const COPY_CSV: &str = "COPY cpu (host, usage, n, time) FROM STDIN WITH (FORMAT csv, HEADER true)";
/// Binary.
pub const COPY_BINARY: &str = "COPY cpu (host, usage, n, time) FROM STDIN WITH (FORMAT binary)";
/// The columns of the measurement the COPY statements above load.
pub const COPY_COLUMNS: [(&str, ColumnType); 4] =
    [("host", ColumnType::Tag), ("usage", ColumnType::Float), ("n", ColumnType::Integer), ("time", ColumnType::Time)];

/// The property the COPY fuzz targets check: the first byte says where to
/// cut the rest in two and how long a line may be, and the data must decode
/// to the same rows and error whole and cut. Panics when it does not.
pub fn copy_cut_in_two(statement: &str, data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else { return };
    let at = usize::from(cut) * data.len() / 255;
    let max_line_bytes = if cut % 2 == 0 { 1 << 20 } else { 64 };
    let whole = copy_from(statement, &COPY_COLUMNS, &[data], max_line_bytes).expect("the statement is valid");
    let split = copy_from(statement, &COPY_COLUMNS, &[&data[..at], &data[at..]], max_line_bytes)
        .expect("the statement is valid");
    assert_eq!(whole, split, "whole, and cut at {at}");
    if let Some(error) = &whole.error {
        assert!(!error.starts_with("XX"), "a client's bad data is not a server error: {error}");
    }
}

/// What a COPY load made of some data: the rows (each value as the text the
/// write path would cast), and the error that ended it, if one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOutcome {
    /// The rows decoded before the end or the error, in order.
    pub rows: Vec<Vec<Option<String>>>,
    /// The error's message (with its SQLSTATE), if the data was refused.
    pub error: Option<String>,
}

/// Decodes COPY data as the Postgres front does: `statement` is the `COPY
/// ... FROM STDIN` (its options give the format), `columns` the measurement's
/// columns in the data's order, `pieces` the CopyData messages. `Err` when the
/// statement itself is refused.
pub fn copy_from(
    statement: &str,
    columns: &[(&str, ColumnType)],
    pieces: &[&[u8]],
    max_line_bytes: usize,
) -> Result<CopyOutcome, String> {
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, statement).map_err(|e| e.to_string())?;
    let [statement] = parsed.as_slice() else { return Err("one COPY statement expected".into()) };
    let Some(CopyStatement::From(copy)) = CopyStatement::from_statement(statement).map_err(|e| e.to_string())? else {
        return Err("not a COPY ... FROM STDIN".into());
    };
    let names = columns.iter().map(|(name, _)| (*name).to_owned()).collect();
    let types = columns.iter().map(|(_, kind)| *kind).collect();
    let mut decoder = CopyDecoder::new(copy.format(), names, types, max_line_bytes);
    let mut outcome = CopyOutcome { rows: Vec::new(), error: None };
    let take = |decoder: &mut CopyDecoder, at_end: bool, outcome: &mut CopyOutcome| loop {
        match decoder.next_chunk(at_end) {
            Ok(Some(chunk)) => {
                assert_eq!(chunk.batch.num_columns(), columns.len(), "a chunk has one column per COPY column");
                outcome.rows.extend(text_rows(&chunk.batch));
            }
            Ok(None) => return true,
            Err(e) => {
                outcome.error = Some(error_text(&e));
                return false;
            }
        }
    };
    for piece in pieces {
        decoder.push(piece);
        if !take(&mut decoder, false, &mut outcome) {
            return Ok(outcome);
        }
    }
    take(&mut decoder, true, &mut outcome);
    assert!(decoder.next_chunk(true).ok().flatten().is_none(), "nothing is decoded after the end");
    Ok(outcome)
}

fn text_rows(batch: &arrow::array::RecordBatch) -> Vec<Vec<Option<String>>> {
    use arrow::array::{Array, AsArray};
    let columns: Vec<_> = batch.columns().iter().map(|c| c.as_string::<i32>()).collect();
    (0..batch.num_rows())
        .map(|row| columns.iter().map(|c| (!c.is_null(row)).then(|| c.value(row).to_owned())).collect())
        .collect()
}

fn error_text(error: &datafusion_postgres::pgwire::error::PgWireError) -> String {
    use datafusion_postgres::pgwire::error::PgWireError;
    match error {
        PgWireError::UserError(info) => format!("{}: {}", info.code, info.message),
        other => other.to_string(),
    }
}

/// A query request over HTTP, understood as `/query` (`influx` false) or
/// `/api/v3/query_sql` (`influx` true) understand it: `(sql, database,
/// format)`, or the message of the 400 it gets.
pub fn http_query(
    influx: bool,
    query_string: Option<&str>,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Result<(String, String, String), String> {
    let mut headers = HeaderMap::new();
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        headers.insert(axum::http::header::CONTENT_TYPE, value);
    }
    let access = Access::Full;
    let endpoint = if influx { QueryEndpoint::Influx } else { QueryEndpoint::Gigapi };
    let request = QueryRequest::read(endpoint, query_string, &headers, body, &access)?;
    Ok((request.sql, request.database, format!("{:?}", request.format)))
}

/// A Flight `DoGet` ticket that is not a FlightSQL command: InfluxDB 3's JSON
/// ticket, read as the FlightSQL front reads it. `Ok` holds the database it
/// names and the number of parameters; `Err` the status message.
pub fn flight_ticket(bytes: &[u8]) -> Result<(Option<String>, usize), String> {
    TicketQuery::decode(bytes).map(|t| (t.database, t.params.len())).map_err(|s| s.message().to_owned())
}

/// A statement handle a FlightSQL client sent back, with its bound
/// parameters (an Arrow IPC stream inside): the rows of parameters, or the
/// status message.
pub fn statement_handle(bytes: &[u8]) -> Result<usize, String> {
    let handle = StatementHandle::decode(bytes).map_err(|s| s.message().to_owned())?;
    let parameters = handle.parameters().map_err(|s| s.message().to_owned())?;
    Ok(parameters.map_or(0, |batch| batch.num_rows()))
}

/// An `Authorization` header's value, as every front reads it.
pub fn authorization(value: &[u8]) -> Option<Credentials> {
    std::str::from_utf8(value).ok().and_then(Users::parse_authorization)
}

/// SQL from a Postgres client, parsed and rewritten as the Postgres front
/// does, with the names its result columns get: the number of statements, or
/// the parser's message.
pub fn postgres_sql(sql: &str) -> Result<usize, String> {
    static PARSER: OnceLock<PostgresParser> = OnceLock::new();
    let statements =
        PARSER.get_or_init(PostgresParser::new).parse(sql, "user", "\"$user\", public").map_err(|e| e.to_string())?;
    for statement in &statements {
        let names = column_names(statement, 3);
        assert_eq!(names.len(), 3, "one name (or none) per result column");
    }
    Ok(statements.len())
}
