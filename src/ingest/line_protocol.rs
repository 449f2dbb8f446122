//! InfluxDB line protocol, parsed straight into columnar batches.
//!
//! The parser is hand-written for speed: it walks the input once, borrows every
//! name and value from it (copying only when a backslash escape must be removed),
//! and appends into per-table [`ColumnBuilder`]s. A line is first tokenised and
//! checked against the table's schema, and only then appended, so a rejected line
//! leaves nothing behind.
//!
//! Format: `measurement[,tag=value...] field=value[,field=value...] [timestamp]`.
//! Escapes: `\,` `\ ` `\=` `\\` in names and tag values; `\"` and `\\` in string
//! fields. Integers end in `i`, unsigned integers in `u`; booleans are `t T true True
//! TRUE f F false False FALSE`; anything else numeric is a float. Lines starting with
//! `#` are comments; blank lines and `\r\n` endings are fine.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{Field, Schema};
use arrow::error::ArrowError;

use super::columns::{ColumnBuilder, FieldValue};
use crate::catalog::names::{check_name, NameKind};
use crate::catalog::{Column, ColumnType, TableSchema, TIME_COLUMN, TIME_ZONE};

/// The unit of the timestamps in a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Guess per line from the magnitude, as InfluxDB 3 does: below 5e9 seconds,
    /// below 5e12 milliseconds, below 5e15 microseconds, else nanoseconds.
    Auto,
    /// Nanoseconds.
    Nanosecond,
    /// Microseconds.
    Microsecond,
    /// Milliseconds.
    Millisecond,
    /// Seconds.
    Second,
    /// Minutes (InfluxDB v1 only).
    Minute,
    /// Hours (InfluxDB v1 only).
    Hour,
}

impl Precision {
    fn nanos_per_unit(self, value: i64) -> i64 {
        match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
            Precision::Minute => 60_000_000_000,
            Precision::Hour => 3_600_000_000_000,
            Precision::Auto => {
                let magnitude = value.unsigned_abs();
                if magnitude < 5_000_000_000 {
                    1_000_000_000
                } else if magnitude < 5_000_000_000_000 {
                    1_000_000
                } else if magnitude < 5_000_000_000_000_000 {
                    1_000
                } else {
                    1
                }
            }
        }
    }

    /// Converts a timestamp in this precision to nanoseconds, or `None` on overflow.
    pub fn to_nanos(self, value: i64) -> Option<i64> {
        value.checked_mul(self.nanos_per_unit(value))
    }

    /// The server time used for lines without a timestamp: `now` truncated to
    /// this precision (nanoseconds when automatic).
    pub fn truncate(self, now_ns: i64) -> i64 {
        let unit = match self {
            Precision::Auto => 1,
            p => p.nanos_per_unit(0),
        };
        now_ns - now_ns.rem_euclid(unit)
    }
}

/// Settings of one parse.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// The unit of the timestamps.
    pub precision: Precision,
    /// The timestamp, in nanoseconds, of lines that carry none.
    pub default_time_ns: i64,
    /// Lines longer than this are rejected.
    pub max_line_bytes: usize,
    /// A table may not grow past this many columns (`time` included).
    pub max_columns_per_table: usize,
}

/// A rejected line, in the shape InfluxDB 3 reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    /// The line as sent, cut at [`MAX_REPORTED_LINE_BYTES`].
    pub original_line: String,
    /// 1-based line number in the request body.
    pub line_number: usize,
    /// Why the line was rejected.
    pub error_message: String,
}

/// Rejected lines are echoed back at most this long.
pub const MAX_REPORTED_LINE_BYTES: usize = 1024;

/// At most this many rejected lines are listed in one response; the count of all
/// rejected lines is always exact.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// Where the parser learns the current schema of a table, to reject a field whose
/// type differs from what earlier writes made it.
pub trait SchemaSource {
    /// The table's schema, or `None` if the table does not exist yet.
    fn table_schema(&self, table: &str) -> Option<Arc<TableSchema>>;
}

/// A source that knows no tables, for parsing without a catalog.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSchemas;

impl SchemaSource for NoSchemas {
    fn table_schema(&self, _table: &str) -> Option<Arc<TableSchema>> {
        None
    }
}

/// The accepted rows of one table from one write.
#[derive(Debug, Clone)]
pub struct TableWrite {
    /// The table (measurement).
    pub table: Arc<str>,
    /// Columns this write adds to the table's schema, in order of appearance.
    pub new_columns: Vec<Column>,
    /// The rows: the columns the write used, in schema order, `time` last.
    pub batch: RecordBatch,
}

/// A range of the input or, for escaped text, of the scratch arena. Two plain
/// words (the arena flag is the top bit of `start`), so that copying a token never
/// mixes byte and word stores, which stalls store forwarding on the hot path.
#[derive(Debug, Clone, Copy, Default)]
struct Tok {
    start: usize,
    end: usize,
}

const IN_ARENA: usize = 1 << (usize::BITS - 1);

impl Tok {
    #[inline(always)]
    fn input(start: usize, end: usize) -> Tok {
        Tok { start, end }
    }

    fn arena(start: usize, end: usize) -> Tok {
        Tok { start: start | IN_ARENA, end }
    }

    #[inline(always)]
    fn bytes<'a>(&self, input: &'a [u8], arena: &'a [u8]) -> &'a [u8] {
        if self.start & IN_ARENA != 0 {
            &arena[self.start & !IN_ARENA..self.end]
        } else {
            &input[self.start..self.end]
        }
    }

    fn is_empty(&self) -> bool {
        self.start & !IN_ARENA == self.end
    }
}

#[derive(Debug, Clone, Copy)]
enum ValueTok {
    Float(f64),
    Integer(i64),
    UInteger(u64),
    Boolean(bool),
    String(Tok),
}

impl ValueTok {
    fn column_type(&self) -> ColumnType {
        match self {
            ValueTok::Float(_) => ColumnType::Float,
            ValueTok::Integer(_) => ColumnType::Integer,
            ValueTok::UInteger(_) => ColumnType::UInteger,
            ValueTok::Boolean(_) => ColumnType::Boolean,
            ValueTok::String(_) => ColumnType::String,
        }
    }
}

/// The line being parsed, already resolved to columns, reused from line to line.
#[derive(Debug, Default)]
struct LineScratch {
    /// Unescaped copies of tokens that had backslashes.
    arena: Vec<u8>,
    /// (column, value) of each tag.
    tags: Vec<(usize, Tok)>,
    /// (column, value) of each field.
    fields: Vec<(usize, ValueTok)>,
}

impl LineScratch {
    fn clear(&mut self) {
        self.arena.clear();
        self.tags.clear();
        self.fields.clear();
    }
}

/// A line-level error before it is tied to a line number.
type LineResult<T> = Result<T, String>;

/// The bytes that end one kind of token, as a lookup table for the byte loop and
/// as a list for the word-at-a-time search.
struct Stops<const N: usize> {
    table: [bool; 256],
    bytes: [u8; N],
}

impl<const N: usize> Stops<N> {
    const fn new(bytes: [u8; N]) -> Self {
        let mut table = [false; 256];
        let mut i = 0;
        while i < N {
            table[bytes[i] as usize] = true;
            i += 1;
        }
        Stops { table, bytes }
    }

    #[inline(always)]
    fn contains(&self, byte: u8) -> bool {
        self.table[byte as usize]
    }
}

static MEASUREMENT_STOPS: Stops<4> = Stops::new(*b", \\\n");
static KEY_STOPS: Stops<5> = Stops::new(*b"=, \\\n");
static VALUE_STOPS: Stops<4> = Stops::new(*b", \n\r");

/// The position of the first stop byte at or after `pos` (or the end of input).
/// Looks at eight bytes per step: tokens are short and vary in length, and a byte
/// loop pays a mispredicted branch at the end of nearly every one.
#[inline(always)]
fn find_stop<const N: usize>(input: &[u8], mut pos: usize, stops: &Stops<N>) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = input.get(pos..pos + 8) {
        let word = u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
        let mut found = 0u64;
        for &stop in &stops.bytes {
            // A zero byte in `x` is a match; the lowest flagged byte is always a true one.
            let x = word ^ (ONES * stop as u64);
            found |= x.wrapping_sub(ONES) & !x & HIGHS;
        }
        if found != 0 {
            return pos + (found.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while pos < input.len() && !stops.contains(input[pos]) {
        pos += 1;
    }
    pos
}

/// Reads a name or tag value up to the first unescaped stop byte. Returns the
/// token and the position of the stop byte (or the end of the input).
#[inline(always)]
fn scan_token<const N: usize>(input: &[u8], start: usize, stops: &Stops<N>, arena: &mut Vec<u8>) -> (Tok, usize) {
    let pos = find_stop(input, start, stops);
    if pos < input.len() && input[pos] == b'\\' {
        return scan_escaped(input, start, pos, stops, arena);
    }
    (Tok::input(start, pos), pos)
}

/// The slow path of [`scan_token`]: copy into the arena, removing escaping backslashes.
#[cold]
#[inline(never)]
fn scan_escaped<const N: usize>(
    input: &[u8],
    start: usize,
    mut pos: usize,
    stops: &Stops<N>,
    arena: &mut Vec<u8>,
) -> (Tok, usize) {
    let arena_start = arena.len();
    arena.extend_from_slice(&input[start..pos]);
    while pos < input.len() {
        let b = input[pos];
        if b == b'\\' {
            match input.get(pos + 1) {
                Some(&next @ (b',' | b' ' | b'=' | b'\\')) => {
                    arena.push(next);
                    pos += 2;
                }
                _ => {
                    arena.push(b'\\');
                    pos += 1;
                }
            }
        } else if stops.contains(b) {
            break;
        } else {
            arena.push(b);
            pos += 1;
        }
    }
    (Tok::arena(arena_start, arena.len()), pos)
}

/// Byte equality for short names, inline: two overlapping loads cover up to 16
/// bytes, where a call into libc's `bcmp` would cost more than the comparison.
#[inline(always)]
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    #[inline(always)]
    fn word(s: &[u8], at: usize) -> u64 {
        u64::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3], s[at + 4], s[at + 5], s[at + 6], s[at + 7]])
    }
    #[inline(always)]
    fn half(s: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]])
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => word(a, 0) == word(b, 0) && a[8..] == b[8..],
    }
}

fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.first() {
        Some(b'-') => (true, &digits[1..]),
        _ => (false, digits),
    };
    let magnitude = parse_u64(digits)?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Some((magnitude as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[inline]
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    if digits.len() <= 18 {
        // Eighteen digits cannot overflow; most values are a few digits long.
        let mut value: u64 = 0;
        for &d in digits {
            let digit = d.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            value = value * 10 + digit as u64;
        }
        return Some(value);
    }
    let mut value: u64 = 0;
    for &d in digits {
        let digit = d.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(digit as u64)?;
    }
    Some(value)
}

fn parse_float(text: &[u8]) -> LineResult<f64> {
    let valid_start = matches!(text.first(), Some(b'0'..=b'9' | b'-' | b'+' | b'.'));
    let valid_chars = text.iter().all(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'-' | b'+'));
    if !valid_start || !valid_chars {
        return Err(format!("invalid field value '{}'", String::from_utf8_lossy(text)));
    }
    // The bytes are ASCII, so this cannot fail.
    let s = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("float field value '{s}' is out of range")),
        Err(_) => Err(format!("invalid float field value '{s}'")),
    }
}

/// Parses a field value starting at `pos`; returns the value and the position
/// after it. `newlines` counts line breaks inside string values.
fn parse_field_value(
    input: &[u8],
    pos: usize,
    arena: &mut Vec<u8>,
    newlines: &mut usize,
) -> LineResult<(ValueTok, usize)> {
    match input.get(pos) {
        None | Some(b'\n' | b'\r' | b',' | b' ') => Err("missing field value".into()),
        Some(b'"') => {
            let start = pos + 1;
            let mut end = start;
            let mut escaped = false;
            loop {
                match memchr::memchr2(b'"', b'\\', &input[end..]) {
                    None => return Err("unterminated string field value".into()),
                    Some(i) if input[end + i] == b'"' => {
                        end += i;
                        break;
                    }
                    Some(i) => {
                        escaped = true;
                        end += i + 2;
                        if end > input.len() {
                            return Err("unterminated string field value".into());
                        }
                    }
                }
            }
            let raw = &input[start..end];
            *newlines += memchr::memchr_iter(b'\n', raw).count();
            let tok = if escaped {
                let arena_start = arena.len();
                let mut i = 0;
                while i < raw.len() {
                    if raw[i] == b'\\' && matches!(raw.get(i + 1), Some(b'"' | b'\\')) {
                        arena.push(raw[i + 1]);
                        i += 2;
                    } else {
                        arena.push(raw[i]);
                        i += 1;
                    }
                }
                Tok::arena(arena_start, arena.len())
            } else {
                Tok::input(start, end)
            };
            Ok((ValueTok::String(tok), end + 1))
        }
        Some(_) => {
            let end = pos;
            let end = find_stop(input, end, &VALUE_STOPS);
            let text = &input[pos..end];
            let value = match text {
                [b't' | b'T' | b'f' | b'F', ..] => ValueTok::Boolean(parse_bool(text)?),
                [digits @ .., b'i'] => ValueTok::Integer(parse_i64(digits).ok_or_else(|| {
                    format!(
                        "invalid integer field value '{}' (out of range or not a number)",
                        String::from_utf8_lossy(text)
                    )
                })?),
                [digits @ .., b'u'] => ValueTok::UInteger(parse_u64(digits).ok_or_else(|| {
                    format!(
                        "invalid unsigned integer field value '{}' (out of range or not a number)",
                        String::from_utf8_lossy(text)
                    )
                })?),
                _ => ValueTok::Float(parse_float(text)?),
            };
            Ok((value, end))
        }
    }
}

fn parse_bool(text: &[u8]) -> LineResult<bool> {
    match text {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Ok(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Ok(false),
        _ => Err(format!("invalid field value '{}'", String::from_utf8_lossy(text))),
    }
}

fn skip_spaces(input: &[u8], mut pos: usize) -> usize {
    while pos < input.len() && input[pos] == b' ' {
        pos += 1;
    }
    pos
}

/// Position just after the line end at or after `pos` (the end of input if none).
fn next_line(input: &[u8], pos: usize) -> usize {
    match memchr::memchr(b'\n', &input[pos.min(input.len())..]) {
        Some(i) => pos + i + 1,
        None => input.len(),
    }
}

fn lossy(tok: Tok, input: &[u8], arena: &[u8]) -> String {
    String::from_utf8_lossy(tok.bytes(input, arena)).into_owned()
}

/// The builder of table `name`, created on first sight (after checking the name).
fn find_table<'t>(
    tables: &'t mut Vec<TableBuilder>,
    lookup: &mut HashMap<Box<[u8]>, usize>,
    last: &mut usize,
    schemas: &dyn SchemaSource,
    name: &[u8],
) -> LineResult<&'t mut TableBuilder> {
    if tables.get(*last).is_none_or(|t| !short_eq(t.name.as_bytes(), name)) {
        *last = match lookup.get(name) {
            Some(&index) => index,
            None => {
                let table = std::str::from_utf8(name).map_err(|_| "measurement is not valid UTF-8".to_string())?;
                check_name(NameKind::Table, table).map_err(|e| e.to_string())?;
                tables.push(TableBuilder::new(table.into(), schemas.table_schema(table)));
                lookup.insert(name.into(), tables.len() - 1);
                tables.len() - 1
            }
        };
    }
    Ok(&mut tables[*last])
}

/// A key expected at one position of a line, and its column.
#[derive(Debug, Clone)]
struct KeyHint {
    column: usize,
    name: Box<[u8]>,
}

/// One column of a table under construction.
#[derive(Debug)]
struct BuilderColumn {
    name: Arc<str>,
    builder: ColumnBuilder,
    /// The table's schema already has this column.
    in_schema: bool,
    /// The last line (counted from 1) whose tokens resolved to this column.
    line_stamp: usize,
}

/// The rows of one table from one write, under construction.
#[derive(Debug)]
struct TableBuilder {
    name: Arc<str>,
    schema: Option<Arc<TableSchema>>,
    columns: Vec<BuilderColumn>,
    lookup: HashMap<Box<[u8]>, usize>,
    /// The key seen at each tag and field position of the previous line; lines of
    /// one source usually repeat their keys in the same order.
    tag_hints: Vec<Option<KeyHint>>,
    field_hints: Vec<Option<KeyHint>>,
    time: Vec<i64>,
    rows: usize,
    new_columns: usize,
}

impl TableBuilder {
    fn new(name: Arc<str>, schema: Option<Arc<TableSchema>>) -> Self {
        TableBuilder {
            name,
            schema,
            columns: Vec::new(),
            lookup: HashMap::new(),
            tag_hints: Vec::new(),
            field_hints: Vec::new(),
            time: Vec::new(),
            rows: 0,
            new_columns: 0,
        }
    }

    /// The column whose key starts at `pos`, if it is the key this position had in
    /// the previous line of this table: lines from one source repeat their keys in
    /// the same order, and this check costs one comparison instead of a scan and a
    /// lookup. Returns the column and the position of the `=` after the key.
    #[inline(always)]
    fn hint(&self, tag: bool, position: usize, input: &[u8], pos: usize) -> Option<(usize, usize)> {
        let hints = if tag { &self.tag_hints } else { &self.field_hints };
        let hint = hints.get(position)?.as_ref()?;
        let end = pos + hint.name.len();
        let matches = input.get(end) == Some(&b'=') && short_eq(&input[pos..end], &hint.name);
        matches.then_some((hint.column, end))
    }

    /// Finds (or creates) the column for a key at `position` in line `line`, and
    /// checks that it can take a value of type `wanted` there.
    fn resolve(
        &mut self,
        hinted: Option<usize>,
        key: &[u8],
        wanted: ColumnType,
        position: usize,
        line: usize,
        options: &ParseOptions,
    ) -> LineResult<usize> {
        let index = match hinted {
            Some(index) => index,
            None => {
                let index = match self.lookup.get(key).copied() {
                    Some(index) => index,
                    None => self.create_column(key, wanted, options)?,
                };
                let hints = if wanted == ColumnType::Tag { &mut self.tag_hints } else { &mut self.field_hints };
                if hints.len() <= position {
                    hints.resize(position + 1, None);
                }
                // A name with a byte that line protocol escapes cannot be matched raw.
                let plain = !key.iter().any(|b| matches!(b, b'\\' | b',' | b' ' | b'='));
                hints[position] = plain.then(|| KeyHint { column: index, name: key.into() });
                index
            }
        };
        let column = &mut self.columns[index];
        let same_line = column.line_stamp == line;
        column.line_stamp = line;
        let existing = column.builder.column_type();
        if existing == wanted {
            if wanted == ColumnType::Tag && same_line {
                return Err(format!("duplicate tag key '{}'", column.name));
            }
            return Ok(index);
        }
        // A column made by a rejected line and never used since may still change type.
        if !column.in_schema && column.builder.non_null() == 0 && !same_line {
            column.builder = ColumnBuilder::new(wanted);
            return Ok(index);
        }
        Err(match (existing, wanted) {
            (ColumnType::Tag, _) | (_, ColumnType::Tag) => {
                format!("'{}' is used both as a tag and as a field", column.name)
            }
            _ => format!("invalid column type for column '{}', expected {existing}, got {wanted}", column.name),
        })
    }

    fn create_column(&mut self, key: &[u8], wanted: ColumnType, options: &ParseOptions) -> LineResult<usize> {
        let kind = if wanted == ColumnType::Tag { NameKind::Tag } else { NameKind::Field };
        let name = std::str::from_utf8(key).map_err(|_| format!("{kind} is not valid UTF-8"))?;
        check_name(kind, name).map_err(|e| e.to_string())?;
        let schema_type = self.schema.as_ref().and_then(|s| s.column_type(name));
        if schema_type.is_none() {
            let existing = self.schema.as_ref().map_or(1, |s| s.len());
            if existing + self.new_columns >= options.max_columns_per_table {
                return Err(format!(
                    "table '{}' would exceed the limit of {} columns (HOURGLASS_MAX_COLUMNS_PER_TABLE)",
                    self.name, options.max_columns_per_table
                ));
            }
            self.new_columns += 1;
        }
        let index = self.columns.len();
        self.columns.push(BuilderColumn {
            name: name.into(),
            builder: ColumnBuilder::new(schema_type.unwrap_or(wanted)),
            in_schema: schema_type.is_some(),
            line_stamp: 0,
        });
        self.lookup.insert(key.into(), index);
        Ok(index)
    }

    fn finish(self) -> Result<TableWrite, ArrowError> {
        let rows = self.rows;
        let base = self.schema.as_deref().cloned().unwrap_or_default();
        let used: Vec<BuilderColumn> = self.columns.into_iter().filter(|c| c.builder.non_null() > 0).collect();
        let new_columns: Vec<Column> = used
            .iter()
            .filter(|c| !c.in_schema)
            .map(|c| Column { name: Arc::clone(&c.name), column_type: c.builder.column_type() })
            .collect();
        let merged = base
            .merged_with(&self.name, &new_columns, usize::MAX)
            .map_err(|e| ArrowError::SchemaError(e.to_string()))?
            .unwrap_or(base);
        let mut used: Vec<(usize, BuilderColumn)> = used
            .into_iter()
            .map(|c| {
                let order = merged.columns().iter().position(|m| m.name == c.name).unwrap_or(usize::MAX);
                (order, c)
            })
            .collect();
        used.sort_by_key(|(order, _)| *order);

        let mut fields = Vec::with_capacity(used.len() + 1);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(used.len() + 1);
        for (_, column) in used {
            let column_type = column.builder.column_type();
            fields.push(Field::new(column.name.as_ref(), column_type.data_type(), true));
            arrays.push(column.builder.finish(rows)?);
        }
        fields.push(Field::new(TIME_COLUMN, ColumnType::Time.data_type(), false));
        arrays.push(Arc::new(TimestampNanosecondArray::new(self.time.into(), None).with_timezone(TIME_ZONE)));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        Ok(TableWrite { table: self.name, new_columns, batch })
    }
}

/// Parses line protocol into per-table batches.
///
/// ```ignore
/// let mut parser = LineProtocolParser::new(&schemas, options);
/// parser.parse(body);
/// let (writes, errors) = (parser.finish()?, parser_errors);
/// ```
pub struct LineProtocolParser<'s> {
    schemas: &'s dyn SchemaSource,
    options: ParseOptions,
    tables: Vec<TableBuilder>,
    table_lookup: HashMap<Box<[u8]>, usize>,
    last_table: usize,
    scratch: LineScratch,
    errors: Vec<LineError>,
    rejected_lines: usize,
    accepted_lines: usize,
}

impl std::fmt::Debug for LineProtocolParser<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineProtocolParser")
            .field("tables", &self.tables.len())
            .field("accepted_lines", &self.accepted_lines)
            .field("rejected_lines", &self.rejected_lines)
            .finish()
    }
}

impl<'s> LineProtocolParser<'s> {
    /// A parser that checks lines against the schemas in `schemas`.
    pub fn new(schemas: &'s dyn SchemaSource, options: ParseOptions) -> Self {
        LineProtocolParser {
            schemas,
            options,
            tables: Vec::new(),
            table_lookup: HashMap::new(),
            last_table: usize::MAX,
            scratch: LineScratch::default(),
            errors: Vec::new(),
            rejected_lines: 0,
            accepted_lines: 0,
        }
    }

    /// Lines appended so far.
    pub fn accepted_lines(&self) -> usize {
        self.accepted_lines
    }

    /// Lines rejected so far (all of them, not only the ones listed in `errors`).
    pub fn rejected_lines(&self) -> usize {
        self.rejected_lines
    }

    /// The first [`MAX_REPORTED_ERRORS`] rejected lines.
    pub fn errors(&self) -> &[LineError] {
        &self.errors
    }

    /// Parses every line of `input`, appending the good ones and recording the bad.
    pub fn parse(&mut self, input: &[u8]) {
        let utf8_checked = std::str::from_utf8(input).is_ok();
        let mut pos = 0;
        let mut line_number = 1;
        while pos < input.len() {
            // Leading blanks, blank lines and comments.
            let mut start = pos;
            while start < input.len() && matches!(input[start], b' ' | b'\t') {
                start += 1;
            }
            match input.get(start) {
                None => break,
                Some(b'\n') => {
                    pos = start + 1;
                    line_number += 1;
                    continue;
                }
                Some(b'\r') if input.get(start + 1) == Some(&b'\n') => {
                    pos = start + 2;
                    line_number += 1;
                    continue;
                }
                Some(b'#') => {
                    pos = next_line(input, start);
                    line_number += 1;
                    continue;
                }
                _ => {}
            }
            let mut extra_newlines = 0;
            match self.parse_line(input, start, line_number, utf8_checked, &mut extra_newlines) {
                Ok(end) => {
                    self.accepted_lines += 1;
                    pos = end;
                    line_number += 1 + extra_newlines;
                }
                Err(message) => {
                    let end = next_line(input, start);
                    self.reject(line_number, &input[pos..end], message);
                    pos = end;
                    line_number += 1;
                }
            }
        }
    }

    fn reject(&mut self, line_number: usize, line: &[u8], error_message: String) {
        self.rejected_lines += 1;
        if self.errors.len() >= MAX_REPORTED_ERRORS {
            return;
        }
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut cut = line.len().min(MAX_REPORTED_LINE_BYTES);
        let original_line = loop {
            // Cut on a character boundary when the line is valid UTF-8.
            match std::str::from_utf8(&line[..cut]) {
                Ok(s) => break s.to_owned(),
                Err(e) if e.valid_up_to() > 0 && cut - e.valid_up_to() < 4 && cut < line.len() => cut = e.valid_up_to(),
                Err(_) => break String::from_utf8_lossy(&line[..cut]).into_owned(),
            }
        };
        self.errors.push(LineError { original_line, line_number, error_message });
    }

    /// Parses the line at `start`, checks it against its table's columns, and
    /// appends it. Returns the position after the line. A rejected line appends
    /// nothing (it may leave an empty new column behind, which `finish` drops).
    fn parse_line(
        &mut self,
        input: &[u8],
        start: usize,
        line: usize,
        utf8_checked: bool,
        newlines: &mut usize,
    ) -> LineResult<usize> {
        let LineProtocolParser { schemas, options, tables, table_lookup, last_table, scratch: s, .. } = self;
        s.clear();
        let (measurement, mut pos) = scan_token(input, start, &MEASUREMENT_STOPS, &mut s.arena);
        if measurement.is_empty() {
            return Err("missing measurement".into());
        }
        let table = find_table(tables, table_lookup, last_table, *schemas, measurement.bytes(input, &s.arena))?;

        let mut position = 0;
        while input.get(pos) == Some(&b',') {
            pos += 1;
            let (hint, key, p) = match table.hint(true, position, input, pos) {
                Some((index, end)) => (Some(index), Tok::input(pos, end), end),
                None => {
                    let (key, p) = scan_token(input, pos, &KEY_STOPS, &mut s.arena);
                    (None, key, p)
                }
            };
            if key.is_empty() {
                return Err("missing tag key".into());
            }
            if input.get(p) != Some(&b'=') {
                return Err(format!("missing tag value for tag key '{}'", lossy(key, input, &s.arena)));
            }
            let (value, p) = scan_token(input, p + 1, &KEY_STOPS, &mut s.arena);
            if value.is_empty() {
                return Err(format!("missing tag value for tag key '{}'", lossy(key, input, &s.arena)));
            }
            if input.get(p) == Some(&b'=') {
                return Err(format!(
                    "unescaped '=' in the value of tag '{}' (write it as \\=)",
                    lossy(key, input, &s.arena)
                ));
            }
            if !utf8_checked && std::str::from_utf8(value.bytes(input, &s.arena)).is_err() {
                return Err("tag value is not valid UTF-8".into());
            }
            let column = table.resolve(hint, key.bytes(input, &s.arena), ColumnType::Tag, position, line, options)?;
            s.tags.push((column, value));
            pos = p;
            position += 1;
        }

        if input.get(pos) != Some(&b' ') {
            return Err("missing fields".into());
        }
        pos = skip_spaces(input, pos);
        let mut position = 0;
        loop {
            let (hint, key, p) = match table.hint(false, position, input, pos) {
                Some((index, end)) => (Some(index), Tok::input(pos, end), end),
                None => {
                    let (key, p) = scan_token(input, pos, &KEY_STOPS, &mut s.arena);
                    (None, key, p)
                }
            };
            if key.is_empty() {
                return Err("missing fields".into());
            }
            if input.get(p) != Some(&b'=') {
                return Err(format!("missing value for field '{}'", lossy(key, input, &s.arena)));
            }
            let (value, p) = parse_field_value(input, p + 1, &mut s.arena, newlines)?;
            if let ValueTok::String(tok) = value {
                if !utf8_checked && std::str::from_utf8(tok.bytes(input, &s.arena)).is_err() {
                    return Err("string field value is not valid UTF-8".into());
                }
            }
            let key = key.bytes(input, &s.arena);
            let column = table.resolve(hint, key, value.column_type(), position, line, options)?;
            s.fields.push((column, value));
            pos = p;
            position += 1;
            match input.get(pos) {
                Some(b',') => pos += 1,
                _ => break,
            }
        }

        pos = skip_spaces(input, pos);
        let mut timestamp = None;
        if matches!(input.get(pos), Some(b'-' | b'0'..=b'9')) {
            let digits_start = pos;
            while pos < input.len() && matches!(input[pos], b'-' | b'0'..=b'9') {
                pos += 1;
            }
            let text = &input[digits_start..pos];
            timestamp =
                Some(parse_i64(text).ok_or_else(|| format!("invalid timestamp '{}'", String::from_utf8_lossy(text)))?);
            pos = skip_spaces(input, pos);
        }
        if input.get(pos) == Some(&b'\r') {
            pos += 1;
        }
        let end = match input.get(pos) {
            None => pos,
            Some(b'\n') => pos + 1,
            Some(_) => {
                let rest = String::from_utf8_lossy(&input[pos..next_line(input, pos)]);
                return Err(format!("unexpected text after the fields: '{}'", rest.trim_end()));
            }
        };
        if end - start > options.max_line_bytes {
            return Err(format!("line is longer than {} bytes (HOURGLASS_MAX_LINE_BYTES)", options.max_line_bytes));
        }
        let time = match timestamp {
            None => options.default_time_ns,
            Some(t) => options.precision.to_nanos(t).ok_or_else(|| format!("timestamp {t} is out of range"))?,
        };

        let row = table.rows;
        let appended = (|| -> Result<(), ArrowError> {
            for &(column, value) in &s.tags {
                table.columns[column].builder.push_tag(row, value.bytes(input, &s.arena))?;
            }
            for &(column, value) in &s.fields {
                let value = match value {
                    ValueTok::Float(v) => FieldValue::Float(v),
                    ValueTok::Integer(v) => FieldValue::Integer(v),
                    ValueTok::UInteger(v) => FieldValue::UInteger(v),
                    ValueTok::Boolean(v) => FieldValue::Boolean(v),
                    ValueTok::String(tok) => FieldValue::String(tok.bytes(input, &s.arena)),
                };
                table.columns[column].builder.push_field(row, value)?;
            }
            Ok(())
        })();
        if let Err(e) = appended {
            for &(column, _) in &s.tags {
                table.columns[column].builder.truncate(row);
            }
            for &(column, _) in &s.fields {
                table.columns[column].builder.truncate(row);
            }
            return Err(e.to_string());
        }
        table.time.push(time);
        table.rows += 1;
        Ok(end)
    }

    /// The accepted rows, one batch per table that got any.
    pub fn finish(self) -> Result<Vec<TableWrite>, ArrowError> {
        self.tables.into_iter().filter(|t| t.rows > 0).map(TableBuilder::finish).collect()
    }

    /// Like [`finish`](Self::finish) but also hands back the rejected lines.
    pub fn finish_with_errors(self) -> Result<ParseOutcome, ArrowError> {
        let errors = self.errors.clone();
        let rejected_lines = self.rejected_lines;
        let accepted_lines = self.accepted_lines;
        Ok(ParseOutcome { writes: self.finish()?, errors, rejected_lines, accepted_lines })
    }
}

/// Everything a parse produced.
#[derive(Debug)]
pub struct ParseOutcome {
    /// The accepted rows, one batch per table.
    pub writes: Vec<TableWrite>,
    /// The first [`MAX_REPORTED_ERRORS`] rejected lines.
    pub errors: Vec<LineError>,
    /// How many lines were rejected in all.
    pub rejected_lines: usize,
    /// How many lines were accepted.
    pub accepted_lines: usize,
}
