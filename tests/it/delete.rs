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

    let (status, body) = post(&server.url("/admin/compact"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(hosts(&root), ["b", "b"], "{body}");
    assert_eq!(rows(&server).await, ["b 3.0 30.0", "b 6.0 60.0"]);

    // Carried out, the delete is forgotten at the next persist.
    let live = |root: &std::path::Path| -> usize {
        let text = std::fs::read_to_string(root.join("d/m/tombstones.json")).expect("tombstones.json");
        let stored: serde_json::Value = serde_json::from_str(&text).expect("json");
        stored["tombstones"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(live(&root), 1);
    write(&server, &format!("m,host=c v=9,w=90 {T3}\n")).await;
    assert!(server.terminate().success());
    assert_eq!(live(&root), 0);
    server.restart();
    assert_eq!(rows(&server).await, ["b 3.0 30.0", "b 6.0 60.0", "c 9.0 90.0"]);
}
