//! The table provider of a measurement: the catalog prunes, Parquet and the write
//! buffer supply the rows, and deduplication runs only where sources overlap.
//!
//! A scan takes the time ranges the filters allow ([`super::bounds`]), reads the
//! write buffer's partitions in those ranges, then asks the in-memory catalog
//! for the hour partitions and files whose time ranges meet them (in that order:
//! see [`BufferedRows::partitions`]). Other partitions and files are never listed
//! or opened. Within an hour partition, sources (files in write order, then the
//! buffer) whose time ranges do not overlap are read as they are, in one Parquet
//! scan with projection, predicate pushdown and row-group and page pruning; sources
//! that overlap are merged by [`DeduplicateExec`], so each series and time comes out
//! once with the last write winning field by field.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties, SendableRecordBatchStream,
};

use super::bounds::{hull, overlaps, time_ranges, TimeRange, ALL_TIME};
use super::dedup::DeduplicateExec;
use super::QueryError;
use crate::catalog::{Catalog, DeletePredicate, FileEntry, PartitionKey, TableSchema, TableSummary, Tombstone};
use crate::storage::{file_path_in_layer, sort_and_deduplicate, time_range, RowOrder, Storage};

/// The column that numbers the sources of a deduplicated partition, oldest first.
pub const SOURCE_COLUMN: &str = "__hourglass_source";

/// Rows acknowledged but not yet in Parquet files: the write buffer, as the
/// query engine sees it.
pub trait BufferedRows: Send + Sync + fmt::Debug {
    /// The buffered rows of a table by hour partition, for partitions meeting
    /// `[min_ns, max_ns]`, oldest batch first. Callers read these *before* the
    /// catalog: the buffer lets go of a partition only after its file is in the
    /// catalog, so in that order no row falls between the two.
    fn partitions(
        &self,
        database: &str,
        table: &str,
        min_ns: i64,
        max_ns: i64,
    ) -> BTreeMap<PartitionKey, Vec<RecordBatch>>;
}

/// The write path, as the engine sees it: where the rows of SQL `INSERT` go,
/// with the schema rules, WAL and acknowledgement of every other write.
#[async_trait]
pub trait TableWriter: Send + Sync + fmt::Debug {
    /// Writes one batch (in the table's column types) into `database.table`;
    /// returns the rows written once they are durable.
    async fn write(&self, database: &str, table: &str, batch: RecordBatch) -> Result<usize, QueryError>;

    /// Deletes the rows of `database.table` that `predicate` matches and
    /// were written before; returns once the delete is durable.
    async fn delete(&self, database: &str, table: &str, predicate: DeletePredicate) -> Result<(), QueryError>;

    /// Drops the measurement `database.table` with its rows and files;
    /// returns whether it was there. A later write makes a new one.
    async fn drop_table(&self, database: &str, table: &str) -> Result<bool, QueryError>;
}

/// One measurement as a DataFusion table.
#[derive(Debug)]
pub struct TimeseriesTable {
    database: String,
    table: String,
    schema: Arc<TableSchema>,
    arrow_schema: SchemaRef,
    catalog: Arc<dyn Catalog>,
    storage: Arc<Storage>,
    buffer: Option<Arc<dyn BufferedRows>>,
    writer: Option<Arc<dyn TableWriter>>,
    /// `now()`: the time of a row inserted without one, as line protocol does.
    time_default: Expr,
}

impl TimeseriesTable {
    /// The table `database.table` with the schema it has now.
    pub fn new(
        database: &str,
        table: &str,
        schema: Arc<TableSchema>,
        catalog: Arc<dyn Catalog>,
        storage: Arc<Storage>,
        buffer: Option<Arc<dyn BufferedRows>>,
        writer: Option<Arc<dyn TableWriter>>,
    ) -> Self {
        let arrow_schema = schema.arrow_schema();
        let now = datafusion::functions::datetime::now(&datafusion::config::ConfigOptions::default());
        TimeseriesTable {
            database: database.to_owned(),
            table: table.to_owned(),
            schema,
            arrow_schema,
            catalog,
            storage,
            buffer,
            writer,
            time_default: now.call(vec![]),
        }
    }
}

impl TimeseriesTable {
    /// The database it is in.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Its name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Its columns and their kinds, as the catalog had them when it was opened.
    pub fn table_schema(&self) -> Arc<TableSchema> {
        Arc::clone(&self.schema)
    }
}

impl TimeseriesTable {
    /// The rows of `files` (oldest first) as one stream sorted by tags then
    /// time, with rows of the same series and time merged as readers merge
    /// them (the last write wins field by field): what a compaction writes.
    pub(crate) fn merged_files(&self, state: &dyn Session, files: Vec<FileEntry>) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = (0..self.arrow_schema.fields().len()).collect();
        let sources = files.into_iter().map(Source::File).collect();
        // Deletes are carried out here: the merged file no longer holds the rows.
        let tombstones = self.catalog.tombstones(&self.database, &self.table);
        self.deduplicated_scan(state, sources, &projection, None, ReaderMemory::Unreserved, &tombstones)
    }
}

/// The sink of `INSERT INTO <measurement>`: every batch the statement
/// produces goes to the write path as it comes, acknowledged when durable.
#[derive(Debug)]
struct MeasurementSink {
    database: String,
    table: String,
    schema: SchemaRef,
    writer: Arc<dyn TableWriter>,
}

impl DisplayAs for MeasurementSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MeasurementSink: {}.{}", self.database, self.table)
    }
}

#[async_trait]
impl DataSink for MeasurementSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        use futures::StreamExt;
        let mut rows = 0u64;
        while let Some(batch) = data.next().await {
            let written = self
                .writer
                .write(&self.database, &self.table, batch?)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            rows += written as u64;
        }
        Ok(rows)
    }
}

/// A source of rows for one hour partition.
#[derive(Debug, Clone)]
enum Source {
    /// A Parquet file.
    File(FileEntry),
    /// The partition's buffered rows, sorted and deduplicated.
    Buffer(RecordBatch),
}

impl Source {
    fn time_range(&self, time_column: usize) -> (i64, i64) {
        match self {
            Source::File(f) => (f.min_time, f.max_time),
            Source::Buffer(batch) => time_range(batch, time_column).unwrap_or((i64::MAX, i64::MIN)),
        }
    }
}

/// Whether a merge of overlapping files reserves the memory its Parquet
/// readers hold from the query pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderMemory {
    /// Queries: many may run at once, and the pool is their bound.
    Reserve,
    /// Compaction: at most `MAX_FILES_PER_MERGE` files per merge, a few
    /// merges at once, and a merge refused because queries hold the pool
    /// would leave the files that make queries expensive unmerged.
    Unreserved,
}

/// What a Parquet reader of `file` holds outside the memory pool while a
/// merge reads it, `columns` of them: the compressed column chunks of one
/// row group, and a decoded page of each column (parquet writes at most
/// 20,000 rows a page; 6 bytes a value on average over tag keys, integers,
/// floats and times). On 606 level-1 files of 26,000 rows each this comes
/// to about 560 KiB a file; the process grew by 515 KiB a file.
fn parquet_reader_bytes(file: &FileEntry, columns: usize) -> usize {
    const PAGE_ROWS: u64 = 20_000;
    const BYTES_PER_VALUE: u64 = 6;
    let rows = file.row_count.max(1);
    // Level-1 files have smaller row groups than merged ones; the larger
    // bounds both.
    let row_group_rows = rows.min(crate::storage::ParquetOptions::MERGED.row_group_rows as u64);
    let compressed = file.size_bytes.saturating_mul(row_group_rows) / rows;
    let pages = rows.min(PAGE_ROWS) * BYTES_PER_VALUE * columns as u64;
    usize::try_from(compressed.saturating_add(pages)).unwrap_or(usize::MAX)
}

/// Rows a merge of overlapping sources holds in flight, across all of them.
///
/// The merge keeps the current batch of every input at once, and the pool
/// counts them: at the session's 8,192 rows a query over 606 overlapping
/// level-1 files reserved 510 MB for its merge alone and was refused at a
/// 512 MiB pool (docs/operations.md, the soak). Smaller batches per input
/// keep the total near this many rows, whatever the number of files.
const MERGE_ROWS_IN_FLIGHT: usize = 512 * 1024;

/// The batch size of each of `inputs` sources merged at once: the session's
/// for up to 64 inputs, less for more, never below 128 rows (below that the
/// per-batch work costs more than the memory saved).
fn merge_input_batch_rows(inputs: usize, session_batch_rows: usize) -> usize {
    (MERGE_ROWS_IN_FLIGHT / inputs.max(1)).clamp(128.min(session_batch_rows), session_batch_rows.max(1))
}

/// Splits the sources of a partition (oldest first) into groups whose time
/// ranges overlap; each group keeps the write order.
fn overlap_groups(sources: Vec<Source>, time_column: usize) -> Vec<Vec<Source>> {
    let mut indexed: Vec<(usize, (i64, i64))> =
        sources.iter().enumerate().map(|(i, s)| (i, s.time_range(time_column))).collect();
    indexed.sort_by_key(|&(_, range)| range);
    let mut groups: Vec<(Vec<usize>, i64)> = Vec::new();
    for (index, (min, max)) in indexed {
        match groups.last_mut() {
            Some((members, end)) if min <= *end => {
                members.push(index);
                *end = (*end).max(max);
            }
            _ => groups.push((vec![index], max)),
        }
    }
    let mut slots: Vec<Option<Source>> = sources.into_iter().map(Some).collect();
    groups
        .into_iter()
        .map(|(mut members, _)| {
            members.sort_unstable();
            members.into_iter().filter_map(|i| slots[i].take()).collect()
        })
        .collect()
}

/// What a scan looked at, for EXPLAIN and EXPLAIN ANALYZE.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct ScanSummary {
    table: TableSummary,
    partitions_scanned: usize,
    files_scanned: usize,
    buffered_partitions: usize,
    buffered_rows: usize,
    deduplicated_groups: usize,
    /// Bytes of the files scanned.
    bytes_scanned: u64,
}

impl ScanSummary {
    /// Partitions of the table: those in the catalog, or more when the buffer holds
    /// partitions that have no file yet.
    fn partitions_total(&self) -> usize {
        self.table.partitions.max(self.partitions_scanned)
    }
}

impl TimeseriesTable {
    fn layer_url(&self, layer: &str) -> Result<ObjectStoreUrl> {
        let layer = self.storage.layer(layer).ok_or_else(|| {
            DataFusionError::Execution(format!(
                "a file of {}.{} is on storage layer '{layer}', which is not configured (GIGAPI_LAYERS_<i>_NAME)",
                self.database, self.table
            ))
        })?;
        ObjectStoreUrl::parse(layer.url())
    }

    fn partitioned_file(&self, file: &FileEntry) -> PartitionedFile {
        PartitionedFile::new(file_path_in_layer(&self.database, &self.table, &file.path), file.size_bytes)
    }

    fn sort_exprs(schema: &Schema, columns: &[usize]) -> Vec<PhysicalSortExpr> {
        columns
            .iter()
            .map(|&i| PhysicalSortExpr::new_default(Arc::new(PhysicalColumn::new(schema.field(i).name(), i))))
            .collect()
    }

    /// A Parquet source for files of the layer at `layer_url`. Footers and
    /// page indexes are read through the runtime's file metadata cache
    /// (DataFusion's `metadata_cache_limit`, 50 MB by default): a file's name
    /// is a fresh id and its bytes never change, so a cached footer cannot go
    /// stale, and a selective query on a hot table opens its files without
    /// reading their footers again.
    fn parquet_source(
        &self,
        state: &dyn Session,
        layer_url: &ObjectStoreUrl,
        file_schema: &SchemaRef,
        partition_columns: Vec<Arc<Field>>,
        predicate: Option<&Arc<dyn PhysicalExpr>>,
    ) -> Result<ParquetSource> {
        let table_schema = datafusion::datasource::table_schema::TableSchema::builder(Arc::clone(file_schema))
            .with_table_partition_cols(partition_columns)
            .build();
        let mut options = state.table_options().parquet.clone();
        options.global.pushdown_filters = true;
        options.global.reorder_filters = true;
        options.global.enable_page_index = true;
        let runtime = state.runtime_env();
        let reader_factory = CachedParquetFileReaderFactory::new(
            runtime.object_store(layer_url)?,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let source = ParquetSource::new(table_schema)
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(reader_factory));
        Ok(match predicate {
            Some(predicate) => source.with_predicate(Arc::clone(predicate)),
            None => source,
        })
    }

    /// One scan over files that need no deduplication, per storage layer.
    fn plain_file_scans(
        &self,
        state: &dyn Session,
        files: Vec<FileEntry>,
        projection: &[usize],
        predicate: Option<&Arc<dyn PhysicalExpr>>,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<dyn ExecutionPlan>>> {
        let mut by_layer: BTreeMap<String, Vec<FileEntry>> = BTreeMap::new();
        for file in files {
            by_layer.entry(file.layer.clone()).or_default().push(file);
        }
        let target = state.config().target_partitions().max(1);
        let order = self.schema.row_order();
        let mut scans = Vec::new();
        for (layer, mut files) in by_layer {
            files.sort_by_key(|f| std::cmp::Reverse(f.size_bytes));
            // One file per group keeps each group sorted, which DataFusion can use;
            // past the target parallelism, spread the files evenly instead.
            let (groups, ordering) = if files.len() <= target {
                let groups = files.iter().map(|f| FileGroup::new(vec![self.partitioned_file(f)])).collect();
                (groups, LexOrdering::new(Self::sort_exprs(&self.arrow_schema, &order.sort_key)).into_iter().collect())
            } else {
                let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..target).map(|_| (0, Vec::new())).collect();
                for file in &files {
                    // Largest first into the lightest group balances the bytes per group.
                    let index = (0..groups.len()).min_by_key(|&i| groups[i].0).unwrap_or(0);
                    groups[index].0 += file.size_bytes;
                    groups[index].1.push(self.partitioned_file(file));
                }
                (groups.into_iter().map(|(_, g)| FileGroup::new(g)).collect(), Vec::new())
            };
            let layer_url = self.layer_url(&layer)?;
            let source = self.parquet_source(state, &layer_url, &self.arrow_schema, Vec::new(), predicate)?;
            let config = FileScanConfigBuilder::new(layer_url, Arc::new(source))
                .with_file_groups(groups)
                .with_projection_indices(Some(projection.to_vec()))?
                .with_output_ordering(ordering)
                .with_limit(limit)
                .build();
            scans.push(DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>);
        }
        Ok(scans)
    }

    /// Merges a group of overlapping sources (oldest first) into deduplicated rows
    /// of the columns in `projection`.
    fn deduplicated_scan(
        &self,
        state: &dyn Session,
        sources: Vec<Source>,
        projection: &[usize],
        key_predicate: Option<&Arc<dyn PhysicalExpr>>,
        reserve: ReaderMemory,
        tombstones: &[Arc<Tombstone>],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let order = self.schema.row_order();
        // Read the requested columns plus the whole key, and the source number.
        let mut needed: Vec<usize> = projection.iter().chain(&order.sort_key).copied().collect();
        needed.sort_unstable();
        needed.dedup();
        let table_columns = self.arrow_schema.fields().len();
        let source_field = Arc::new(Field::new(SOURCE_COLUMN, DataType::UInt32, false));
        let with_source = Arc::new(Schema::new(
            self.arrow_schema
                .fields()
                .iter()
                .cloned()
                .chain(std::iter::once(Arc::clone(&source_field)))
                .collect::<Vec<_>>(),
        ));
        let mut read: Vec<usize> = needed.clone();
        read.push(table_columns);
        let mut sort_columns = order.sort_key.clone();
        sort_columns.push(table_columns);
        let ordering = LexOrdering::new(Self::sort_exprs(&with_source, &sort_columns))
            .ok_or_else(|| DataFusionError::Internal("empty sort key".into()))?;

        let batch_rows = merge_input_batch_rows(sources.len(), state.config().batch_size());
        let reader_bytes: usize = match reserve {
            ReaderMemory::Reserve => sources
                .iter()
                .map(|source| match source {
                    Source::File(file) => parquet_reader_bytes(file, read.len() - 1),
                    Source::Buffer(_) => 0,
                })
                .sum(),
            ReaderMemory::Unreserved => 0,
        };
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::with_capacity(sources.len());
        for (number, source) in sources.into_iter().enumerate() {
            let number = u32::try_from(number).map_err(|e| DataFusionError::External(Box::new(e)))?;
            match source {
                Source::File(file) => {
                    let layer_url = self.layer_url(&file.layer)?;
                    let parquet = self.parquet_source(
                        state,
                        &layer_url,
                        &self.arrow_schema,
                        vec![Arc::clone(&source_field)],
                        key_predicate,
                    )?;
                    let partitioned =
                        self.partitioned_file(&file).with_partition_values(vec![ScalarValue::UInt32(Some(number))]);
                    let deletes = applicable(tombstones, &file);
                    let config = FileScanConfigBuilder::new(layer_url, Arc::new(parquet))
                        .with_file(partitioned)
                        .with_projection_indices(Some(read.clone()))?
                        .with_output_ordering(vec![ordering.clone()])
                        .with_preserve_order(true)
                        .with_batch_size(Some(batch_rows))
                        .build();
                    let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
                    // Before the merge: a row written after a delete must not
                    // take fields from a deleted one.
                    inputs.push(match deletes.is_empty() {
                        true => scan,
                        false => without_deleted_rows(state, scan, &deletes)?,
                    });
                }
                Source::Buffer(batch) => {
                    let numbers: ArrayRef = Arc::new(UInt32Array::from(vec![number; batch.num_rows()]));
                    let mut columns = batch.columns().to_vec();
                    columns.push(numbers);
                    let batch = RecordBatch::try_new(Arc::clone(&with_source), columns)?;
                    let memory = datafusion::datasource::memory::MemorySourceConfig::try_new(
                        &[vec![batch]],
                        Arc::clone(&with_source),
                        Some(read.clone()),
                    )?
                    .try_with_sort_information(vec![ordering.clone()])?;
                    inputs.push(DataSourceExec::from_data_source(memory));
                }
            }
        }
        let union = UnionExec::try_new(inputs)?;
        let read_schema = union.schema();
        let merge_columns: Vec<usize> =
            sort_columns.iter().map(|c| read.iter().position(|r| r == c).unwrap_or(usize::MAX)).collect();
        if merge_columns.contains(&usize::MAX) {
            return internal_err!("sort key column missing from a deduplicated scan");
        }
        let merge_ordering = LexOrdering::new(Self::sort_exprs(&read_schema, &merge_columns))
            .ok_or_else(|| DataFusionError::Internal("empty sort key".into()))?;
        let merged: Arc<dyn ExecutionPlan> = if union.output_partitioning().partition_count() > 1 {
            Arc::new(SortPreservingMergeExec::new(merge_ordering, union))
        } else {
            union
        };
        let source_position = read.len() - 1;
        let key_positions = merge_columns[..merge_columns.len() - 1].to_vec();
        let deduplicated: Arc<dyn ExecutionPlan> =
            Arc::new(DeduplicateExec::try_new(merged, key_positions, source_position)?.with_reader_bytes(reader_bytes));
        // Back to the requested columns, in the requested order.
        let output = deduplicated.schema();
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = projection
            .iter()
            .map(|c| {
                let position = needed.iter().position(|n| n == c).unwrap_or(0);
                let name = output.field(position).name().clone();
                (Arc::new(PhysicalColumn::new(&name, position)) as Arc<dyn PhysicalExpr>, name)
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, deduplicated)?))
    }
}

#[async_trait]
impl TableProvider for TimeseriesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.arrow_schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        (column == crate::catalog::TIME_COLUMN).then_some(&self.time_default)
    }

    async fn delete_from(&self, state: &dyn Session, filters: Vec<Expr>) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(writer) = &self.writer else {
            return Err(DataFusionError::External(Box::new(QueryError::read_only("DELETE"))));
        };
        let predicate =
            super::delete::predicate_of(&filters, &self.schema).map_err(|e| DataFusionError::External(Box::new(e)))?;
        // The rows it removes, counted when it runs, just before.
        let key: Vec<usize> = self.schema.row_order().sort_key;
        let matched = self.scan(state, Some(&key), &filters, None).await?;
        let condition = match conjunction(filters) {
            Some(condition) => state.create_physical_expr(condition, &DFSchema::try_from(matched.schema())?)?,
            None => datafusion::physical_expr::expressions::lit(true),
        };
        let matched = Arc::new(datafusion::physical_plan::filter::FilterExec::try_new(condition, matched)?);
        Ok(Arc::new(super::delete::DeleteExec::new(
            &self.database,
            &self.table,
            predicate,
            Arc::clone(writer),
            matched,
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(writer) = &self.writer else {
            return Err(DataFusionError::External(Box::new(QueryError::read_only("INSERT"))));
        };
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op}: measurements are only appended to (a row with the same series and time replaces \
                 the fields it names)"
            )));
        }
        let sink = MeasurementSink {
            database: self.database.clone(),
            table: self.table.clone(),
            schema: Arc::clone(&self.arrow_schema),
            writer: Arc::clone(writer),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters prune partitions, files, row groups and pages, but rows are
        // always filtered again above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> =
            projection.cloned().unwrap_or_else(|| (0..self.arrow_schema.fields().len()).collect());
        let projected_schema = Arc::new(self.arrow_schema.project(&projection)?);
        let ranges = time_ranges(filters, state);
        let mut summary =
            ScanSummary { table: self.catalog.table_summary(&self.database, &self.table), ..Default::default() };
        let Some((low, high)) = hull(&ranges) else {
            let empty = Arc::new(EmptyExec::new(projected_schema));
            return Ok(Arc::new(TimeseriesScanExec::new(self, empty, summary, &ranges)));
        };

        // The buffer first, then the catalog: see BufferedRows::partitions.
        let buffered = match &self.buffer {
            Some(buffer) => buffer.partitions(&self.database, &self.table, low, high),
            None => BTreeMap::new(),
        };
        let order: RowOrder = self.schema.row_order();
        let tombstones = self.catalog.tombstones(&self.database, &self.table);
        let mut partitions: BTreeMap<PartitionKey, Vec<Source>> = BTreeMap::new();
        for listed in self.catalog.files(&self.database, &self.table, low, high) {
            let Some(key) = listed.partition else { continue };
            let mut files: Vec<FileEntry> = listed
                .files
                .into_iter()
                .filter(|f| overlaps(&ranges, f.min_time, f.max_time))
                // A file a delete wholly covers has nothing left to read.
                .filter(|f| !applicable(&tombstones, f).iter().any(|t| t.predicate.covers(f.min_time, f.max_time)))
                .collect();
            files.sort_by_key(|f| (f.wal_sequence, f.chunk_time));
            partitions.entry(key).or_default().extend(files.into_iter().map(Source::File));
        }
        for (key, batches) in buffered {
            if !overlaps(&ranges, key.start_ns(), key.end_ns()) {
                continue;
            }
            let batch = sort_and_deduplicate(&batches, &order)?;
            if batch.num_rows() > 0 {
                summary.buffered_partitions += 1;
                summary.buffered_rows += batch.num_rows();
                partitions.entry(key).or_default().push(Source::Buffer(batch));
            }
        }
        partitions.retain(|_, sources| !sources.is_empty());
        summary.partitions_scanned = partitions.len();

        let table_df_schema = DFSchema::try_from(Arc::clone(&self.arrow_schema))?;
        let predicate = match conjunction(filters.to_vec()) {
            Some(expr) => state.create_physical_expr(expr, &table_df_schema).ok(),
            None => None,
        };
        let key_names: Vec<&str> = order.sort_key.iter().map(|&i| self.arrow_schema.field(i).name().as_str()).collect();
        let key_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| f.column_refs().iter().all(|c| key_names.contains(&c.name.as_str())))
            .cloned()
            .collect();
        let key_predicate = match conjunction(key_filters) {
            Some(expr) => state.create_physical_expr(expr, &table_df_schema).ok(),
            None => None,
        };

        let mut plain_files = Vec::new();
        let mut plain_buffers = Vec::new();
        let mut overlapping = Vec::new();
        for (_, sources) in partitions {
            for group in overlap_groups(sources, order.time) {
                for source in &group {
                    if let Source::File(file) = source {
                        summary.files_scanned += 1;
                        summary.bytes_scanned += file.size_bytes;
                    }
                }
                // A file with deletes to apply is read like a merge of one,
                // with the rows they hide filtered out.
                let deleted_from = |s: &Source| matches!(s, Source::File(f) if !applicable(&tombstones, f).is_empty());
                if group.len() > 1 || group.iter().any(deleted_from) {
                    overlapping.push(group);
                    continue;
                }
                match group.into_iter().next() {
                    Some(Source::File(file)) => plain_files.push(file),
                    Some(Source::Buffer(batch)) => plain_buffers.push(batch),
                    None => {}
                }
            }
        }
        summary.deduplicated_groups = overlapping.len();

        let exact_limit = if overlapping.is_empty() && filters.is_empty() { limit } else { None };
        let mut parts = self.plain_file_scans(state, plain_files, &projection, predicate.as_ref(), exact_limit)?;
        if !plain_buffers.is_empty() {
            let sort = LexOrdering::new(Self::sort_exprs(&self.arrow_schema, &order.sort_key));
            let partitions: Vec<Vec<RecordBatch>> = plain_buffers.into_iter().map(|b| vec![b]).collect();
            let memory = datafusion::datasource::memory::MemorySourceConfig::try_new(
                &partitions,
                Arc::clone(&self.arrow_schema),
                Some(projection.clone()),
            )?
            .try_with_sort_information(sort.into_iter().collect())?;
            parts.push(DataSourceExec::from_data_source(memory));
        }
        for group in overlapping {
            parts.push(self.deduplicated_scan(
                state,
                group,
                &projection,
                key_predicate.as_ref(),
                ReaderMemory::Reserve,
                &tombstones,
            )?);
        }
        let plan: Arc<dyn ExecutionPlan> = match parts.len() {
            0 => Arc::new(EmptyExec::new(projected_schema)),
            _ => UnionExec::try_new(parts)?,
        };
        Ok(Arc::new(TimeseriesScanExec::new(self, plan, summary, &ranges)))
    }
}

/// The deletes that hide rows of `file`: those issued after its newest
/// write that meet its time range.
fn applicable(tombstones: &[Arc<Tombstone>], file: &FileEntry) -> Vec<Arc<Tombstone>> {
    tombstones.iter().filter(|t| t.applies_to(file)).cloned().collect()
}

/// `input` without the rows any of `tombstones` matches.
fn without_deleted_rows(
    state: &dyn Session,
    input: Arc<dyn ExecutionPlan>,
    tombstones: &[Arc<Tombstone>],
) -> Result<Arc<dyn ExecutionPlan>> {
    let kept = tombstones
        .iter()
        .map(|t| Expr::IsNotTrue(Box::new(super::delete::predicate_expr(&t.predicate))))
        .reduce(Expr::and)
        .ok_or_else(|| DataFusionError::Internal("no deletes to apply".into()))?;
    let schema = DFSchema::try_from(input.schema())?;
    let predicate = state.create_physical_expr(kept, &schema)?;
    Ok(Arc::new(datafusion::physical_plan::filter::FilterExec::try_new(predicate, input)?))
}

/// The root of a table scan: passes its input through, and reports what the
/// catalog pruned (in EXPLAIN) and counts it (in EXPLAIN ANALYZE).
#[derive(Debug)]
pub struct TimeseriesScanExec {
    table: String,
    time: String,
    summary: ScanSummary,
    input: Arc<dyn ExecutionPlan>,
    metrics: ExecutionPlanMetricsSet,
}

/// What a [`TimeseriesScanExec`] holds besides its input, for a plan sent
/// to another process.
#[cfg(feature = "distributed")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ScanParts {
    table: String,
    time: String,
    summary: ScanSummary,
}

#[cfg(feature = "distributed")]
impl TimeseriesScanExec {
    /// Its parts (see [`ScanParts`]).
    pub(crate) fn parts(&self) -> ScanParts {
        ScanParts { table: self.table.clone(), time: self.time.clone(), summary: self.summary }
    }

    /// The scan of `parts` over `input`.
    pub(crate) fn from_parts(parts: ScanParts, input: Arc<dyn ExecutionPlan>) -> Self {
        let ScanParts { table, time, summary } = parts;
        TimeseriesScanExec { table, time, summary, input, metrics: ExecutionPlanMetricsSet::new() }
    }

    /// Bytes of the files this scan reads.
    pub(crate) fn bytes_scanned(&self) -> u64 {
        self.summary.bytes_scanned
    }
}

impl TimeseriesScanExec {
    fn new(table: &TimeseriesTable, input: Arc<dyn ExecutionPlan>, summary: ScanSummary, ranges: &[TimeRange]) -> Self {
        let time = match ranges {
            [] => "none".to_owned(),
            [range] if *range == ALL_TIME => "all".to_owned(),
            ranges => ranges
                .iter()
                .map(|(lo, hi)| format!("[{}, {}]", show_time(*lo), show_time(*hi)))
                .collect::<Vec<_>>()
                .join(" "),
        };
        TimeseriesScanExec {
            table: format!("{}.{}", table.database, table.table),
            time,
            summary,
            input,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

fn show_time(ns: i64) -> String {
    match ns {
        i64::MIN => "-inf".into(),
        i64::MAX => "+inf".into(),
        ns => chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    }
}

impl DisplayAs for TimeseriesScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.summary;
        write!(
            f,
            "TimeseriesScanExec: table={}, time={}, partitions={} of {} ({} pruned), files={} of {} ({} pruned), \
             buffered_partitions={}, deduplicated_groups={}",
            self.table,
            self.time,
            s.partitions_scanned,
            s.partitions_total(),
            s.partitions_total() - s.partitions_scanned,
            s.files_scanned,
            s.table.files,
            s.table.files.saturating_sub(s.files_scanned),
            s.buffered_partitions,
            s.deduplicated_groups
        )
    }
}

impl ExecutionPlan for TimeseriesScanExec {
    fn name(&self) -> &str {
        "TimeseriesScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = super::single_input(children, "TimeseriesScanExec")?;
        Ok(Arc::new(TimeseriesScanExec {
            table: self.table.clone(),
            time: self.time.clone(),
            summary: self.summary,
            input,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        // A distributed query runs this node once in each task of its stage,
        // each task reading a part of the files; what the catalog pruned is
        // the query's, so its first task alone counts it.
        #[cfg(feature = "distributed")]
        let counts_the_summary = super::distributed::task_index(&context).is_none_or(|task| task == 0);
        #[cfg(not(feature = "distributed"))]
        let counts_the_summary = true;
        if partition == 0 && counts_the_summary {
            let s = &self.summary;
            let counter = |name: &'static str, value: usize| {
                MetricBuilder::new(&self.metrics).global_counter(name).add(value);
            };
            counter("partitions_total", s.partitions_total());
            counter("partitions_scanned", s.partitions_scanned);
            counter("files_total", s.table.files);
            counter("files_scanned", s.files_scanned);
            counter("buffered_rows_scanned", s.buffered_rows);
            counter("deduplicated_groups", s.deduplicated_groups);
        }
        self.input.execute(partition, context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}
