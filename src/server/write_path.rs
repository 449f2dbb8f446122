//! The write path and the write buffer as the query engine sees them, and the
//! write path's errors as the engine's: how SQL `INSERT` (from any front) and
//! Postgres `COPY` reach the ingester without the engine knowing it. Also the
//! engine as the compactor's merger, so merges and queries share one
//! deduplication without the compactor knowing the engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::catalog::{DeletePredicate, FileEntry, PartitionKey};
use crate::compactor::{FileMerger, MergedRows};
use crate::ingest::buffer::WriteBuffer;
use crate::ingest::Ingester;
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
        // The write path's own kind and SQLSTATE: a client's bad data, a full buffer, a disk failure.
        self.0.write_batch(database, table, &batch, false).await.map_err(|e| QueryError::refused(&e))
    }

    async fn delete(&self, database: &str, table: &str, predicate: DeletePredicate) -> Result<(), QueryError> {
        self.0.delete(database, table, predicate).await.map(|_| ()).map_err(|e| QueryError::refused(&e))
    }

    async fn drop_table(&self, database: &str, table: &str) -> Result<bool, QueryError> {
        self.0.drop_table(database, table).await.map_err(|e| QueryError::refused(&e))
    }
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
