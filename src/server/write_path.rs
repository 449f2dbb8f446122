//! The write path and the write buffer as the query engine sees them, and the
//! write path's errors as the engine's: how SQL `INSERT` (from any front) and
//! Postgres `COPY` reach the ingester without the engine knowing it. Also the
//! engine as the compactor's merger, so merges and queries share one
//! deduplication without the compactor knowing the engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::catalog::{FileEntry, PartitionKey};
use crate::compactor::{FileMerger, MergedRows};
use crate::ingest::buffer::WriteBuffer;
use crate::ingest::wal::WalError;
use crate::ingest::{IngestError, Ingester};
use crate::query::{BufferedRows, QueryEngine, QueryError, TableWriter};

/// The write buffer, as the query engine reads it.
#[derive(Debug)]
pub(crate) struct BufferForQueries(pub(crate) Arc<WriteBuffer>);

impl BufferedRows for BufferForQueries {
    fn partitions(
        &self,
        database: &str,
        table: &str,
        min_ns: i64,
        max_ns: i64,
    ) -> BTreeMap<PartitionKey, Vec<RecordBatch>> {
        self.0.partitions(database, table, min_ns, max_ns)
    }
}

/// The ingester, as the target of `INSERT`: existing columns only, as in SQL.
#[derive(Debug)]
pub(crate) struct InsertsToIngester(pub(crate) Arc<Ingester>);

#[async_trait]
impl TableWriter for InsertsToIngester {
    async fn write(&self, database: &str, table: &str, batch: RecordBatch) -> Result<usize, QueryError> {
        self.0.write_batch(database, table, &batch, false).await.map_err(write_error)
    }
}

/// A refused write as the engine's error, with the SQLSTATE that tells a
/// Postgres client whether to fix the data (class 22, 23, 42) or retry (53).
pub(crate) fn write_error(error: IngestError) -> QueryError {
    let sqlstate = match &error {
        IngestError::UnknownColumn(_) => return QueryError::UnknownColumn(error.to_string()),
        IngestError::Schema(_) => "42804",
        IngestError::IncompletePoint { .. } => "23502",
        IngestError::BadValue { .. } => "22P02",
        IngestError::BufferFull { .. } | IngestError::Busy | IngestError::Wal(WalError::Closed) => "53000",
        IngestError::Wal(_) | IngestError::Catalog(_) => "58030",
        IngestError::Internal(_) => "XX000",
    };
    QueryError::Write { message: error.to_string(), sqlstate }
}

/// The query engine as the compactor's source of merged rows.
#[derive(Debug)]
pub(crate) struct MergesThroughEngine(pub(crate) Arc<QueryEngine>);

#[async_trait]
impl FileMerger for MergesThroughEngine {
    async fn merged_rows(&self, database: &str, table: &str, files: Vec<FileEntry>) -> Result<MergedRows, String> {
        use futures::StreamExt;
        let output = self.0.merged_files(database, table, files).await.map_err(|e| e.to_string())?;
        Ok(output.stream.map(|batch| batch.map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))).boxed())
    }
}
