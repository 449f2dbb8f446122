//! Columns as the text encodings (JSON, CSV, pretty) print them: times as
//! RFC 3339 in UTC with nanoseconds, tags as plain strings.
//!
//! Times are written digit by digit into one buffer: a large result has a
//! time on every row, and formatting each through a format string and its
//! own `String` cost more than the rest of the JSON encoding.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampNanosecondType};
use arrow::error::ArrowError;
use chrono::{Datelike, Timelike};

/// `batch` with its timestamps as RFC 3339 text and its dictionaries as strings.
pub(super) fn text_friendly(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match column.data_type() {
            DataType::Timestamp(_, _) => {
                let nanos = cast(column, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
                let nanos = nanos.as_primitive::<TimestampNanosecondType>();
                let mut text = StringBuilder::with_capacity(nanos.len(), nanos.len() * RFC3339_NANOS_LEN);
                let mut buffer = [0u8; RFC3339_NANOS_LEN];
                for value in nanos.iter() {
                    match value {
                        Some(ns) => match rfc3339_nanos(ns, &mut buffer) {
                            Some(formatted) => text.append_value(formatted),
                            None => text.append_value(
                                chrono::DateTime::from_timestamp_nanos(ns).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
                            ),
                        },
                        None => text.append_null(),
                    }
                }
                fields.push(Field::new(field.name(), DataType::Utf8, field.is_nullable()));
                columns.push(Arc::new(text.finish()));
            }
            DataType::Dictionary(_, _) => {
                fields.push(Field::new(field.name(), DataType::Utf8, field.is_nullable()));
                columns.push(cast(column, &DataType::Utf8)?);
            }
            _ => {
                fields.push(field.as_ref().clone());
                columns.push(Arc::clone(column));
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
const RFC3339_NANOS_LEN: usize = 30;

/// `ns` since the epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` in `buffer`, the
/// text chrono's `%Y-%m-%dT%H:%M:%S%.9fZ` gives (`i64` nanoseconds span the
/// years 1677 to 2262; `None` outside 0000 to 9999 keeps that true for any
/// caller).
fn rfc3339_nanos(ns: i64, buffer: &mut [u8; RFC3339_NANOS_LEN]) -> Option<&str> {
    let time = chrono::DateTime::from_timestamp_nanos(ns);
    let year = u32::try_from(time.year()).ok().filter(|y| *y <= 9999)?;
    fn digits(out: &mut [u8], mut value: u32) {
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    digits(&mut buffer[0..4], year);
    buffer[4] = b'-';
    digits(&mut buffer[5..7], time.month());
    buffer[7] = b'-';
    digits(&mut buffer[8..10], time.day());
    buffer[10] = b'T';
    digits(&mut buffer[11..13], time.hour());
    buffer[13] = b':';
    digits(&mut buffer[14..16], time.minute());
    buffer[16] = b':';
    // A leap second shows as second 59 with more than a second of nanoseconds
    // in chrono; i64 nanoseconds never make one.
    digits(&mut buffer[17..19], time.second());
    buffer[19] = b'.';
    digits(&mut buffer[20..29], time.nanosecond());
    buffer[29] = b'Z';
    std::str::from_utf8(buffer).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_chrono_writes_them() {
        let mut buffer = [0u8; RFC3339_NANOS_LEN];
        for ns in [
            0,
            1,
            -1,
            1_700_000_000_123_456_789,
            i64::MAX,
            i64::MIN,
            951_782_400_000_000_000, // 2000-02-29
        ] {
            let expected = chrono::DateTime::from_timestamp_nanos(ns).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
            match rfc3339_nanos(ns, &mut buffer) {
                Some(formatted) => assert_eq!(formatted, expected, "{ns}"),
                None => assert!(expected.starts_with('-') || expected.starts_with('+'), "{ns}: {expected}"),
            }
        }
    }
}
