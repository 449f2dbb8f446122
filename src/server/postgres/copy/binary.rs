//! Postgres' binary COPY format (`COPY ... FROM STDIN (FORMAT binary)`), as
//! asyncpg's `copy_records_to_table` and psycopg's binary copy send it: a
//! signature, then tuples of length-prefixed values in each column type's
//! binary representation, then a -1 trailer.
//!
//! Each value is decoded by the type of the column it goes to, the way
//! PostgreSQL reads binary COPY, and handed on as text so that every COPY
//! format takes the same path into the write path (which casts text to the
//! column's type exactly).

use chrono::DateTime;

use crate::catalog::ColumnType;

/// The signature every binary COPY stream starts with.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Where the reading of a binary COPY stream stands.
#[derive(Debug, Default)]
pub(super) struct BinaryReader {
    header_read: bool,
}

/// What the next bytes hold.
#[derive(Debug, PartialEq)]
pub(super) enum Tuple {
    /// The header (signature, flags, extension), and the bytes it took.
    Header(usize),
    /// A row: one text value (or NULL) per column, and the bytes it took.
    Row(Vec<Option<String>>, usize),
    /// A whole row longer than the bound given, not decoded, and its bytes.
    TooLong(usize),
    /// The trailer: the end of the data, and the bytes it took.
    End(usize),
    /// The bytes end inside the header or a row: more are needed.
    Incomplete,
}

fn take<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N).and_then(|b| b.try_into().ok())
}

impl BinaryReader {
    /// Reads the header, if not yet read, else the next tuple from `bytes`,
    /// decoding its values by the `columns`' types. A row is measured before
    /// it is decoded, so that one longer than `max_row_bytes` is refused as
    /// such whether it came whole or in pieces.
    pub(super) fn next(&mut self, bytes: &[u8], columns: &[ColumnType], max_row_bytes: usize) -> Result<Tuple, String> {
        if !self.header_read {
            let Some(signature) = take::<11>(bytes, 0) else { return Ok(Tuple::Incomplete) };
            if &signature != SIGNATURE {
                return Err("the data does not start with the binary COPY signature (PGCOPY)".into());
            }
            let (Some(flags), Some(extension)) = (take::<4>(bytes, 11), take::<4>(bytes, 15)) else {
                return Ok(Tuple::Incomplete);
            };
            if u32::from_be_bytes(flags) & (1 << 16) != 0 {
                return Err("binary COPY data with OIDs is not supported".into());
            }
            let used = 19 + u32::from_be_bytes(extension) as usize;
            if bytes.len() < used {
                return Ok(Tuple::Incomplete);
            }
            self.header_read = true;
            return Ok(Tuple::Header(used));
        }
        let Some(count) = take::<2>(bytes, 0) else { return Ok(Tuple::Incomplete) };
        let count = i16::from_be_bytes(count);
        if count == -1 {
            return Ok(Tuple::End(2));
        }
        if usize::try_from(count).ok() != Some(columns.len()) {
            return Err(format!("a row has {count} values, the COPY names {} columns", columns.len()));
        }
        // Where each value is (None for NULL), and where the row ends.
        let mut values_at = Vec::with_capacity(columns.len());
        let mut at = 2;
        for _ in columns {
            let Some(length) = take::<4>(bytes, at) else { return Ok(Tuple::Incomplete) };
            let length = i32::from_be_bytes(length);
            at += 4;
            if length < 0 {
                values_at.push(None);
            } else {
                values_at.push(Some(at..at + length as usize));
                at += length as usize;
            }
        }
        if at > bytes.len() {
            return Ok(Tuple::Incomplete);
        }
        if at > max_row_bytes {
            return Ok(Tuple::TooLong(at));
        }
        let mut values = Vec::with_capacity(columns.len());
        for (index, (range, column)) in values_at.into_iter().zip(columns).enumerate() {
            values.push(match range {
                None => None,
                Some(range) => {
                    Some(value_text(&bytes[range], *column).map_err(|e| format!("column {}: {e}", index + 1))?)
                }
            });
        }
        Ok(Tuple::Row(values, at))
    }
}

/// One value in a column type's binary representation, as text.
fn value_text(value: &[u8], column: ColumnType) -> Result<String, String> {
    let wrong = |expected: &str| format!("{} bytes are not {expected}", value.len());
    Ok(match column {
        ColumnType::Tag | ColumnType::String => {
            std::str::from_utf8(value).map_err(|_| "the text is not valid UTF-8".to_string())?.to_owned()
        }
        ColumnType::Float => match value.len() {
            8 => f64::from_be_bytes(value.try_into().map_err(|_| wrong("a float8"))?).to_string(),
            4 => f32::from_be_bytes(value.try_into().map_err(|_| wrong("a float4"))?).to_string(),
            _ => return Err(wrong("a float8 or float4")),
        },
        ColumnType::Integer => integer(value).ok_or_else(|| wrong("an int8, int4 or int2"))?.to_string(),
        ColumnType::UInteger => match value.len() {
            2 | 4 | 8 => integer(value).ok_or_else(|| wrong("an integer"))?.to_string(),
            _ => numeric_text(value)?,
        },
        ColumnType::Boolean => match value {
            [0] => "false".into(),
            [1] => "true".into(),
            _ => return Err(wrong("a bool")),
        },
        ColumnType::Time => {
            let micros = i64::from_be_bytes(value.try_into().map_err(|_| wrong("a timestamp"))?);
            let instant = micros
                .checked_add(POSTGRES_EPOCH_MICROS)
                .and_then(DateTime::from_timestamp_micros)
                .ok_or("the timestamp is out of range")?;
            instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        }
    })
}

/// An int8, int4 or int2 by its length.
fn integer(value: &[u8]) -> Option<i64> {
    Some(match value.len() {
        8 => i64::from_be_bytes(value.try_into().ok()?),
        4 => i64::from(i32::from_be_bytes(value.try_into().ok()?)),
        2 => i64::from(i16::from_be_bytes(value.try_into().ok()?)),
        _ => return None,
    })
}

/// A `numeric` in its binary form (digit count, weight, sign, display
/// scale, then base-10000 digits) as decimal text.
fn numeric_text(value: &[u8]) -> Result<String, String> {
    let word = |i: usize| take::<2>(value, i).map(u16::from_be_bytes).ok_or("a numeric is cut short");
    let digits = word(0)? as usize;
    let weight = word(2)? as i16;
    let sign = word(4)?;
    let scale = word(6)? as usize;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        _ => return Err(format!("a numeric has the unknown sign {sign:#x}")),
    }
    let groups: Vec<u16> = (0..digits).map(|d| word(8 + 2 * d)).collect::<Result<_, _>>()?;
    let mut integer_part = String::new();
    for position in 0..=weight.max(-1) {
        let group = groups.get(position as usize).copied().unwrap_or(0);
        if integer_part.is_empty() {
            integer_part = group.to_string();
        } else {
            integer_part.push_str(&format!("{group:04}"));
        }
    }
    if integer_part.is_empty() {
        integer_part.push('0');
    }
    let mut fraction = String::new();
    // Fraction groups: those after the decimal point, leading zero groups
    // for a negative weight included.
    for position in (weight as i32 + 1)..(weight as i32 + 1 + scale.div_ceil(4) as i32) {
        let group = if position < 0 { 0 } else { groups.get(position as usize).copied().unwrap_or(0) };
        fraction.push_str(&format!("{group:04}"));
    }
    fraction.truncate(scale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if fraction.is_empty() { format!("{sign}{integer_part}") } else { format!("{sign}{integer_part}.{fraction}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(digits: &[u16], weight: i16, negative: bool, scale: u16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&scale.to_be_bytes());
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_read_as_their_decimal_text() {
        assert_eq!(
            numeric_text(&numeric(&[1844, 6744, 737, 955, 1615], 4, false, 0)),
            Ok("18446744073709551615".into())
        );
        assert_eq!(numeric_text(&numeric(&[], 0, false, 0)), Ok("0".into()));
        assert_eq!(numeric_text(&numeric(&[12, 3400], 0, true, 2)), Ok("-12.34".into()));
        assert_eq!(numeric_text(&numeric(&[5], -1, false, 4)), Ok("0.0005".into()));
        assert_eq!(numeric_text(&numeric(&[7], 1, false, 0)), Ok("70000".into()));
    }

    #[test]
    fn a_stream_reads_tuple_by_tuple_whatever_its_pieces() {
        let columns = [ColumnType::Tag, ColumnType::Float, ColumnType::Integer, ColumnType::Time, ColumnType::Boolean];
        let mut stream = SIGNATURE.to_vec();
        stream.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        stream.extend_from_slice(&5i16.to_be_bytes());
        for value in [&b"a"[..], &1.5f64.to_be_bytes(), &3i64.to_be_bytes(), &0i64.to_be_bytes()] {
            stream.extend_from_slice(&(value.len() as i32).to_be_bytes());
            stream.extend_from_slice(value);
        }
        stream.extend_from_slice(&(-1i32).to_be_bytes());
        let row_end = stream.len();
        stream.extend_from_slice(&(-1i16).to_be_bytes());
        let mut reader = BinaryReader::default();
        let max = usize::MAX;
        for cut in 0..19 {
            assert_eq!(reader.next(&stream[..cut], &columns, max), Ok(Tuple::Incomplete), "cut at {cut}");
        }
        assert_eq!(reader.next(&stream, &columns, max), Ok(Tuple::Header(19)));
        let row = &stream[19..];
        for cut in 0..row_end - 19 {
            assert_eq!(reader.next(&row[..cut], &columns, max), Ok(Tuple::Incomplete), "cut at {cut}");
        }
        let expected = vec![
            Some("a".to_string()),
            Some("1.5".to_string()),
            Some("3".to_string()),
            Some("2000-01-01T00:00:00Z".to_string()),
            None,
        ];
        assert_eq!(reader.next(row, &columns, max), Ok(Tuple::Row(expected, row_end - 19)));
        assert_eq!(reader.next(row, &columns, 10), Ok(Tuple::TooLong(row_end - 19)), "measured, not decoded");
        assert_eq!(reader.next(&stream[row_end..], &columns, max), Ok(Tuple::End(2)));
    }
}
