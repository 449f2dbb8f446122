//! Fuzzes the HTTP query endpoints' reading of a request (query string,
//! Content-Type and body): an answer or a refusal with a reason, never a panic.
//!
//! Run: `cargo fuzz run http_query fuzz/corpus/http_query tests/corpus/query_body` (see fuzz/README.md).

#![no_main]

use hourglassdb::fuzzing::http_query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the endpoint, the Content-Type and the query string.
    let Some((&pick, body)) = data.split_first() else { return };
    let content_type: Option<&[u8]> = [None, Some(&b"application/json"[..]), Some(&b"text/plain"[..])][usize::from(pick % 3)];
    let query_string = [None, Some("db=d&format=csv"), Some("q=SELECT%201")][usize::from(pick / 3 % 3)];
    if let Err(message) = http_query(pick & 0x80 != 0, query_string, content_type, body) {
        assert!(!message.is_empty());
    }
});
