//! The on-disk row order: sorted by the tag columns, then time, with one row per
//! series and time.
//!
//! Where the same series and time was written more than once, the last write wins
//! field by field (InfluxDB's rule): each field takes the last non-null value in
//! input order. The persister, the compactor and queries all use this one kernel.

use std::cmp::Ordering;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use hashbrown::HashTable;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, max, min, rank, take, SortOptions};
use arrow::datatypes::{DataType, SchemaRef, TimestampNanosecondType};
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
///
/// Rows are not sorted by comparing their encoded keys: that compares about a
/// hundred bytes per step at random places in a buffer far larger than the
/// cache. Each row's series is found once from the ranks of its tag values,
/// the few distinct series are ranked in key order, and the rows are sorted
/// by one 128-bit number: series rank, time, input position.
pub fn sort_and_deduplicate(batches: &[RecordBatch], order: &RowOrder) -> Result<RecordBatch, ArrowError> {
    let aligned = batches.iter().map(|b| align_to_schema(b, &order.schema)).collect::<Result<Vec<_>, _>>()?;
    let batch = concat_batches(&order.schema, &aligned)?;
    let rows = batch.num_rows();
    if rows == 0 {
        return Ok(batch);
    }
    if u32::try_from(rows).is_err() {
        return Err(ArrowError::ComputeError("more than 4 Gi rows to sort".into()));
    }
    let (time_column, tag_columns) = order.sort_key.split_last().ok_or_else(|| {
        ArrowError::InvalidArgumentError("a table's sort key ends with time, and this one is empty".into())
    })?;
    debug_assert_eq!(*time_column, order.time, "the sort key ends with the time column");
    let time = batch.column(order.time);
    if time.null_count() > 0 {
        return Err(ArrowError::InvalidArgumentError("a row without a time cannot be stored".into()));
    }
    let times = time
        .as_any()
        .downcast_ref::<PrimitiveArray<TimestampNanosecondType>>()
        .ok_or_else(|| ArrowError::InvalidArgumentError(format!("the time column is {}", time.data_type())))?
        .values();
    let series = series_ranks(&batch, tag_columns)?;
    // Flipping the sign bit makes unsigned order equal signed order of times.
    let mut keys: Vec<u128> = (0..rows)
        .map(|row| (u128::from(series[row]) << 96) | (u128::from((times[row] as u64) ^ (1 << 63)) << 32) | row as u128)
        .collect();
    drop(series);
    // Ties in series and time keep input order, so the last of them is the latest write.
    keys.sort_unstable();
    let mut starts = Vec::with_capacity(rows);
    starts.push(0);
    starts.extend((1..rows).filter(|&i| keys[i] >> 32 != keys[i - 1] >> 32));
    let permutation: Vec<u32> = keys.iter().map(|&key| key as u32).collect();
    drop(keys);
    take_groups(&batch, &permutation, &starts, |column| order.is_key(column))
}

/// The rank of each row's series (its values of `tag_columns`) among the
/// distinct series of `batch`, in the order of the columns' row format (the
/// order the files are sorted in).
///
/// Each tag column is first turned into ranks of its values, so that a row's
/// series is a few integers to hash and compare rather than its strings.
fn series_ranks(batch: &RecordBatch, tag_columns: &[usize]) -> Result<Vec<u32>, ArrowError> {
    let rows = batch.num_rows();
    if tag_columns.is_empty() {
        return Ok(vec![0; rows]);
    }
    let columns: Vec<Vec<u32>> = tag_columns.iter().map(|&c| value_ranks(batch.column(c))).collect::<Result<_, _>>()?;
    let same = |a: usize, b: usize| columns.iter().all(|column| column[a] == column[b]);
    let hasher = hashbrown::DefaultHashBuilder::default();
    let mut ids: HashTable<u32> = HashTable::new();
    let mut first_row_of_series: Vec<usize> = Vec::new();
    let mut hash_of_series: Vec<u64> = Vec::new();
    let mut series: Vec<u32> = Vec::with_capacity(rows);
    for row in 0..rows {
        if row > 0 && same(row, row - 1) {
            series.push(series[row - 1]);
            continue;
        }
        let mut state = hasher.build_hasher();
        for column in &columns {
            state.write_u32(column[row]);
        }
        let hash = state.finish();
        let id = match ids.find(hash, |&id| same(first_row_of_series[id as usize], row)) {
            Some(&id) => id,
            None => {
                let id = first_row_of_series.len() as u32;
                first_row_of_series.push(row);
                hash_of_series.push(hash);
                ids.insert_unique(hash, id, |&id| hash_of_series[id as usize]);
                id
            }
        };
        series.push(id);
    }
    let mut by_key: Vec<u32> = (0..first_row_of_series.len() as u32).collect();
    by_key.sort_unstable_by(|&a, &b| {
        let (a, b) = (first_row_of_series[a as usize], first_row_of_series[b as usize]);
        columns.iter().map(|column| column[a].cmp(&column[b])).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
    });
    let mut rank_of_id = vec![0u32; by_key.len()];
    for (rank, &id) in by_key.iter().enumerate() {
        rank_of_id[id as usize] = rank as u32;
    }
    for id in &mut series {
        *id = rank_of_id[*id as usize];
    }
    Ok(series)
}

/// One number per row of `column` that orders rows as the row format does
/// (ascending, nulls first): equal values get equal numbers.
fn value_ranks(column: &ArrayRef) -> Result<Vec<u32>, ArrowError> {
    let options = Some(SortOptions { descending: false, nulls_first: true });
    if let Some(dictionary) = column.as_any_dictionary_opt() {
        let values = dictionary.values();
        if values.is_empty() {
            // Every row is null (a tag the write lacked, made of nulls).
            return Ok(vec![0; column.len()]);
        }
        if rankable(values.data_type()) {
            // Ranks of the dictionary's values, one lookup per row; a null
            // row or a null value is 0, below every value's rank (from 1).
            let ranks_of_values = rank(values.as_ref(), options)?;
            let keys = dictionary.normalized_keys();
            return Ok((0..column.len())
                .map(|row| {
                    let key = keys[row];
                    if column.is_null(row) || values.is_null(key) {
                        0
                    } else {
                        ranks_of_values[key]
                    }
                })
                .collect());
        }
    } else if rankable(column.data_type()) {
        return rank(column.as_ref(), options);
    }
    // Any other type: its values in the row format, ranked.
    let keys = key_rows(&RecordBatch::try_from_iter([("tag", Arc::clone(column))])?, &[0])?;
    let mut distinct: Vec<u32> = (0..keys.num_rows() as u32).collect();
    distinct.sort_unstable_by(|&a, &b| keys.row(a as usize).cmp(&keys.row(b as usize)));
    let mut ranks = vec![0u32; keys.num_rows()];
    let mut current = 0u32;
    for i in 0..distinct.len() {
        if i > 0 && keys.row(distinct[i] as usize) != keys.row(distinct[i - 1] as usize) {
            current += 1;
        }
        ranks[distinct[i] as usize] = current;
    }
    Ok(ranks)
}

/// Whether arrow's `rank` kernel takes this type.
fn rankable(data_type: &DataType) -> bool {
    data_type.is_primitive() || matches!(data_type, DataType::Boolean | DataType::Utf8 | DataType::LargeUtf8)
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
    let time = batch.column(time).as_any().downcast_ref::<PrimitiveArray<TimestampNanosecondType>>()?;
    Some((min(time)?, max(time)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int64Array, StringArray, StringViewArray, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimeUnit};

    use crate::testing::Lcg;

    fn order() -> RowOrder {
        let tag = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", tag, true),
            // Tags are dictionaries; the other string types take other paths.
            Field::new("region", DataType::Utf8, true),
            Field::new("zone", DataType::Utf8View, true),
            Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new("usage", DataType::Int64, true),
        ]));
        RowOrder { schema, sort_key: vec![0, 1, 2, 3], time: 3 }
    }

    /// A write of `rows` rows over few series and times, with null tags, null
    /// fields, repeated points and times out of order; each write has its own
    /// dictionaries, as the line protocol parser makes them.
    fn write(random: &mut Lcg, order: &RowOrder, rows: usize) -> RecordBatch {
        let tag = |random: &mut Lcg, names: &[&'static str]| -> Vec<Option<&'static str>> {
            (0..rows)
                .map(|_| {
                    let pick = random.below(names.len() as u64 + 1) as usize;
                    names.get(pick).copied()
                })
                .collect()
        };
        let host: DictionaryArray<Int32Type> = tag(random, &["h3", "h1", "h10", "h2", ""]).into_iter().collect();
        let region = StringArray::from(tag(random, &["west", "east"]));
        let zone = StringViewArray::from(tag(random, &["b", "a"]));
        let time = TimestampNanosecondArray::from((0..rows).map(|_| random.below(6) as i64 - 3).collect::<Vec<_>>());
        let usage: Int64Array = (0..rows).map(|_| (random.below(4) != 0).then(|| random.below(1000) as i64)).collect();
        RecordBatch::try_new(
            Arc::clone(&order.schema),
            vec![Arc::new(host), Arc::new(region), Arc::new(zone), Arc::new(time), Arc::new(usage)],
        )
        .expect("a valid batch")
    }

    /// The kernel as it first was: every row's whole key encoded and compared.
    fn by_whole_keys(batches: &[RecordBatch], order: &RowOrder) -> RecordBatch {
        let batch = concat_batches(&order.schema, batches).expect("concatenated");
        let keys = key_rows(&batch, &order.sort_key).expect("keys");
        let mut permutation: Vec<u32> = (0..batch.num_rows() as u32).collect();
        permutation.sort_by(|&a, &b| keys.row(a as usize).cmp(&keys.row(b as usize)).then(a.cmp(&b)));
        let starts = group_starts(&keys, &permutation);
        take_groups(&batch, &permutation, &starts, |column| order.is_key(column)).expect("merged")
    }

    #[test]
    fn sorting_by_series_rank_gives_the_whole_key_order_and_merge() {
        let order = order();
        let mut random = Lcg(7);
        let mut merged = 0;
        for round in 0..50 {
            let batches: Vec<RecordBatch> = (0..1 + round % 4)
                .map(|_| {
                    let rows = 1 + random.below(300) as usize;
                    write(&mut random, &order, rows)
                })
                .collect();
            let expected = by_whole_keys(&batches, &order);
            let sorted = sort_and_deduplicate(&batches, &order).expect("sorted");
            assert_eq!(sorted, expected, "round {round}");
            merged += batches.iter().map(|b| b.num_rows()).sum::<usize>() - sorted.num_rows();
        }
        assert!(merged > 0, "the writes repeat points, so some rows merge");
    }

    #[test]
    fn a_tag_every_row_lacks_sorts_as_null() {
        let order = order();
        let mut random = Lcg(3);
        let full = write(&mut random, &order, 200);
        let mut columns = full.columns().to_vec();
        // What align_to_schema makes of a tag a write lacks: nulls over an empty dictionary.
        columns[0] = new_null_array(order.schema.field(0).data_type(), full.num_rows());
        let lacking = RecordBatch::try_new(Arc::clone(&order.schema), columns).expect("a valid batch");
        let sorted = sort_and_deduplicate(std::slice::from_ref(&lacking), &order).expect("sorted");
        assert_eq!(sorted, by_whole_keys(&[lacking], &order));
    }

    #[test]
    fn a_table_without_tags_sorts_by_time_and_the_last_write_wins() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new("v", DataType::Utf8, true),
        ]));
        let order = RowOrder { schema: Arc::clone(&schema), sort_key: vec![0], time: 0 };
        let batch = |times: Vec<i64>, values: Vec<Option<&str>>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(TimestampNanosecondArray::from(times)), Arc::new(StringArray::from(values))],
            )
            .expect("a valid batch")
        };
        let first = batch(vec![5, -1, i64::MIN, i64::MAX], vec![Some("a"), Some("b"), Some("c"), Some("d")]);
        let second = batch(vec![-1, 5], vec![None, Some("e")]);
        let sorted = sort_and_deduplicate(&[first, second], &order).expect("sorted");
        let expected = batch(vec![i64::MIN, -1, 5, i64::MAX], vec![Some("c"), Some("b"), Some("e"), Some("d")]);
        assert_eq!(sorted, expected);
    }
}
