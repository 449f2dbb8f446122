//! Fuzzes `Authorization` header values as every front reads them: never a
//! panic.
//!
//! Run: `cargo fuzz run authorization fuzz/corpus/authorization tests/corpus/authorization` (see fuzz/README.md).

#![no_main]

use hourglassdb::fuzzing::authorization;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = authorization(data);
});
