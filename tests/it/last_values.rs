//! The last-value cache in the server: latest-value and distinct-tag queries
//! are answered from it (its hit and build counters say so), and their answers
//! equal what the files give, through rows out of order, rewritten last rows,
//! restarts (SIGTERM and kill -9), retention, and a table past the memory bound.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{metric, post, query_results, Server};

const LASTPOINT: &str = "SELECT DISTINCT ON (host) host, usage, load, time FROM cpu ORDER BY host, time DESC";
/// The same question with a filter on a field that keeps every row: the cache
/// cannot answer it, so it reads the files.
const LASTPOINT_FROM_FILES: &str = "SELECT DISTINCT ON (host) host, usage, load, time FROM cpu \
                                    WHERE usage IS NULL OR usage = usage ORDER BY host, time DESC";
const HOSTS: &str = "SELECT DISTINCT host FROM cpu ORDER BY host";

async fn rows(server: &Server, sql: &str) -> Vec<Value> {
    query_results(server, sql).await
}

async fn write(server: &Server, body: &str) {
    assert_eq!(post(&server.url("/write?db=d&precision=s"), body.to_owned()).await, (204, String::new()));
}

/// The latest rows as `host usage load time` lines, checked against the files.
async fn latest(server: &Server) -> Vec<String> {
    let cached = rows(server, LASTPOINT).await;
    assert_eq!(cached, rows(server, LASTPOINT_FROM_FILES).await, "the cache and the files disagree");
    cached
        .iter()
        .map(|r| {
            let time = r["time"].as_str().unwrap_or("-").replace(".000000000Z", "Z");
            format!("{} {} {} {time}", r["host"].as_str().unwrap_or("-"), r["usage"], r["load"])
        })
        .collect()
}

async fn hits(server: &Server) -> u64 {
    metric(server, "hourglass_last_value_cache_hits_total").await
}

async fn builds(server: &Server) -> u64 {
    metric(server, "hourglass_last_value_cache_builds_total").await
}

#[tokio::test(flavor = "multi_thread")]
async fn latest_values_come_from_memory_and_agree_with_the_files_through_writes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);

    // Out of order, a rewrite of a's last row that names one field, b with no load.
    write(
        &server,
        "cpu,host=a usage=1,load=10 1700000020\ncpu,host=a usage=3,load=30 1700000060\n\
         cpu,host=a usage=2,load=20 1700000040\ncpu,host=b usage=5 1700000010\n\
         cpu,host=a usage=3.5 1700000060\n",
    )
    .await;
    let before = hits(&server).await;
    assert_eq!(
        latest(&server).await,
        ["a 3.5 30.0 2023-11-14T22:14:20Z", "b 5.0 null 2023-11-14T22:13:30Z"],
        "a new table's cache is kept by its writes"
    );
    assert_eq!(hits(&server).await, before + 1, "the latest-value query read the cache");
    assert_eq!(builds(&server).await, 0, "a table that started empty needs no build");
    assert_eq!(rows(&server, HOSTS).await, [json!({"host": "a"}), json!({"host": "b"})]);

    // SIGTERM persists the buffer: the next process finds files and builds the
    // cache by reading them, while a write that came first is in its buffer.
    assert!(server.terminate().success(), "{}", server.log_text());
    server.restart();
    write(&server, "cpu,host=b load=7 1700000010\ncpu,host=c usage=9,load=90 1700000000\n").await;
    assert_eq!(
        latest(&server).await,
        ["a 3.5 30.0 2023-11-14T22:14:20Z", "b 5.0 7.0 2023-11-14T22:13:30Z", "c 9.0 90.0 2023-11-14T22:13:20Z"],
        "b's last row merges its file and the buffer"
    );
    assert_eq!(builds(&server).await, 1, "one build, on the first query that wanted the cache");

    // Once built, writes keep it: newer rows, an older one, a rewrite.
    write(
        &server,
        "cpu,host=a usage=4,load=40 1700000080\ncpu,host=c usage=1,load=1 1699999990\n\
         cpu,host=b usage=6 1700000010\n",
    )
    .await;
    assert_eq!(
        latest(&server).await,
        ["a 4.0 40.0 2023-11-14T22:14:40Z", "b 6.0 7.0 2023-11-14T22:13:30Z", "c 9.0 90.0 2023-11-14T22:13:20Z"]
    );
    assert_eq!(builds(&server).await, 1, "no second build");

    // kill -9: the WAL holds what was not persisted; the new process replays
    // it and builds the cache over files and replayed rows.
    server.kill9();
    server.restart();
    assert_eq!(
        latest(&server).await,
        ["a 4.0 40.0 2023-11-14T22:14:40Z", "b 6.0 7.0 2023-11-14T22:13:30Z", "c 9.0 90.0 2023-11-14T22:13:20Z"]
    );
    assert_eq!(builds(&server).await, 1);
    let before = hits(&server).await;
    assert_eq!(rows(&server, HOSTS).await.len(), 3);
    assert_eq!(hits(&server).await, before + 1, "distinct tag values read the cache");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_takes_series_out_of_the_cache_with_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let layer = format!("name=local,type=fs,url=file://{},ttl=2s", root.display());
    let server = Server::start(
        &root,
        &["--layer", &layer, "--save-timeout-s", "0.3", "--merge-timeout-s", "0.5", "--file-grace-s", "1"],
    );
    write(&server, "cpu,host=a usage=1,load=1 1700000000\ncpu,host=b usage=2,load=2 1700000001\n").await;
    assert_eq!(rows(&server, HOSTS).await.len(), 2);
    assert_eq!(builds(&server).await, 0);
    // Two seconds after they are persisted, retention deletes the files.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "hourglass_files_expired_total").await < 1 {
        assert!(Instant::now() < deadline, "nothing expired:\n{}", server.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows(&server, HOSTS).await, Vec::<Value>::new(), "expired series are not answered from memory");
    assert_eq!(rows(&server, LASTPOINT).await, Vec::<Value>::new());
    write(&server, "cpu,host=c usage=3,load=3 1700000002\n").await;
    assert_eq!(rows(&server, HOSTS).await, [json!({"host": "c"})]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_past_the_memory_bound_answers_from_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let server = Server::start(&root, &["--last-value-cache-bytes", "4KiB"]);
    let body: String = (0..200).map(|i| format!("cpu,host=h{i:03} usage={i},load=1 1700000000\n")).collect();
    write(&server, &body).await;
    let latest = rows(&server, LASTPOINT).await;
    assert_eq!(latest.len(), 200);
    assert_eq!(latest[199]["host"], "h199");
    assert_eq!(latest, rows(&server, LASTPOINT_FROM_FILES).await);
    assert_eq!(hits(&server).await, 0, "the cache is off for the table");
    assert_eq!(metric(&server, "hourglass_last_value_cache_bytes").await, 0, "and holds nothing");
    assert!(server.log_text().contains("last-value cache is off"), "{}", server.log_text());
}
