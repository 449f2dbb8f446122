//! FlightSQL bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`):
//! Arrow batches into a measurement through the write path.

use std::sync::Arc;

use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::CommandStatementIngest;
use futures::StreamExt;
use tonic::{Request, Status};

use super::statements::{call_of, put_batches, SqlService};
use super::status::{classified_status, ingest_status};
use crate::access::Privilege;
use crate::query::SCHEMA as SCHEMA_NAME;

impl SqlService {
    /// Writes the batches of a bulk ingest into a measurement, each through
    /// the WAL before the next is read.
    pub(super) async fn ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let call = call_of(&request)?;
        let ingester = Arc::clone(self.ingester()?);
        let database = match self.ingest_allowed(&call, &command) {
            Ok(database) => database,
            Err(refusal) => {
                // Refused before a batch is read: the client is still sending,
                // and a stream closed under it reads as a broken pipe (ADBC's
                // Go driver reports EOF) instead of this status.
                drain(request).await;
                return Err(refusal);
            }
        };
        let mut written = 0usize;
        // Each batch is written before the next is read: no total bound is needed.
        let mut batches = Box::pin(put_batches(request, usize::MAX));
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            // Each batch is acknowledged by the WAL before the next is read:
            // memory stays bounded by one message.
            match ingester.write_batch(&database, &command.table, &batch, true).await {
                Ok(rows) => written += rows,
                Err(error) => {
                    let status = ingest_status(error);
                    let message = if written > 0 {
                        format!("{} ({written} rows of earlier batches were written)", status.message())
                    } else {
                        status.message().to_owned()
                    };
                    return Err(Status::new(status.code(), message));
                }
            }
        }
        Ok(i64::try_from(written).unwrap_or(i64::MAX))
    }

    /// Whether the ingest `command` may write (its options against the
    /// measurement as it stands), and into which database.
    fn ingest_allowed(&self, call: &super::Call, command: &CommandStatementIngest) -> Result<String, Status> {
        use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
        if command.temporary {
            return Err(Status::unimplemented("temporary tables are not supported: ingest into a measurement"));
        }
        if command.transaction_id.is_some() {
            return Err(Status::unimplemented("transactions are not supported"));
        }
        let database = call.database("the ingest's catalog", command.catalog.as_deref())?;
        call.access.require(&database, Privilege::Write).map_err(|denied| classified_status(&denied))?;
        if let Some(schema) = command.schema.as_ref().filter(|s| !s.is_empty() && *s != SCHEMA_NAME) {
            return Err(Status::invalid_argument(format!(
                "measurements live in the schema '{SCHEMA_NAME}', not '{schema}'"
            )));
        }
        let options = command.table_definition_options.unwrap_or_default();
        let exists = self.engine.measurement_exists(&database, &command.table);
        if exists {
            match TableExistsOption::try_from(options.if_exists).unwrap_or(TableExistsOption::Unspecified) {
                TableExistsOption::Fail => Err(Status::already_exists(format!(
                    "table '{database}.{SCHEMA_NAME}.{}' already exists (ingest mode create); append to it \
                     with mode append or create_append",
                    command.table
                ))),
                TableExistsOption::Replace => Err(Status::unimplemented(
                    "replacing a measurement is not supported: rows are appended, and a row with the same \
                     series and time replaces the fields it names",
                )),
                TableExistsOption::Append | TableExistsOption::Unspecified => Ok(database),
            }
        } else if TableNotExistOption::try_from(options.if_not_exist) == Ok(TableNotExistOption::Fail) {
            Err(Status::not_found(format!(
                "table '{database}.{SCHEMA_NAME}.{}' not found (ingest mode append); create it with mode create \
                 or create_append",
                command.table
            )))
        } else {
            Ok(database)
        }
    }
}

/// Reads and drops what the client still sends of a refused upload, up to a
/// bound of bytes and time, so that it reads the refusal instead of a reset.
async fn drain(request: Request<PeekableFlightDataStream>) {
    const MAX_BYTES: usize = 64 << 20;
    const MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);
    let mut stream = request.into_inner();
    let mut read = 0usize;
    let _ = tokio::time::timeout(MAX_TIME, async {
        while let Some(Ok(message)) = stream.next().await {
            read += message.data_body.len() + message.data_header.len();
            if read > MAX_BYTES {
                break;
            }
        }
    })
    .await;
}
