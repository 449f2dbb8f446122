//! Merging rows of the same series and time that come from overlapping sources.
//!
//! The input is the sources of one hour partition merged into one stream sorted
//! by (tags, time, source), where `source` numbers the sources oldest first (level
//! files in write order, then the write buffer). Rows with the same tags and time
//! become one: each field takes its last non-null value, so the latest write wins
//! field by field. Only sources whose time ranges overlap go through here; the
//! rest are read as they are.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, OrderingRequirements, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::storage::{group_starts, key_rows, take_groups};

/// Merges duplicate (series, time) rows of a sorted input; see the module docs.
#[derive(Debug)]
pub struct DeduplicateExec {
    input: Arc<dyn ExecutionPlan>,
    /// Tag and time columns of the input, in sort order.
    key_columns: Vec<usize>,
    /// The column numbering the sources, dropped from the output.
    source_column: usize,
    schema: SchemaRef,
    /// The order the input must come in: keys, then source.
    input_order: LexOrdering,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// What the readers below hold that DataFusion's memory pool does not
    /// see (see [`DeduplicateExec::with_reader_bytes`]).
    reader_bytes: usize,
}

impl DeduplicateExec {
    /// Reserves `bytes` of the query memory pool while this runs, for what
    /// the Parquet readers of its inputs hold outside the pool (compressed
    /// column chunks, decoded pages). A merge reads every input at once, so
    /// this grows with the number of overlapping files; reserved, a query
    /// that would take more than the pool has left is refused as out of
    /// memory (53200, HTTP 429) instead of growing the process past its
    /// bound.
    pub fn with_reader_bytes(mut self, bytes: usize) -> Self {
        self.reader_bytes = bytes;
        self
    }

    /// What [`DeduplicateExec::try_new`] and
    /// [`DeduplicateExec::with_reader_bytes`] were given: its key columns,
    /// source column and reader bytes, for a plan sent to another process.
    pub fn parts(&self) -> (&[usize], usize, usize) {
        (&self.key_columns, self.source_column, self.reader_bytes)
    }

    /// Deduplicates `input`, which must be one partition sorted by
    /// `key_columns` then `source_column`.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, key_columns: Vec<usize>, source_column: usize) -> Result<Self> {
        let input_schema = input.schema();
        let kept: Vec<usize> = (0..input_schema.fields().len()).filter(|&i| i != source_column).collect();
        let schema = Arc::new(input_schema.project(&kept)?);
        let sort: Vec<PhysicalSortExpr> = key_columns
            .iter()
            .map(|&i| {
                let output_index = if i > source_column { i - 1 } else { i };
                let column =
                    datafusion::physical_expr::expressions::Column::new(input_schema.field(i).name(), output_index);
                PhysicalSortExpr::new_default(Arc::new(column))
            })
            .collect();
        let input_sort: Vec<PhysicalSortExpr> = key_columns
            .iter()
            .chain(std::iter::once(&source_column))
            .map(|&i| {
                let column = datafusion::physical_expr::expressions::Column::new(input_schema.field(i).name(), i);
                PhysicalSortExpr::new_default(Arc::new(column))
            })
            .collect();
        let input_order = LexOrdering::new(input_sort)
            .ok_or_else(|| datafusion::common::DataFusionError::Internal("deduplication needs a key".into()))?;
        let mut equivalence = EquivalenceProperties::new(Arc::clone(&schema));
        if let Some(ordering) = LexOrdering::new(sort) {
            equivalence.add_ordering(ordering);
        }
        let properties = Arc::new(PlanProperties::new(
            equivalence,
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(DeduplicateExec {
            input,
            key_columns,
            source_column,
            schema,
            input_order,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            reader_bytes: 0,
        })
    }
}

impl DisplayAs for DeduplicateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let input = self.input.schema();
        let keys: Vec<&str> = self.key_columns.iter().map(|&i| input.field(i).name().as_str()).collect();
        write!(f, "DeduplicateExec: key=[{}], last non-null value per field wins", keys.join(", "))
    }
}

impl ExecutionPlan for DeduplicateExec {
    fn name(&self) -> &str {
        "DeduplicateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        // The merge is only correct over input sorted by key, then source: the
        // optimizer must keep (or add) the sort-preserving merge below.
        vec![Some(OrderingRequirements::from(self.input_order.clone()))]
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
        let input = super::single_input(children, "DeduplicateExec")?;
        Ok(Arc::new(
            DeduplicateExec::try_new(input, self.key_columns.clone(), self.source_column)?
                .with_reader_bytes(self.reader_bytes),
        ))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("DeduplicateExec has one partition, asked for {partition}");
        }
        let readers = MemoryConsumer::new("DeduplicateExec readers").register(context.memory_pool());
        readers.try_grow(self.reader_bytes)?;
        let input = self.input.execute(0, context)?;
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let merged = MetricBuilder::new(&self.metrics).counter("duplicate_rows_merged", partition);
        let state = DedupState {
            input,
            input_schema: self.input.schema(),
            key_columns: self.key_columns.clone(),
            source_column: self.source_column,
            carry: None,
            done: false,
            baseline,
            merged,
            _readers: readers,
        };
        let stream = futures::stream::try_unfold(state, |mut state| async move {
            loop {
                if state.done {
                    return Ok(None);
                }
                match state.input.next().await {
                    Some(batch) => {
                        if let Some(out) = state.push(batch?)? {
                            return Ok(Some((out, state)));
                        }
                    }
                    None => {
                        state.done = true;
                        if let Some(out) = state.finish()? {
                            return Ok(Some((out, state)));
                        }
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

struct DedupState {
    input: SendableRecordBatchStream,
    input_schema: SchemaRef,
    key_columns: Vec<usize>,
    source_column: usize,
    /// The rows of the last key seen, which the next batch may continue.
    carry: Option<RecordBatch>,
    done: bool,
    baseline: BaselineMetrics,
    merged: Count,
    /// Held until the stream is dropped.
    _readers: MemoryReservation,
}

impl DedupState {
    /// Takes a batch; returns the merged rows of every key that is complete.
    fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let _timer = self.baseline.elapsed_compute().timer();
        let batch = match self.carry.take() {
            Some(carry) => concat_batches(&self.input_schema, [&carry, &batch])?,
            None => batch,
        };
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let keys = key_rows(&batch, &self.key_columns)?;
        let order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        let mut starts = group_starts(&keys, &order);
        // The last key may go on in the next batch.
        let last = starts.pop().unwrap_or(0);
        self.carry = Some(batch.slice(last, batch.num_rows() - last));
        if last == 0 {
            return Ok(None);
        }
        self.merge(&batch.slice(0, last), &order[..last], &starts).map(Some)
    }

    /// Merges what is left at the end of the input.
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        let Some(batch) = self.carry.take() else { return Ok(None) };
        let _timer = self.baseline.elapsed_compute().timer();
        let order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        self.merge(&batch, &order, &[0]).map(Some)
    }

    fn merge(&self, batch: &RecordBatch, order: &[u32], starts: &[usize]) -> Result<RecordBatch> {
        let merged = take_groups(batch, order, starts, |c| self.key_columns.contains(&c))?;
        self.merged.add(batch.num_rows() - merged.num_rows());
        let kept: Vec<usize> = (0..merged.num_columns()).filter(|&i| i != self.source_column).collect();
        let out = merged.project(&kept)?;
        self.baseline.record_output(out.num_rows());
        Ok(out)
    }
}
