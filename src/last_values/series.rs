//! The last row of every series of one table, column by column.
//!
//! A series is one combination of tag values (a missing tag counts as null).
//! Its last row is the row with the greatest time; rows with the same series
//! and time merge the way reads merge them (`query::dedup`): each field takes
//! its last non-null value. Rows are found by a hash of their tag values and
//! compared tag by tag, so a hash collision costs a comparison, never a wrong
//! answer.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, Float64Array, Int64Array, PrimitiveArray,
    RecordBatch, StringArray, StringDictionaryBuilder, StringViewArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Int32Type, SchemaRef, TimestampNanosecondType};
use arrow::error::ArrowError;
use hashbrown::HashTable;

use crate::catalog::{ColumnType, TIME_COLUMN};

/// Where an observed row comes from, which decides who wins a tie in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An acknowledged write, newer than everything observed before it.
    Write,
    /// A row read back from the table while the cache is built. A write seen
    /// during the build is newer than any row of the scan with the same
    /// series and time, so such a row only fills the write's missing fields.
    Scan,
}

/// A batch column the cache cannot hold (a type no table column has).
#[derive(Debug)]
pub(crate) struct Unsupported(pub String);

#[derive(Debug)]
enum Values {
    Text(Vec<Option<Arc<str>>>),
    Float(Vec<Option<f64>>),
    Integer(Vec<Option<i64>>),
    UInteger(Vec<Option<u64>>),
    Boolean(Vec<Option<bool>>),
}

impl Values {
    fn new(kind: ColumnType, len: usize) -> Self {
        match kind {
            ColumnType::Tag | ColumnType::String | ColumnType::Time => Values::Text(vec![None; len]),
            ColumnType::Float => Values::Float(vec![None; len]),
            ColumnType::Integer => Values::Integer(vec![None; len]),
            ColumnType::UInteger => Values::UInteger(vec![None; len]),
            ColumnType::Boolean => Values::Boolean(vec![None; len]),
        }
    }

    fn push_null(&mut self) {
        match self {
            Values::Text(v) => v.push(None),
            Values::Float(v) => v.push(None),
            Values::Integer(v) => v.push(None),
            Values::UInteger(v) => v.push(None),
            Values::Boolean(v) => v.push(None),
        }
    }

    /// Bytes one slot takes, for the memory bound (strings are counted apart).
    fn slot_bytes(&self) -> usize {
        match self {
            Values::Text(_) => std::mem::size_of::<Option<Arc<str>>>(),
            Values::Float(_) | Values::Integer(_) | Values::UInteger(_) => 16,
            Values::Boolean(_) => 1,
        }
    }
}

#[derive(Debug)]
struct CachedColumn {
    name: Arc<str>,
    kind: ColumnType,
    values: Values,
}

/// Reads one text column of a batch, whatever its string encoding.
enum TextReader<'a> {
    Dictionary(&'a DictionaryArray<Int32Type>, &'a StringArray),
    Plain(&'a StringArray),
    View(&'a StringViewArray),
    Null,
}

impl<'a> TextReader<'a> {
    fn new(array: &'a dyn Array) -> Result<Self, Unsupported> {
        Ok(match array.data_type() {
            DataType::Dictionary(key, value)
                if key.as_ref() == &DataType::Int32 && value.as_ref() == &DataType::Utf8 =>
            {
                let dictionary = array.as_dictionary::<Int32Type>();
                TextReader::Dictionary(dictionary, dictionary.values().as_string::<i32>())
            }
            DataType::Utf8 => TextReader::Plain(array.as_string::<i32>()),
            DataType::Utf8View => TextReader::View(array.as_string_view()),
            DataType::Null => TextReader::Null,
            other => return Err(Unsupported(format!("a text column of type {other}"))),
        })
    }

    fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            TextReader::Dictionary(dictionary, values) => {
                if dictionary.is_null(row) {
                    return None;
                }
                let key = dictionary.keys().value(row) as usize;
                values.is_valid(key).then(|| values.value(key))
            }
            TextReader::Plain(array) => array.is_valid(row).then(|| array.value(row)),
            TextReader::View(array) => array.is_valid(row).then(|| array.value(row)),
            TextReader::Null => None,
        }
    }
}

/// Reads one field column of a batch as the cache stores it.
enum FieldReader<'a> {
    Text(TextReader<'a>),
    Float(&'a Float64Array),
    Integer(&'a Int64Array),
    UInteger(&'a UInt64Array),
    Boolean(&'a BooleanArray),
}

impl<'a> FieldReader<'a> {
    fn new(kind: ColumnType, array: &'a dyn Array) -> Result<Self, Unsupported> {
        let unsupported = || Unsupported(format!("a {kind} column of type {}", array.data_type()));
        Ok(match kind {
            ColumnType::String => FieldReader::Text(TextReader::new(array)?),
            ColumnType::Float => FieldReader::Float(array.as_primitive_opt().ok_or_else(unsupported)?),
            ColumnType::Integer => FieldReader::Integer(array.as_primitive_opt().ok_or_else(unsupported)?),
            ColumnType::UInteger => FieldReader::UInteger(array.as_primitive_opt().ok_or_else(unsupported)?),
            ColumnType::Boolean => FieldReader::Boolean(array.as_boolean_opt().ok_or_else(unsupported)?),
            ColumnType::Tag | ColumnType::Time => return Err(unsupported()),
        })
    }

    /// Applies `updates` (in row order) to `values`; returns the change in
    /// string bytes.
    fn apply(&self, values: &mut Values, updates: &[Update]) -> isize {
        match (self, values) {
            (FieldReader::Text(reader), Values::Text(v)) => {
                let mut grown = 0isize;
                for update in updates {
                    let (row, slot) = (update.row as usize, update.slot as usize);
                    let value = reader.get(row);
                    let store = match update.kind {
                        UpdateKind::Replace => true,
                        UpdateKind::Merge => value.is_some(),
                        UpdateKind::Fill => value.is_some() && v[slot].is_none(),
                    };
                    if store {
                        let old = v[slot].as_deref().map_or(0, str::len);
                        v[slot] = value.map(Arc::from);
                        grown += value.map_or(0, str::len) as isize - old as isize;
                    }
                }
                grown
            }
            (FieldReader::Float(a), Values::Float(v)) => apply_primitive(a, v, updates),
            (FieldReader::Integer(a), Values::Integer(v)) => apply_primitive(a, v, updates),
            (FieldReader::UInteger(a), Values::UInteger(v)) => apply_primitive(a, v, updates),
            (FieldReader::Boolean(a), Values::Boolean(v)) => {
                apply_each(v, updates, |row| a.is_valid(row).then(|| a.value(row)));
                0
            }
            // The reader was made for the column's kind, so the two agree.
            _ => 0,
        }
    }
}

fn apply_primitive<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
    values: &mut [Option<T::Native>],
    updates: &[Update],
) -> isize {
    let native = array.values();
    match array.nulls() {
        None => apply_each(values, updates, |row| Some(native[row])),
        Some(nulls) => apply_each(values, updates, |row| nulls.is_valid(row).then(|| native[row])),
    }
    0
}

fn apply_each<T: Copy>(values: &mut [Option<T>], updates: &[Update], value_of: impl Fn(usize) -> Option<T>) {
    for update in updates {
        let slot = update.slot as usize;
        let value = value_of(update.row as usize);
        match update.kind {
            UpdateKind::Replace => values[slot] = value,
            UpdateKind::Merge if value.is_some() => values[slot] = value,
            UpdateKind::Fill if value.is_some() && values[slot].is_none() => values[slot] = value,
            UpdateKind::Merge | UpdateKind::Fill => {}
        }
    }
}

/// A dictionary tag value of a batch as the cache knows it.
enum TagKey {
    Null,
    /// The cache's copy of the value.
    Interned(Arc<str>),
    /// A value no series had when the batch came (compared as text).
    Unseen,
}

/// What one row does to its series' last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpdateKind {
    /// The row is newer: it becomes the last row, nulls included.
    Replace,
    /// Same time: its non-null fields overwrite.
    Merge,
    /// Same time, but the cached row came from a write and this one from a
    /// scan: it only fills the fields the write left null.
    Fill,
}

#[derive(Debug, Clone, Copy)]
struct Update {
    row: u32,
    slot: u32,
    kind: UpdateKind,
}

/// Empties `slot`; returns the string bytes freed.
fn clear_slot(values: &mut Values, slot: usize) -> usize {
    match values {
        Values::Text(v) => return v[slot].take().map_or(0, |s| s.len()),
        Values::Float(v) => v[slot] = None,
        Values::Integer(v) => v[slot] = None,
        Values::UInteger(v) => v[slot] = None,
        Values::Boolean(v) => v[slot] = None,
    }
    0
}

/// The last row of every series of one table.
#[derive(Debug, Default)]
pub(crate) struct SeriesRows {
    /// Tag columns then fields, in the order they were first seen.
    columns: Vec<CachedColumn>,
    /// Per series: the hash of its tags, its last time, and whether that row
    /// came from a write (see [`Origin::Scan`]).
    hashes: Vec<u64>,
    times: Vec<i64>,
    from_write: Vec<bool>,
    index: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Tag values, stored once however many series share them.
    interned: HashSet<Arc<str>>,
    /// What the slots and strings take, roughly.
    bytes: usize,
    /// Makes every series hash the same, so that tests reach the tag
    /// comparison that guards against collisions.
    #[cfg(test)]
    every_hash_equal: bool,
}

impl SeriesRows {
    /// Series held.
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    /// The oldest of the last times, `None` when empty.
    pub(crate) fn oldest_time(&self) -> Option<i64> {
        self.times.iter().copied().min()
    }

    /// Memory held, roughly: what the bound is checked against.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn slot_bytes(&self) -> usize {
        // hash, time, origin, index entry
        8 + 8 + 1 + 4 + self.columns.iter().map(|c| c.values.slot_bytes()).sum::<usize>()
    }

    fn column_index(&mut self, name: &str, kind: ColumnType) -> Result<usize, Unsupported> {
        if let Some(i) = self.columns.iter().position(|c| &*c.name == name) {
            if self.columns[i].kind != kind {
                return Err(Unsupported(format!("column {name} is a {} and a {kind}", self.columns[i].kind)));
            }
            return Ok(i);
        }
        let values = Values::new(kind, self.len());
        self.bytes += values.slot_bytes() * self.len();
        self.columns.push(CachedColumn { name: name.into(), kind, values });
        Ok(self.columns.len() - 1)
    }

    /// Takes in the rows of `batch` (any columns of the table, `time` among
    /// them); `origin` says who wins a tie in time.
    pub(crate) fn observe(&mut self, batch: &RecordBatch, origin: Origin) -> Result<(), Unsupported> {
        let schema = batch.schema();
        let Ok(time_index) = schema.index_of(TIME_COLUMN) else {
            return Err(Unsupported("a batch without a time column".into()));
        };
        let Some(times) = batch.column(time_index).as_primitive_opt::<TimestampNanosecondType>() else {
            return Err(Unsupported(format!("a time column of type {}", batch.column(time_index).data_type())));
        };
        // Every batch column gets its place in the cache first, so that
        // tag order (and so the hash) is the cache's, not the batch's.
        let mut fields: Vec<(usize, usize)> = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if i == time_index {
                continue;
            }
            let kind = ColumnType::from_data_type(field.data_type())
                .ok_or_else(|| Unsupported(format!("column {} of type {}", field.name(), field.data_type())))?;
            let kind = if kind == ColumnType::Time { ColumnType::String } else { kind };
            let cached = self.column_index(field.name(), kind)?;
            if kind != ColumnType::Tag {
                fields.push((cached, i));
            }
        }
        let tag_columns: Vec<usize> =
            (0..self.columns.len()).filter(|&c| self.columns[c].kind == ColumnType::Tag).collect();
        let tags: Vec<TextReader<'_>> = tag_columns
            .iter()
            .map(|&c| match schema.index_of(&self.columns[c].name) {
                Ok(i) => TextReader::new(batch.column(i).as_ref()),
                Err(_) => Ok(TextReader::Null),
            })
            .collect::<Result<_, _>>()?;
        let readers: Vec<(usize, FieldReader<'_>)> = fields
            .iter()
            .map(|&(cached, i)| Ok((cached, FieldReader::new(self.columns[cached].kind, batch.column(i).as_ref())?)))
            .collect::<Result<_, Unsupported>>()?;
        let hashes = self.row_hashes(&tags, batch.num_rows());
        let slot_bytes = self.slot_bytes();
        // Dictionary tag values as the cache's interned strings, so that a row
        // is matched to its series by pointer rather than by comparing text.
        let mut tag_keys: Vec<Option<Vec<TagKey>>> = tags
            .iter()
            .map(|reader| match reader {
                TextReader::Dictionary(_, values) => Some(
                    (0..values.len())
                        .map(|i| match values.is_valid(i).then(|| values.value(i)) {
                            None => TagKey::Null,
                            Some(value) => {
                                self.interned.get(value).map_or(TagKey::Unseen, |v| TagKey::Interned(Arc::clone(v)))
                            }
                        })
                        .collect(),
                ),
                _ => None,
            })
            .collect();

        // First each row's series and what the row does to the series' last
        // row, in row order; then each column applies those updates in one
        // loop over its typed values.
        let mut updates: Vec<Update> = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let time = times.value(row);
            let hash = hashes[row];
            let columns = &self.columns;
            let found = self.index.find(hash, |&slot| {
                let slot = slot as usize;
                self.hashes[slot] == hash
                    && tag_columns.iter().zip(&tags).zip(&tag_keys).all(|((&c, reader), keys)| {
                        let Values::Text(v) = &columns[c].values else { return false };
                        match (keys, reader) {
                            (Some(keys), TextReader::Dictionary(dictionary, _)) => {
                                let key = if dictionary.is_null(row) {
                                    &TagKey::Null
                                } else {
                                    keys.get(dictionary.keys().value(row) as usize).unwrap_or(&TagKey::Null)
                                };
                                match (key, &v[slot]) {
                                    (TagKey::Null, cached) => cached.is_none(),
                                    (TagKey::Interned(value), Some(cached)) => Arc::ptr_eq(value, cached),
                                    (TagKey::Interned(_), None) => false,
                                    // A dictionary may hold a value twice: the
                                    // other place may have made the series.
                                    (TagKey::Unseen, cached) => cached.as_deref() == reader.get(row),
                                }
                            }
                            _ => v[slot].as_deref() == reader.get(row),
                        }
                    })
            });
            let (slot, kind) = match found.copied() {
                None => {
                    let slot = self.len();
                    for column in &mut self.columns {
                        column.values.push_null();
                    }
                    for ((&c, reader), keys) in tag_columns.iter().zip(&tags).zip(&mut tag_keys) {
                        let Some(value) = reader.get(row) else { continue };
                        let interned = match self.interned.get(value) {
                            Some(v) => Arc::clone(v),
                            None => {
                                self.bytes += value.len() + 16;
                                let v: Arc<str> = value.into();
                                self.interned.insert(Arc::clone(&v));
                                v
                            }
                        };
                        if let (Some(keys), TextReader::Dictionary(dictionary, _)) = (keys, reader) {
                            if let Some(key) = keys.get_mut(dictionary.keys().value(row) as usize) {
                                *key = TagKey::Interned(Arc::clone(&interned));
                            }
                        }
                        if let Values::Text(v) = &mut self.columns[c].values {
                            v[slot] = Some(interned);
                        }
                    }
                    self.hashes.push(hash);
                    self.times.push(time);
                    self.from_write.push(origin == Origin::Write);
                    self.bytes += slot_bytes;
                    let hashes = &self.hashes;
                    self.index.insert_unique(hash, slot as u32, |&s| hashes[s as usize]);
                    (slot as u32, UpdateKind::Replace)
                }
                Some(slot) => {
                    let last = self.times[slot as usize];
                    let kind = if time > last {
                        self.times[slot as usize] = time;
                        self.from_write[slot as usize] = origin == Origin::Write;
                        UpdateKind::Replace
                    } else if time == last {
                        if origin == Origin::Scan && self.from_write[slot as usize] {
                            UpdateKind::Fill
                        } else {
                            UpdateKind::Merge
                        }
                    } else {
                        continue;
                    };
                    (slot, kind)
                }
            };
            updates.push(Update { row: row as u32, slot, kind });
        }

        for (c, reader) in &readers {
            let grown = reader.apply(&mut self.columns[*c].values, &updates);
            self.bytes = self.bytes.saturating_add_signed(grown);
        }
        // A newer row replaces the whole row: fields it lacks are null.
        let absent: Vec<usize> = (0..self.columns.len())
            .filter(|&c| self.columns[c].kind != ColumnType::Tag && !readers.iter().any(|(r, _)| *r == c))
            .collect();
        for update in updates.iter().filter(|u| u.kind == UpdateKind::Replace) {
            for &c in &absent {
                let freed = clear_slot(&mut self.columns[c].values, update.slot as usize);
                self.bytes = self.bytes.saturating_sub(freed);
            }
        }
        Ok(())
    }

    /// One hash per row from its tag values: the sum of a hash of (the tag's
    /// place in the cache, its value) over the tags that are not null, so a
    /// tag column that appears later (null in older series) changes no
    /// series' hash.
    fn row_hashes(&self, tags: &[TextReader<'_>], rows: usize) -> Vec<u64> {
        let mut hashes = vec![0u64; rows];
        #[cfg(test)]
        if self.every_hash_equal {
            return hashes;
        }
        for (place, reader) in tags.iter().enumerate() {
            let hash_of = |value: &str| self.hasher.hash_one((place, value));
            match reader {
                TextReader::Dictionary(dictionary, values) => {
                    // Each distinct value is hashed once.
                    let value_hashes: Vec<u64> = (0..values.len())
                        .map(|i| if values.is_valid(i) { hash_of(values.value(i)) } else { 0 })
                        .collect();
                    for (row, hash) in hashes.iter_mut().enumerate() {
                        if dictionary.is_valid(row) {
                            let key = dictionary.keys().value(row) as usize;
                            *hash = hash.wrapping_add(value_hashes.get(key).copied().unwrap_or(0));
                        }
                    }
                }
                other => {
                    for (row, hash) in hashes.iter_mut().enumerate() {
                        if let Some(value) = other.get(row) {
                            *hash = hash.wrapping_add(hash_of(value));
                        }
                    }
                }
            }
        }
        hashes
    }

    /// Every series' last row as one batch of `schema` (the table's columns
    /// or some of them); columns the cache has not seen are null.
    pub(crate) fn to_batch(&self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let rows = self.len();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let array: ArrayRef = if field.name() == TIME_COLUMN {
                Arc::new(TimestampNanosecondArray::from(self.times.clone()))
            } else {
                match self.columns.iter().find(|c| &*c.name == field.name()) {
                    None => new_null_array(field.data_type(), rows),
                    Some(column) => match &column.values {
                        Values::Text(v) if matches!(field.data_type(), DataType::Dictionary(..)) => {
                            let mut builder = StringDictionaryBuilder::<Int32Type>::new();
                            for value in v {
                                builder.append_option(value.as_deref());
                            }
                            Arc::new(builder.finish())
                        }
                        Values::Text(v) => Arc::new(StringArray::from_iter(v.iter().map(|s| s.as_deref()))),
                        Values::Float(v) => Arc::new(Float64Array::from(v.clone())),
                        Values::Integer(v) => Arc::new(Int64Array::from(v.clone())),
                        Values::UInteger(v) => Arc::new(UInt64Array::from(v.clone())),
                        Values::Boolean(v) => Arc::new(BooleanArray::from(v.clone())),
                    },
                }
            };
            let array = if array.data_type() == field.data_type() { array } else { cast(&array, field.data_type())? };
            arrays.push(array);
        }
        RecordBatch::try_new_with_options(
            Arc::clone(schema),
            arrays,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("host", crate::catalog::tag_data_type(), true),
            Field::new("region", crate::catalog::tag_data_type(), true),
            Field::new("usage", DataType::Float64, true),
            Field::new("count", DataType::Int64, true),
            Field::new(TIME_COLUMN, crate::catalog::time_data_type(), false),
        ]))
    }

    /// host, region, usage, count, time
    type Row<'a> = (&'a str, Option<&'a str>, Option<f64>, Option<i64>, i64);

    fn batch(rows: &[Row<'_>]) -> RecordBatch {
        let tag = |values: Vec<Option<&str>>| -> ArrayRef {
            Arc::new(values.into_iter().collect::<DictionaryArray<Int32Type>>())
        };
        RecordBatch::try_new(
            schema(),
            vec![
                tag(rows.iter().map(|r| Some(r.0)).collect()),
                tag(rows.iter().map(|r| r.1).collect()),
                Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
                Arc::new(rows.iter().map(|r| r.3).collect::<Int64Array>()),
                Arc::new(
                    TimestampNanosecondArray::from(rows.iter().map(|r| r.4).collect::<Vec<_>>()).with_timezone("UTC"),
                ),
            ],
        )
        .expect("batch")
    }

    fn rows(cache: &SeriesRows) -> Vec<String> {
        lines(cache.to_batch(&schema()).expect("to_batch"))
    }

    /// The rows of `batch` as sorted table lines.
    fn lines(batch: RecordBatch) -> Vec<String> {
        let mut lines: Vec<String> = arrow::util::pretty::pretty_format_batches(&[batch])
            .expect("format")
            .to_string()
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("host"))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    /// The cache against its definition: the last row of each series of the
    /// table as storage sorts and merges it, over random writes with null
    /// tags, null fields, repeated points and times out of order; every
    /// other round with every series colliding in the hash.
    #[test]
    fn holds_the_last_row_of_each_series_of_the_merged_table() {
        let mut random = crate::testing::Lcg(11);
        let order = crate::storage::RowOrder { schema: schema(), sort_key: vec![0, 1, 4], time: 4 };
        for round in 0..40 {
            let mut cache = SeriesRows { every_hash_equal: round % 2 == 1, ..SeriesRows::default() };
            let mut written = Vec::new();
            for _ in 0..1 + round % 5 {
                let rows: Vec<Row<'_>> = (0..1 + random.below(200))
                    .map(|_| {
                        let host = ["h1", "h2", "h3", "h10"][random.below(4) as usize];
                        let region = [Some("eu"), Some("us"), None][random.below(3) as usize];
                        let usage = (random.below(3) != 0).then(|| random.below(100) as f64);
                        let count = (random.below(3) != 0).then(|| random.below(100) as i64);
                        (host, region, usage, count, random.below(8) as i64)
                    })
                    .collect();
                let write = batch(&rows);
                cache.observe(&write, Origin::Write).expect("observe");
                written.push(write);
            }
            let table = crate::storage::sort_and_deduplicate(&written, &order).expect("merged");
            let series = crate::storage::key_rows(&table, &[0, 1]).expect("keys");
            let last_of_each: Vec<u32> = (0..table.num_rows())
                .filter(|&row| row + 1 == table.num_rows() || series.row(row) != series.row(row + 1))
                .map(|row| row as u32)
                .collect();
            let expected = arrow::compute::take_record_batch(&table, &arrow::array::UInt32Array::from(last_of_each))
                .expect("take");
            assert_eq!(rows(&cache), lines(expected), "round {round}");
        }
    }

    #[test]
    fn a_dictionary_holding_a_value_twice_is_one_series() {
        let host = DictionaryArray::<Int32Type>::new(
            arrow::array::Int32Array::from(vec![0, 1]),
            Arc::new(StringArray::from(vec!["a", "a"])),
        );
        let region: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::from_iter([Some("eu"), Some("eu")]));
        let write = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(host),
                region,
                Arc::new(Float64Array::from(vec![1.0, 2.0])),
                Arc::new(Int64Array::from(vec![None, None])),
                Arc::new(TimestampNanosecondArray::from(vec![1, 2]).with_timezone("UTC")),
            ],
        )
        .expect("batch");
        let mut cache = SeriesRows::default();
        cache.observe(&write, Origin::Write).expect("observe");
        assert_eq!(cache.len(), 1, "{:?}", rows(&cache));
        assert!(rows(&cache)[0].contains("| 2.0 "), "{:?}", rows(&cache));
    }

    #[test]
    fn keeps_the_latest_row_of_each_series_whatever_the_arrival_order() {
        let mut cache = SeriesRows::default();
        cache
            .observe(
                &batch(&[
                    ("a", Some("eu"), Some(1.0), Some(1), 10),
                    ("a", Some("eu"), Some(3.0), Some(3), 30),
                    ("a", Some("eu"), Some(2.0), Some(2), 20),
                    ("a", None, Some(9.0), None, 5),
                    ("b", Some("us"), Some(4.0), None, 40),
                ]),
                Origin::Write,
            )
            .expect("observe");
        assert_eq!(cache.len(), 3, "a/eu, a/null and b/us are three series");
        let lines = rows(&cache);
        assert!(
            lines.iter().any(|l| l.contains("| a    | eu     | 3.0   | 3     | 1970-01-01T00:00:00.000000030Z")),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.contains("| a    |        | 9.0   |       |")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("| b    | us     | 4.0   |       |")), "{lines:?}");
    }

    #[test]
    fn rows_of_the_same_time_merge_field_by_field_and_newer_rows_replace() {
        let mut cache = SeriesRows::default();
        cache.observe(&batch(&[("a", None, Some(1.0), Some(7), 10)]), Origin::Write).expect("observe");
        // Same time, only `usage`: `count` stays.
        cache.observe(&batch(&[("a", None, Some(2.0), None, 10)]), Origin::Write).expect("observe");
        assert!(rows(&cache)[0].contains("| 2.0   | 7     |"), "{:?}", rows(&cache));
        // Newer, only `count`: `usage` is null, as a read of the newest row shows it.
        cache.observe(&batch(&[("a", None, None, Some(8), 11)]), Origin::Write).expect("observe");
        assert!(rows(&cache)[0].contains("|       | 8     |"), "{:?}", rows(&cache));
    }

    #[test]
    fn a_scan_row_does_not_override_a_write_of_the_same_time() {
        let mut cache = SeriesRows::default();
        cache.observe(&batch(&[("a", None, Some(5.0), None, 10)]), Origin::Write).expect("observe");
        // The scan read the older merged row: it fills `count`, not `usage`.
        cache.observe(&batch(&[("a", None, Some(1.0), Some(7), 10)]), Origin::Scan).expect("observe");
        assert!(rows(&cache)[0].contains("| 5.0   | 7     |"), "{:?}", rows(&cache));
        // An older scan row changes nothing; a newer one replaces.
        cache.observe(&batch(&[("a", None, Some(0.5), Some(1), 9)]), Origin::Scan).expect("observe");
        assert!(rows(&cache)[0].contains("| 5.0   | 7     |"), "{:?}", rows(&cache));
        cache.observe(&batch(&[("a", None, Some(6.0), None, 12)]), Origin::Scan).expect("observe");
        assert!(rows(&cache)[0].contains("| 6.0   |       |"), "{:?}", rows(&cache));
    }

    #[test]
    fn a_tag_that_appears_later_leaves_older_series_where_they_were() {
        let mut cache = SeriesRows::default();
        let host_only = Arc::new(Schema::new(vec![
            Field::new("host", crate::catalog::tag_data_type(), true),
            Field::new("usage", DataType::Float64, true),
            Field::new(TIME_COLUMN, crate::catalog::time_data_type(), false),
        ]));
        let first = RecordBatch::try_new(
            host_only,
            vec![
                Arc::new(vec![Some("a")].into_iter().collect::<DictionaryArray<Int32Type>>()),
                Arc::new(Float64Array::from(vec![1.0])),
                Arc::new(TimestampNanosecondArray::from(vec![10]).with_timezone("UTC")),
            ],
        )
        .expect("batch");
        cache.observe(&first, Origin::Write).expect("observe");
        // `region` is new: a/null is the series seen before, a/eu a new one.
        cache
            .observe(&batch(&[("a", None, Some(2.0), None, 20), ("a", Some("eu"), Some(3.0), None, 30)]), Origin::Write)
            .expect("observe");
        assert_eq!(cache.len(), 2, "{:?}", rows(&cache));
        cache.observe(&first, Origin::Write).expect("observe");
        assert_eq!(cache.len(), 2, "the first batch again finds its series: {:?}", rows(&cache));
    }

    #[test]
    fn rewritten_strings_are_counted_once() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", crate::catalog::tag_data_type(), true),
            Field::new("status", DataType::Utf8, true),
            Field::new(TIME_COLUMN, crate::catalog::time_data_type(), false),
        ]));
        let status = |text: &str, time: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(vec![Some("a")].into_iter().collect::<DictionaryArray<Int32Type>>()),
                    Arc::new(StringArray::from(vec![text])),
                    Arc::new(TimestampNanosecondArray::from(vec![time]).with_timezone("UTC")),
                ],
            )
            .expect("batch")
        };
        let mut cache = SeriesRows::default();
        cache.observe(&status("twenty bytes of text", 1), Origin::Write).expect("observe");
        let after_one = cache.bytes();
        for time in 2..1000 {
            cache.observe(&status("twenty bytes of text", time), Origin::Write).expect("observe");
        }
        cache.observe(&status("twenty bytes of text", 1000), Origin::Write).expect("observe");
        assert_eq!(cache.bytes(), after_one, "a thousand rewrites of one field hold what one does");
    }

    #[test]
    fn a_tag_missing_from_a_batch_is_null_and_columns_come_in_any_order() {
        let mut cache = SeriesRows::default();
        cache.observe(&batch(&[("a", None, Some(1.0), None, 10)]), Origin::Write).expect("observe");
        // The same series, from a batch without `region` and with columns reordered.
        let reordered = Arc::new(Schema::new(vec![
            Field::new(TIME_COLUMN, crate::catalog::time_data_type(), false),
            Field::new("usage", DataType::Float64, true),
            Field::new("host", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            reordered,
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![20]).with_timezone("UTC")),
                Arc::new(Float64Array::from(vec![2.0])),
                Arc::new(StringArray::from(vec!["a"])),
            ],
        )
        .expect("batch");
        // `host` as a plain string is a string field here, not the tag.
        assert!(cache.observe(&batch, Origin::Write).is_err(), "a tag seen as a field is refused");
        let tags_only = batch.project(&[0, 1]).expect("project");
        cache.observe(&tags_only, Origin::Write).expect("observe");
        assert_eq!(cache.len(), 2, "no host at all is another series");
    }
}
