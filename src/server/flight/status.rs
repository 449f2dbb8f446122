//! The engine's and the write path's errors as gRPC statuses, and the
//! statement handles this front gives clients.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::ingest::wal::WalError;
use crate::ingest::IngestError;
use crate::query::QueryError;

/// The gRPC status for a failed query: what the client should do about it.
pub(crate) fn query_status(error: QueryError) -> Status {
    let message = error.to_string();
    match error {
        QueryError::UnknownDatabase(_) | QueryError::UnknownTable(_) => Status::not_found(message),
        QueryError::Forbidden(_) => Status::permission_denied(message),
        QueryError::Unsupported(_) => Status::unimplemented(message),
        QueryError::Syntax(_) | QueryError::UnknownColumn(_) | QueryError::Plan(_) | QueryError::InvalidData { .. } => {
            Status::invalid_argument(message)
        }
        QueryError::Write { sqlstate, .. } => write_status_of(sqlstate, message),
        QueryError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        QueryError::Timeout(_) => Status::deadline_exceeded(message),
        QueryError::Cancelled => Status::cancelled(message),
        QueryError::Execution(_) => Status::internal(message),
    }
}

/// A refused write by its SQLSTATE class: the client's data (fix it), a full
/// buffer (retry), or the server's disk (ask the operator).
fn write_status_of(sqlstate: &str, message: String) -> Status {
    match sqlstate {
        "42P01" | "3D000" => Status::not_found(message),
        s if s.starts_with("53") => Status::unavailable(message),
        s if s.starts_with("58") || s.starts_with("XX") => Status::internal(message),
        _ => Status::invalid_argument(message),
    }
}

/// The gRPC status for a refused ingest.
pub(crate) fn ingest_status(error: IngestError) -> Status {
    let message = error.to_string();
    match error {
        IngestError::UnknownColumn(_)
        | IngestError::Schema(_)
        | IngestError::IncompletePoint { .. }
        | IngestError::BadValue { .. } => Status::invalid_argument(message),
        IngestError::BufferFull { .. } | IngestError::Busy | IngestError::Wal(WalError::Closed) => {
            Status::unavailable(message)
        }
        IngestError::Wal(_) | IngestError::Catalog(_) | IngestError::Internal(_) => Status::internal(message),
    }
}

/// An Arrow error while encoding or decoding a message.
pub(crate) fn arrow_status(error: impl std::fmt::Display) -> Status {
    Status::internal(format!("Arrow IPC: {error}"))
}

/// A schema as the IPC bytes FlightInfo and prepared statements carry.
pub(crate) fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into().map_err(arrow_status)?;
    Ok(message.0)
}

/// What a statement handle or a statement ticket holds: everything needed to
/// run the statement again, so that the server keeps no state between calls
/// and any handle outlives a restart. Clients treat it as opaque bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StatementHandle {
    /// The database the statement was planned in.
    pub(crate) database: String,
    /// The SQL.
    pub(crate) sql: String,
    /// Bound parameters (one row per execution), as an Arrow IPC stream in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parameters: Option<String>,
}

impl StatementHandle {
    /// A handle for `sql` in `database`, with no parameters bound.
    pub(crate) fn new(database: &str, sql: &str) -> StatementHandle {
        StatementHandle {
            database: database.to_owned(),
            sql: numbered_placeholders(sql).into_owned(),
            parameters: None,
        }
    }

    /// The handle as the bytes a client receives.
    pub(crate) fn encode(&self) -> Result<Bytes, Status> {
        serde_json::to_vec(self).map(Bytes::from).map_err(|e| Status::internal(format!("encoding a handle: {e}")))
    }

    /// A handle from the bytes a client sent back.
    pub(crate) fn decode(bytes: &[u8]) -> Result<StatementHandle, Status> {
        serde_json::from_slice(bytes).map_err(|_| {
            Status::invalid_argument("the statement handle was not made by this server; prepare the statement again")
        })
    }

    /// This handle with `batch` as its bound parameters.
    pub(crate) fn with_parameters(mut self, batch: &RecordBatch) -> Result<StatementHandle, Status> {
        let mut bytes = Vec::new();
        {
            let mut writer =
                arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema()).map_err(arrow_status)?;
            writer.write(batch).map_err(arrow_status)?;
            writer.finish().map_err(arrow_status)?;
        }
        self.parameters = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        Ok(self)
    }

    /// The bound parameters, if any.
    pub(crate) fn parameters(&self) -> Result<Option<RecordBatch>, Status> {
        let Some(encoded) = &self.parameters else { return Ok(None) };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| Status::invalid_argument("the statement handle's parameters are damaged"))?;
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(arrow_status)?;
        let schema = reader.schema();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(arrow_status)?;
        let batch = arrow::compute::concat_batches(&schema, &batches).map_err(arrow_status)?;
        Ok(Some(batch))
    }
}

/// The SQL with each `?` parameter marker numbered (`$1`, `$2`, ...): JDBC and
/// ADBC users write `?`, and the engine takes Postgres' numbered markers.
/// Markers inside strings, quoted names and comments are text, not markers.
pub(crate) fn numbered_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('?') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let bytes = sql.as_bytes();
    let (mut out, mut copied, mut count, mut i) = (String::with_capacity(sql.len() + 8), 0, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // E'...' strings take backslash escapes; the others double the quote.
                let backslashes = quote == b'\'' && i > 0 && bytes[i - 1].eq_ignore_ascii_case(&b'e');
                i += 1;
                while i < bytes.len() {
                    let escaped = backslashes && bytes[i] == b'\\';
                    let doubled = bytes[i] == quote && bytes.get(i + 1) == Some(&quote);
                    if escaped || doubled {
                        i += 2;
                    } else if bytes[i] == quote {
                        break;
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |at| i + at);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = memchr::memmem::find(&bytes[i + 2..], b"*/").map_or(bytes.len(), |at| i + 2 + at + 2);
            }
            b'?' => {
                count += 1;
                out.push_str(&sql[copied..i]);
                out.push('$');
                out.push_str(&count.to_string());
                i += 1;
                copied = i;
            }
            _ => i += 1,
        }
    }
    if count == 0 {
        return std::borrow::Cow::Borrowed(sql);
    }
    out.push_str(&sql[copied..]);
    std::borrow::Cow::Owned(out)
}
