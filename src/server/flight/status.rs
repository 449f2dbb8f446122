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

use crate::errors::Classified;
use crate::ingest::IngestError;
use crate::query::QueryError;
use crate::server::status::grpc_code;

/// The gRPC status of a failure: its kind's code (one table for every
/// front, `server::status`) and its message.
pub(crate) fn classified_status(error: &dyn Classified) -> Status {
    Status::new(grpc_code(error.kind()), error.to_string())
}

/// The gRPC status for a failed query.
pub(crate) fn query_status(error: QueryError) -> Status {
    classified_status(&error)
}

/// The gRPC status for a refused ingest.
pub(crate) fn ingest_status(error: IngestError) -> Status {
    classified_status(&error)
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
            sql: crate::query::numbered_placeholders(sql).into_owned(),
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
        // These bytes come from the client. arrow's StreamReader allocates
        // what a message header says its body takes before reading it (a
        // damaged header asked for 2^59 bytes and aborted the process:
        // tests/it/fuzz.rs found it); the decoder reads only the bytes there
        // are, and the guard refuses compressed buffers that claim more than
        // a handle may hold. arrow's buffer reads panic on some damaged
        // offsets instead of failing, so a panic here becomes an error too.
        super::ipc_guard::check_stream(&bytes, MAX_HANDLE_PARAMETER_BYTES)
            .map_err(|e| Status::invalid_argument(format!("the statement handle's parameters are damaged: {e}")))?;
        let read = std::panic::catch_unwind(move || -> Result<RecordBatch, arrow::error::ArrowError> {
            let mut decoder = arrow::ipc::reader::StreamDecoder::new();
            let mut buffer = arrow::buffer::Buffer::from(bytes);
            let mut batches = Vec::new();
            while let Some(batch) = decoder.decode(&mut buffer)? {
                batches.push(batch);
            }
            decoder.finish()?;
            let schema = decoder
                .schema()
                .ok_or_else(|| arrow::error::ArrowError::IpcError("the parameters have no schema".into()))?;
            arrow::compute::concat_batches(&schema, &batches)
        });
        match read {
            Ok(batch) => batch.map(Some).map_err(client_data_status),
            Err(_) => Err(Status::invalid_argument("the statement handle's parameters are damaged")),
        }
    }
}
