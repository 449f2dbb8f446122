//! The on-disk row order: sorted by the tag columns, then time, with one row per
//! series and time.
//!
//! Where the same series and time was written more than once, the last write wins
//! field by field (InfluxDB's rule): each field takes the last non-null value in
//! input order. The persister, the compactor and queries all use this one kernel.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, max, min, take};
use arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};

/// Reorders and fills `batch` to have exactly the columns of `schema`: columns it
/// lacks become nulls (older files and writes predate newer columns).
pub fn align_to_schema(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(Arc::clone(column)),
            Some(column) => arrow::compute::cast(column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// What storage needs to know about a table's rows: its columns, the sort key
/// (every tag, then time) and which columns are fields.
#[derive(Debug, Clone)]
pub struct RowOrder {
    /// The table's Arrow schema.
    pub schema: SchemaRef,
    /// Column indexes of the sort key: the tags in schema order, then `time`.
    pub sort_key: Vec<usize>,
    /// The index of the `time` column.
    pub time: usize,
}

impl RowOrder {
    fn is_key(&self, column: usize) -> bool {
        self.sort_key.contains(&column)
    }
}

/// Concatenates `batches` (in write order), aligned to `order.schema`, sorts the
/// rows by tags then time, and merges rows of the same series and time (for each
/// field, the last non-null value wins).
pub fn sort_and_deduplicate(batches: &[RecordBatch], order: &RowOrder) -> Result<RecordBatch, ArrowError> {
    let aligned = batches.iter().map(|b| align_to_schema(b, &order.schema)).collect::<Result<Vec<_>, _>>()?;
    let batch = concat_batches(&order.schema, &aligned)?;
    let rows = batch.num_rows();
    if rows == 0 {
        return Ok(batch);
    }
    let keys = key_rows(&batch, &order.sort_key)?;
    let rows_u32 = u32::try_from(rows).map_err(|_| ArrowError::ComputeError("more than 4 Gi rows to sort".into()))?;
    let mut permutation: Vec<u32> = (0..rows_u32).collect();
    // Ties keep input order, so the last of equal keys is the latest write.
    permutation.sort_unstable_by(|&a, &b| keys.row(a as usize).cmp(&keys.row(b as usize)).then(a.cmp(&b)));
    let starts = group_starts(&keys, &permutation);
    take_groups(&batch, &permutation, &starts, |column| order.is_key(column))
}

/// The key columns of `batch` in the row format, for comparing whole keys at once.
pub fn key_rows(batch: &RecordBatch, key_columns: &[usize]) -> Result<Rows, ArrowError> {
    let converter =
        RowConverter::new(key_columns.iter().map(|&i| SortField::new(batch.column(i).data_type().clone())).collect())?;
    converter.convert_columns(&key_columns.iter().map(|&i| Arc::clone(batch.column(i))).collect::<Vec<_>>())
}

/// Where each group of equal keys starts, for rows visited in `permutation`
/// order (which must bring equal keys together).
pub fn group_starts(keys: &Rows, permutation: &[u32]) -> Vec<usize> {
    let mut starts = Vec::with_capacity(permutation.len());
    if permutation.is_empty() {
        return starts;
    }
    starts.push(0);
    for i in 1..permutation.len() {
        if keys.row(permutation[i] as usize) != keys.row(permutation[i - 1] as usize) {
            starts.push(i);
        }
    }
    starts
}

/// One row per group: rows of `batch` are visited in `permutation` order and
/// `starts` marks where each group of equal keys begins. Key columns take the
/// group's first row; every other column takes the last non-null value of the
/// group in visiting order (the latest write).
pub fn take_groups(
    batch: &RecordBatch,
    permutation: &[u32],
    starts: &[usize],
    is_key: impl Fn(usize) -> bool,
) -> Result<RecordBatch, ArrowError> {
    let rows = permutation.len();
    if starts.len() == rows {
        let indices = UInt32Array::from(permutation.to_vec());
        let columns = batch.columns().iter().map(|c| take(c, &indices, None)).collect::<Result<Vec<_>, _>>()?;
        return RecordBatch::try_new(batch.schema(), columns);
    }
    let groups = starts.len();
    let group_end = |g: usize| if g + 1 < groups { starts[g + 1] } else { rows };
    let first_of_groups = UInt32Array::from(starts.iter().map(|&s| permutation[s]).collect::<Vec<u32>>());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (index, column) in batch.columns().iter().enumerate() {
        if is_key(index) {
            columns.push(take(column, &first_of_groups, None)?);
            continue;
        }
        let picks: Vec<u32> = (0..groups)
            .map(|g| {
                let members = &permutation[starts[g]..group_end(g)];
                members.iter().rev().copied().find(|&row| column.is_valid(row as usize)).unwrap_or(members[0])
            })
            .collect();
        columns.push(take(column, &UInt32Array::from(picks), None)?);
    }
    RecordBatch::try_new(batch.schema(), columns)
}

/// The smallest and largest time in column `time` of `batch`.
pub fn time_range(batch: &RecordBatch, time: usize) -> Option<(i64, i64)> {
    let time = batch.column(time).as_any().downcast_ref::<arrow::array::PrimitiveArray<TimestampNanosecondType>>()?;
    Some((min(time)?, max(time)?))
}
