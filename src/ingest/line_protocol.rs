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

/// A position in the input or, for escaped text, in the scratch arena.
#[derive(Debug, Clone, Copy, Default)]
struct Tok {
    start: usize,
    end: usize,
    in_arena: bool,
}

impl Tok {
    #[inline]
    fn bytes<'a>(&self, input: &'a [u8], arena: &'a [u8]) -> &'a [u8] {
        if self.in_arena {
            &arena[self.start..self.end]
        } else {
            &input[self.start..self.end]
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
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

/// The tokens of the line being parsed, reused from line to line.
#[derive(Debug, Default)]
struct LineScratch {
    arena: Vec<u8>,
    measurement: Tok,
    tags: Vec<(Tok, Tok)>,
    fields: Vec<(Tok, ValueTok)>,
    timestamp: Option<i64>,
    tag_columns: Vec<usize>,
    field_columns: Vec<usize>,
}

impl LineScratch {
    fn clear(&mut self) {
        self.arena.clear();
        self.tags.clear();
        self.fields.clear();
        self.timestamp = None;
        self.tag_columns.clear();
        self.field_columns.clear();
    }
}

/// A line-level error before it is tied to a line number.
type LineResult<T> = Result<T, String>;

const fn stop_table(stops: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < stops.len() {
        table[stops[i] as usize] = true;
        i += 1;
    }
    table
}

static MEASUREMENT_STOPS: [bool; 256] = stop_table(b", \\\n");
static KEY_STOPS: [bool; 256] = stop_table(b"=, \\\n");
static TAG_VALUE_STOPS: [bool; 256] = stop_table(b"=, \\\n");
static VALUE_STOPS: [bool; 256] = stop_table(b", \n\r");

/// Reads a name or tag value up to the first unescaped stop byte. Returns the
/// token and the position of the stop byte (or the end of the input).
#[inline]
fn scan_token(input: &[u8], start: usize, stops: &[bool; 256], arena: &mut Vec<u8>) -> (Tok, usize) {
    let mut pos = start;
    while pos < input.len() && !stops[input[pos] as usize] {
        pos += 1;
    }
    if pos >= input.len() || input[pos] != b'\\' {
        return (Tok { start, end: pos, in_arena: false }, pos);
    }
    // Slow path: an escape. Copy into the arena, removing escaping backslashes.
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
        } else if stops[b as usize] {
            break;
        } else {
            arena.push(b);
            pos += 1;
        }
    }
    (Tok { start: arena_start, end: arena.len(), in_arena: true }, pos)
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
                Tok { start: arena_start, end: arena.len(), in_arena: true }
            } else {
                Tok { start, end, in_arena: false }
            };
            Ok((ValueTok::String(tok), end + 1))
        }
        Some(_) => {
            let mut end = pos;
            while end < input.len() && !VALUE_STOPS[input[end] as usize] {
                end += 1;
            }
            let text = &input[pos..end];
            let value = match text {
                b"t" | b"T" | b"true" | b"True" | b"TRUE" => ValueTok::Boolean(true),
                b"f" | b"F" | b"false" | b"False" | b"FALSE" => ValueTok::Boolean(false),
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

/// Tokenises the line at `pos` into `s`. Returns the position after the line
/// (past its `\n`).
fn tokenize_line(input: &[u8], pos: usize, s: &mut LineScratch, newlines: &mut usize) -> LineResult<usize> {
    let (measurement, mut pos) = scan_token(input, pos, &MEASUREMENT_STOPS, &mut s.arena);
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    s.measurement = measurement;
    // Tags.
    while pos < input.len() && input[pos] == b',' {
        let (key, p) = scan_token(input, pos + 1, &KEY_STOPS, &mut s.arena);
        if key.is_empty() {
            return Err("missing tag key".into());
        }
        if input.get(p) != Some(&b'=') {
            return Err(format!("missing tag value for tag key '{}'", lossy(key, input, &s.arena)));
        }
        let (value, p) = scan_token(input, p + 1, &TAG_VALUE_STOPS, &mut s.arena);
        if value.is_empty() {
            return Err(format!("missing tag value for tag key '{}'", lossy(key, input, &s.arena)));
        }
        if input.get(p) == Some(&b'=') {
            return Err(format!(
                "unescaped '=' in the value of tag '{}' (write it as \\=)",
                lossy(key, input, &s.arena)
            ));
        }
        s.tags.push((key, value));
        pos = p;
    }
    // Fields.
    if input.get(pos) != Some(&b' ') {
        return Err("missing fields".into());
    }
    pos = skip_spaces(input, pos);
    loop {
        let (key, p) = scan_token(input, pos, &KEY_STOPS, &mut s.arena);
        if key.is_empty() {
            return Err("missing fields".into());
        }
        if input.get(p) != Some(&b'=') {
            return Err(format!("missing value for field '{}'", lossy(key, input, &s.arena)));
        }
        let (value, p) = parse_field_value(input, p + 1, &mut s.arena, newlines)?;
        s.fields.push((key, value));
        pos = p;
        match input.get(pos) {
            Some(b',') => pos += 1,
            _ => break,
        }
    }
    // Optional timestamp, then the end of the line.
    pos = skip_spaces(input, pos);
    if matches!(input.get(pos), Some(b'-' | b'0'..=b'9')) {
        let start = pos;
        while pos < input.len() && matches!(input[pos], b'-' | b'0'..=b'9') {
            pos += 1;
        }
        let text = &input[start..pos];
        s.timestamp =
            Some(parse_i64(text).ok_or_else(|| format!("invalid timestamp '{}'", String::from_utf8_lossy(text)))?);
        pos = skip_spaces(input, pos);
    }
    if input.get(pos) == Some(&b'\r') {
        pos += 1;
    }
    match input.get(pos) {
        None => Ok(pos),
        Some(b'\n') => Ok(pos + 1),
        Some(_) => {
            let rest_end = next_line(input, pos);
            let rest = String::from_utf8_lossy(&input[pos..rest_end]);
            Err(format!("unexpected text after the fields: '{}'", rest.trim_end()))
        }
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
    if tables.get(*last).is_none_or(|t| t.name.as_bytes() != name) {
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
    /// Column positions seen at each tag and field position of the previous line;
    /// lines of one source usually repeat their keys in the same order.
    tag_position_cache: Vec<usize>,
    field_position_cache: Vec<usize>,
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
            tag_position_cache: Vec::new(),
            field_position_cache: Vec::new(),
            time: Vec::new(),
            rows: 0,
            new_columns: 0,
        }
    }

    /// Finds or creates the column for `key` and checks that it can take a value
    /// of `wanted` type in line `line`.
    fn resolve(
        &mut self,
        key: &[u8],
        wanted: ColumnType,
        position: usize,
        line: usize,
        options: &ParseOptions,
    ) -> LineResult<usize> {
        let cache = if wanted == ColumnType::Tag { &self.tag_position_cache } else { &self.field_position_cache };
        let cached =
            cache.get(position).copied().filter(|&i| self.columns.get(i).is_some_and(|c| c.name.as_bytes() == key));
        let index = match cached.or_else(|| self.lookup.get(key).copied()) {
            Some(index) => index,
            None => self.create_column(key, wanted, options)?,
        };
        let cache =
            if wanted == ColumnType::Tag { &mut self.tag_position_cache } else { &mut self.field_position_cache };
        if cache.len() <= position {
            cache.resize(position + 1, usize::MAX);
        }
        cache[position] = index;

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
            self.scratch.clear();
            let mut extra_newlines = 0;
            let result = tokenize_line(input, start, &mut self.scratch, &mut extra_newlines).and_then(|end| {
                if end - pos > self.options.max_line_bytes {
                    return Err(format!(
                        "line is longer than {} bytes (HOURGLASS_MAX_LINE_BYTES)",
                        self.options.max_line_bytes
                    ));
                }
                self.append_line(input, line_number, utf8_checked).map(|()| end)
            });
            match result {
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

    /// Checks the tokenised line against its table and appends it.
    fn append_line(&mut self, input: &[u8], line: usize, utf8_checked: bool) -> LineResult<()> {
        let LineProtocolParser { schemas, options, tables, table_lookup, last_table, scratch: s, .. } = self;
        let name = s.measurement.bytes(input, &s.arena);
        let table = find_table(tables, table_lookup, last_table, *schemas, name)?;

        let timestamp = match s.timestamp {
            None => options.default_time_ns,
            Some(t) => options.precision.to_nanos(t).ok_or_else(|| format!("timestamp {t} is out of range"))?,
        };

        for (position, (key, value)) in s.tags.iter().enumerate() {
            let key = key.bytes(input, &s.arena);
            if !utf8_checked && std::str::from_utf8(value.bytes(input, &s.arena)).is_err() {
                return Err("tag value is not valid UTF-8".into());
            }
            let index = table.resolve(key, ColumnType::Tag, position, line, options)?;
            s.tag_columns.push(index);
        }
        for (position, (key, value)) in s.fields.iter().enumerate() {
            let key = key.bytes(input, &s.arena);
            if let ValueTok::String(tok) = value {
                if !utf8_checked && std::str::from_utf8(tok.bytes(input, &s.arena)).is_err() {
                    return Err("string field value is not valid UTF-8".into());
                }
            }
            let index = table.resolve(key, value.column_type(), position, line, options)?;
            s.field_columns.push(index);
        }

        let row = table.rows;
        let failed = |e: ArrowError| e.to_string();
        for ((_, value), &index) in s.tags.iter().zip(&s.tag_columns) {
            table.columns[index].builder.push_tag(row, value.bytes(input, &s.arena)).map_err(failed)?;
        }
        for ((_, value), &index) in s.fields.iter().zip(&s.field_columns) {
            let value = match *value {
                ValueTok::Float(v) => FieldValue::Float(v),
                ValueTok::Integer(v) => FieldValue::Integer(v),
                ValueTok::UInteger(v) => FieldValue::UInteger(v),
                ValueTok::Boolean(v) => FieldValue::Boolean(v),
                ValueTok::String(tok) => FieldValue::String(tok.bytes(input, &s.arena)),
            };
            table.columns[index].builder.push_field(row, value).map_err(failed)?;
        }
        table.time.push(timestamp);
        table.rows += 1;
        Ok(())
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
