//! Fuzzes the line protocol parser: any input must parse without panicking, and
//! every accepted line must become exactly one row.
//!
//! Run: `cargo fuzz run line_protocol` from the repository root (see fuzz/README.md).

#![no_main]

use hourglassdb::ingest::line_protocol::{LineProtocolParser, NoSchemas, ParseOptions, Precision};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the precision, so every unit's overflow checks are reached.
    let (precision, input) = match data.split_first() {
        Some((p, rest)) => (
            [Precision::Auto, Precision::Nanosecond, Precision::Second, Precision::Hour][(*p % 4) as usize],
            rest,
        ),
        None => (Precision::Nanosecond, data),
    };
    let options = ParseOptions {
        precision,
        default_time_ns: 1_700_000_000_000_000_000,
        max_line_bytes: 4096,
        max_columns_per_table: 64,
    };
    let mut parser = LineProtocolParser::new(&NoSchemas, options);
    parser.parse(input);
    let accepted = parser.accepted_lines();
    let writes = parser.finish().expect("finishing parsed lines never fails");
    let rows: usize = writes.iter().map(|w| w.batch.num_rows()).sum();
    assert_eq!(rows, accepted);
});
