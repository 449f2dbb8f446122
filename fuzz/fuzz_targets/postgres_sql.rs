//! Fuzzes SQL from Postgres clients through the front's parser and
//! rewrites: parsed or refused with a reason, never a panic.
//!
//! Run: `cargo fuzz run postgres_sql fuzz/corpus/postgres_sql tests/corpus/postgres_sql` (see fuzz/README.md).

#![no_main]

use hourglassdb::fuzzing::postgres_sql;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(message) = postgres_sql(&String::from_utf8_lossy(data)) {
        assert!(!message.is_empty());
    }
});
