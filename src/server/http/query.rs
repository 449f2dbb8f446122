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

use super::query_request::{Format, QueryEndpoint, QueryRequest};
use super::text::text_friendly;
use super::{classified_error, json_error, HttpState};
use crate::access::Access;
use crate::errors::{Classified, ErrorClass};
use crate::query::{QueryEngine, QueryError, QueryOutput};

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

/// Reads and answers a query request to `endpoint`.
async fn answer(
    state: HttpState,
    method: Method,
    access: Access,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
    endpoint: QueryEndpoint,
) -> Response {
    let body = match read_query_body(body, state.max_query_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // InfluxDB 1.x's form (`q=`), which writers send too: before the engine.
    if endpoint == QueryEndpoint::Gigapi {
        if let Some(statement) = super::influxql::statement(query.as_deref(), &headers, &body) {
            return super::influxql::answer(&state, &access, &statement);
        }
    }
    let Some(engine) = state.engine.clone() else { return no_engine(&state) };
    match QueryRequest::read(endpoint, query.as_deref(), &headers, &body, &access) {
        Ok(request) => respond(engine, request.database, request.sql, request.format, &method, &access).await,
        Err(e) => json_error(StatusCode::BAD_REQUEST, e),
    }
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
    answer(state, method, access, query, headers, body, QueryEndpoint::Gigapi).await
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
    answer(state, method, access, query, headers, body, QueryEndpoint::Influx).await
}
