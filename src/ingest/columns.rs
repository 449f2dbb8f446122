//! Growable columns that become Arrow arrays without copying.
//!
//! Arrow's own builders cannot drop a value once appended; these can, which is how
//! a duplicate field later in the same line replaces the earlier value. Nulls are
//! padded lazily, so a sparse, wide table costs nothing for the columns a line lacks.

use std::sync::Arc;

use arrow::array::BooleanBufferBuilder;
use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, StringArray, UInt64Array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::Int32Type;
use arrow::error::ArrowError;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

use crate::catalog::ColumnType;

/// Validity bits that stay unallocated until the first null.
#[derive(Debug, Default)]
struct Validity {
    bits: Option<BooleanBufferBuilder>,
}

impl Validity {
    fn push(&mut self, valid: bool, len_before: usize) {
        match (&mut self.bits, valid) {
            (Some(bits), v) => bits.append(v),
            (None, true) => {}
            (None, false) => {
                let mut bits = BooleanBufferBuilder::new(len_before.max(64) * 2);
                bits.append_n(len_before, true);
                bits.append(false);
                self.bits = Some(bits);
            }
        }
    }

    fn truncate(&mut self, len: usize) {
        if let Some(bits) = &mut self.bits {
            bits.truncate(len);
        }
    }

    fn finish(self) -> Option<NullBuffer> {
        self.bits.map(|mut b| NullBuffer::new(b.finish())).filter(|n| n.null_count() > 0)
    }
}

/// A column of fixed-width values.
#[derive(Debug, Default)]
struct Primitive<T> {
    values: Vec<T>,
    validity: Validity,
}

impl<T: Copy + Default> Primitive<T> {
    fn push(&mut self, value: T) {
        self.validity.push(true, self.values.len());
        self.values.push(value);
    }

    fn push_null(&mut self) {
        self.validity.push(false, self.values.len());
        self.values.push(T::default());
    }

    fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
        self.validity.truncate(len);
    }

    fn finish(self) -> (ScalarBuffer<T>, Option<NullBuffer>)
    where
        T: arrow::datatypes::ArrowNativeType,
    {
        (ScalarBuffer::from(self.values), self.validity.finish())
    }
}

/// A column of booleans.
#[derive(Debug)]
struct Booleans {
    values: BooleanBufferBuilder,
    validity: Validity,
}

/// A column of UTF-8 strings.
#[derive(Debug, Default)]
struct Strings {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    validity: Validity,
}

impl Strings {
    fn new() -> Self {
        Strings { offsets: vec![0], bytes: Vec::new(), validity: Validity::default() }
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn push(&mut self, value: &[u8], valid: bool) -> Result<(), ArrowError> {
        self.validity.push(valid, self.len());
        self.bytes.extend_from_slice(value);
        let end = i32::try_from(self.bytes.len())
            .map_err(|_| ArrowError::ComputeError("string column larger than 2 GiB in one batch".into()))?;
        self.offsets.push(end);
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        self.bytes.truncate(self.offsets[len] as usize);
        self.validity.truncate(len);
    }

    fn finish(self) -> Result<StringArray, ArrowError> {
        StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(self.offsets)),
            self.bytes.into(),
            self.validity.finish(),
        )
    }
}

/// A dictionary-encoded string column: each distinct value stored once.
#[derive(Debug)]
struct Dictionary {
    keys: Primitive<i32>,
    values: Strings,
    lookup: HashTable<i32>,
    hasher: DefaultHashBuilder,
}

impl Dictionary {
    fn new() -> Self {
        Dictionary {
            keys: Primitive::default(),
            values: Strings::new(),
            lookup: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn key_for(&mut self, value: &[u8]) -> Result<i32, ArrowError> {
        let hash = self.hasher.hash_one(value);
        let Dictionary { values, lookup, hasher, .. } = self;
        let value_at = |k: i32| -> &[u8] {
            let k = k as usize;
            &values.bytes[values.offsets[k] as usize..values.offsets[k + 1] as usize]
        };
        if let Some(&key) = lookup.find(hash, |&k| value_at(k) == value) {
            return Ok(key);
        }
        let key = i32::try_from(values.len())
            .map_err(|_| ArrowError::ComputeError("too many distinct tag values in one batch".into()))?;
        values.push(value, true)?;
        let Dictionary { values, lookup, .. } = self;
        lookup.insert_unique(hash, key, |&k| {
            let k = k as usize;
            hasher.hash_one(&values.bytes[values.offsets[k] as usize..values.offsets[k + 1] as usize])
        });
        Ok(key)
    }

    fn finish(self) -> Result<DictionaryArray<Int32Type>, ArrowError> {
        let (keys, nulls) = self.keys.finish();
        DictionaryArray::try_new(Int32Array::new(keys, nulls), Arc::new(self.values.finish()?))
    }
}

/// One value of a field, borrowed from the input where possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// A float.
    Float(f64),
    /// A signed integer.
    Integer(i64),
    /// An unsigned integer.
    UInteger(u64),
    /// A boolean.
    Boolean(bool),
    /// A string, already unescaped and checked to be UTF-8.
    String(&'a [u8]),
}

impl FieldValue<'_> {
    /// The column type this value creates or must match.
    pub fn column_type(&self) -> ColumnType {
        match self {
            FieldValue::Float(_) => ColumnType::Float,
            FieldValue::Integer(_) => ColumnType::Integer,
            FieldValue::UInteger(_) => ColumnType::UInteger,
            FieldValue::Boolean(_) => ColumnType::Boolean,
            FieldValue::String(_) => ColumnType::String,
        }
    }
}

/// The storage of one column in a batch under construction.
#[derive(Debug)]
enum Data {
    Tag(Dictionary),
    Float(Primitive<f64>),
    Integer(Primitive<i64>),
    UInteger(Primitive<u64>),
    Boolean(Booleans),
    String(Strings),
}

/// A column under construction: tag or field, with lazy null padding.
#[derive(Debug)]
pub struct ColumnBuilder {
    column_type: ColumnType,
    data: Data,
    non_null: usize,
}

impl ColumnBuilder {
    /// An empty column of the given type; `ColumnType::Time` is not a builder column.
    pub fn new(column_type: ColumnType) -> Self {
        let data = match column_type {
            ColumnType::Tag => Data::Tag(Dictionary::new()),
            ColumnType::Float => Data::Float(Primitive::default()),
            ColumnType::Integer | ColumnType::Time => Data::Integer(Primitive::default()),
            ColumnType::UInteger => Data::UInteger(Primitive::default()),
            ColumnType::Boolean => {
                Data::Boolean(Booleans { values: BooleanBufferBuilder::new(1024), validity: Validity::default() })
            }
            ColumnType::String => Data::String(Strings::new()),
        };
        ColumnBuilder { column_type, data, non_null: 0 }
    }

    /// What the column holds.
    pub fn column_type(&self) -> ColumnType {
        self.column_type
    }

    /// How many non-null values were appended; a column that a rejected line
    /// created and no accepted line used has none.
    pub fn non_null(&self) -> usize {
        self.non_null
    }

    /// How many rows the column has materialised (nulls included).
    pub fn len(&self) -> usize {
        match &self.data {
            Data::Tag(d) => d.keys.values.len(),
            Data::Float(p) => p.values.len(),
            Data::Integer(p) => p.values.len(),
            Data::UInteger(p) => p.values.len(),
            Data::Boolean(b) => b.values.len(),
            Data::String(s) => s.len(),
        }
    }

    /// True when nothing was materialised.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_null(&mut self) {
        match &mut self.data {
            Data::Tag(d) => d.keys.push_null(),
            Data::Float(p) => p.push_null(),
            Data::Integer(p) => p.push_null(),
            Data::UInteger(p) => p.push_null(),
            Data::Boolean(b) => {
                b.validity.push(false, b.values.len());
                b.values.append(false);
            }
            Data::String(s) => {
                // Cannot fail: an empty value does not grow the offsets.
                let _ = s.push(b"", false);
            }
        }
    }

    /// Pads with nulls up to `rows`.
    pub fn pad_to(&mut self, rows: usize) {
        for _ in self.len()..rows {
            self.push_null();
        }
    }

    /// Drops rows from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        let removed_non_null = self.count_valid(len..self.len());
        match &mut self.data {
            Data::Tag(d) => d.keys.truncate(len),
            Data::Float(p) => p.truncate(len),
            Data::Integer(p) => p.truncate(len),
            Data::UInteger(p) => p.truncate(len),
            Data::Boolean(b) => {
                b.values.truncate(len);
                b.validity.truncate(len);
            }
            Data::String(s) => s.truncate(len),
        }
        self.non_null -= removed_non_null;
    }

    fn count_valid(&self, range: std::ops::Range<usize>) -> usize {
        let validity = match &self.data {
            Data::Tag(d) => &d.keys.validity,
            Data::Float(p) => &p.validity,
            Data::Integer(p) => &p.validity,
            Data::UInteger(p) => &p.validity,
            Data::Boolean(b) => &b.validity,
            Data::String(s) => &s.validity,
        };
        match &validity.bits {
            None => range.len(),
            Some(bits) => range.filter(|&i| bits.get_bit(i)).count(),
        }
    }

    /// Appends a tag value at row `row` (the column is padded first).
    pub fn push_tag(&mut self, row: usize, value: &[u8]) -> Result<(), ArrowError> {
        self.pad_to(row);
        let Data::Tag(d) = &mut self.data else {
            return Err(ArrowError::InvalidArgumentError(format!("{} column given a tag", self.column_type)));
        };
        let key = d.key_for(value)?;
        d.keys.push(key);
        self.non_null += 1;
        Ok(())
    }

    /// Appends a field value at row `row`, replacing the value already at that row
    /// (a later duplicate key in the same line wins). The caller checked the type.
    pub fn push_field(&mut self, row: usize, value: FieldValue<'_>) -> Result<(), ArrowError> {
        if self.len() > row {
            self.truncate(row);
        }
        self.pad_to(row);
        match (&mut self.data, value) {
            (Data::Float(p), FieldValue::Float(v)) => p.push(v),
            (Data::Integer(p), FieldValue::Integer(v)) => p.push(v),
            (Data::UInteger(p), FieldValue::UInteger(v)) => p.push(v),
            (Data::Boolean(b), FieldValue::Boolean(v)) => {
                b.validity.push(true, b.values.len());
                b.values.append(v);
            }
            (Data::String(s), FieldValue::String(v)) => s.push(v, true)?,
            (_, value) => {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "{} column given a {} value",
                    self.column_type,
                    value.column_type()
                )))
            }
        }
        self.non_null += 1;
        Ok(())
    }

    /// Finishes the column as an Arrow array of `rows` rows.
    pub fn finish(mut self, rows: usize) -> Result<ArrayRef, ArrowError> {
        self.pad_to(rows);
        Ok(match self.data {
            Data::Tag(d) => Arc::new(d.finish()?),
            Data::Float(p) => {
                let (values, nulls) = p.finish();
                Arc::new(Float64Array::new(values, nulls))
            }
            Data::Integer(p) => {
                let (values, nulls) = p.finish();
                Arc::new(Int64Array::new(values, nulls))
            }
            Data::UInteger(p) => {
                let (values, nulls) = p.finish();
                Arc::new(UInt64Array::new(values, nulls))
            }
            Data::Boolean(mut b) => {
                let values: BooleanBuffer = b.values.finish();
                Arc::new(BooleanArray::new(values, b.validity.finish()))
            }
            Data::String(s) => Arc::new(s.finish()?),
        })
    }
}
