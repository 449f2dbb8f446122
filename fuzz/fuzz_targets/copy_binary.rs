//! Fuzzes `COPY ... FROM STDIN` data in binary format: the data, cut
//! anywhere in two, must decode to the same rows and error as whole, without
//! panicking (`hourglassdb::fuzzing::copy_cut_in_two`).
//!
//! Run: `cargo fuzz run copy_binary fuzz/corpus/copy_binary tests/corpus/copy_binary` (see fuzz/README.md).

#![no_main]

use hourglassdb::fuzzing::{copy_cut_in_two, COPY_BINARY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| copy_cut_in_two(COPY_BINARY, data));
