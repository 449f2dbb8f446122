//! Fuzzes FlightSQL statement handles sent back by a client, with the Arrow
//! IPC stream of bound parameters inside: read or refused, never a panic or
//! an allocation the bytes do not justify.
//!
//! Run: `cargo fuzz run statement_handle fuzz/corpus/statement_handle tests/corpus/statement_handle` (see fuzz/README.md).

#![no_main]

use hourglassdb::fuzzing::statement_handle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(message) = statement_handle(data) {
        assert!(!message.is_empty());
    }
});
