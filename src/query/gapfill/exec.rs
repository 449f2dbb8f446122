//! `GapFillExec`: the rows of an aggregate by bucket, with a row for every
//! bucket of the range in every group.
//!
//! Its input is the aggregate, sorted by the group columns then the bucket.
//! It holds the whole input (one row per group and bucket, so no more than the
//! output), reserved from the query memory pool, and writes the output a few
//! groups at a time.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_err, internal_err, Result};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, OrderingRequirements, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

use super::fill::{self, Buckets, Fill};

/// About this many output rows per batch (a group is never split).
const BATCH_ROWS: usize = 8192;

/// Where the columns of a gap-filled aggregate are, and how each fills.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, serde::Serialize, serde::Deserialize)]
pub struct GapFillColumns {
    /// The GROUP BY columns other than the bucket.
    pub groups: Vec<usize>,
    /// The bucket column.
    pub time: usize,
    /// The columns added after the input's: each a copy of an aggregate
    /// (`locf(avg(x))` of `avg(x)`), filled its way. The input's own
    /// aggregates fill with NULL.
    pub filled: Vec<FilledColumn>,
}

/// A column the node adds: `source` filled with `fill`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, serde::Serialize, serde::Deserialize)]
pub struct FilledColumn {
    pub source: usize,
    pub fill: Fill,
}

/// Fills the gaps of an aggregate by bucket (see the module).
#[derive(Debug)]
pub struct GapFillExec {
    input: Arc<dyn ExecutionPlan>,
    columns: GapFillColumns,
    buckets: Buckets,
    schema: SchemaRef,
    input_order: LexOrdering,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl GapFillExec {
    /// Fills `input`'s gaps over `buckets`; the output has `schema` (the
    /// input's, with every aggregate nullable).
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        columns: GapFillColumns,
        buckets: Buckets,
        schema: SchemaRef,
    ) -> Result<Self> {
        let input_schema = input.schema();
        if schema.fields().len() != input_schema.fields().len() + columns.filled.len() {
            return internal_err!("GapFillExec: the output has the input's columns and the filled ones");
        }
        let sort_on = |schema: &SchemaRef| -> Vec<PhysicalSortExpr> {
            columns
                .groups
                .iter()
                .chain(std::iter::once(&columns.time))
                .map(|&i| {
                    let column = datafusion::physical_expr::expressions::Column::new(schema.field(i).name(), i);
                    PhysicalSortExpr::new_default(Arc::new(column))
                })
                .collect()
        };
        let Some(input_order) = LexOrdering::new(sort_on(&input_schema)) else {
            return internal_err!("GapFillExec sorts by its bucket at least");
        };
        let mut equivalence = EquivalenceProperties::new(Arc::clone(&schema));
        if let Some(ordering) = LexOrdering::new(sort_on(&schema)) {
            equivalence.add_ordering(ordering);
        }
        let properties = Arc::new(PlanProperties::new(
            equivalence,
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(GapFillExec {
            input,
            columns,
            buckets,
            schema,
            input_order,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// What [`Self::try_new`] was given besides the input, for a codec to
    /// send the node to a worker.
    pub fn parts(&self) -> (&GapFillColumns, Buckets, &SchemaRef) {
        (&self.columns, self.buckets, &self.schema)
    }
}

impl DisplayAs for GapFillExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names = |indices: &[usize]| -> Vec<String> {
            indices.iter().map(|&i| self.schema.field(i).name().clone()).collect()
        };
        let filled: Vec<String> = self
            .columns
            .filled
            .iter()
            .map(|f| format!("{}={:?}", self.schema.field(f.source).name(), f.fill))
            .collect();
        write!(
            f,
            "GapFillExec: groups=[{}], bucket={}, buckets={} from {} every {}ns, fill=[{}]",
            names(&self.columns.groups).join(", "),
            self.schema.field(self.columns.time).name(),
            self.buckets.count,
            super::rfc3339(self.buckets.first),
            self.buckets.stride,
            filled.join(", ")
        )
    }
}

impl ExecutionPlan for GapFillExec {
    fn name(&self) -> &str {
        "GapFillExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
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
        let input = crate::query::single_input(children, "GapFillExec")?;
        Ok(Arc::new(GapFillExec::try_new(input, self.columns.clone(), self.buckets, Arc::clone(&self.schema))?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("GapFillExec has one partition, asked for {partition}");
        }
        let reservation = MemoryConsumer::new("GapFillExec").register(context.memory_pool());
        let input = self.input.execute(0, context)?;
        let input_schema = self.input.schema();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let (columns, buckets, schema) = (self.columns.clone(), self.buckets, Arc::clone(&self.schema));
        let collected = async move {
            let batches: Vec<RecordBatch> = input
                .and_then(|batch| {
                    let grown = reservation.try_grow(batch.get_array_memory_size());
                    async move { grown.map(|_| batch) }
                })
                .try_collect()
                .await?;
            let input = concat_batches(&input_schema, &batches)?;
            drop(batches);
            let groups = Groups::of(&input, &columns, &buckets)?;
            Ok::<_, datafusion::error::DataFusionError>(futures::stream::iter(OutputBatches {
                input,
                groups,
                next: 0,
                columns,
                buckets,
                schema,
                _reservation: reservation,
            }))
        };
        let output_schema = Arc::clone(&self.schema);
        let stream = futures::stream::once(collected).try_flatten().inspect(move |batch| {
            if let Ok(batch) = batch {
                baseline.record_output(batch.num_rows());
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(output_schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The groups of the sorted input: where each starts, and every row's bucket
/// time in nanoseconds.
struct Groups {
    starts: Vec<usize>,
    times: Vec<i64>,
}

impl Groups {
    fn of(input: &RecordBatch, columns: &GapFillColumns, buckets: &Buckets) -> Result<Groups> {
        let rows = input.num_rows();
        if rows > u32::MAX as usize {
            return exec_err!("gap filling takes at most {} groups and buckets", u32::MAX);
        }
        // Same zone, nanoseconds: the values are then UTC nanoseconds.
        let zone = match input.column(columns.time).data_type() {
            DataType::Timestamp(_, zone) => zone.clone(),
            other => return exec_err!("gap filling: the bucket is {other}, not a timestamp"),
        };
        let time = cast(input.column(columns.time), &DataType::Timestamp(TimeUnit::Nanosecond, zone))?;
        let Some(time) = time.as_any().downcast_ref::<TimestampNanosecondArray>() else {
            return internal_err!("gap filling: the bucket did not cast to nanoseconds");
        };
        if time.null_count() > 0 {
            return exec_err!("gap filling: a bucket is NULL (a row has no time)");
        }
        let mut starts = Vec::new();
        if rows > 0 {
            starts.push(0);
        }
        if !columns.groups.is_empty() && rows > 1 {
            let keys: Vec<ArrayRef> = columns.groups.iter().map(|&i| Arc::clone(input.column(i))).collect();
            let converter = RowConverter::new(keys.iter().map(|k| SortField::new(k.data_type().clone())).collect())?;
            let keys = converter.convert_columns(&keys)?;
            starts.extend((1..rows).filter(|&i| keys.row(i) != keys.row(i - 1)));
        }
        let groups = Groups { starts, times: time.values().to_vec() };
        let output_rows = groups.starts.len().saturating_mul(buckets.count);
        if output_rows > super::MAX_OUTPUT_ROWS {
            return exec_err!(
                "gap filling would return {output_rows} rows ({} groups of {} buckets), more than {}: \
                 narrow the time range, widen the interval or filter the groups",
                groups.starts.len(),
                buckets.count,
                super::MAX_OUTPUT_ROWS
            );
        }
        Ok(groups)
    }

    /// Group `g`'s rows.
    fn range(&self, g: usize) -> std::ops::Range<usize> {
        self.starts[g]..self.starts.get(g + 1).copied().unwrap_or(self.times.len())
    }
}

/// The output, made a few groups at a time.
struct OutputBatches {
    input: RecordBatch,
    groups: Groups,
    next: usize,
    columns: GapFillColumns,
    buckets: Buckets,
    schema: SchemaRef,
    _reservation: datafusion::execution::memory_pool::MemoryReservation,
}

impl Iterator for OutputBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.groups.starts.len() {
            return None;
        }
        let per_group = self.buckets.count.max(1);
        let take_groups = (BATCH_ROWS / per_group).max(1).min(self.groups.starts.len() - self.next);
        let groups = self.next..self.next + take_groups;
        self.next += take_groups;
        Some(self.batch(groups))
    }
}

impl OutputBatches {
    fn batch(&self, groups: std::ops::Range<usize>) -> Result<RecordBatch> {
        let count = self.buckets.count;
        let input_columns = self.input.num_columns();
        let mut first_rows = Vec::with_capacity(groups.len() * count);
        let mut times = Vec::with_capacity(groups.len() * count);
        let mut parts: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.schema.fields().len()];
        for g in groups {
            let rows = self.groups.range(g);
            let group_times = &self.groups.times[rows.clone()];
            first_rows.extend(std::iter::repeat_n(rows.start as u32, count));
            times.extend((0..count).map(|b| self.buckets.time(b)));
            let matching = fill::indices(fill::matching_rows(group_times, rows.start, &self.buckets));
            for (c, part) in parts.iter_mut().enumerate().take(input_columns) {
                if c != self.columns.time && !self.columns.groups.contains(&c) {
                    part.push(take(self.input.column(c), &matching, None)?);
                }
            }
            for (i, filled) in self.columns.filled.iter().enumerate() {
                let column = self.input.column(filled.source);
                let array = match filled.fill {
                    Fill::Null => take(column, &matching, None)?,
                    Fill::Locf => {
                        let rows = fill::locf_rows(group_times, rows.start, column, &self.buckets);
                        take(column, &fill::indices(rows), None)?
                    }
                    Fill::Interpolate => fill::interpolated_as(
                        fill::interpolated(group_times, rows.start, column, &self.buckets)?,
                        column.data_type(),
                    )?,
                };
                parts[input_columns + i].push(array);
            }
        }
        let first_rows = UInt32Array::from(first_rows);
        let mut out = Vec::with_capacity(self.schema.fields().len());
        for (c, field) in self.schema.fields().iter().enumerate() {
            let array = if c == self.columns.time {
                let zone = match field.data_type() {
                    DataType::Timestamp(_, zone) => zone.clone(),
                    _ => None,
                };
                let times = TimestampNanosecondArray::from(std::mem::take(&mut times)).with_timezone_opt(zone);
                cast(&times, field.data_type())?
            } else if self.columns.groups.contains(&c) {
                take(self.input.column(c), &first_rows, None)?
            } else {
                let parts: Vec<&dyn Array> = parts[c].iter().map(|a| a.as_ref()).collect();
                arrow::compute::concat(&parts)?
            };
            out.push(array);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), out)?)
    }
}
