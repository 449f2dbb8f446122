//! The TSBS benchmark harness (benches/tsbs/) in its `smoke` profile, as a
//! correctness check and never as a timing: the generator and the loader, every
//! query type over the Postgres wire, FlightSQL and HTTP, each answer checked
//! against DuckDB's on the same Parquet files, and InfluxDB 1.x loaded with the
//! same file. The timings it prints are not looked at.

use crate::support::test_python;
use std::path::Path;
use std::process::Command;

fn harness() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tsbs/harness.py")
}

/// Runs the harness's `smoke` profile with `extra` options, in a directory of
/// its own; its report.json and report.md, once it succeeded.
fn run_smoke(extra: &[&str]) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let output = Command::new(test_python())
        .arg(harness())
        .arg("smoke")
        .args(["--binary", env!("CARGO_BIN_EXE_hourglass")])
        .args(["--tool", env!("CARGO_BIN_EXE_hourglass-tsbs")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .expect("run the harness");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the harness failed:\n{stdout}\n{stderr}");
    let report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("json");
    (report, std::fs::read_to_string(out.join("report.md")).expect("report.md"))
}

/// The harness's comparison tells equal answers from different ones: a missing
/// row, a changed value, tag, time or null, a missing column.
#[test]
fn the_harness_comparison_tells_a_wrong_answer_from_a_right_one() {
    let output = Command::new(test_python()).arg(harness()).arg("self-test").output().expect("run the self-test");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_smoke_profile_answers_every_query_type_as_duckdb_does_on_every_front() {
    let (report, markdown) = run_smoke(&["--runs", "1"]);
    let rows = report["data"]["rows"].as_u64().expect("rows");
    assert_eq!(rows, 36_000, "100 hosts × 360 ticks");
    assert_eq!(report["load"]["hourglass"]["rows_acknowledged"].as_u64(), Some(rows));
    assert_eq!(report["storage"]["rows"].as_u64(), Some(rows), "the catalog lists every acknowledged row");
    assert_eq!(report["load"]["influxdb"]["rows_acknowledged"].as_u64(), Some(rows), "InfluxDB took the same file");
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(0), "{}", report["failures"]);

    let queries = report["queries"].as_object().expect("queries");
    assert_eq!(queries.len(), 16, "SELECT 1 and the fifteen TSBS query types");
    for (kind, outcome) in queries {
        for front in ["postgres", "flightsql", "http"] {
            assert_eq!(outcome[front]["check"], "equal", "{front} {kind}: {}", outcome[front]);
            assert!(outcome[front]["hot_ms"].is_number(), "{front} {kind} ran hot");
        }
        if kind != "SELECT 1" {
            assert!(outcome["influxdb"].is_object(), "InfluxDB ran {kind}");
        }
    }
    // Answers with rows, so that "equal" compared something.
    for kind in ["single-groupby-1-1-1", "double-groupby-all", "high-cpu-all", "lastpoint"] {
        assert!(queries[kind]["duckdb"]["rows"].as_u64() > Some(0), "{kind} has rows");
    }
    assert_eq!(queries["lastpoint"]["duckdb"]["rows"].as_u64(), Some(100), "one row per host");
    assert!(markdown.contains("| lastpoint |"), "{markdown}");
}

/// `--readers 3`: the data loaded over a Redis catalog, and every query type
/// asked of a reader that spreads it over three (distributed queries), each
/// answer checked against DuckDB's on every front; EXPLAIN ANALYZE shows the
/// scan split in one task per reader.
#[cfg(feature = "distributed")]
#[test]
fn the_smoke_profile_spread_over_three_readers_answers_as_duckdb_does() {
    let (report, markdown) = run_smoke(&["--runs", "1", "--no-influxdb", "--readers", "3"]);
    assert_eq!(report["storage"]["rows"].as_u64(), Some(36_000), "the shared layer holds every row once");
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(0), "{}", report["failures"]);
    let queries = report["queries"].as_object().expect("queries");
    assert_eq!(queries.len(), 16, "SELECT 1 and the fifteen TSBS query types");
    for (kind, outcome) in queries {
        for front in ["postgres", "flightsql", "http"] {
            assert_eq!(outcome[front]["check"], "equal", "{front} {kind}: {}", outcome[front]);
        }
    }
    for kind in ["double-groupby-all", "lastpoint"] {
        let analyzed = &report["cluster"]["explain_analyze"][kind];
        let tasks = analyzed["tasks"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 3, "{kind}: one scan task per reader: {}", analyzed["plan"]);
        let read = |t: &serde_json::Value| t["rows"].as_str().is_some_and(|rows| rows != "0");
        assert!(tasks.iter().any(read), "{kind}: some task read the rows: {tasks:?}");
    }
    assert!(markdown.contains("a cluster of 3 readers"), "{markdown}");
}
