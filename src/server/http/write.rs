//! The write endpoints: InfluxDB v1 `/write`, v2 `/api/v2/write`, v3
//! `/api/v3/write_lp`, and GigAPI's `/gigapi/write[/{db}]`.

use std::io::Read;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{classified_error, denied, json_error, param, query_params, HttpState};
use crate::access::{Access, Privilege};
use crate::errors::{Classified, ErrorClass};
use crate::ingest::line_protocol::Precision;
use crate::ingest::{IngestError, LineProtocolWrite, WriteOutcome, WriteSlot};
use crate::server::database::DatabaseChoice;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    V1,
    V2,
    V3,
    Gigapi,
}

fn parse_precision(endpoint: Endpoint, value: Option<&str>) -> Result<Precision, String> {
    use Precision::*;
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(if endpoint == Endpoint::V3 { Auto } else { Nanosecond });
    };
    let precision = match (endpoint, value) {
        (_, "ns" | "n") => Some(Nanosecond),
        (_, "us" | "u") => Some(Microsecond),
        (_, "ms") => Some(Millisecond),
        (_, "s") => Some(Second),
        (Endpoint::V1 | Endpoint::Gigapi, "µ") => Some(Microsecond),
        (Endpoint::V1 | Endpoint::Gigapi, "m") => Some(Minute),
        (Endpoint::V1 | Endpoint::Gigapi, "h") => Some(Hour),
        (Endpoint::V3, "auto") => Some(Auto),
        (Endpoint::V3, "nanosecond") => Some(Nanosecond),
        (Endpoint::V3, "microsecond") => Some(Microsecond),
        (Endpoint::V3, "millisecond") => Some(Millisecond),
        (Endpoint::V3, "second") => Some(Second),
        _ => None,
    };
    precision.ok_or_else(|| {
        let allowed = match endpoint {
            Endpoint::V1 | Endpoint::Gigapi => "n, ns, u, us, ms, s, m, h",
            Endpoint::V2 => "ns, us, ms, s",
            Endpoint::V3 => "auto, nanosecond, microsecond, millisecond, second (or ns, us, ms, s)",
        };
        format!("invalid precision '{value}'; expected one of {allowed}")
    })
}

fn parse_flag(params: &[(String, String)], name: &str, default: bool) -> Result<bool, String> {
    match param(params, name) {
        None | Some("") => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(format!("invalid {name} '{other}'; expected true or false")),
    }
}

fn too_large(limit: usize) -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {limit} bytes (HOURGLASS_MAX_BODY_BYTES); split the write"),
    )
}

/// Whether a body's declared `Content-Length` is over the limit. The
/// declared size is only ever a reason to refuse or to count the write
/// against the write path's limit (a client that declares more than it
/// sends holds that share until its body timeout): it never sizes a buffer.
fn declared_too_large(headers: &HeaderMap, limit: usize) -> bool {
    declared_length(headers).is_some_and(|length| length > limit as u64)
}

/// The body's declared `Content-Length`, if it has one that parses.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// Reads a body of at most `limit` bytes, decompressing gzip, and counts
/// what it holds in `slot` as it arrives. The error is the response.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize, slot: &mut WriteSlot<'_>) -> Result<Bytes, Response> {
    let too_large = || too_large(limit);
    let gzip =
        match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase()) {
            None => false,
            Some(e) if e.is_empty() || e == "identity" => false,
            Some(e) if e == "gzip" || e == "x-gzip" => true,
            Some(other) => {
                return Err(json_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("unsupported Content-Encoding '{other}'; use gzip or none"),
                ))
            }
        };
    // A declared size is counted whole before the body is asked for, so a
    // write that does not fit is refused before its client sends it.
    let mut counted = declared_length(headers).map_or(0, |length| length.min(limit as u64) as usize);
    slot.hold_body(counted).map_err(ingest_error_response)?;
    let mut stream = body.into_data_stream();
    let mut raw = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("reading the request body: {e}")))?;
        if raw.len() + chunk.len() > limit {
            return Err(too_large());
        }
        if raw.len() + chunk.len() > counted {
            counted = raw.len() + chunk.len();
            slot.hold_body(counted).map_err(ingest_error_response)?;
        }
        raw.extend_from_slice(&chunk);
    }
    let raw = raw.freeze();
    if !gzip {
        return Ok(raw);
    }
    let decoded = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
        let read = flate2::read::MultiGzDecoder::new(raw.as_ref()).take(limit as u64 + 1).read_to_end(&mut out);
        read.map(|_| out)
    })
    .await
    .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("request body is not valid gzip: {e}")))?;
    if decoded.len() > limit {
        return Err(too_large());
    }
    // The compressed body is gone: the decoded one is counted instead.
    slot.hold_body(decoded.len()).map_err(ingest_error_response)?;
    Ok(Bytes::from(decoded))
}

fn rejected_response(endpoint: Endpoint, outcome: &WriteOutcome) -> Response {
    let message = if outcome.rows_written > 0 {
        "partial write of line protocol occurred".to_string()
    } else if endpoint == Endpoint::V3 {
        "no lines were written: every line was rejected or accept_partial=false".to_string()
    } else {
        "no lines were written: this endpoint writes all lines or none".to_string()
    };
    let mut body = serde_json::json!({
        "error": message,
        "data": outcome.errors,
        "lines_written": outcome.accepted_lines,
        "lines_rejected": outcome.rejected_lines,
    });
    if endpoint == Endpoint::V2 {
        body["code"] = "invalid".into();
        body["message"] = format!(
            "{message}: {}",
            outcome.errors.first().map(|e| format!("line {}: {}", e.line_number, e.error_message)).unwrap_or_default()
        )
        .into();
    }
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn ingest_error_response(error: IngestError) -> Response {
    if error.class() == ErrorClass::Server {
        tracing::error!(%error, "write failed");
    }
    classified_error(&error)
}

async fn write(
    state: HttpState,
    access: Access,
    endpoint: Endpoint,
    path_database: Option<String>,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(ingester) = state.ingester.clone() else {
        return json_error(
            StatusCode::FORBIDDEN,
            format!("this server runs in {} mode and takes no writes (GIGAPI_MODE)", state.mode),
        );
    };
    let params = query_params(query.as_deref());
    let choice = match endpoint {
        Endpoint::V2 => DatabaseChoice::for_access(&access).named("the bucket parameter", param(&params, "bucket")),
        _ => DatabaseChoice::for_access(&access)
            .named("the path", path_database.as_deref())
            .named("the db parameter", param(&params, "db")),
    };
    let database = match choice.first() {
        Ok(database) => database,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Err(refused) = access.require(&database, Privilege::Write) {
        return denied(refused);
    }
    let precision = match parse_precision(endpoint, param(&params, "precision")) {
        Ok(p) => p,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let flags = if endpoint == Endpoint::V3 {
        parse_flag(&params, "accept_partial", true).and_then(|a| Ok((a, parse_flag(&params, "no_sync", false)?)))
    } else {
        Ok((false, false))
    };
    let (accept_partial, no_sync) = match flags {
        Ok(flags) => flags,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    // A declared size over the limit is refused before the write waits for
    // a place; the body is read only once it has one.
    if declared_too_large(&headers, state.max_body_bytes) {
        return too_large(state.max_body_bytes);
    }
    let mut slot = match ingester.admit().await {
        Ok(slot) => slot,
        Err(error) => return ingest_error_response(error),
    };
    // The place is held while the body arrives: a sender too slow to finish
    // in time gives it up, so a few stalled clients cannot stop every write.
    let body = match tokio::time::timeout(
        state.write_body_timeout,
        read_body(&headers, body, state.max_body_bytes, &mut slot),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(response)) => return response,
        Err(_) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s (HOURGLASS_WRITE_BODY_TIMEOUT_S); nothing was written",
                    state.write_body_timeout.as_secs_f64()
                ),
            )
        }
    };
    let received_at_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let options = LineProtocolWrite { precision, accept_partial, no_sync, received_at_ns };
    match ingester.write_line_protocol(slot, &database, body, options).await {
        Ok(outcome) if outcome.rejected_lines == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(outcome) => rejected_response(endpoint, &outcome),
        Err(error) => ingest_error_response(error),
    }
}

pub(super) async fn write_v1(
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write(state, access, Endpoint::V1, None, query, headers, body).await
}

pub(super) async fn write_v2(
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write(state, access, Endpoint::V2, None, query, headers, body).await
}

pub(super) async fn write_v3(
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write(state, access, Endpoint::V3, None, query, headers, body).await
}

pub(super) async fn write_gigapi(
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write(state, access, Endpoint::Gigapi, None, query, headers, body).await
}

pub(super) async fn write_gigapi_db(
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    Path(database): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write(state, access, Endpoint::Gigapi, Some(database), query, headers, body).await
}
