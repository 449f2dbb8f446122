//! Fuzzes InfluxDB 3's JSON tickets as the FlightSQL front reads them: read
//! or refused with a reason, never a panic.
//!
//! Run: `cargo fuzz run flight_ticket fuzz/corpus/flight_ticket tests/corpus/flight_ticket` (see fuzz/README.md).

#![no_main]

use hourglassdb::fuzzing::flight_ticket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(message) = flight_ticket(data) {
        assert!(!message.is_empty());
    }
});
