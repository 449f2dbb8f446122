//! Bounded fuzz runs of every parser that takes bytes from a client, in
//! process and deterministic: each run mutates its corpus (tests/corpus/)
//! and feeds the result to the same function the libFuzzer target in fuzz/
//! calls (`hourglassdb::fuzzing`). Nothing may panic, and each target checks
//! a property of its answer, not only that there is one.
//!
//! `HOURGLASS_FUZZ_ROUNDS` sets the mutations per target (default 3,000);
//! fuzz/README.md runs the libFuzzer targets for longer.

use base64::Engine as _;
use hourglassdb::fuzzing;
use hourglassdb::server::auth::Credentials;

use crate::mutation::{corpus, Mutator};

fn rounds() -> usize {
    std::env::var("HOURGLASS_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3_000)
}

/// Mutations of every seed of `tests/corpus/<name>/`, `rounds()` in all.
fn mutations(name: &str, seed: u64, alphabet: &[u8]) -> Vec<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = corpus(name).into_iter().map(|(_, bytes)| bytes).collect();
    let mut mutator = Mutator(seed);
    let mut inputs = seeds.clone();
    for round in 0..rounds() {
        inputs.push(mutator.mutate(&seeds[round % seeds.len()], alphabet));
    }
    inputs
}

/// The data cut into pieces at random places, as a client's CopyData
/// messages may cut it.
fn pieces<'a>(data: &'a [u8], mutator: &mut Mutator) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = (0..mutator.below(6)).map(|_| mutator.below(data.len() + 1)).collect();
    cuts.push(0);
    cuts.push(data.len());
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

/// COPY in text, CSV and binary: whatever the bytes, the load decodes the
/// same rows and ends with the same error whether the data comes in one
/// message or in many, and every row has one value per column.
#[test]
fn copy_data_decodes_the_same_in_one_piece_or_many() {
    let formats: [(&str, &str, &[u8]); 3] = [
        ("copy_text", fuzzing::COPY_TEXT, b"\t\n\\N.-:eZT0123456789\r\x00\xff"),
        ("copy_csv", fuzzing::COPY_CSV, b",\"\n\r.-:eZT0123456789 \x00\xff"),
        ("copy_binary", fuzzing::COPY_BINARY, b"\x00\x01\x08\xff\x7f\x80"),
    ];
    let mut cutter = Mutator(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused) = (0, 0);
    for (index, (name, statement, alphabet)) in formats.into_iter().enumerate() {
        let seeds = corpus(name).len();
        for (round, data) in mutations(name, 0x2545_F491_4F6C_DD1D + index as u64, alphabet).into_iter().enumerate() {
            // A small bound now and then, so the too-long-line path is reached too.
            let max_line_bytes = if round % 7 == 6 { 40 } else { 1 << 20 };
            let whole = fuzzing::copy_from(statement, &fuzzing::COPY_COLUMNS, &[&data], max_line_bytes)
                .expect("the statement is valid");
            let cut = pieces(&data, &mut cutter);
            let split = fuzzing::copy_from(statement, &fuzzing::COPY_COLUMNS, &cut, max_line_bytes)
                .expect("the statement is valid");
            assert_eq!(
                whole,
                split,
                "{name}: one piece and {} pieces decode differently; data {:?}",
                cut.len(),
                String::from_utf8_lossy(&data)
            );
            // The libFuzzer targets' own check, on the same input.
            fuzzing::copy_cut_in_two(statement, &data);
            if round < seeds {
                assert_eq!(whole.error, None, "{name}: the corpus seed is valid COPY data");
                assert!(!whole.rows.is_empty(), "{name}: the seed has rows");
            }
            match whole.error {
                None => accepted += 1,
                Some(error) => {
                    assert!(!error.starts_with("XX"), "{name}: a client's bad data is not a server error: {error}");
                    refused += 1;
                }
            }
        }
    }
    // A fuzzer whose inputs are all refused, or all accepted, tests little.
    assert!(accepted > 100 && refused > 100, "accepted {accepted}, refused {refused}");
}

/// The HTTP query endpoints' request reading: never a panic, and a body
/// that is a JSON object with a query is always understood.
#[test]
fn http_query_requests_are_understood_or_refused_with_a_reason() {
    let query_strings = [None, Some("db=d&format=csv"), Some("q=SELECT%201&format=%ff"), Some("db=&db=x")];
    let content_types: [Option<&[u8]>; 3] = [None, Some(b"application/json"), Some(b"text/plain\xff")];
    let mut understood = 0;
    for (round, body) in
        mutations("query_body", 0x1234_5678_9ABC_DEF1, b"{}[]\":,\\ nulltrue0123456789\xff").iter().enumerate()
    {
        for influx in [false, true] {
            let query_string = query_strings[round % query_strings.len()];
            let content_type = content_types[round % content_types.len()];
            match fuzzing::http_query(influx, query_string, content_type, body) {
                Ok((_, database, _)) => {
                    assert!(!database.is_empty(), "a query runs in a named database");
                    understood += 1;
                }
                Err(message) => assert!(!message.is_empty(), "a refusal says why"),
            }
        }
    }
    assert!(understood > 100, "only {understood} requests were understood");
    let json = br#"{"query": "SELECT 1", "db": "weather"}"#;
    assert_eq!(
        fuzzing::http_query(false, None, Some(b"application/json"), json),
        Ok(("SELECT 1".into(), "weather".into(), "GigapiJson".into()))
    );
}

/// InfluxDB 3's JSON tickets and FlightSQL statement handles: never a
/// panic, and the bound parameters inside a handle (an Arrow IPC stream)
/// are read or refused whatever was done to them.
#[test]
fn flight_tickets_and_statement_handles_are_read_or_refused() {
    let mut read = 0;
    for ticket in mutations("flight_ticket", 0x0DDB_1A5E_5BAD_5EED, b"{}[]\":,\\ nulltrue0123456789$\xff") {
        match fuzzing::flight_ticket(&ticket) {
            Ok(_) => read += 1,
            Err(message) => assert!(!message.is_empty()),
        }
    }
    assert!(read > 50, "only {read} tickets were read");

    let handles = mutations("statement_handle", 0xC0FF_EE00_1234_5678, b"{}\":,\\ =+/AZaz09\xff");
    let (mut with_rows, mut refused) = (0, 0);
    for handle in &handles {
        match fuzzing::statement_handle(handle) {
            Ok(rows) => with_rows += usize::from(rows > 0),
            Err(message) => {
                assert!(!message.is_empty());
                refused += 1;
            }
        }
    }
    // The IPC bytes themselves (plain and zstd-compressed), mutated and put
    // back in a handle: a compressed buffer's length prefix is what arrow
    // allocates before it decompresses.
    let seeds: Vec<serde_json::Value> = corpus("statement_handle")
        .into_iter()
        .map(|(_, bytes)| serde_json::from_slice(&bytes).expect("the seed is JSON"))
        .filter(|handle: &serde_json::Value| handle.get("parameters").is_some())
        .collect();
    let mut mutator = Mutator(0xFEED_FACE_CAFE_BEEF);
    let mut ipc_read = 0;
    for round in 0..rounds() {
        let mut handle = seeds[round % seeds.len()].clone();
        let ipc = base64::engine::general_purpose::STANDARD
            .decode(handle["parameters"].as_str().expect("the seed has parameters"))
            .expect("base64");
        let mutated = mutator.mutate(&ipc, b"\x00\x01\x08\xff\x7f\x80\xfe");
        handle["parameters"] = base64::engine::general_purpose::STANDARD.encode(&mutated).into();
        match fuzzing::statement_handle(&serde_json::to_vec(&handle).expect("JSON")) {
            Ok(_) => ipc_read += 1,
            Err(message) => assert!(!message.is_empty()),
        }
    }
    assert_eq!(fuzzing::statement_handle(&handles[0]), Ok(500), "the compressed seed's rows of parameters");
    assert_eq!(fuzzing::statement_handle(&handles[2]), Ok(2), "the plain seed's two rows of parameters");
    assert!(with_rows > 10 && refused > 10 && ipc_read > 10, "{with_rows} {refused} {ipc_read}");
}

/// `Authorization` headers: never a panic, and Basic credentials of any
/// user and password come back as they were sent.
#[test]
fn authorization_headers_are_read_exactly() {
    for value in mutations("authorization", 0xA5A5_5A5A_0F0F_F0F0, b" :=+/BasicTokenBearer09\xff\t") {
        let _ = fuzzing::authorization(&value);
    }
    let mut mutator = Mutator(0x0123_4567_89AB_CDEF);
    for _ in 0..rounds() {
        let user: String =
            (0..mutator.below(12)).map(|_| char::from(b'!' + mutator.below(94) as u8)).filter(|c| *c != ':').collect();
        let password: String = (0..mutator.below(12)).map(|_| char::from(b' ' + mutator.below(95) as u8)).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let header = format!("{} {encoded}", ["Basic", "basic", "BASIC"][mutator.below(3)]);
        assert_eq!(
            fuzzing::authorization(header.as_bytes()),
            Some(Credentials::Password { user: user.clone(), password: password.clone() }),
            "{header}"
        );
    }
}

/// SQL from Postgres clients through the front's parser and rewrites:
/// never a panic, and the corpus itself parses.
#[test]
fn postgres_sql_parses_or_is_refused_with_a_reason() {
    let seeds = corpus("postgres_sql");
    for (path, sql) in &seeds {
        let sql = String::from_utf8(sql.clone()).expect("UTF-8");
        assert!(
            fuzzing::postgres_sql(&sql).is_ok_and(|n| n > 0),
            "{}: {:?}",
            path.display(),
            fuzzing::postgres_sql(&sql)
        );
    }
    let mut parsed = 0;
    for sql in mutations("postgres_sql", 0x5EED_0F50_1000_0001, b" ,;()'\"$:.*-+=<>[]\\\nSELECTFROMWHERE01\xff") {
        match fuzzing::postgres_sql(&String::from_utf8_lossy(&sql)) {
            Ok(_) => parsed += 1,
            Err(message) => assert!(!message.is_empty()),
        }
    }
    assert!(parsed > 50, "only {parsed} mutated statements parsed");
}
