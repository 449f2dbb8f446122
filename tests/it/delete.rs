//! DELETE against the real binary: durable across `kill -9` and restarts,
//! ordered with the writes around it, and carried out by the compactor.

use crate::support::{post, query_results, table_rows, Server};

/// 2024-01-01T23:40:00Z, 23:50:00Z and 2024-01-02T00:10:00Z.
const T1: i64 = 1_704_152_400_000_000_000;
const T2: i64 = 1_704_153_000_000_000_000;
const T3: i64 = 1_704_154_200_000_000_000;

async fn write(server: &Server, lines: &str) {
    let (status, body) = post(&server.url("/write?db=d&precision=ns"), lines.to_owned()).await;
    assert_eq!(status, 204, "{body}");
}

/// `host v w` of every row, in key order.
async fn rows(server: &Server) -> Vec<String> {
    query_results(server, "SELECT host, v, w, time FROM m ORDER BY host, time")
        .await
        .iter()
        .map(|r| format!("{} {} {}", r["host"].as_str().unwrap_or("?"), r["v"], r["w"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_survives_kill_9_and_restarts_and_a_later_write_of_its_point_is_visible() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    write(&server, &format!("m,host=a v=1,w=10 {T1}\nm,host=b v=3,w=30 {T1}\nm,host=a v=2,w=20 {T3}\n")).await;
    // In files, then a rewrite of a's T1 point and a new point in the buffer.
    assert!(server.terminate().success());
    server.restart();
    write(&server, &format!("m,host=a v=11 {T1}\nm,host=a v=5,w=50 {T2}\n")).await;
    assert_eq!(rows(&server).await, ["a 11.0 10.0", "a 5.0 50.0", "a 2.0 20.0", "b 3.0 30.0"]);

    let deleted = query_results(&server, "DELETE FROM m WHERE host = 'a' AND time <= '2024-01-01T23:50:00Z'").await;
    assert_eq!(deleted[0]["count"], 2, "{deleted:?}");
    assert_eq!(rows(&server).await, ["a 2.0 20.0", "b 3.0 30.0"]);

    // The delete is in the WAL and the catalog only: killed, the server replays it.
    server.kill9();
    server.restart();
    assert_eq!(rows(&server).await, ["a 2.0 20.0", "b 3.0 30.0"]);
    assert!(root.join("d/m/tombstones.json").exists());

    // A write of a deleted point after the delete: visible, with its own fields only.
    write(&server, &format!("m,host=a v=7 {T1}\n")).await;
    let expected = ["a 7.0 null", "a 2.0 20.0", "b 3.0 30.0"];
    assert_eq!(rows(&server).await, expected);
    server.kill9();
    server.restart();
    assert_eq!(rows(&server).await, expected);
    assert!(server.terminate().success());
    server.restart();
    assert_eq!(rows(&server).await, expected);

    // A GET may not change data.
    let (status, body) =
        crate::support::get(&server.url("/query?db=d&q=DELETE%20FROM%20m%20WHERE%20host%20%3D%20%27b%27")).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(rows(&server).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compactor_removes_deleted_rows_from_the_files_it_rewrites() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600", "--no-merges"]);
    write(&server, &format!("m,host=a v=1,w=10 {T1}\nm,host=b v=3,w=30 {T1}\n")).await;
    assert!(server.terminate().success());
    server.restart();
    write(&server, &format!("m,host=a v=5,w=50 {T2}\nm,host=b v=6,w=60 {T2}\n")).await;
    assert!(server.terminate().success());
    server.restart();
    let hosts = |root: &std::path::Path| -> Vec<String> {
        let mut hosts: Vec<String> = table_rows(root, "d", "m").iter().map(|r| r["host"].clone()).collect();
        hosts.sort();
        hosts
    };
    assert_eq!(hosts(&root), ["a", "a", "b", "b"]);

    query_results(&server, "DELETE FROM m WHERE host = 'a'").await;
    // Hidden at once, still in the files until they are rewritten.
    assert_eq!(rows(&server).await, ["b 3.0 30.0", "b 6.0 60.0"]);
    assert_eq!(hosts(&root), ["a", "a", "b", "b"]);
    // The delete's WAL record is persisted before any file is rewritten:
    // its tombstone stays.
    let live = |root: &std::path::Path| -> usize {
        let text = std::fs::read_to_string(root.join("d/m/tombstones.json")).expect("tombstones.json");
        let stored: serde_json::Value = serde_json::from_str(&text).expect("json");
        stored["tombstones"].as_array().map_or(0, Vec::len)
    };
    assert!(server.terminate().success());
    assert_eq!(live(&root), 1);
    server.restart();

    let (status, body) = post(&server.url("/admin/compact"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(hosts(&root), ["b", "b"], "{body}");
    assert_eq!(rows(&server).await, ["b 3.0 30.0", "b 6.0 60.0"]);

    // Carried out, the delete is forgotten at the next persist round, with
    // no write in between (here the one at shutdown).
    assert_eq!(live(&root), 1);
    assert!(server.terminate().success());
    assert_eq!(live(&root), 0);
    server.restart();
    assert_eq!(rows(&server).await, ["b 3.0 30.0", "b 6.0 60.0"]);
    write(&server, &format!("m,host=a v=9,w=90 {T3}\n")).await;
    assert_eq!(rows(&server).await, ["a 9.0 90.0", "b 3.0 30.0", "b 6.0 60.0"], "a write after the delete stays");
}

/// `POST /api/v2/delete?bucket=d` with a JSON body.
async fn delete_v2(server: &Server, body: serde_json::Value) -> (u16, String) {
    post(&server.url("/api/v2/delete?org=any&bucket=d"), body.to_string()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn influxdb_v2_deletes_by_predicate_and_a_partition_left_empty_leaves_the_catalog() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600", "--no-merges"]);
    write(&server, &format!("m,host=a v=1,w=10 {T1}\nm,host=b v=3,w=30 {T1}\nm,host=a v=2,w=20 {T3}\n")).await;
    write(&server, &format!("n,host=b x=1 {T1}\n")).await;
    assert!(server.terminate().success());
    server.restart();
    let late_hour = root.join("d/m/date=2024-01-02/hour=00/metadata.json");
    assert!(late_hour.exists());

    // InfluxDB's syntax: the measurement and a tag, start and stop inclusive.
    let (status, body) = delete_v2(
        &server,
        serde_json::json!({"start": "2024-01-02T00:10:00Z", "stop": "2024-01-02T00:10:00Z",
                           "predicate": "_measurement=\"m\" AND host=\"a\""}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(rows(&server).await, ["a 1.0 10.0", "b 3.0 30.0"]);

    // What it cannot say is refused, and nothing is deleted.
    for (request, status_wanted, needle) in [
        (
            serde_json::json!({"start": "2024-01-01T00:00:00Z", "stop": "2024-01-03T00:00:00Z",
                            "predicate": "host=\"a\" OR host=\"b\""}),
            400,
            "OR is not supported",
        ),
        (
            serde_json::json!({"start": "2024-01-01T00:00:00Z", "stop": "2024-01-03T00:00:00Z",
                            "predicate": "_measurement=\"m\" AND v=\"1\""}),
            400,
            "is a float column of d.m",
        ),
        (serde_json::json!({"start": "2024-01-03T00:00:00Z", "stop": "2024-01-01T00:00:00Z"}), 400, "is after stop"),
        (serde_json::json!({"start": "yesterday", "stop": "2024-01-01T00:00:00Z"}), 400, "RFC 3339"),
        (serde_json::json!({"stop": "2024-01-01T00:00:00Z"}), 400, "missing field `start`"),
    ] {
        let (status, body) = delete_v2(&server, request).await;
        assert_eq!(status, status_wanted, "{body}");
        assert!(body.contains(needle), "{needle}: {body}");
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert_eq!(parsed["code"], "invalid", "{body}");
    }
    let (status, body) = post(
        &server.url("/api/v2/delete?bucket=nope"),
        r#"{"start": "2024-01-01T00:00:00Z", "stop": "2024-01-03T00:00:00Z"}"#.to_owned(),
    )
    .await;
    assert_eq!((status, body.contains(r#"bucket \"nope\" not found"#)), (404, true), "{body}");
    assert_eq!(rows(&server).await, ["a 1.0 10.0", "b 3.0 30.0"]);

    // Without _measurement: every measurement of the bucket with such a series.
    let (status, body) = delete_v2(
        &server,
        serde_json::json!({"start": "2024-01-01T00:00:00Z", "stop": "2024-01-03T00:00:00Z", "predicate": "host=\"b\""}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(rows(&server).await, ["a 1.0 10.0"]);
    assert!(query_results(&server, "SELECT * FROM n").await.is_empty());

    // The compactor rewrites the files; the hour left with no row leaves the catalog.
    let (status, body) = post(&server.url("/admin/compact"), "").await;
    assert_eq!(status, 200, "{body}");
    assert!(!late_hour.exists(), "{body}");
    assert!(!root.join("d/n/date=2024-01-01/hour=23/metadata.json").exists(), "{body}");
    assert_eq!(table_rows(&root, "d", "m").len(), 1);
    server.kill9();
    server.restart();
    assert_eq!(rows(&server).await, ["a 1.0 10.0"]);
    assert!(query_results(&server, "SELECT * FROM n").await.is_empty());
}

/// A statement's status and body, run against database `d`.
async fn statement(server: &Server, sql: &str) -> (u16, String) {
    statement_in(server, "d", sql).await
}

/// A statement's status and body, run against `database`.
async fn statement_in(server: &Server, database: &str, sql: &str) -> (u16, String) {
    post(&server.url(&format!("/query?db={database}")), serde_json::json!({ "query": sql }).to_string()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_table_and_drop_database_take_the_rows_files_and_schema_and_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    write(&server, &format!("m,host=a v=1,w=10 {T1}\nm,host=b v=3,w=30 {T3}\nn,host=a x=1 {T1}\n")).await;
    assert!(server.terminate().success());
    server.restart();
    // Rows in files and in the buffer (and its WAL), of a float `v`.
    write(&server, &format!("m,host=c v=4.5 {T2}\n")).await;
    assert!(root.join("d/m/schema.json").exists());

    let (status, body) = statement(&server, "DROP TABLE m").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = statement(&server, "SELECT * FROM m").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not found"), "{body}");
    let tables: Vec<String> =
        query_results(&server, "SHOW TABLES").await.iter().map(|r| r["table_name"].to_string()).collect();
    assert!(!tables.iter().any(|t| t.contains("\"m\"")), "{tables:?}");
    assert!(!root.join("d/m").exists(), "the table's directory and files are gone");
    assert_eq!(query_results(&server, "SELECT count(*) AS n FROM n").await[0]["n"], 1);

    // The name is free: a new measurement with its own schema, `v` an integer now.
    write(&server, &format!("m,host=z v=7i {T1}\n")).await;
    let expect = |rows: Vec<serde_json::Value>| {
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0]["host"].as_str(), rows[0]["v"].as_i64()), (Some("z"), Some(7)), "{rows:?}");
    };
    expect(query_results(&server, "SELECT host, v FROM m").await);
    // The WAL still holds the old table's writes: a replay skips them.
    server.kill9();
    server.restart();
    expect(query_results(&server, "SELECT host, v FROM m").await);
    assert!(server.terminate().success());
    server.restart();
    expect(query_results(&server, "SELECT host, v FROM m").await);
    assert!(!root.join("d/dropped.json").exists(), "the drop is forgotten once the WAL has let go of it");

    let (status, body) = statement(&server, "DROP TABLE nope").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = statement(&server, "DROP TABLE IF EXISTS nope").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = statement(&server, "DROP VIEW m").await;
    assert!(status == 400 && body.contains("is not a view"), "{body}");

    // A database: its measurements and what SQL made in it.
    let (status, body) = statement(&server, "CREATE VIEW v AS SELECT * FROM n").await;
    assert_eq!(status, 200, "{body}");
    let (status, databases) = statement_in(&server, "default", "SHOW DATABASES").await;
    assert!(status == 200 && databases.contains("\"d\""), "{databases}");
    let (status, body) = statement(&server, "DROP DATABASE d").await;
    assert_eq!(status, 200, "{body}");
    let (status, databases) = statement_in(&server, "default", "SHOW DATABASES").await;
    assert!(status == 200 && !databases.contains("\"d\""), "{databases}");
    let (status, body) = statement(&server, "SELECT * FROM n").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = statement_in(&server, "default", "DROP DATABASE d").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = statement_in(&server, "default", "DROP DATABASE IF EXISTS d").await;
    assert_eq!(status, 200, "{body}");
    server.kill9();
    server.restart();
    let (status, body) = statement(&server, "SELECT * FROM m").await;
    assert_eq!(status, 404, "{body}");
    write(&server, &format!("n,host=q x=2 {T1}\n")).await;
    assert_eq!(query_results(&server, "SELECT count(*) AS n FROM n").await[0]["n"], 1);

    // InfluxDB 3's endpoints, as `influxdb3 delete table|database` calls them.
    let (status, body) = post(&server.url("/write?db=e"), format!("k,host=a x=1 {T1}\nj,host=a y=1 {T1}\n")).await;
    assert_eq!(status, 204, "{body}");
    let delete = |path: &str| {
        let request = crate::support::client().delete(server.url(path)).send();
        async move {
            let response = request.await.expect("DELETE");
            (response.status().as_u16(), response.text().await.unwrap_or_default())
        }
    };
    assert_eq!(delete("/api/v3/configure/table?db=e&table=k").await.0, 200);
    let (status, body) = statement_in(&server, "e", "SELECT * FROM k").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(delete("/api/v3/configure/table?db=e&table=k").await.0, 400, "already gone");
    assert_eq!(delete("/api/v3/configure/table?db=e").await.0, 400, "no table named");
    assert_eq!(delete("/api/v3/configure/database?db=e").await.0, 200);
    let (status, body) = delete("/api/v3/configure/database?db=e").await;
    assert_eq!(status, 404, "{body}");
}
