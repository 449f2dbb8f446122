//! Fuzzes `COPY ... FROM STDIN` data in CSV format: the data, cut
//! anywhere in two, must decode to the same rows and error as whole, without
//! panicking (`hourglassdb::fuzzing::copy_cut_in_two`).
//!
//! Run: `cargo fuzz run copy_csv fuzz/corpus/copy_csv tests/corpus/copy_csv` (see fuzz/README.md).

#![no_main]

use hourglassdb::fuzzing::{copy_cut_in_two, COPY_CSV};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| copy_cut_in_two(COPY_CSV, data));
