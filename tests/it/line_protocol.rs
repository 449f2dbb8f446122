//! The line protocol parser, rule by rule: a table of valid and invalid lines.

use std::collections::BTreeMap;
use std::sync::Arc;

use hourglassdb::catalog::{Column, ColumnType, TableSchema};
use hourglassdb::ingest::line_protocol::{
    LineProtocolParser, NoSchemas, ParseOptions, Precision, SchemaSource, MAX_REPORTED_ERRORS,
};

use crate::support::{batch_rows, row};

const NOW: i64 = 1_700_000_000_123_456_789;

fn options(precision: Precision) -> ParseOptions {
    ParseOptions { precision, default_time_ns: NOW, max_line_bytes: 1 << 20, max_columns_per_table: 1000 }
}

type Rows = BTreeMap<String, Vec<BTreeMap<String, String>>>;

/// Parses `input`; returns the rows per table and the rejected lines as (line number, message).
fn parse_with(input: &str, options: ParseOptions, schemas: &dyn SchemaSource) -> (Rows, Vec<(usize, String)>) {
    let mut parser = LineProtocolParser::new(schemas, options);
    parser.parse(input.as_bytes());
    let outcome = parser.finish_with_errors().expect("finish");
    let mut tables = Rows::new();
    for write in &outcome.writes {
        tables.entry(write.table.to_string()).or_default().extend(batch_rows(&write.batch));
    }
    let errors = outcome.errors.iter().map(|e| (e.line_number, e.error_message.clone())).collect();
    (tables, errors)
}

fn parse(input: &str) -> (Rows, Vec<(usize, String)>) {
    parse_with(input, options(Precision::Nanosecond), &NoSchemas)
}

/// The one row `input` produces, which must parse without errors.
fn one_row(input: &str) -> (String, BTreeMap<String, String>) {
    let (tables, errors) = parse(input);
    assert!(errors.is_empty(), "{input:?} was rejected: {errors:?}");
    assert_eq!(tables.len(), 1, "{input:?} gave {tables:?}");
    let (table, rows) = tables.into_iter().next().unwrap();
    assert_eq!(rows.len(), 1, "{input:?} gave {rows:?}");
    (table, rows.into_iter().next().unwrap())
}

/// The reason `input` (one line) is rejected.
fn rejection(input: &str) -> String {
    let (tables, errors) = parse(input);
    assert!(tables.is_empty(), "{input:?} should be rejected but gave {tables:?}");
    assert_eq!(errors.len(), 1, "{input:?}: {errors:?}");
    assert_eq!(errors[0].0, 1);
    errors[0].1.clone()
}

fn ts(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

#[test]
fn valid_lines_table() {
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "cpu,host=a usage=1.5 1000",
            "cpu",
            &[("host", "a"), ("usage", "1.5"), ("time", "1970-01-01T00:00:00.000001Z")],
        ),
        ("cpu usage=1", "cpu", &[("usage", "1.0"), ("time", &ts(NOW))]),
        (r"my\ cpu,host=a v=1 0", "my cpu", &[("host", "a"), ("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        (r"my\,cpu v=1 0", "my,cpu", &[("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        (r"m,ho\ st=a\,b\=c\ d v=1 0", "m", &[("ho st", "a,b=c d"), ("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        (r"m,t=a\b v=1 0", "m", &[("t", r"a\b"), ("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        (r"m,t=a\\ v=1 0", "m", &[("t", r"a\"), ("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        (r"m f\=x\,y\ z=1 0", "m", &[("f=x,y z", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        (r#"m s="he said \"hi\" \\o/" 0"#, "m", &[("s", r#"he said "hi" \o/"#), ("time", "1970-01-01T00:00:00Z")]),
        (r#"m s="a, b=c d" 0"#, "m", &[("s", "a, b=c d"), ("time", "1970-01-01T00:00:00Z")]),
        (r#"m s="" 0"#, "m", &[("s", ""), ("time", "1970-01-01T00:00:00Z")]),
        (r#"m s="back\slash" 0"#, "m", &[("s", r"back\slash"), ("time", "1970-01-01T00:00:00Z")]),
        ("m i=-42i 0", "m", &[("i", "-42"), ("time", "1970-01-01T00:00:00Z")]),
        ("m i=9223372036854775807i 0", "m", &[("i", "9223372036854775807"), ("time", "1970-01-01T00:00:00Z")]),
        ("m i=-9223372036854775808i 0", "m", &[("i", "-9223372036854775808"), ("time", "1970-01-01T00:00:00Z")]),
        ("m u=18446744073709551615u 0", "m", &[("u", "18446744073709551615"), ("time", "1970-01-01T00:00:00Z")]),
        ("m f=-1.5 0", "m", &[("f", "-1.5"), ("time", "1970-01-01T00:00:00Z")]),
        ("m f=1e3 0", "m", &[("f", "1000.0"), ("time", "1970-01-01T00:00:00Z")]),
        ("m f=1.5E-3 0", "m", &[("f", "0.0015"), ("time", "1970-01-01T00:00:00Z")]),
        ("m f=1.0368e+06 0", "m", &[("f", "1036800.0"), ("time", "1970-01-01T00:00:00Z")]),
        ("m f=.5 0", "m", &[("f", "0.5"), ("time", "1970-01-01T00:00:00Z")]),
        ("m f=+2 0", "m", &[("f", "2.0"), ("time", "1970-01-01T00:00:00Z")]),
        (
            "m a=t,b=T,c=true,d=True,e=TRUE 0",
            "m",
            &[
                ("a", "true"),
                ("b", "true"),
                ("c", "true"),
                ("d", "true"),
                ("e", "true"),
                ("time", "1970-01-01T00:00:00Z"),
            ],
        ),
        (
            "m a=f,b=F,c=false,d=False,e=FALSE 0",
            "m",
            &[
                ("a", "false"),
                ("b", "false"),
                ("c", "false"),
                ("d", "false"),
                ("e", "false"),
                ("time", "1970-01-01T00:00:00Z"),
            ],
        ),
        ("m a=1,a=2 0", "m", &[("a", "2.0"), ("time", "1970-01-01T00:00:00Z")]),
        ("m v=1 -1000000000", "m", &[("v", "1.0"), ("time", "1969-12-31T23:59:59Z")]),
        ("m v=1 5   ", "m", &[("v", "1.0"), ("time", "1970-01-01T00:00:00.000000005Z")]),
        ("  m v=1 0", "m", &[("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        ("m v=1 0\r\n", "m", &[("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        ("m v=1\r\n", "m", &[("v", "1.0"), ("time", &ts(NOW))]),
        ("m  v=1  0", "m", &[("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        (
            "température,ville=Zürich °C=21.5 0",
            "température",
            &[("ville", "Zürich"), ("°C", "21.5"), ("time", "1970-01-01T00:00:00Z")],
        ),
        ("m,b=2,a=1 v=1 0", "m", &[("a", "1"), ("b", "2"), ("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
        ("m,t=\"q\" v=1 0", "m", &[("t", "\"q\""), ("v", "1.0"), ("time", "1970-01-01T00:00:00Z")]),
    ];
    for (input, table, expected) in cases {
        let (got_table, got) = one_row(input);
        assert_eq!(&got_table, table, "table of {input:?}");
        assert_eq!(got, row(expected), "row of {input:?}");
    }
}

#[test]
fn invalid_lines_table() {
    let cases: &[(&str, &str)] = &[
        ("cpu", "missing fields"),
        ("cpu ", "missing fields"),
        ("cpu,host=a", "missing fields"),
        (",host=a v=1", "missing measurement"),
        (" ,host=a v=1", "missing measurement"),
        ("cpu,host v=1", "missing tag value for tag key 'host'"),
        ("cpu,host= v=1", "missing tag value for tag key 'host'"),
        ("cpu,=a v=1", "missing tag key"),
        ("cpu,a=b=c v=1", r"unescaped '=' in the value of tag 'a' (write it as \=)"),
        ("cpu v=", "missing field value"),
        ("cpu v", "missing value for field 'v'"),
        ("cpu v=1,", "missing fields"),
        ("cpu v=1x", "invalid field value '1x'"),
        ("cpu v=abc", "invalid field value 'abc'"),
        ("cpu v=inf", "invalid field value 'inf'"),
        ("cpu v=NaN", "invalid field value 'NaN'"),
        ("cpu v=-inf", "invalid field value '-inf'"),
        ("cpu v=1e400", "float field value '1e400' is out of range"),
        ("cpu v=1.2.3", "invalid float field value '1.2.3'"),
        (
            "cpu v=9223372036854775808i",
            "invalid integer field value '9223372036854775808i' (out of range or not a number)",
        ),
        ("cpu v=1.5i", "invalid integer field value '1.5i' (out of range or not a number)"),
        ("cpu v=-1u", "invalid unsigned integer field value '-1u' (out of range or not a number)"),
        (
            "cpu v=18446744073709551616u",
            "invalid unsigned integer field value '18446744073709551616u' (out of range or not a number)",
        ),
        ("cpu v=\"open", "unterminated string field value"),
        ("cpu v=1 abc", "unexpected text after the fields: 'abc'"),
        ("cpu v=1 12 34", "unexpected text after the fields: '34'"),
        ("cpu v=1 1-2", "invalid timestamp '1-2'"),
        ("cpu v=1 99999999999999999999", "invalid timestamp '99999999999999999999'"),
        ("cpu,time=a v=1", "tag key 'time' is reserved for the timestamp"),
        ("cpu time=1", "field key 'time' is reserved for the timestamp"),
        ("a/b v=1", "measurement name \"a/b\" contains '/'"),
        (".. v=1", "measurement name \"..\" contains '..'"),
        ("a..b v=1", "measurement name \"a..b\" contains '..'"),
        (".hidden v=1", "measurement name \".hidden\" is reserved"),
        ("cpu,a/b=c v=1", "tag key name \"a/b\" contains '/'"),
        ("cpu x/y=1", "field key name \"x/y\" contains '/'"),
        ("cpu,a\tb=c v=1", "tag key name \"a\\tb\" contains a control character"),
        ("cpu\u{1}x v=1", "measurement name \"cpu\\u{1}x\" contains a control character"),
        ("cpu,a=1 a=2", "'a' is used both as a tag and as a field"),
        ("cpu,a=1,a=2 v=1", "duplicate tag key 'a'"),
        ("cpu v=1,v=2i", "invalid column type for column 'v', expected float, got integer"),
    ];
    for (input, expected) in cases {
        assert_eq!(rejection(input), *expected, "reason for {input:?}");
    }
}

#[test]
fn rejected_lines_are_reported_with_their_number_and_text() {
    let input = "# a comment\n\ncpu v=1 1\ncpu v=oops 2\r\n  \ncpu v=3 3\nbad\n";
    let mut parser = LineProtocolParser::new(&NoSchemas, options(Precision::Nanosecond));
    parser.parse(input.as_bytes());
    let outcome = parser.finish_with_errors().unwrap();
    assert_eq!(outcome.accepted_lines, 2);
    assert_eq!(outcome.rejected_lines, 2);
    let reported: Vec<_> =
        outcome.errors.iter().map(|e| (e.line_number, e.original_line.as_str(), e.error_message.as_str())).collect();
    assert_eq!(reported, vec![(4, "cpu v=oops 2", "invalid field value 'oops'"), (7, "bad", "missing fields")]);
}

#[test]
fn comments_blank_lines_and_line_endings() {
    let (tables, errors) = parse("# header\n\n   \n\t# indented comment\r\nm v=1 1\r\n\r\nm v=2 2\n# trailing");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(tables["m"].len(), 2);
    let (tables, errors) = parse("");
    assert!(tables.is_empty() && errors.is_empty());
}

#[test]
fn string_fields_may_span_lines() {
    let (tables, errors) = parse("m s=\"first\nsecond\" 1\nm s=\"x\" 2\nbad line here\n");
    assert_eq!(tables["m"][0]["s"], "first\nsecond");
    assert_eq!(tables["m"][1]["s"], "x");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, 4, "line numbers count the newline inside the string");
}

#[test]
fn new_columns_leave_earlier_rows_null_and_tables_stay_apart() {
    let (tables, errors) = parse("m,a=1 x=1 1\nm,b=2 y=2i 2\nother z=true 3\nm,a=1 x=3 4\n");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        tables["m"],
        vec![
            row(&[("a", "1"), ("x", "1.0"), ("time", "1970-01-01T00:00:00.000000001Z")]),
            row(&[("b", "2"), ("y", "2"), ("time", "1970-01-01T00:00:00.000000002Z")]),
            row(&[("a", "1"), ("x", "3.0"), ("time", "1970-01-01T00:00:00.000000004Z")]),
        ]
    );
    assert_eq!(tables["other"], vec![row(&[("z", "true"), ("time", "1970-01-01T00:00:00.000000003Z")])]);
}

#[test]
fn a_field_keeps_its_first_type_within_a_write() {
    let (tables, errors) = parse("m v=1 1\nm v=1i 2\nm v=\"s\" 3\nm v=true 4\nm v=2 5\n");
    assert_eq!(tables["m"].len(), 2);
    assert_eq!(
        errors,
        vec![
            (2, "invalid column type for column 'v', expected float, got integer".to_string()),
            (3, "invalid column type for column 'v', expected float, got string".to_string()),
            (4, "invalid column type for column 'v', expected float, got boolean".to_string()),
        ]
    );
}

#[test]
fn a_rejected_line_does_not_decide_a_new_columns_type() {
    // Line 1 introduces `v` as integer but is rejected for its tag; line 2 may make it a float.
    let (tables, errors) = parse("m,time=x v=1i 1\nm v=2.5 2\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(tables["m"], vec![row(&[("v", "2.5"), ("time", "1970-01-01T00:00:00.000000002Z")])]);
}

struct FixedSchema(Arc<TableSchema>);

impl SchemaSource for FixedSchema {
    fn table_schema(&self, table: &str) -> Option<Arc<TableSchema>> {
        (table == "m").then(|| Arc::clone(&self.0))
    }
}

#[test]
fn the_catalog_schema_decides_types_and_kinds() {
    let schema = Arc::new(TableSchema::new([
        Column { name: "host".into(), column_type: ColumnType::Tag },
        Column { name: "v".into(), column_type: ColumnType::Integer },
    ]));
    let schemas = FixedSchema(schema);
    let (tables, errors) =
        parse_with("m,host=a v=1i 1\nm v=1.5 2\nm host=1i 3\nm,v=x w=1 4\n", options(Precision::Nanosecond), &schemas);
    assert_eq!(tables["m"].len(), 1);
    assert_eq!(
        errors,
        vec![
            (2, "invalid column type for column 'v', expected integer, got float".to_string()),
            (3, "'host' is used both as a tag and as a field".to_string()),
            (4, "'v' is used both as a tag and as a field".to_string()),
        ]
    );
}

#[test]
fn precisions_scale_timestamps() {
    let cases: &[(Precision, &str, &str)] = &[
        (Precision::Nanosecond, "1700000000123456789", "2023-11-14T22:13:20.123456789Z"),
        (Precision::Microsecond, "1700000000123456", "2023-11-14T22:13:20.123456Z"),
        (Precision::Millisecond, "1700000000123", "2023-11-14T22:13:20.123Z"),
        (Precision::Second, "1700000000", "2023-11-14T22:13:20Z"),
        (Precision::Minute, "28333333", "2023-11-14T22:13:00Z"),
        (Precision::Hour, "472222", "2023-11-14T22:00:00Z"),
        (Precision::Auto, "1700000000", "2023-11-14T22:13:20Z"),
        (Precision::Auto, "1700000000123", "2023-11-14T22:13:20.123Z"),
        (Precision::Auto, "1700000000123456", "2023-11-14T22:13:20.123456Z"),
        (Precision::Auto, "1700000000123456789", "2023-11-14T22:13:20.123456789Z"),
    ];
    for (precision, stamp, expected) in cases {
        let (tables, errors) = parse_with(&format!("m v=1 {stamp}"), options(*precision), &NoSchemas);
        assert!(errors.is_empty(), "{precision:?} {stamp}: {errors:?}");
        assert_eq!(tables["m"][0]["time"], *expected, "{precision:?} {stamp}");
    }
    let (_, errors) = parse_with("m v=1 9223372036854775807", options(Precision::Hour), &NoSchemas);
    assert_eq!(errors, vec![(1, "timestamp 9223372036854775807 is out of range".to_string())]);
}

#[test]
fn missing_timestamps_use_server_time_at_the_precision() {
    assert_eq!(Precision::Second.truncate(NOW), 1_700_000_000_000_000_000);
    assert_eq!(Precision::Millisecond.truncate(NOW), 1_700_000_000_123_000_000);
    assert_eq!(Precision::Nanosecond.truncate(NOW), NOW);
    assert_eq!(Precision::Auto.truncate(NOW), NOW);
    let mut opts = options(Precision::Second);
    opts.default_time_ns = Precision::Second.truncate(NOW);
    let (tables, _) = parse_with("m v=1", opts, &NoSchemas);
    assert_eq!(tables["m"][0]["time"], "2023-11-14T22:13:20Z");
}

#[test]
fn invalid_utf8_is_rejected_per_line() {
    let mut input = b"m,t=ok v=1 1\nm,t=".to_vec();
    input.extend_from_slice(&[0xff, 0xfe]);
    input.extend_from_slice(b" v=1 2\nm s=\"");
    input.push(0xc3);
    input.extend_from_slice(b"\" 3\nm v=4 4\n");
    let mut parser = LineProtocolParser::new(&NoSchemas, options(Precision::Nanosecond));
    parser.parse(&input);
    let outcome = parser.finish_with_errors().unwrap();
    let messages: Vec<_> = outcome.errors.iter().map(|e| (e.line_number, e.error_message.as_str())).collect();
    assert_eq!(messages, vec![(2, "tag value is not valid UTF-8"), (3, "string field value is not valid UTF-8")]);
    assert_eq!(outcome.accepted_lines, 2);
}

#[test]
fn limits_line_length_and_columns() {
    let mut opts = options(Precision::Nanosecond);
    opts.max_line_bytes = 20;
    let (tables, errors) = parse_with("m v=1 1\nm v=1,w=2,x=3,y=4,z=5 2\n", opts, &NoSchemas);
    assert_eq!(tables["m"].len(), 1);
    assert_eq!(errors, vec![(2, "line is longer than 20 bytes (HOURGLASS_MAX_LINE_BYTES)".to_string())]);

    let mut opts = options(Precision::Nanosecond);
    opts.max_columns_per_table = 3; // time + two more
    let (tables, errors) = parse_with("m a=1,b=2 1\nm c=3 2\nm a=4 3\n", opts, &NoSchemas);
    assert_eq!(tables["m"].len(), 2);
    assert_eq!(
        errors,
        vec![(2, "table 'm' would exceed the limit of 3 columns (HOURGLASS_MAX_COLUMNS_PER_TABLE)".to_string())]
    );
}

#[test]
fn reports_at_most_the_error_limit_but_counts_every_rejected_line() {
    let input = "bad\n".repeat(MAX_REPORTED_ERRORS + 50);
    let mut parser = LineProtocolParser::new(&NoSchemas, options(Precision::Nanosecond));
    parser.parse(input.as_bytes());
    assert_eq!(parser.rejected_lines(), MAX_REPORTED_ERRORS + 50);
    assert_eq!(parser.errors().len(), MAX_REPORTED_ERRORS);
}

#[test]
fn output_batches_have_the_storage_types() {
    let mut parser = LineProtocolParser::new(&NoSchemas, options(Precision::Nanosecond));
    parser.parse(b"m,host=a f=1,i=1i,u=1u,b=t,s=\"x\" 1\nm,host=a f=2 2\n");
    let writes = parser.finish().unwrap();
    let schema = writes[0].batch.schema();
    let types: Vec<String> = schema.fields().iter().map(|f| format!("{}:{}", f.name(), f.data_type())).collect();
    assert_eq!(
        types,
        [
            "host:Dictionary(Int32, Utf8)",
            "f:Float64",
            "i:Int64",
            "u:UInt64",
            "b:Boolean",
            "s:Utf8",
            "time:Timestamp(ns, \"UTC\")",
        ]
    );
    let new: Vec<(String, ColumnType)> =
        writes[0].new_columns.iter().map(|c| (c.name.to_string(), c.column_type)).collect();
    assert_eq!(new[0], ("host".to_string(), ColumnType::Tag));
    assert_eq!(new.len(), 6);
}

/// Random edits of valid lines must never panic, and every line is either
/// accepted or reported.
#[test]
fn mutated_input_never_panics() {
    let seeds: &[&[u8]] = &[
        br#"cpu,host=server\ 01,region=us-west usage=0.64,count=3i,ok=t,msg="a \"b\" c" 1434055562000000000"#,
        b"m,a=1 b=2u 1\nm c=\"x\ny\" 2\n# c\n\r\n",
        br"w\,e\ i\=rd,k\ ey=v\,al f\=k=1e-3",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b" ,=\\\"\n\r#iu.-+0123456789aetfTF\t\x00\xff";
    for round in 0..20_000 {
        let seed = seeds[round % seeds.len()];
        let mut input = seed.to_vec();
        for _ in 0..(next() % 6 + 1) {
            let at = (next() as usize) % (input.len() + 1);
            match next() % 3 {
                0 if !input.is_empty() => {
                    input.remove(at.min(input.len() - 1));
                }
                1 => input.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                _ => input.truncate(at),
            }
        }
        let mut parser = LineProtocolParser::new(&NoSchemas, options(Precision::Auto));
        parser.parse(&input);
        let accepted = parser.accepted_lines();
        let writes = parser.finish().expect("finish never fails on parsed input");
        let rows: usize = writes.iter().map(|w| w.batch.num_rows()).sum();
        assert_eq!(rows, accepted, "input {:?}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn long_tag_values_that_share_their_ends_stay_distinct() {
    // Same length, same first and last eight bytes, different middles.
    let input = "m,t=aaaaaaaaXXXXbbbbbbbb v=1 1\nm,t=aaaaaaaaYYYYbbbbbbbb v=2 2\nm,t=aaaaaaaaXXXXbbbbbbbb v=3 3\n\
                 m,t=short v=4 4\nm,t=shor v=5 5\nm,t=sh v=6 6\nm,t=s v=7 7\nm,t=exactly16bytes! v=8 8\n";
    let (tables, errors) = parse(input);
    assert!(errors.is_empty(), "{errors:?}");
    let tags: Vec<&str> = tables["m"].iter().map(|r| r["t"].as_str()).collect();
    assert_eq!(
        tags,
        [
            "aaaaaaaaXXXXbbbbbbbb",
            "aaaaaaaaYYYYbbbbbbbb",
            "aaaaaaaaXXXXbbbbbbbb",
            "short",
            "shor",
            "sh",
            "s",
            "exactly16bytes!"
        ]
    );
}

#[test]
fn partition_directories_round_trip_across_the_whole_time_range() {
    use hourglassdb::catalog::PartitionKey;
    for ns in [i64::MIN, i64::MIN + 3_600_000_000_000, -1, 0, 1, 1_700_000_000_000_000_000, i64::MAX] {
        let key = PartitionKey::for_time(ns);
        let dir = key.dir_name();
        let (date, hour) = dir.split_once('/').unwrap();
        assert_eq!(PartitionKey::from_dir_names(date, hour), Some(key), "{ns} -> {dir}");
    }
    assert_eq!(PartitionKey::for_time(i64::MIN).dir_name(), "date=1677-09-21/hour=00");
    assert_eq!(PartitionKey::for_time(-1).dir_name(), "date=1969-12-31/hour=23");
    assert_eq!(PartitionKey::for_time(i64::MAX).dir_name(), "date=2262-04-11/hour=23");
}
