//! FlightSQL bulk ingest (`CommandStatementIngest`, ADBC's `adbc_ingest`):
//! Arrow batches into a measurement through the write path.

use std::sync::Arc;

use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::CommandStatementIngest;
use futures::StreamExt;
use tonic::{Request, Status};

use super::statements::{call_of, put_batches, SqlService};
use super::status::ingest_status;
use crate::query::SCHEMA as SCHEMA_NAME;

impl SqlService {
    /// Writes the batches of a bulk ingest into a measurement, each through
    /// the WAL before the next is read.
    pub(super) async fn ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
        let call = call_of(&request)?;
        let ingester = Arc::clone(self.ingester()?);
        if command.temporary {
            return Err(Status::unimplemented("temporary tables are not supported: ingest into a measurement"));
        }
        if command.transaction_id.is_some() {
            return Err(Status::unimplemented("transactions are not supported"));
        }
        let database = call.database("the ingest's catalog", command.catalog.as_deref())?;
        if let Some(schema) = command.schema.filter(|s| !s.is_empty() && s != SCHEMA_NAME) {
            return Err(Status::invalid_argument(format!(
                "measurements live in the schema '{SCHEMA_NAME}', not '{schema}'"
            )));
        }
        let options = command.table_definition_options.unwrap_or_default();
        let exists = self.engine.measurement_exists(&database, &command.table);
        if exists {
            match TableExistsOption::try_from(options.if_exists).unwrap_or(TableExistsOption::Unspecified) {
                TableExistsOption::Fail => {
                    return Err(Status::already_exists(format!(
                        "table '{database}.{SCHEMA_NAME}.{}' already exists (ingest mode create); append to it \
                         with mode append or create_append",
                        command.table
                    )))
                }
                TableExistsOption::Replace => {
                    return Err(Status::unimplemented(
                        "replacing a measurement is not supported: rows are appended, and a row with the same \
                         series and time replaces the fields it names",
                    ))
                }
                TableExistsOption::Append | TableExistsOption::Unspecified => {}
            }
        } else if TableNotExistOption::try_from(options.if_not_exist) == Ok(TableNotExistOption::Fail) {
            return Err(Status::not_found(format!(
                "table '{database}.{SCHEMA_NAME}.{}' not found (ingest mode append); create it with mode create \
                 or create_append",
                command.table
            )));
        }
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
}
