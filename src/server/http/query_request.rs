//! What a query request asks for, read from its query string, headers and
//! body: the SQL, the database and the answer's format. GigAPI's `POST
//! /query` and InfluxDB 3's `/api/v3/query_sql` differ only here. No I/O, so
//! the fuzz targets reach it with arbitrary bytes.

use axum::http::{header, HeaderMap};

use super::{param, query_params};
use crate::access::Access;
use crate::server::database::DatabaseChoice;

/// The result encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// GigAPI's `{"results": [{...}, ...]}`.
    GigapiJson,
    /// InfluxDB 3's `[{...}, ...]`.
    JsonArray,
    /// One JSON object per line.
    JsonLines,
    /// CSV with a header line.
    Csv,
    /// An Arrow IPC stream.
    Arrow,
    /// A Parquet file.
    Parquet,
    /// A text table.
    Pretty,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::GigapiJson | Format::JsonArray => "application/json",
            Format::JsonLines => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Pretty => "text/plain; charset=utf-8",
        }
    }
}

/// The format names both endpoints share; "json" is each endpoint's own.
fn shared_format(name: &str) -> Option<Format> {
    Some(match name {
        "ndjson" | "jsonl" => Format::JsonLines,
        "csv" => Format::Csv,
        "arrow" => Format::Arrow,
        "parquet" => Format::Parquet,
        "pretty" => Format::Pretty,
        _ => return None,
    })
}

const FORMAT_NAMES: &str = "json, ndjson, jsonl, csv, arrow, parquet, pretty";

fn gigapi_format(name: Option<&str>) -> Result<Format, String> {
    match name.unwrap_or("json") {
        "json" | "" => Ok(Format::GigapiJson),
        other => shared_format(other).ok_or_else(|| format!("Unsupported format: {other} ({FORMAT_NAMES})")),
    }
}

fn influx_format(name: Option<&str>, headers: &HeaderMap) -> Result<Format, String> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let name = match name {
        Some(name) => name,
        None if accept.contains("application/jsonl") => "jsonl",
        None if accept.contains("text/csv") => "csv",
        None if accept.contains("application/vnd.apache.parquet") => "parquet",
        None if accept.contains("text/plain") => "pretty",
        None => "json",
    };
    match name {
        "json" | "" => Ok(Format::JsonArray),
        other => shared_format(other).ok_or_else(|| format!("unsupported format '{other}' ({FORMAT_NAMES})")),
    }
}

/// The two query endpoints, which differ in where they look for the SQL
/// and in their format names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryEndpoint {
    /// GigAPI's `POST /query?db=...&format=...` with `{"query": "...", "db": "..."}`.
    Gigapi,
    /// InfluxDB 3's `GET` or `POST /api/v3/query_sql` with `db`, `q` and `format`.
    Influx,
}

/// A query request, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryRequest {
    /// The SQL.
    pub(crate) sql: String,
    /// The database it runs in.
    pub(crate) database: String,
    /// How the answer is encoded.
    pub(crate) format: Format,
}

impl QueryRequest {
    /// What a request to `endpoint` asks for, from its query string,
    /// headers, body and the caller's access; or why it is refused.
    pub(crate) fn read(
        endpoint: QueryEndpoint,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        access: &Access,
    ) -> Result<QueryRequest, String> {
        let params = query_params(query);
        let body = QueryBody::parse(headers, body)?;
        let format_name = param(&params, "format").or(body.format.as_deref());
        let (format, sql) = match endpoint {
            QueryEndpoint::Gigapi => (
                gigapi_format(format_name)?,
                body.query.as_deref().or(body.q.as_deref()).or_else(|| param(&params, "query")),
            ),
            QueryEndpoint::Influx => (
                influx_format(format_name, headers)?,
                param(&params, "q").or(body.q.as_deref()).or(body.query.as_deref()),
            ),
        };
        let sql = sql
            .ok_or(match endpoint {
                QueryEndpoint::Gigapi => "Missing query: send {\"query\": \"SELECT ...\"}",
                QueryEndpoint::Influx => "missing query parameter 'q'",
            })?
            .to_owned();
        let database = database_name(param(&params, "db"), body.db.as_deref(), access)?;
        Ok(QueryRequest { sql, database, format })
    }
}

/// What the request body of a query may hold.
#[derive(Debug, Default, serde::Deserialize)]
struct QueryBody {
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    db: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

impl QueryBody {
    fn parse(headers: &HeaderMap, body: &[u8]) -> Result<QueryBody, String> {
        if body.is_empty() {
            return Ok(QueryBody::default());
        }
        // A body that says it is JSON must be; any other body (curl -d sends
        // form-urlencoded) is JSON if it parses as JSON, else the SQL itself.
        let is_json =
            headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("json"));
        match serde_json::from_slice::<QueryBody>(body) {
            Ok(parsed) => Ok(parsed),
            Err(_) if !is_json => {
                // A plain-text body is the SQL itself.
                let text = std::str::from_utf8(body).map_err(|_| "the request body is not UTF-8".to_string())?;
                Ok(QueryBody { query: Some(text.to_owned()), ..QueryBody::default() })
            }
            Err(e) => Err(format!("Invalid request body: {e}; send {{\"query\": \"SELECT ...\", \"db\": \"mydb\"}}")),
        }
    }
}

/// The database of a query: the `db` parameter's, else the body's, else
/// `default`.
fn database_name(parameter: Option<&str>, body: Option<&str>, access: &Access) -> Result<String, String> {
    DatabaseChoice::for_access(access)
        .named("the db parameter", parameter)
        .named("the body", body)
        .first()
        .map_err(|e| e.to_string())
}
