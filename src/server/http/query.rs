//! The query endpoints: GigAPI's `POST /query` and InfluxDB 3's
//! `/api/v3/query_sql`, in JSON, NDJSON/JSONL, CSV, Arrow IPC, Parquet and a
//! pretty text table.
//!
//! Results stream: the first batch is computed before the status line (so a
//! failing query gets a proper error status), then each batch is encoded and sent
//! as it arrives. Only `pretty` holds the whole result.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Extension;
use futures::{Stream, StreamExt};

use super::text::text_friendly;
use super::{classified_error, json_error, param, query_params, HttpState};
use crate::access::Access;
use crate::errors::{Classified, ErrorClass};
use crate::query::{QueryEngine, QueryError, QueryOutput};
use crate::server::database::DatabaseChoice;

/// The result encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
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
    fn content_type(self) -> &'static str {
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

fn gigapi_format(name: Option<&str>) -> Result<Format, String> {
    Ok(match name.unwrap_or("json") {
        "json" | "" => Format::GigapiJson,
        "ndjson" | "jsonl" => Format::JsonLines,
        "csv" => Format::Csv,
        "arrow" => Format::Arrow,
        "parquet" => Format::Parquet,
        "pretty" => Format::Pretty,
        other => return Err(format!("Unsupported format: {other} (json, ndjson, csv, arrow, parquet)")),
    })
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
    Ok(match name {
        "json" | "" => Format::JsonArray,
        "jsonl" | "ndjson" => Format::JsonLines,
        "csv" => Format::Csv,
        "parquet" => Format::Parquet,
        "pretty" => Format::Pretty,
        "arrow" => Format::Arrow,
        other => return Err(format!("unsupported format '{other}' (json, jsonl, csv, parquet, pretty)")),
    })
}

/// The response to a failed query.
fn error_response(error: &QueryError) -> Response {
    if error.class() == ErrorClass::Server {
        tracing::error!(%error, "query failed");
    }
    classified_error(error)
}

/// Encodes batches one at a time.
struct Encoder {
    format: Format,
    batches: usize,
    arrow: Option<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
    parquet: Option<parquet::arrow::ArrowWriter<Vec<u8>>>,
    pretty: Vec<RecordBatch>,
}

impl Encoder {
    fn new(format: Format, schema: &SchemaRef) -> Result<Encoder, String> {
        let mut encoder = Encoder { format, batches: 0, arrow: None, parquet: None, pretty: Vec::new() };
        match format {
            Format::Arrow => {
                encoder.arrow =
                    Some(arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema).map_err(|e| e.to_string())?)
            }
            Format::Parquet => {
                encoder.parquet = Some(
                    parquet::arrow::ArrowWriter::try_new(Vec::new(), Arc::clone(schema), None)
                        .map_err(|e| e.to_string())?,
                )
            }
            _ => {}
        }
        Ok(encoder)
    }

    /// `prefix`, then one JSON object per row, each ended by a newline.
    fn json_lines(batch: &RecordBatch, prefix: &[u8]) -> Result<Vec<u8>, String> {
        let batch = text_friendly(batch).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(batch.get_array_memory_size() + prefix.len());
        out.extend_from_slice(prefix);
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::LineDelimited>(&mut out);
        writer.write(&batch).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
        drop(writer);
        Ok(out)
    }

    /// The bytes before the first row.
    fn start(&self) -> &'static [u8] {
        match self.format {
            Format::GigapiJson => b"{\"results\":[",
            Format::JsonArray => b"[",
            _ => b"",
        }
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, String> {
        if batch.num_rows() == 0 && !matches!(self.format, Format::Csv) {
            return Ok(Vec::new());
        }
        let first = self.batches == 0;
        self.batches += 1;
        match self.format {
            Format::GigapiJson | Format::JsonArray => {
                // One object per line: a raw newline is only ever the separator
                // (JSON strings escape theirs), so it becomes the comma.
                let mut objects = Self::json_lines(batch, if first { b"" } else { b"," })?;
                if objects.last() == Some(&b'\n') {
                    objects.pop();
                }
                for byte in objects.iter_mut() {
                    if *byte == b'\n' {
                        *byte = b',';
                    }
                }
                Ok(objects)
            }
            Format::JsonLines => Self::json_lines(batch, b""),
            Format::Csv => {
                let batch = text_friendly(batch).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                let mut writer = arrow::csv::WriterBuilder::new().with_header(first).build(&mut out);
                writer.write(&batch).map_err(|e| e.to_string())?;
                drop(writer);
                Ok(out)
            }
            Format::Arrow => {
                let writer = self.arrow.as_mut().ok_or("arrow writer missing")?;
                writer.write(batch).map_err(|e| e.to_string())?;
                Ok(std::mem::take(writer.get_mut()))
            }
            Format::Parquet => {
                let writer = self.parquet.as_mut().ok_or("parquet writer missing")?;
                writer.write(batch).map_err(|e| e.to_string())?;
                Ok(std::mem::take(writer.inner_mut()))
            }
            Format::Pretty => {
                self.pretty.push(batch.clone());
                Ok(Vec::new())
            }
        }
    }

    /// The bytes after the last row.
    fn finish(&mut self, schema: &SchemaRef) -> Result<Vec<u8>, String> {
        match self.format {
            Format::GigapiJson => Ok(b"]}".to_vec()),
            Format::JsonArray => Ok(b"]".to_vec()),
            Format::JsonLines => Ok(Vec::new()),
            Format::Csv if self.batches == 0 => {
                // A header even for an empty result.
                let empty = RecordBatch::new_empty(Arc::clone(schema));
                let empty = text_friendly(&empty).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out)
                    .write(&empty)
                    .map_err(|e| e.to_string())?;
                Ok(out)
            }
            Format::Csv => Ok(Vec::new()),
            Format::Arrow => {
                let mut writer = self.arrow.take().ok_or("arrow writer missing")?;
                writer.finish().map_err(|e| e.to_string())?;
                Ok(std::mem::take(writer.get_mut()))
            }
            Format::Parquet => {
                let writer = self.parquet.take().ok_or("parquet writer missing")?;
                writer.into_inner().map_err(|e| e.to_string())
            }
            Format::Pretty => {
                let batches: Vec<RecordBatch> =
                    self.pretty.iter().map(text_friendly).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
                let table = arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| e.to_string())?;
                Ok(format!("{table}\n").into_bytes())
            }
        }
    }
}

type BodyChunk = Result<Bytes, std::io::Error>;

/// Runs a query and streams its result in `format`. Statements that change
/// data or the catalog run only for POST: a GET can come from any web page
/// (`<img src>`), with no preflight to stop it.
async fn respond(
    engine: Arc<QueryEngine>,
    database: String,
    sql: String,
    format: Format,
    method: &Method,
    access: &Access,
) -> Response {
    let plan = match engine.plan(&database, &sql, access).await {
        Ok(plan) => plan,
        Err(error) => return error_response(&error),
    };
    if method != Method::POST && QueryEngine::changes_data(&plan) {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "INSERT, CREATE, ALTER and DROP run only in a POST request");
    }
    let output: QueryOutput = match engine.execute(&database, plan).await {
        Ok(output) => output,
        Err(error) => return error_response(&error),
    };
    let schema = Arc::clone(&output.schema);
    let mut stream = output.stream;
    // Compute the first batch before the status line, so that an error gets a status.
    let first = match stream.next().await {
        Some(Ok(batch)) => Some(batch),
        Some(Err(error)) => return error_response(&QueryError::from_datafusion(error, false)),
        None => None,
    };
    let mut encoder = match Encoder::new(format, &schema) {
        Ok(encoder) => encoder,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let head = {
        let mut head = encoder.start().to_vec();
        if let Some(batch) = &first {
            match encoder.batch(batch) {
                Ok(bytes) => head.extend(bytes),
                Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }
        head
    };
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) }).chain(rest_of_body(
        stream,
        encoder,
        schema,
        first.is_none(),
    ));
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}

fn rest_of_body(
    stream: datafusion::execution::SendableRecordBatchStream,
    encoder: Encoder,
    schema: SchemaRef,
    finished: bool,
) -> impl Stream<Item = BodyChunk> {
    futures::stream::unfold((Some(stream), Some(encoder), finished), move |(mut stream, mut encoder, finished)| {
        let schema = Arc::clone(&schema);
        async move {
            let mut enc = encoder.take()?;
            let failed = |message: String| std::io::Error::other(message);
            if !finished {
                if let Some(s) = stream.as_mut() {
                    match s.next().await {
                        Some(Ok(batch)) => {
                            let chunk = enc.batch(&batch).map(Bytes::from).map_err(failed);
                            return Some((chunk, (stream, Some(enc), false)));
                        }
                        Some(Err(error)) => {
                            let error = QueryError::from_datafusion(error, false);
                            tracing::warn!(%error, "query failed while its result was being sent");
                            return Some((Err(failed(error.to_string())), (None, None, true)));
                        }
                        None => {}
                    }
                }
            }
            let tail = enc.finish(&schema).map(Bytes::from).map_err(failed);
            Some((tail, (None, None, true)))
        }
    })
}

/// What the request body of `POST /query` may hold.
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

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<QueryBody, String> {
    if body.is_empty() {
        return Ok(QueryBody::default());
    }
    // A body that says it is JSON must be; any other body (curl -d sends
    // form-urlencoded) is JSON if it parses as JSON, else the SQL itself.
    let is_json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("json"));
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

/// The database of a query: the `db` parameter's, else the body's, else
/// `default`.
fn database_name(parameter: Option<&str>, body: Option<&str>, access: &Access) -> Result<String, String> {
    DatabaseChoice::for_access(access)
        .named("the db parameter", parameter)
        .named("the body", body)
        .first()
        .map_err(|e| e.to_string())
}

fn no_engine(state: &HttpState) -> Response {
    json_error(
        StatusCode::FORBIDDEN,
        format!("this server runs in {} mode and answers no queries (GIGAPI_MODE)", state.mode),
    )
}

/// Reads a query body of at most `limit` bytes.
async fn read_query_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the query body is larger than {limit} bytes (HOURGLASS_MAX_QUERY_BYTES), or was cut off"),
        )
    })
}

/// What both query endpoints read first: the engine, the query string and the body.
async fn read_request(
    state: &HttpState,
    query: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Arc<QueryEngine>, Vec<(String, String)>, QueryBody), Response> {
    let engine = state.engine.clone().ok_or_else(|| no_engine(state))?;
    let params = query_params(query.as_deref());
    let body = read_query_body(body, state.max_query_bytes).await?;
    let parsed = parse_body(headers, &body).map_err(|e| json_error(StatusCode::BAD_REQUEST, e))?;
    Ok((engine, params, parsed))
}

/// `POST /query?db=...&format=...` with `{"query": "...", "db": "..."}` (GigAPI).
pub(super) async fn gigapi_query(
    method: Method,
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (engine, params, parsed) = match read_request(&state, query, &headers, body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let format = match gigapi_format(param(&params, "format").or(parsed.format.as_deref())) {
        Ok(format) => format,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let Some(sql) = parsed.query.or(parsed.q).or_else(|| param(&params, "query").map(str::to_owned)) else {
        return json_error(StatusCode::BAD_REQUEST, "Missing query: send {\"query\": \"SELECT ...\"}");
    };
    let database = match database_name(param(&params, "db"), parsed.db.as_deref(), &access) {
        Ok(database) => database,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    respond(engine, database, sql, format, &method, &access).await
}

/// `GET` or `POST /api/v3/query_sql` with `db`, `q` and `format` (InfluxDB 3).
pub(super) async fn influx_query(
    method: Method,
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (engine, params, parsed) = match read_request(&state, query, &headers, body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let format = match influx_format(param(&params, "format").or(parsed.format.as_deref()), &headers) {
        Ok(format) => format,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let Some(sql) = param(&params, "q").map(str::to_owned).or(parsed.q).or(parsed.query) else {
        return json_error(StatusCode::BAD_REQUEST, "missing query parameter 'q'");
    };
    let database = match database_name(param(&params, "db"), parsed.db.as_deref(), &access) {
        Ok(database) => database,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    respond(engine, database, sql, format, &method, &access).await
}
