//! Writes over HTTP against the real server: endpoints, precisions, gzip,
//! partial and all-or-nothing writes, names, auth, limits, and the files on disk.

use std::io::Write;

use serde_json::Value;

use crate::support::{client, listed_files, post, row, table_rows, Server};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn is_level1_file_in(path: &str, partition: &str) -> bool {
    let Some(name) = path.strip_prefix(&format!("{partition}/")) else { return false };
    let Some(id) = name.strip_suffix(".1.parquet") else { return false };
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_and_precision_lands_in_the_hour_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    let cases: &[(&str, &str, &str, &str)] = &[
        // (url path and query, body, database, expected time)
        ("/write?db=v1&precision=s&rp=autogen", "m,t=a v=1 1700000000", "v1", "2023-11-14T22:13:20Z"),
        ("/write?db=v1n&precision=n", "m,t=a v=1 1700000000123456789", "v1n", "2023-11-14T22:13:20.123456789Z"),
        ("/write?db=v1u&precision=u", "m,t=a v=1 1700000000123456", "v1u", "2023-11-14T22:13:20.123456Z"),
        ("/write?db=v1ms&precision=ms", "m,t=a v=1 1700000000123", "v1ms", "2023-11-14T22:13:20.123Z"),
        ("/write?db=v1m&precision=m", "m,t=a v=1 28333333", "v1m", "2023-11-14T22:13:00Z"),
        ("/write?db=v1h&precision=h", "m,t=a v=1 472222", "v1h", "2023-11-14T22:00:00Z"),
        ("/write?db=v1ns", "m,t=a v=1 1700000000000000001", "v1ns", "2023-11-14T22:13:20.000000001Z"),
        (
            "/api/v2/write?bucket=v2&org=anything&precision=ms",
            "m,t=a v=1 1700000000123",
            "v2",
            "2023-11-14T22:13:20.123Z",
        ),
        ("/api/v2/write?bucket=v2us&precision=us", "m,t=a v=1 1700000000123456", "v2us", "2023-11-14T22:13:20.123456Z"),
        ("/api/v2/write?bucket=v2s&precision=s", "m,t=a v=1 1700000000", "v2s", "2023-11-14T22:13:20Z"),
        ("/api/v3/write_lp?db=v3s&precision=second", "m,t=a v=1 1700000000", "v3s", "2023-11-14T22:13:20Z"),
        (
            "/api/v3/write_lp?db=v3ms&precision=millisecond",
            "m,t=a v=1 1700000000123",
            "v3ms",
            "2023-11-14T22:13:20.123Z",
        ),
        (
            "/api/v3/write_lp?db=v3us&precision=microsecond",
            "m,t=a v=1 1700000000123456",
            "v3us",
            "2023-11-14T22:13:20.123456Z",
        ),
        (
            "/api/v3/write_lp?db=v3ns&precision=nanosecond",
            "m,t=a v=1 1700000000123456789",
            "v3ns",
            "2023-11-14T22:13:20.123456789Z",
        ),
        ("/api/v3/write_lp?db=v3short&precision=ms", "m,t=a v=1 1700000000123", "v3short", "2023-11-14T22:13:20.123Z"),
        ("/api/v3/write_lp?db=v3auto", "m,t=a v=1 1700000000123", "v3auto", "2023-11-14T22:13:20.123Z"),
        ("/api/v3/write_lp?db=v3auto2&precision=auto", "m,t=a v=1 1700000000", "v3auto2", "2023-11-14T22:13:20Z"),
        ("/gigapi/write/gpath", "m,t=a v=1 1700000000000000000", "gpath", "2023-11-14T22:13:20Z"),
        ("/gigapi/write?db=gquery&precision=s", "m,t=a v=1 1700000000", "gquery", "2023-11-14T22:13:20Z"),
        ("/gigapi/insert?db=ginsert", "m,t=a v=1 1700000000000000000", "ginsert", "2023-11-14T22:13:20Z"),
        ("/write", "m,t=a v=1 1700000000000000000", "default", "2023-11-14T22:13:20Z"),
    ];
    for (path, body, _, _) in cases {
        let (status, text) = post(&server.url(path), *body).await;
        assert_eq!(status, 204, "{path}: {text}");
    }
    for (path, expected) in [
        ("/api/v2/write?bucket=x&precision=m", "invalid precision 'm'; expected one of ns, us, ms, s"),
        ("/write?db=x&precision=second", "invalid precision 'second'; expected one of n, ns, u, us, ms, s, m, h"),
        ("/api/v3/write_lp?db=x&precision=h", "invalid precision 'h'"),
        ("/api/v3/write_lp?db=x&accept_partial=maybe", "invalid accept_partial 'maybe'; expected true or false"),
    ] {
        let (status, text) = post(&server.url(path), "m v=1").await;
        assert_eq!(status, 400, "{path}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert!(body["error"].as_str().unwrap().starts_with(expected), "{path}: {text}");
    }
    assert!(server.terminate().success(), "clean shutdown exits 0");

    for (path, _, database, time) in cases {
        let files = listed_files(&root, database, "m");
        assert_eq!(files.len(), 1, "{path}: {files:?}");
        assert!(is_level1_file_in(&files[0].path, "date=2023-11-14/hour=22"), "{path}: {}", files[0].path);
        assert!(root.join(database).join("m").join(&files[0].path).is_file());
        assert_eq!(table_rows(&root, database, "m"), vec![row(&[("t", "a"), ("v", "1.0"), ("time", time)])], "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_bodies_are_accepted_and_bad_encodings_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &[]);
    let body = gzip(b"m,t=a v=1 1700000000000000000\nm,t=b v=2 1700000000000000000\n");
    let response = client()
        .post(server.url("/api/v2/write?bucket=gz"))
        .header("Content-Encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);

    let response = client()
        .post(server.url("/write?db=gz"))
        .header("Content-Encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.unwrap().contains("not valid gzip"));

    let response =
        client().post(server.url("/write?db=gz")).header("Content-Encoding", "br").body("x").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 415);
    assert!(server.terminate().success());
    assert_eq!(table_rows(&root, "gz", "m").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_and_v2_are_all_or_nothing_and_v3_writes_the_good_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &[]);
    let body = "m,t=a v=1 1700000000000000000\nm,t=b v=oops 1700000000000000000\nm,t=c v=3 1700000000000000000\n";

    let (status, text) = post(&server.url("/write?db=v1"), body).await;
    assert_eq!(status, 400);
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["lines_written"], 0);
    assert_eq!(json["data"][0]["line_number"], 2);
    assert_eq!(json["data"][0]["original_line"], "m,t=b v=oops 1700000000000000000");
    assert_eq!(json["data"][0]["error_message"], "invalid field value 'oops'");

    let (status, text) = post(&server.url("/api/v2/write?bucket=v2"), body).await;
    assert_eq!(status, 400);
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["code"], "invalid");
    assert!(json["message"].as_str().unwrap().contains("line 2: invalid field value 'oops'"), "{text}");

    let (status, text) = post(&server.url("/api/v3/write_lp?db=v3strict&accept_partial=false"), body).await;
    assert_eq!(status, 400, "{text}");

    let (status, text) = post(&server.url("/api/v3/write_lp?db=v3"), body).await;
    assert_eq!(status, 400);
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["error"], "partial write of line protocol occurred");
    assert_eq!(json["lines_written"], 2);
    assert_eq!(json["lines_rejected"], 1);
    assert_eq!(json["data"].as_array().unwrap().len(), 1);

    let (status, _) = post(&server.url("/api/v3/write_lp?db=v3&no_sync=true"), "m,t=d v=4 1700000000000000000").await;
    assert_eq!(status, 204);

    assert!(server.terminate().success());
    assert!(listed_files(&root, "v1", "m").is_empty(), "v1 wrote nothing");
    assert!(!root.join("v1").exists() && !root.join("v2").exists() && !root.join("v3strict").exists());
    let tags: Vec<String> = table_rows(&root, "v3", "m").iter().map(|r| r["t"].clone()).collect();
    assert_eq!(tags, ["a", "c", "d"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_field_keeps_its_type_across_writes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &[]);
    assert_eq!(post(&server.url("/write?db=d"), "m,host=a usage=1.5,n=1i").await.0, 204);
    let (status, text) = post(&server.url("/write?db=d"), "m,host=a usage=2i").await;
    assert_eq!(status, 400);
    assert!(text.contains("invalid column type for column 'usage', expected float, got integer"), "{text}");
    let (status, text) = post(&server.url("/write?db=d"), "m,usage=x n=2i").await;
    assert_eq!(status, 400);
    assert!(text.contains("'usage' is used both as a tag and as a field"), "{text}");

    assert!(server.terminate().success());
    server.restart();
    let (status, text) = post(&server.url("/write?db=d"), "m n=\"text\"").await;
    assert_eq!(status, 400);
    assert!(text.contains("expected integer, got string"), "{text}");
    assert_eq!(post(&server.url("/write?db=d"), "m,host=b usage=3,new_field=true").await.0, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn names_cannot_escape_the_data_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &[]);
    for db in ["..", "a/b", "../x", "_wal", ".hidden", "a%00b", "%2e%2e"] {
        let (status, text) = post(&server.url(&format!("/write?db={db}")), "m v=1").await;
        assert_eq!(status, 400, "db {db}: {text}");
    }
    let (status, text) = post(&server.url("/gigapi/write/..%2F..%2Fetc"), "m v=1").await;
    assert_eq!(status, 400, "{text}");
    for line in ["../etc v=1", "a/b v=1", r"..\,x v=1", "m,../t=1 v=1", "m ../f=1"] {
        let (status, text) = post(&server.url("/write?db=ok"), line).await;
        assert_eq!(status, 400, "{line}: {text}");
    }
    assert!(server.terminate().success());
    let outside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(outside.iter().all(|n| n == "data" || n.to_string_lossy().starts_with("data.log")), "{outside:?}");
    let mut inside: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name()).collect();
    inside.sort();
    assert_eq!(
        inside,
        [".hourglass.lock", "_catalog", "_tmp", "_wal"],
        "nothing but the server's own files was created: {inside:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_checked_when_a_user_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[],
        &[("HTTP_BASIC_AUTH_USERNAME", "alice"), ("HTTP_BASIC_AUTH_PASSWORD", "s3cret")],
    );
    let url = server.url("/write?db=d");
    let http = client();
    let response = http.post(&url).body("m v=1").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Basic realm=\"hourglassdb\"");
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(http.post(&url).basic_auth("alice", Some("wrong")).body("m v=1").send().await.unwrap()), 401);
    assert_eq!(status(http.post(&url).basic_auth("bob", Some("s3cret")).body("m v=1").send().await.unwrap()), 401);
    assert_eq!(status(http.post(&url).basic_auth("alice", Some("s3cret")).body("m v=1").send().await.unwrap()), 204);
    assert_eq!(status(http.post(format!("{url}&u=alice&p=s3cret")).body("m v=1").send().await.unwrap()), 204);
    assert_eq!(status(http.post(format!("{url}&u=alice&p=nope")).body("m v=1").send().await.unwrap()), 401);
    let v2 = server.url("/api/v2/write?bucket=d");
    assert_eq!(status(http.post(&v2).header("Authorization", "Token s3cret").body("m v=1").send().await.unwrap()), 204);
    assert_eq!(
        status(http.post(&v2).header("Authorization", "Token alice:s3cret").body("m v=1").send().await.unwrap()),
        204
    );
    assert_eq!(
        status(http.post(&v2).header("Authorization", "Bearer s3cret").body("m v=1").send().await.unwrap()),
        204
    );
    assert_eq!(status(http.post(&v2).header("Authorization", "Token guess").body("m v=1").send().await.unwrap()), 401);
    assert_eq!(status(http.get(server.url("/health")).send().await.unwrap()), 200);
    assert_eq!(status(http.get(server.url("/ping")).send().await.unwrap()), 204);
    assert_eq!(status(http.get(server.url("/metrics")).send().await.unwrap()), 401);
    assert_eq!(status(http.get(server.url("/metrics")).basic_auth("alice", Some("s3cret")).send().await.unwrap()), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_past_the_limit_get_413_compressed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--max-body-bytes", "1KiB"]);
    let big = "m,t=a v=1\n".repeat(200);
    let (status, text) = post(&server.url("/write?db=d"), big.clone()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("HOURGLASS_MAX_BODY_BYTES"));
    let bomb = gzip(big.as_bytes());
    assert!(bomb.len() < 1024, "the compressed body is under the limit");
    let response =
        client().post(server.url("/write?db=d")).header("Content-Encoding", "gzip").body(bomb).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(post(&server.url("/write?db=d"), "m,t=a v=1").await.0, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_gives_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--max-buffer-bytes", "1", "--save-timeout-s", "3600"]);
    assert_eq!(post(&server.url("/write?db=d"), "m v=1").await.0, 204);
    let response = client().post(server.url("/write?db=d")).body("m v=2").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.text().await.unwrap().contains("HOURGLASS_MAX_BUFFER_BYTES"));
    let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hourglass_writes_refused_buffer_full_total 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_ping_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let health: Value =
        serde_json::from_str(&client().get(server.url("/health")).send().await.unwrap().text().await.unwrap()).unwrap();
    assert_eq!(health["status"], "pass");
    assert_eq!(health["name"], "hourglassdb");
    let ping = client().get(server.url("/ping")).send().await.unwrap();
    assert_eq!(ping.status().as_u16(), 204);
    let head = client().head(server.url("/ping")).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 204);

    let body = "m,t=a v=1 1700000000000000000\nm,t=b v=2 1700000000000000000\nbad\n";
    assert_eq!(post(&server.url("/api/v3/write_lp?db=d"), body).await.0, 400);
    assert!(crate::support::wait_for(std::time::Duration::from_secs(10), || {
        !listed_files(&server.root, "d", "m").is_empty()
    }));
    let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("hourglass_lines_accepted_total"), 2);
    assert_eq!(value("hourglass_lines_rejected_total"), 1);
    assert_eq!(value("hourglass_rows_written_total"), 2);
    assert_eq!(value("hourglass_write_bytes_total"), body.len() as u64);
    assert_eq!(value("hourglass_wal_records_total"), 1);
    assert!(value("hourglass_wal_fsyncs_total") >= 1);
    assert!(value("hourglass_wal_bytes_total") > 0);
    assert_eq!(value("hourglass_persisted_files_total"), 1);
    assert_eq!(value("hourglass_persisted_rows_total"), 2);
    assert!(value("hourglass_persisted_bytes_total") > 0);
    assert_eq!(value("hourglass_buffered_bytes"), 0, "everything written is in Parquet");
    assert_eq!(value("hourglass_queries_running"), 0);
    assert_eq!(value("hourglass_queries_queued"), 0);

    let response = client().get(server.url("/nope")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn readonly_mode_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut writer = Server::start(&root, &[]);
    assert_eq!(post(&writer.url("/write?db=d"), "m v=1").await.0, 204);
    assert!(writer.terminate().success());
    let server = Server::start(&root, &["--mode", "readonly"]);
    let (status, text) = post(&server.url("/write?db=d"), "m v=1").await;
    assert_eq!(status, 403);
    assert!(text.contains("readonly"), "{text}");
    // SQL INSERT is a write too.
    let (status, text) = post(&server.url("/query?db=d"), r#"{"query": "INSERT INTO m (v) VALUES (2)"}"#).await;
    assert_eq!(status, 400);
    assert!(text.contains("does not take writes"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_sorted_by_tags_then_time_and_the_last_write_wins() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    let url = server.url("/write?db=d&precision=s");
    assert_eq!(
        post(&url, "m,host=b v=1,w=10 1700000003\nm,host=a v=1 1700000002\nm,host=b v=2 1700000001").await.0,
        204
    );
    // Rewrites: v replaced, w kept from the earlier write, a new field joins.
    assert_eq!(post(&url, "m,host=b v=9 1700000003\nm,host=a v=5,x=\"new\" 1700000002").await.0, 204);
    assert!(server.terminate().success());
    let files = listed_files(&root, "d", "m");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].row_count, 3);
    assert_eq!((files[0].min_time, files[0].max_time), (1_700_000_001_000_000_000, 1_700_000_003_000_000_000));
    assert_eq!(
        table_rows(&root, "d", "m"),
        vec![
            row(&[("host", "a"), ("v", "5.0"), ("x", "new"), ("time", "2023-11-14T22:13:22Z")]),
            row(&[("host", "b"), ("v", "2.0"), ("time", "2023-11-14T22:13:21Z")]),
            row(&[("host", "b"), ("v", "9.0"), ("w", "10.0"), ("time", "2023-11-14T22:13:23Z")]),
        ]
    );
    let wal: Vec<_> = std::fs::read_dir(root.join("_wal")).unwrap().flatten().collect();
    assert_eq!(wal.len(), 1, "only the empty active segment remains after the shutdown persist");
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_spanning_hours_go_to_one_file_per_hour_partition() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    let body = "m v=1 1700000000\nm v=2 1700003600\nm v=3 1699999999\nm v=4 1700086400\n";
    assert_eq!(post(&server.url("/write?db=d&precision=s"), body).await.0, 204);
    assert!(server.terminate().success());
    let paths: Vec<String> =
        listed_files(&root, "d", "m").iter().map(|f| f.path.rsplit_once('/').unwrap().0.to_string()).collect();
    assert_eq!(
        paths,
        ["date=2023-11-14/hour=22", "date=2023-11-14/hour=23", "date=2023-11-15/hour=22"],
        "1699999999 and 1700000000 share hour 22"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_and_last_representable_hours_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    let body = "m,end=first v=1 -9223372036854775808\nm,end=last v=2 9223372036854775807\n";
    assert_eq!(post(&server.url("/write?db=d"), body).await.0, 204);
    assert!(server.terminate().success());
    server.restart();
    assert!(server.terminate().success());
    let mut paths: Vec<String> = listed_files(&root, "d", "m").iter().map(|f| f.path.clone()).collect();
    paths.sort();
    assert!(paths[0].starts_with("date=1677-09-21/hour=00/"), "{paths:?}");
    assert!(paths[1].starts_with("date=2262-04-11/hour=23/"), "{paths:?}");
    assert_eq!(table_rows(&root, "d", "m").len(), 2);
}

/// Reads from `stream` until what was read holds `needle`, or the server
/// sends something else first; returns what was read.
fn read_until(stream: &mut std::net::TcpStream, needle: &str) -> String {
    use std::io::Read;
    let mut read = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&read).contains(needle) {
        let n = stream.read(&mut buffer).expect("an answer");
        if n == 0 {
            break;
        }
        read.extend_from_slice(&buffer[..n]);
        if read.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&read).into_owned()
}

/// Sends the head of a write with `Expect: 100-continue`; returns the
/// connection and the server's first answer.
fn write_head(port: u16, body_length: usize) -> (std::net::TcpStream, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /write?db=q HTTP/1.1\r\nHost: x\r\nContent-Length: {body_length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let answer = read_until(&mut stream, "\r\n\r\n");
    (stream, answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_waiting_for_its_place_has_not_read_its_body() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&dir.path().join("data"), &["--max-concurrent-writes", "1", "--write-queue-timeout-s", "1"]);
    let body = b"m v=1 1700000000000000000\n";
    let port = server.http_port;
    // The first write gets the one place: the server asks for its body (100 Continue)...
    let (mut first, answer) = tokio::task::spawn_blocking(move || write_head(port, body.len())).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
    // ...while the second waits, its body unread, and is refused when its wait is over.
    let (_, answer) = tokio::task::spawn_blocking(move || write_head(port, body.len())).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "the waiting write's body was asked for: {answer}");
    first.write_all(body).unwrap();
    let answer = tokio::task::spawn_blocking(move || read_until(&mut first, "HTTP/1.1 204")).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

/// The buffer's limit bounds the whole write path: a body being read holds
/// its place in it, counted from its declared length before it is asked
/// for, so a second write is refused before it sends its body while the
/// first is still arriving, and the first, alone, still goes in.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_in_flight_count_against_the_buffer_limit() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--max-buffer-bytes", "1MiB", "--save-timeout-s", "3600"]);
    let body: String =
        (0..15_000).map(|n| format!("m,host=h{} v={n} {}\n", n % 100, 1_700_000_000_000_000_000i64 + n)).collect();
    let body = body.into_bytes();
    let port = server.http_port;
    let length = body.len();
    let (mut first, answer) = tokio::task::spawn_blocking(move || write_head(port, length)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
    // Asked for its body, the write holds three times its declared size.
    let held = crate::support::metric(&server, "hourglass_write_held_bytes").await;
    assert_eq!(held, 3 * length as u64);

    let (_, answer) = tokio::task::spawn_blocking(move || write_head(port, 100)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "the second write's body was asked for: {answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert_eq!(crate::support::metric(&server, "hourglass_writes_refused_buffer_full_total").await, 1);

    first.write_all(&body).unwrap();
    let answer = tokio::task::spawn_blocking(move || read_until(&mut first, "HTTP/1.1 204")).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "a write is not refused for its own size: {answer}");
    // Once its rows are in the buffer the write holds nothing else.
    assert_eq!(
        crate::support::metric(&server, "hourglass_write_held_bytes").await,
        crate::support::metric(&server, "hourglass_buffered_bytes").await
    );
    assert_eq!(crate::support::metric(&server, "hourglass_rows_written_total").await, 15_000);
}

/// What Telegraf's InfluxDB v1 output sends before it writes: `CREATE
/// DATABASE` as a form to `/query`, answered as InfluxDB 1.x answers it;
/// `SHOW DATABASES` in InfluxDB 1.x's shape; other InfluxQL refused with a
/// pointer to SQL.
#[tokio::test(flavor = "multi_thread")]
async fn telegraf_creates_its_database_with_influxql_then_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let influxql = |q: &str| {
        client()
            .post(server.url("/query"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form_urlencoded::Serializer::new(String::new()).append_pair("q", q).finish())
            .send()
    };
    let response = influxql(r#"CREATE DATABASE "telegraf""#).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({"results": [{"statement_id": 0}]}));

    let (status, text) = post(&server.url("/write?db=telegraf"), "cpu,host=a usage_user=1.5 1700000000000000000").await;
    assert_eq!(status, 204, "{text}");
    let shown: Value = serde_json::from_str(&influxql("SHOW DATABASES").await.unwrap().text().await.unwrap()).unwrap();
    let names = &shown["results"][0]["series"][0]["values"];
    assert!(names.as_array().unwrap().iter().any(|v| v[0] == "telegraf"), "{shown}");

    // In the query string too, as older clients send it.
    let (status, text) = post(&server.url("/query?q=CREATE%20DATABASE%20metrics"), String::new()).await;
    assert_eq!(status, 200, "{text}");
    for (q, needle) in [("SELECT mean(usage_user) FROM cpu", "SQL"), (r#"CREATE DATABASE "a/b""#, "'/'")] {
        let response = influxql(q).await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{q}");
        let text = response.text().await.unwrap();
        assert!(text.contains(needle), "{q}: {text}");
    }
    // GigAPI's JSON body is still SQL.
    let (status, text) = post(&server.url("/query?db=telegraf"), r#"{"query": "SELECT count(*) AS n FROM cpu"}"#).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"n\":1"), "{text}");
}
