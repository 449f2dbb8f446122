//! Query results as Postgres rows: the columns named as PostgreSQL names
//! them, and times and floats in the text format written as PostgreSQL
//! writes them (`2026-12-02 17:00:00+00`, `17:00:00.5+00`: no zero
//! fraction, no trailing zeros; `1`, `1.5`, `1e+20`), so clients that parse
//! text see what they see from PostgreSQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Schema, SchemaRef, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::error::ArrowError;
use chrono::{DateTime, Datelike, NaiveDateTime, Offset, Timelike, Utc};
use datafusion::execution::SendableRecordBatchStream;
use datafusion_postgres::arrow_pg::datatypes::{encode_recordbatch, field_into_pg_type};
use datafusion_postgres::pgwire;
use futures::{stream, Stream, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use super::query_error;
use super::text_rows::text_rows;
use crate::query::QueryError;

/// The fields of a result with `schema`: named `names[i]` where that is
/// given (PostgreSQL's name for the column), else as the engine named them.
pub(crate) fn fields(
    schema: &Schema,
    names: &[Option<String>],
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<Vec<FieldInfo>> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let name = names.get(i).cloned().flatten().unwrap_or_else(|| field.name().clone());
            let pg_type = field_into_pg_type(field)?;
            Ok(FieldInfo::new(name, None, None, pg_type, format.format_for(i))
                .with_format_options(Arc::clone(&options)))
        })
        .collect()
}

/// The rows of a result, encoded batch by batch as the engine produces them;
/// an error in the stream ends it with that error.
pub(crate) fn rows(
    stream: SendableRecordBatchStream,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    stream
        .map(move |batch| -> Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> {
            let batch = batch
                .map_err(|e| query_error(QueryError::from_datafusion(e, false)))
                .and_then(|batch| postgres_text(batch, &fields).map_err(|e| PgWireError::ApiError(Box::new(e))));
            match batch {
                Ok(batch) => match text_rows(&batch, &fields) {
                    Some(rows) => Box::new(rows.into_iter().map(Ok)),
                    None => encode_recordbatch(Arc::clone(&fields), batch),
                },
                Err(e) => Box::new(std::iter::once(Err(e))),
            }
        })
        .flat_map(stream::iter)
}

/// The batch with its time and float columns that go out as text already
/// written as PostgreSQL writes them (times only in the ISO date style).
fn postgres_text(batch: RecordBatch, fields: &[FieldInfo]) -> Result<RecordBatch, ArrowError> {
    let rewritten = |(column, field): (&ArrayRef, &FieldInfo)| {
        field.format() == FieldFormat::Text
            && match column.data_type() {
                DataType::Timestamp(..) | DataType::Time32(_) | DataType::Time64(_) => {
                    field.format_options().date_style.to_ascii_lowercase().starts_with("iso")
                }
                DataType::Float64 | DataType::Float32 => true,
                _ => false,
            }
    };
    if !batch.columns().iter().zip(fields).any(rewritten) {
        return Ok(batch);
    }
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(batch.num_columns());
    let mut new_fields = Vec::with_capacity(batch.num_columns());
    for ((column, field), info) in batch.columns().iter().zip(schema.fields()).zip(fields) {
        if rewritten((column, info)) {
            columns.push(match column.data_type() {
                DataType::Float64 | DataType::Float32 => float_texts(column)?,
                _ => time_texts(column)?,
            });
            new_fields.push(Arc::new(Field::new(field.name(), DataType::Utf8, field.is_nullable())));
        } else {
            columns.push(Arc::clone(column));
            new_fields.push(Arc::clone(field));
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(new_fields));
    RecordBatch::try_new(schema, columns)
}

/// A float column as PostgreSQL's text for it.
fn float_texts(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let mut out = StringBuilder::with_capacity(column.len(), column.len() * 8);
    let (values, fixed_below): (Box<dyn Fn(usize) -> f64>, i32) = match column.data_type() {
        DataType::Float32 => {
            let a = column.as_primitive::<Float32Type>();
            (Box::new(move |i| f64::from(a.value(i))), 6)
        }
        _ => {
            let a = column.as_primitive::<Float64Type>();
            (Box::new(move |i| a.value(i)), 15)
        }
    };
    for i in 0..column.len() {
        if column.is_null(i) {
            out.append_null();
        } else if column.data_type() == &DataType::Float32 {
            out.append_value(float_text(&format!("{:e}", values(i) as f32), values(i), fixed_below));
        } else {
            out.append_value(float_text(&format!("{:e}", values(i)), values(i), fixed_below));
        }
    }
    Ok(Arc::new(out.finish()))
}

/// A float as PostgreSQL writes it (its shortest exact digits, as with the
/// default `extra_float_digits` of 1): fixed notation for decimal exponents
/// from -4 up to below `fixed_below` (15 for float8, 6 for float4), else
/// `d.ddde+XX`. `scientific` is the value's shortest digits in Rust's `{:e}`
/// form (`1.5e0`), which hold the same digits PostgreSQL's Ryu finds.
fn float_text(scientific: &str, value: f64, fixed_below: i32) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if value == 0.0 {
        return format!("{sign}0");
    }
    if (-4..fixed_below).contains(&exponent) {
        let point = exponent + 1;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        return format!("{sign}{text}");
    }
    let (first, rest) = digits.split_at(1);
    let mantissa = if rest.is_empty() { first.to_owned() } else { format!("{first}.{rest}") };
    let exponent_sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}e{exponent_sign}{:02}", exponent.unsigned_abs())
}

/// A time or timestamp column as PostgreSQL's text for it.
fn time_texts(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let mut out = StringBuilder::with_capacity(column.len(), column.len() * 24);
    match column.data_type() {
        DataType::Timestamp(unit, tz) => {
            let tz: Option<arrow::array::timezone::Tz> = tz.as_deref().map(str::parse).transpose()?;
            let micros: Box<dyn Fn(usize) -> i64> = match unit {
                TimeUnit::Second => {
                    let a = column.as_primitive::<TimestampSecondType>();
                    Box::new(move |i| a.value(i).saturating_mul(1_000_000))
                }
                TimeUnit::Millisecond => {
                    let a = column.as_primitive::<TimestampMillisecondType>();
                    Box::new(move |i| a.value(i).saturating_mul(1_000))
                }
                TimeUnit::Microsecond => {
                    let a = column.as_primitive::<TimestampMicrosecondType>();
                    Box::new(move |i| a.value(i))
                }
                TimeUnit::Nanosecond => {
                    let a = column.as_primitive::<TimestampNanosecondType>();
                    Box::new(move |i| a.value(i).div_euclid(1_000))
                }
            };
            for i in 0..column.len() {
                if column.is_null(i) {
                    out.append_null();
                    continue;
                }
                let instant = DateTime::<Utc>::from_timestamp_micros(micros(i))
                    .ok_or_else(|| ArrowError::ComputeError("a timestamp is out of range".into()))?;
                out.append_value(match &tz {
                    Some(tz) => {
                        let local = instant.with_timezone(tz);
                        timestamp_text(local.naive_local(), Some(local.offset().fix().local_minus_utc()))
                    }
                    None => timestamp_text(instant.naive_utc(), None),
                });
            }
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            let micros: Box<dyn Fn(usize) -> i64> = match column.data_type() {
                DataType::Time32(TimeUnit::Second) => {
                    let a = column.as_primitive::<Time32SecondType>();
                    Box::new(move |i| i64::from(a.value(i)) * 1_000_000)
                }
                DataType::Time32(_) => {
                    let a = column.as_primitive::<Time32MillisecondType>();
                    Box::new(move |i| i64::from(a.value(i)) * 1_000)
                }
                DataType::Time64(TimeUnit::Microsecond) => {
                    let a = column.as_primitive::<Time64MicrosecondType>();
                    Box::new(move |i| a.value(i))
                }
                _ => {
                    let a = column.as_primitive::<Time64NanosecondType>();
                    Box::new(move |i| a.value(i) / 1_000)
                }
            };
            for i in 0..column.len() {
                if column.is_null(i) {
                    out.append_null();
                } else {
                    let micros = micros(i);
                    let seconds = micros.div_euclid(1_000_000);
                    let mut text = format!("{:02}:{:02}:{:02}", seconds / 3600, (seconds / 60) % 60, seconds % 60);
                    push_fraction(&mut text, micros.rem_euclid(1_000_000));
                    out.append_value(text);
                }
            }
        }
        other => return Err(ArrowError::CastError(format!("{other} is not a time"))),
    }
    Ok(Arc::new(out.finish()))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]`, as PostgreSQL writes a
/// timestamp in the ISO style.
fn timestamp_text(local: NaiveDateTime, offset_seconds: Option<i32>) -> String {
    let year = local.year();
    let (shown_year, bc) = if year <= 0 { (1 - year, true) } else { (year, false) };
    let mut text = format!(
        "{shown_year:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    );
    push_fraction(&mut text, i64::from(local.nanosecond() / 1_000));
    if let Some(offset) = offset_seconds {
        let sign = if offset < 0 { '-' } else { '+' };
        let offset = offset.unsigned_abs();
        text.push_str(&format!("{sign}{:02}", offset / 3600));
        if offset % 3600 != 0 {
            text.push_str(&format!(":{:02}", (offset / 60) % 60));
            if offset % 60 != 0 {
                text.push_str(&format!(":{:02}", offset % 60));
            }
        }
    }
    if bc {
        text.push_str(" BC");
    }
    text
}

/// `.ffffff` without trailing zeros, and nothing for a whole second.
fn push_fraction(text: &mut String, micros: i64) {
    if micros != 0 {
        let digits = format!("{micros:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_postgresql_writes_them() {
        let float8 = |v: f64| float_text(&format!("{v:e}"), v, 15);
        for (value, text) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1.2345678901234567e17, "1.2345678901234566e+17"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0"),
            (1e-300, "1e-300"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(float8(value), text, "{value}");
        }
        assert_eq!(float_text(&format!("{:e}", 1.1f32), f64::from(1.1f32), 6), "1.1");
        assert_eq!(float_text(&format!("{:e}", 1e6f32), 1e6, 6), "1e+06");
    }

    #[test]
    fn timestamps_are_written_as_postgresql_writes_them() {
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        assert_eq!(timestamp_text(at("2026-12-02 17:00:00"), Some(0)), "2026-12-02 17:00:00+00");
        assert_eq!(timestamp_text(at("2026-12-02 17:00:00.5"), Some(0)), "2026-12-02 17:00:00.5+00");
        assert_eq!(timestamp_text(at("2026-12-02 17:00:00.000123"), None), "2026-12-02 17:00:00.000123");
        assert_eq!(timestamp_text(at("2026-12-02 17:00:00"), Some(19_800)), "2026-12-02 17:00:00+05:30");
        assert_eq!(timestamp_text(at("2026-12-02 17:00:00"), Some(-3 * 3600)), "2026-12-02 17:00:00-03");
        assert_eq!(timestamp_text(at("0000-01-01 00:00:00"), Some(0)), "0001-01-01 00:00:00+00 BC");
    }
}
