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
use hashbrown::HashTable;

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

/// A value's length and two overlapping words of it: for values of up to 16 bytes
/// this is the value itself, so lookups compare it without touching the value
/// buffer; longer values are checked byte by byte after it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    first: u64,
    last: u64,
    len: u32,
}

impl Fingerprint {
    #[inline(always)]
    fn of(v: &[u8]) -> Self {
        #[inline(always)]
        fn word(s: &[u8], at: usize) -> u64 {
            u64::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3], s[at + 4], s[at + 5], s[at + 6], s[at + 7]])
        }
        #[inline(always)]
        fn half(s: &[u8], at: usize) -> u64 {
            u32::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]) as u64
        }
        let n = v.len();
        let (first, last) = match n {
            0 => (0, 0),
            1..=3 => ((v[0] as u64) | (v[n / 2] as u64) << 8 | (v[n - 1] as u64) << 16, 0),
            4..=7 => (half(v, 0) | half(v, n - 4) << 32, 0),
            _ => (word(v, 0), word(v, n - 8)),
        };
        Fingerprint { first, last, len: n as u32 }
    }

    /// Whether equal fingerprints mean equal values.
    #[inline(always)]
    fn is_exact(&self) -> bool {
        self.len <= 16
    }

    #[inline(always)]
    fn hash(&self) -> u64 {
        let a = self.first ^ (self.len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let b = self.last ^ 0x2545_F491_4F6C_DD1D;
        let m = (a as u128).wrapping_mul(b as u128);
        (m as u64) ^ ((m >> 64) as u64)
    }
}

#[derive(Debug, Clone, Copy)]
struct DictionaryEntry {
    fingerprint: Fingerprint,
    key: i32,
}

/// A dictionary-encoded string column: each distinct value stored once.
#[derive(Debug)]
struct Dictionary {
    keys: Primitive<i32>,
    values: Strings,
    lookup: HashTable<DictionaryEntry>,
}

impl Dictionary {
    fn new() -> Self {
        Dictionary { keys: Primitive::default(), values: Strings::new(), lookup: HashTable::new() }
    }

    #[inline]
    fn key_for(&mut self, value: &[u8]) -> Result<i32, ArrowError> {
        let fingerprint = Fingerprint::of(value);
        let hash = fingerprint.hash();
        let values = &self.values;
        let found = self.lookup.find(hash, |entry| {
            entry.fingerprint == fingerprint
                && (fingerprint.is_exact() || {
                    let k = entry.key as usize;
                    &values.bytes[values.offsets[k] as usize..values.offsets[k + 1] as usize] == value
                })
        });
        if let Some(entry) = found {
            return Ok(entry.key);
        }
        let key = i32::try_from(self.values.len())
            .map_err(|_| ArrowError::ComputeError("too many distinct tag values in one batch".into()))?;
        self.values.push(value, true)?;
        self.lookup.insert_unique(hash, DictionaryEntry { fingerprint, key }, |e| e.fingerprint.hash());
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
    len: usize,
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
        ColumnBuilder { column_type, data, len: 0, non_null: 0 }
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
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was materialised.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_null(&mut self) {
        self.len += 1;
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
    #[inline]
    pub fn pad_to(&mut self, rows: usize) {
        while self.len < rows {
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
        self.len = len;
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
        self.len += 1;
        self.non_null += 1;
        Ok(())
    }

    /// Appends a field value at row `row`, replacing the value already at that row
    /// (a later duplicate key in the same line wins). The caller checked the type.
    #[inline]
    pub fn push_field(&mut self, row: usize, value: FieldValue<'_>) -> Result<(), ArrowError> {
        if self.len > row {
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
        self.len += 1;
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
