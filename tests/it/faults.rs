//! Disk faults injected into the real server (src/faults.rs): a WAL fsync
//! that fails, and a catalog commit whose outcome is unknown. The server is
//! the test build's, with the `fault-injection` feature tests/run turns on.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{arm_failpoint as arm, client, json_of, listed_files, post, JsonBody, Server};

/// The number in the first row of a query's JSON result.
async fn count(server: &Server, database: &str, sql: &str) -> i64 {
    let response = client()
        .post(server.url(&format!("/query?db={database}")))
        .json_body(&serde_json::json!({ "query": sql }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = json_of(response).await;
    assert_eq!(status, 200, "{sql}: {body}");
    body["results"][0]["n"].as_i64().unwrap_or_else(|| panic!("{sql}: {body}"))
}

async fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let response = client().get(server.url(path)).send().await.unwrap();
    (response.status().as_u16(), json_of(response).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_whose_wal_fsync_fails_are_never_visible_and_the_wal_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &["--save-timeout-s", "3600"]);
    assert_eq!(post(&server.url("/write?db=w"), "m,host=a v=1 1700000000000000000").await.0, 204);

    // The next group stalls between its append and its fsync, which then
    // fails: the window in which the old WAL showed the rows.
    arm(&server, "wal-before-fsync", "sleep(3000)").await;
    arm(&server, "wal-fsync", "return").await;
    let write = tokio::spawn({
        let url = server.url("/write?db=w");
        async move { post(&url, "m,host=b v=2 1700000000000000000").await }
    });
    // Once the second record is appended, a query runs inside the window.
    let started = Instant::now();
    while crate::support::metric(&server, "hourglass_wal_records_total").await < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "the second write was never appended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut queries = 0;
    while !write.is_finished() {
        let seen = count(&server, "w", "SELECT count(*) AS n FROM m WHERE host = 'b'").await;
        assert_eq!(seen, 0, "a query saw a row whose WAL fsync had not succeeded");
        queries += 1;
    }
    let (status, body) = write.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("WAL fsync failed") && body.contains("removed from the WAL"), "{body}");
    assert!(queries >= 1, "no query ran between the append and the failed fsync");
    assert_eq!(count(&server, "w", "SELECT count(*) AS n FROM m WHERE host = 'b'").await, 0);
    assert_eq!(count(&server, "w", "SELECT count(*) AS n FROM m WHERE host = 'a'").await, 1);
    assert_eq!(crate::support::metric(&server, "hourglass_wal_writes_refused_total").await, 1);

    // The segment was cut back to its last good fsync, so the WAL goes on.
    arm(&server, "wal-before-fsync", "off").await;
    arm(&server, "wal-fsync", "off").await;
    assert_eq!(post(&server.url("/write?db=w"), "m,host=c v=3 1700000000000000000").await.0, 204);
    let (status, health) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{health}");

    // And the refused write's record is gone for good: a restart replays the
    // others and not it.
    server.kill9();
    server.restart();
    assert_eq!(count(&server, "w", "SELECT count(*) AS n FROM m WHERE host = 'b'").await, 0);
    assert_eq!(count(&server, "w", "SELECT count(*) AS n FROM m").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_commit_of_unknown_outcome_stops_the_catalog_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    // Files become orphans after 1 s; the background compactor is off, so
    // every merge and sweep is the test's.
    let args = ["--save-timeout-s", "0.2", "--file-grace-s", "1", "--query-timeout-s", "1", "--no-merges", "true"];
    let mut server = Server::start(&root, &args);
    for batch in 0..3 {
        let lines: String = (0..50).map(|i| format!("m,host=h{i} v={batch} {}\n", 1_700_000_000 + i)).collect();
        assert_eq!(post(&server.url("/write?db=c&precision=s"), lines).await.0, 204);
        let wanted = batch + 1;
        let persisted =
            crate::support::wait_for(Duration::from_secs(30), || listed_files(&root, "c", "m").len() == wanted);
        assert!(persisted, "batch {batch} was not persisted");
    }
    let before = listed_files(&root, "c", "m");

    // The merge's commit renames its metadata.json into place, and then the
    // fsync of the directory fails: the commit may or may not be on disk.
    arm(&server, "fs-sync-dir-after-rename", "return(metadata.json)").await;
    let report: Value = client().post(server.url("/admin/compact")).send().await.map(json_of).unwrap().await;
    assert!(report["merges"].as_array().is_some_and(|m| m.is_empty()), "{report}");
    assert!(report["errors"].to_string().contains("may or may not"), "{report}");
    arm(&server, "fs-sync-dir-after-rename", "off").await;

    let (status, health) = get_json(&server, "/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["checks"][0]["name"], "catalog", "{health}");
    let (status, ready) = get_json(&server, "/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert!(server.log_text().contains("the catalog stopped"), "the log says why");

    // Past the grace period nothing is swept or merged on the strength of
    // what memory holds: the on-disk catalog names the merged file now, and
    // the inputs would come back if the rename were lost.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report: Value = client().post(server.url("/admin/compact")).send().await.map(json_of).unwrap().await;
    assert_eq!(report["orphans_deleted"], 0, "{report}");
    assert_eq!(report["files_deleted"], 0, "{report}");
    assert!(report["errors"].to_string().contains("catalog is stopped"), "{report}");
    let on_disk = |root: &std::path::Path| {
        before.iter().chain(listed_files(root, "c", "m").iter()).all(|f| root.join("c/m").join(&f.path).is_file())
    };
    assert!(on_disk(&root), "a file listed before or after the failed commit is gone");

    // A restart reloads the catalog from disk: every file it lists is there,
    // and every row is counted once.
    server.kill9();
    server.restart();
    for file in listed_files(&root, "c", "m") {
        assert!(root.join("c/m").join(&file.path).is_file(), "{} is listed but missing", file.path);
    }
    assert_eq!(count(&server, "c", "SELECT count(*) AS n FROM m").await, 50);
    assert_eq!(count(&server, "c", "SELECT count(*) AS n FROM m WHERE v = 2").await, 50, "the last write wins");
    let (status, _) = get_json(&server, "/health").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_table_as_of_unknown_outcome_keeps_its_files_and_stops_ddl() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &[]);
    assert_eq!(post(&server.url("/write?db=r"), "m,host=a v=1 1700000000000000000").await.0, 204);
    arm(&server, "fs-sync-dir-after-rename", "return(relations.json)").await;
    let sql = |q: &str| {
        let url = server.url("/query?db=r");
        let body = serde_json::json!({ "query": q });
        async move { client().post(url).json_body(&body).send().await.unwrap() }
    };
    let response = sql("CREATE TABLE snapshot AS SELECT host, v FROM m").await;
    assert_eq!(response.status().as_u16(), 500);
    assert!(json_of(response).await.to_string().contains("may or may not"));
    arm(&server, "fs-sync-dir-after-rename", "off").await;
    let response = sql("CREATE VIEW later AS SELECT 1").await;
    assert_eq!(response.status().as_u16(), 500, "DDL waits for a restart");
    let (status, health) = get_json(&server, "/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["checks"][0]["name"], "relations", "{health}");

    // The definitions on disk name the table (the rename happened): after a
    // restart it reads back whole, its files were kept.
    server.kill9();
    server.restart();
    assert_eq!(count(&server, "r", "SELECT count(*) AS n FROM snapshot").await, 1);
}
