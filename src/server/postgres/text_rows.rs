//! Rows in Postgres's text format written straight from the columns.
//!
//! The general encoder (`arrow_pg`) goes through a call, a type dispatch and
//! a boxed value per field of every row: most of the time of a large result
//! (1.6 M rows of TSBS high-cpu-all took five times longer over the wire than
//! the query). A result whose fields are all text and whose columns are
//! strings, tags, integers, booleans, or the times and floats that
//! [`super::results`] has already written as PostgreSQL writes them, is
//! written here instead; anything else goes to the general encoder.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, LargeStringArray, PrimitiveArray, RecordBatch,
    StringArray, StringViewArray,
};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use bytes::{BufMut, BytesMut};
use datafusion_postgres::pgwire;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;

/// One column, read as the text Postgres shows for it.
enum TextColumn<'a> {
    Null,
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    Tag(&'a DictionaryArray<Int32Type>, &'a StringArray),
    Boolean(&'a BooleanArray),
    Int8(&'a PrimitiveArray<Int8Type>),
    Int16(&'a PrimitiveArray<Int16Type>),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    UInt8(&'a PrimitiveArray<UInt8Type>),
    UInt16(&'a PrimitiveArray<UInt16Type>),
    UInt32(&'a PrimitiveArray<UInt32Type>),
    UInt64(&'a PrimitiveArray<UInt64Type>),
}

impl<'a> TextColumn<'a> {
    fn new(column: &'a ArrayRef) -> Option<Self> {
        Some(match column.data_type() {
            DataType::Null => TextColumn::Null,
            DataType::Utf8 => TextColumn::Utf8(column.as_string()),
            DataType::LargeUtf8 => TextColumn::LargeUtf8(column.as_string()),
            DataType::Utf8View => TextColumn::Utf8View(column.as_string_view()),
            DataType::Dictionary(key, value) if **key == DataType::Int32 && **value == DataType::Utf8 => {
                let dictionary = column.as_dictionary::<Int32Type>();
                TextColumn::Tag(dictionary, dictionary.values().as_string_opt()?)
            }
            DataType::Boolean => TextColumn::Boolean(column.as_boolean()),
            DataType::Int8 => TextColumn::Int8(column.as_primitive()),
            DataType::Int16 => TextColumn::Int16(column.as_primitive()),
            DataType::Int32 => TextColumn::Int32(column.as_primitive()),
            DataType::Int64 => TextColumn::Int64(column.as_primitive()),
            DataType::UInt8 => TextColumn::UInt8(column.as_primitive()),
            DataType::UInt16 => TextColumn::UInt16(column.as_primitive()),
            DataType::UInt32 => TextColumn::UInt32(column.as_primitive()),
            DataType::UInt64 => TextColumn::UInt64(column.as_primitive()),
            _ => return None,
        })
    }

    /// Writes row `row` as a field of a DataRow: its length then its text,
    /// or -1 for NULL.
    fn write(&self, row: usize, out: &mut BytesMut, number: &mut itoa::Buffer) {
        fn text(out: &mut BytesMut, bytes: &[u8]) {
            // A field is at most 1 GB in Postgres; a batch column is far below i32::MAX.
            out.put_i32(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
            out.put_slice(bytes);
        }
        fn integer<T>(array: &PrimitiveArray<T>, row: usize, out: &mut BytesMut, number: &mut itoa::Buffer)
        where
            T: ArrowPrimitiveType,
            T::Native: itoa::Integer,
        {
            if array.is_null(row) {
                out.put_i32(-1);
            } else {
                text(out, number.format(array.value(row)).as_bytes());
            }
        }
        match self {
            TextColumn::Null => out.put_i32(-1),
            TextColumn::Utf8(a) if a.is_valid(row) => text(out, a.value(row).as_bytes()),
            TextColumn::LargeUtf8(a) if a.is_valid(row) => text(out, a.value(row).as_bytes()),
            TextColumn::Utf8View(a) if a.is_valid(row) => text(out, a.value(row).as_bytes()),
            TextColumn::Tag(keys, values) if keys.is_valid(row) => {
                let key = keys.keys().value(row) as usize;
                if values.is_valid(key) {
                    text(out, values.value(key).as_bytes());
                } else {
                    out.put_i32(-1);
                }
            }
            TextColumn::Boolean(a) if a.is_valid(row) => text(out, if a.value(row) { b"t" } else { b"f" }),
            TextColumn::Int8(a) => integer(a, row, out, number),
            TextColumn::Int16(a) => integer(a, row, out, number),
            TextColumn::Int32(a) => integer(a, row, out, number),
            TextColumn::Int64(a) => integer(a, row, out, number),
            TextColumn::UInt8(a) => integer(a, row, out, number),
            TextColumn::UInt16(a) => integer(a, row, out, number),
            TextColumn::UInt32(a) => integer(a, row, out, number),
            TextColumn::UInt64(a) => integer(a, row, out, number),
            // The string and boolean variants when the value is NULL.
            _ => out.put_i32(-1),
        }
    }
}

/// The rows of `batch` in the text format, or `None` when a field is binary
/// or a column is of a type written only by the general encoder.
pub(super) fn text_rows(batch: &RecordBatch, fields: &[FieldInfo]) -> Option<Vec<DataRow>> {
    if fields.len() != batch.num_columns() || fields.iter().any(|f| f.format() != FieldFormat::Text) {
        return None;
    }
    let field_count = i16::try_from(batch.num_columns()).ok()?;
    let columns: Vec<TextColumn<'_>> = batch.columns().iter().map(TextColumn::new).collect::<Option<_>>()?;
    // Rows are split off one buffer: one allocation for many rows.
    // (Sized by rows and columns: a slice of a batch reports its parent's buffers.)
    let mut out = BytesMut::with_capacity((batch.num_rows() * (batch.num_columns() * 12 + 4)).min(16 << 20) + 64);
    let mut number = itoa::Buffer::new();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for column in &columns {
            column.write(row, &mut out, &mut number);
        }
        rows.push(DataRow::new(out.split(), field_count));
    }
    Some(rows)
}
