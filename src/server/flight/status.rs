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

/// An Arrow error while encoding a message: the server's fault.
pub(crate) fn arrow_status(error: impl std::fmt::Display) -> Status {
    Status::internal(format!("Arrow IPC: {error}"))
}

/// Data a client sent that cannot be used: the client's fault.
pub(crate) fn client_data_status(error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("the data sent cannot be read: {error}"))
}

/// A schema as the IPC bytes FlightInfo and prepared statements carry.
pub(crate) fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into().map_err(arrow_status)?;
    Ok(message.0)
}

/// The most parameter data a statement handle carries (before base64).
const MAX_HANDLE_PARAMETER_BYTES: usize = 2 << 20;

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
    /// Set in the tickets of one FlightInfo, so that cancelling that FlightInfo
    /// stops its query and not another client's run of the same SQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) flight: Option<String>,
}

impl StatementHandle {
    /// A handle for `sql` in `database`, with no parameters bound.
    pub(crate) fn new(database: &str, sql: &str) -> StatementHandle {
        StatementHandle {
            database: database.to_owned(),
            sql: numbered_placeholders(sql).into_owned(),
            parameters: None,
            flight: None,
        }
    }

    /// This handle marked with a random id, for the ticket of one FlightInfo.
    pub(crate) fn for_one_flight(mut self) -> StatementHandle {
        self.flight = Some(uuid::Uuid::new_v4().simple().to_string());
        self
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
        // The handle travels back in every later call, and clients receive
        // at most 4 MiB by default.
        if bytes.len() > MAX_HANDLE_PARAMETER_BYTES {
            return Err(Status::resource_exhausted(format!(
                "the bound parameters take {} KiB; a prepared statement holds at most {} KiB of them: bind fewer \
                 rows, or write rows with bulk ingest",
                bytes.len() >> 10,
                MAX_HANDLE_PARAMETER_BYTES >> 10
            )));
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
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(client_data_status)?;
        let schema = reader.schema();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(client_data_status)?;
        let batch = arrow::compute::concat_batches(&schema, &batches).map_err(client_data_status)?;
        Ok(Some(batch))
    }
}

/// The SQL with each `?` parameter marker numbered (`$1`, `$2`, ...): JDBC and
/// ADBC users write `?`, and the engine takes Postgres' numbered markers.
/// A `?` inside a string (also `E'...'` and `$tag$...$tag$`), a quoted name or
/// a comment is text. SQL that already numbers its markers (`$1`, `?1`) is
/// left as it is.
pub(crate) fn numbered_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('?') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let bytes = sql.as_bytes();
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
    let mut markers: Vec<usize> = Vec::new();
    let mut numbered = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // E'...' strings take backslash escapes; the others double the quote.
                let backslashes = quote == b'\''
                    && i > 0
                    && bytes[i - 1].eq_ignore_ascii_case(&b'e')
                    && (i < 2 || !name_byte(bytes[i - 2]));
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
                // Block comments nest, as in Postgres.
                let mut depth = 1;
                i += 2;
                while i < bytes.len() && depth > 0 {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) && (i == 0 || !name_byte(bytes[i - 1])) => {
                numbered = true;
                i += 1;
            }
            b'$' if i == 0 || !name_byte(bytes[i - 1]) => {
                // $tag$ ... $tag$ (the tag may be empty) is a string.
                let end = (i + 1..bytes.len()).find(|&j| !name_byte(bytes[j])).unwrap_or(bytes.len());
                if bytes.get(end) == Some(&b'$') {
                    let tag = &bytes[i..=end];
                    i = memchr::memmem::find(&bytes[end + 1..], tag).map_or(bytes.len(), |at| end + 1 + at + tag.len());
                } else {
                    i += 1;
                }
            }
            b'?' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                numbered = true;
                i += 1;
            }
            // jsonb's `?|`, `?&` and `@?` are operators, not markers.
            b'?' if matches!(bytes.get(i + 1), Some(b'|' | b'&')) || (i > 0 && bytes[i - 1] == b'@') => i += 1,
            b'?' => {
                markers.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    if markers.is_empty() || numbered {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 2 * markers.len());
    let mut copied = 0;
    for (n, at) in markers.into_iter().enumerate() {
        out.push_str(&sql[copied..at]);
        out.push('$');
        out.push_str(&(n + 1).to_string());
        copied = at + 1;
    }
    out.push_str(&sql[copied..]);
    std::borrow::Cow::Owned(out)
}
