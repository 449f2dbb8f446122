//! Queries over HTTP against the real server: results in every format, time
//! pruning, read-your-writes, last-write-wins, schema evolution, errors, limits.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use serde_json::{json, Value};

use crate::support::{batch_rows, client, json_of, post, row, JsonBody, Server};

type Row = BTreeMap<String, String>;

/// Runs `sql` through `POST /query` and returns the status and body.
async fn query(server: &Server, db: &str, format: &str, sql: &str) -> (u16, Vec<u8>) {
    let response = client()
        .post(server.url(&format!("/query?db={db}&format={format}")))
        .header("Content-Type", "application/json")
        .body(json!({ "query": sql }).to_string())
        .send()
        .await
        .expect("query request");
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap_or_default().to_vec())
}

/// The `results` of a GigAPI JSON answer; panics on an error status.
async fn results(server: &Server, db: &str, sql: &str) -> Vec<Value> {
    let (status, body) = query(server, db, "json", sql).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{sql}: {text}");
    let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{sql}: {e}: {text}"));
    parsed["results"].as_array().cloned().unwrap_or_default()
}

/// The error status and message of a failing query.
async fn query_error(server: &Server, db: &str, sql: &str) -> (u16, String) {
    let (status, body) = query(server, db, "json", sql).await;
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{sql}: not JSON"));
    (status, parsed["error"].as_str().unwrap_or_default().to_owned())
}

fn json_rows(values: &[Value]) -> Vec<Row> {
    values
        .iter()
        .map(|v| {
            v.as_object()
                .unwrap()
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
                .collect()
        })
        .collect()
}

fn csv_rows(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    lines
        .map(|line| {
            header
                .iter()
                .zip(line.split(','))
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Arrow rows with times in the JSON spelling, for comparing formats.
fn arrow_rows(batches: &[RecordBatch]) -> Vec<Row> {
    batches
        .iter()
        .flat_map(batch_rows)
        .map(|mut r| {
            if let Some(t) = r.get_mut("time") {
                let parsed = chrono::DateTime::parse_from_rfc3339(t).unwrap();
                *t = parsed.to_utc().format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
            }
            r
        })
        .collect()
}

const CPU: &str = "\
cpu,host=a,region=eu usage=10.5,count=1i,ok=true 1700000000
cpu,host=b,region=eu usage=20,count=2i,ok=false 1700000060
cpu,host=c,region=us usage=30,count=3i 1700000120
cpu,host=a,region=eu usage=40,count=4i,ok=true 1700003600
cpu,host=b,region=eu usage=50,count=5i 1700003660
cpu,host=c,region=us usage=60,count=-6i,ok=true 1700007200
";

#[tokio::test(flavor = "multi_thread")]
async fn written_rows_come_back_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    assert_eq!(post(&server.url("/write?db=q&precision=s"), CPU).await.0, 204);

    let totals =
        results(&server, "q", "SELECT count(*) AS n, sum(usage) AS s, min(count) AS lo, max(usage) AS hi FROM cpu")
            .await;
    assert_eq!(totals, vec![json!({"n": 6, "s": 210.5, "lo": -6, "hi": 60.0})], "64-bit integers are JSON numbers");

    let by_host =
        results(&server, "q", "SELECT host, avg(usage) AS a, count(*) AS n FROM cpu GROUP BY host ORDER BY host").await;
    assert_eq!(
        by_host,
        vec![
            json!({"host": "a", "a": 25.25, "n": 2}),
            json!({"host": "b", "a": 35.0, "n": 2}),
            json!({"host": "c", "a": 45.0, "n": 2})
        ]
    );
    let by_region =
        results(&server, "q", "SELECT region, max(count) AS m FROM cpu WHERE ok GROUP BY region ORDER BY region").await;
    assert_eq!(by_region, vec![json!({"region": "eu", "m": 4}), json!({"region": "us", "m": -6})]);

    let buckets = results(
        &server,
        "q",
        "SELECT time_bucket('1 hour', time) AS hour, count(*) AS n, max(usage) AS top FROM cpu GROUP BY hour ORDER BY hour",
    )
    .await;
    assert_eq!(
        buckets,
        vec![
            json!({"hour": "2023-11-14T22:00:00.000000000Z", "n": 3, "top": 30.0}),
            json!({"hour": "2023-11-14T23:00:00.000000000Z", "n": 2, "top": 50.0}),
            json!({"hour": "2023-11-15T00:00:00.000000000Z", "n": 1, "top": 60.0}),
        ]
    );

    let sql = "SELECT host, region, usage, count, ok, time FROM cpu ORDER BY time";
    let expected = vec![
        row(&[
            ("host", "a"),
            ("region", "eu"),
            ("usage", "10.5"),
            ("count", "1"),
            ("ok", "true"),
            ("time", "2023-11-14T22:13:20.000000000Z"),
        ]),
        row(&[
            ("host", "b"),
            ("region", "eu"),
            ("usage", "20.0"),
            ("count", "2"),
            ("ok", "false"),
            ("time", "2023-11-14T22:14:20.000000000Z"),
        ]),
        row(&[
            ("host", "c"),
            ("region", "us"),
            ("usage", "30.0"),
            ("count", "3"),
            ("time", "2023-11-14T22:15:20.000000000Z"),
        ]),
        row(&[
            ("host", "a"),
            ("region", "eu"),
            ("usage", "40.0"),
            ("count", "4"),
            ("ok", "true"),
            ("time", "2023-11-14T23:13:20.000000000Z"),
        ]),
        row(&[
            ("host", "b"),
            ("region", "eu"),
            ("usage", "50.0"),
            ("count", "5"),
            ("time", "2023-11-14T23:14:20.000000000Z"),
        ]),
        row(&[
            ("host", "c"),
            ("region", "us"),
            ("usage", "60.0"),
            ("count", "-6"),
            ("ok", "true"),
            ("time", "2023-11-15T00:13:20.000000000Z"),
        ]),
    ];
    assert_eq!(json_rows(&results(&server, "q", sql).await), expected, "json");

    let (status, body) = query(&server, "q", "ndjson", sql).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> =
        String::from_utf8(body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(json_rows(&lines), expected, "ndjson");

    let (status, body) = query(&server, "q", "csv", sql).await;
    assert_eq!(status, 200);
    assert_eq!(csv_rows(&String::from_utf8(body).unwrap()), expected, "csv");

    let (status, body) = query(&server, "q", "arrow", sql).await;
    assert_eq!(status, 200);
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches[0].schema().field_with_name("time").unwrap().data_type().to_string(), "Timestamp(ns, \"UTC\")");
    assert_eq!(arrow_rows(&batches), expected, "arrow");

    let (status, body) = query(&server, "q", "parquet", sql).await;
    assert_eq!(status, 200);
    let batches: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(body))
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(arrow_rows(&batches), expected, "parquet");

    let (status, body) = query(&server, "q", "pretty", sql).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("| host | region | usage | count | ok    | time                           |"), "{text}");

    // InfluxDB 3's endpoint, GET and POST, every format.
    let influx = |format: &str| {
        let url = server.url(&format!("/api/v3/query_sql?db=q&format={format}&q={}", urlencode(sql)));
        async move {
            let response = client().get(url).send().await.unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
        }
    };
    let (status, body) = influx("json").await;
    assert_eq!(status, 200);
    assert_eq!(json_rows(serde_json::from_slice::<Value>(&body).unwrap().as_array().unwrap()), expected, "v3 json");
    let (_, body) = influx("jsonl").await;
    let lines: Vec<Value> =
        String::from_utf8(body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(json_rows(&lines), expected, "v3 jsonl");
    let (_, body) = influx("csv").await;
    assert_eq!(csv_rows(&String::from_utf8(body).unwrap()), expected, "v3 csv");
    let (_, body) = influx("parquet").await;
    assert!(body.starts_with(b"PAR1"));
    let (_, body) = influx("pretty").await;
    assert!(String::from_utf8(body).unwrap().contains("| a    | eu     | 10.5"));
    let response = client()
        .post(server.url("/api/v3/query_sql"))
        .header("Content-Type", "application/json")
        .body(json!({"db": "q", "q": "SELECT count(*) AS n FROM cpu", "format": "json"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), r#"[{"n":6}]"#);

    // An empty result still has its shape.
    let empty = "SELECT host, usage FROM cpu WHERE usage > 1000";
    assert_eq!(results(&server, "q", empty).await, Vec::<Value>::new());
    let (_, body) = query(&server, "q", "csv", empty).await;
    assert_eq!(String::from_utf8(body).unwrap(), "host,usage\n");
    let (_, body) = query(&server, "q", "arrow", empty).await;
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    assert_eq!(reader.schema().fields().len(), 2);

    // SHOW and DESCRIBE with GigAPI's column names.
    assert_eq!(
        results(&server, "q", "SHOW DATABASES").await,
        vec![json!({"database_name": "default"}), json!({"database_name": "q"})]
    );
    assert_eq!(results(&server, "q", "SHOW TABLES").await, vec![json!({"table_name": "cpu"})]);
    let describe = results(&server, "q", "DESCRIBE cpu").await;
    assert_eq!(describe[0], json!({"column_name": "host", "column_type": "VARCHAR", "null": "YES", "kind": "tag"}));
    assert_eq!(describe[2], json!({"column_name": "usage", "column_type": "DOUBLE", "null": "YES", "kind": "field"}));
    assert_eq!(
        describe[5],
        json!({"column_name": "time", "column_type": "TIMESTAMP WITH TIME ZONE", "null": "NO", "kind": "time"})
    );
    let described = results(&server, "q", "DESCRIBE SELECT host, count FROM cpu LIMIT 1").await;
    assert_eq!(described.len(), 2);
    assert_eq!(described[1]["column_type"], "BIGINT");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The `TimeseriesScanExec` line and the scanned-file count of an EXPLAIN ANALYZE.
async fn pruning(server: &Server, db: &str, sql: &str) -> (String, usize) {
    let plan = results(server, db, &format!("EXPLAIN ANALYZE {sql}")).await;
    let text: String =
        plan.iter().map(|r| r["plan"].as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>().join("\n");
    let scan = text
        .lines()
        .find(|l| l.contains("TimeseriesScanExec"))
        .unwrap_or_else(|| panic!("no scan in\n{text}"))
        .trim()
        .to_owned();
    let summary = scan.split(", metrics=").next().unwrap_or_default().to_owned();
    let opened: usize = text
        .lines()
        .filter(|l| l.contains("DataSourceExec") && l.contains("file_groups"))
        .map(|l| l.matches(".parquet").count())
        .sum();
    (summary, opened)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_hour_query_opens_only_that_hours_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    // Ten days, one row per hour on each of two hosts: 240 hour partitions.
    let start = 1_700_006_400; // 2023-11-15T00:00:00Z
    let body: String = (0..240)
        .flat_map(|h| ["a", "b"].map(move |host| format!("m,host={host} v={h} {}\n", start + h * 3600 + 60)))
        .collect();
    assert_eq!(post(&server.url("/write?db=p&precision=s"), body).await.0, 204);
    assert!(server.terminate().success());
    server.restart();

    let one_hour = "SELECT count(*) AS n, min(v) AS v FROM m WHERE time >= '2023-11-17T05:00:00Z' AND time < '2023-11-17T06:00:00Z'";
    assert_eq!(results(&server, "p", one_hour).await, vec![json!({"n": 2, "v": 53.0})]);
    let (scan, opened) = pruning(&server, "p", one_hour).await;
    assert!(scan.contains("partitions=1 of 240 (239 pruned), files=1 of 240 (239 pruned)"), "{scan}");
    assert_eq!(opened, 1, "one Parquet file is opened");

    // Every way of saying the same hour (or hours) prunes the same way.
    let cases: &[(&str, &str, i64)] = &[
        ("time BETWEEN '2023-11-17T05:00:00Z' AND '2023-11-17T05:59:59Z'", "partitions=1 of 240", 2),
        ("time >= to_timestamp('2023-11-17T05:00:00Z') AND time < to_timestamp('2023-11-17T06:00:00Z')", "partitions=1 of 240", 2),
        ("time >= CAST('2023-11-17T05:00:00Z' AS TIMESTAMP) AND time < '2023-11-17T06:00:00Z'::timestamptz", "partitions=1 of 240", 2),
        ("time >= epoch_ns('2023-11-17T05:00:00'::TIMESTAMP) AND time < epoch_ns('2023-11-17T06:00:00'::TIMESTAMP)", "partitions=1 of 240", 2),
        ("time >= 1700197200000000000 AND time < 1700200800000000000", "partitions=1 of 240", 2),
        ("(time >= '2023-11-15T03:00:00Z' AND time < '2023-11-15T04:00:00Z') OR (time >= '2023-11-20T10:00:00Z' AND time < '2023-11-20T12:00:00Z')", "partitions=3 of 240", 6),
        ("time > '2023-11-24T22:00:00Z'", "partitions=2 of 240", 4),
        ("time < '2023-11-15T01:00:00Z'", "partitions=1 of 240", 2),
        ("time > now() - interval '1 hour'", "partitions=0 of 240", 0),
        ("time > '2023-11-17T05:00:00Z' AND time < '2023-11-17T04:00:00Z'", "partitions=0 of 240", 0),
        ("host = 'a' AND time >= '2023-11-17T05:00:00Z' AND time < '2023-11-17T06:00:00Z'", "partitions=1 of 240", 1),
        ("host = 'a'", "partitions=240 of 240", 240),
        ("v > 100 OR time < '2023-11-15T01:00:00Z'", "partitions=240 of 240", 280),
    ];
    for (filter, expected_scan, expected_rows) in cases {
        let sql = format!("SELECT count(*) AS n FROM m WHERE {filter}");
        assert_eq!(results(&server, "p", &sql).await, vec![json!({ "n": expected_rows })], "{filter}");
        let (scan, _) = pruning(&server, "p", &sql).await;
        assert!(scan.contains(expected_scan), "{filter}: {scan}");
    }
}

/// The rows of `the_last_write_wins...` after the rewrite, from wherever they are read.
async fn check_rewritten_rows(server: &Server, all: &str, expected: &[Row], label: &str) {
    assert_eq!(json_rows(&results(server, "d", all).await), expected.to_vec(), "{label}: file and buffer");
    assert_eq!(results(server, "d", "SELECT count(*) AS n FROM m").await, vec![json!({"n": 3})], "{label}");
    // A filter on a rewritten field sees only the latest value.
    assert_eq!(results(server, "d", "SELECT host FROM m WHERE v < 2").await, Vec::<Value>::new(), "{label}");
    assert_eq!(
        results(server, "d", "SELECT host, w FROM m WHERE v > 4").await,
        vec![json!({"host": "a", "w": 10.0})],
        "{label}"
    );
    assert_eq!(
        results(server, "d", "SELECT host FROM m ORDER BY v DESC LIMIT 1").await,
        vec![json!({"host": "a"})],
        "{label}"
    );
    assert_eq!(
        results(server, "d", "SELECT host, zone, x FROM m ORDER BY host").await,
        vec![
            json!({"host": "a", "zone": null, "x": null}),
            json!({"host": "b", "zone": null, "x": null}),
            json!({"host": "c", "zone": "z1", "x": "new"})
        ],
        "{label}: old rows read new columns as NULL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_write_wins_across_buffer_and_files_and_old_files_gain_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut server = Server::start(&root, &["--save-timeout-s", "3600"]);
    let url = server.url("/write?db=d&precision=s");
    let write = |body: &'static str| post(&url, body);

    // Read-your-writes from the buffer.
    assert_eq!(write("m,host=a v=1,w=10 1700000000\nm,host=b v=2 1700000000").await.0, 204);
    let all = "SELECT host, v, w, time FROM m ORDER BY host";
    assert_eq!(json_rows(&results(&server, "d", all).await).len(), 2);

    // Into a file; then rewrite a point (v replaced, w kept) and add a tag and a field.
    assert!(server.terminate().success());
    server.restart();
    let url = server.url("/write?db=d&precision=s");
    let write = |body: &'static str| post(&url, body);
    assert_eq!(write("m,host=a v=5 1700000000\nm,host=c,zone=z1 v=3,x=\"new\" 1700000000").await.0, 204);
    let expected = vec![
        row(&[("host", "a"), ("v", "5.0"), ("w", "10.0"), ("time", "2023-11-14T22:13:20.000000000Z")]),
        row(&[("host", "b"), ("v", "2.0"), ("time", "2023-11-14T22:13:20.000000000Z")]),
        row(&[("host", "c"), ("v", "3.0"), ("time", "2023-11-14T22:13:20.000000000Z")]),
    ];
    check_rewritten_rows(&server, all, &expected, "buffer over file").await;
    let (scan, _) = pruning(&server, "d", "SELECT * FROM m").await;
    assert!(scan.contains("deduplicated_groups=1"), "{scan}");

    // Both in files now: two level-1 files overlap and are merged at query time.
    assert!(server.terminate().success());
    server.restart();
    check_rewritten_rows(&server, all, &expected, "file over file").await;
    let (scan, _) = pruning(&server, "d", "SELECT * FROM m").await;
    assert!(scan.contains("files=2 of 2") && scan.contains("deduplicated_groups=1"), "{scan}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_queries_get_clear_errors_and_user_sql_cannot_touch_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    assert_eq!(post(&server.url("/write?db=e"), "m,host=a v=1").await.0, 204);
    let cases: &[(&str, u16, &str)] = &[
        ("SELEC * FROM m", 400, "Expected"),
        ("SELECT * FROM nope", 400, "nope"),
        ("SELECT nope FROM m", 400, "nope"),
        ("SELECT 1; SELECT 2", 400, "one statement"),
        ("", 400, "empty"),
        ("COPY m TO '/tmp/out.csv'", 403, "COPY"),
        ("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'", 403, "CREATE EXTERNAL TABLE"),
        ("INSERT INTO m (host, nope, time) VALUES ('b', 2, now())", 400, "nope"),
        ("UPDATE m SET v = 2", 400, "appended to with INSERT"),
        ("CREATE TABLE t (x int)", 400, "CREATE TABLE without AS"),
        ("ALTER TABLE m RENAME TO n", 400, "is a measurement"),
        ("SELECT * FROM '/etc/passwd'", 400, "not found"),
    ];
    for (sql, status, needle) in cases {
        let (got, message) = query_error(&server, "e", sql).await;
        assert_eq!(got, *status, "{sql}: {message}");
        assert!(message.contains(needle), "{sql}: {message}");
    }
    let (status, message) = query_error(&server, "nowhere", "SELECT 1").await;
    assert_eq!((status, message.as_str()), (404, "database 'nowhere' not found"));
    let (status, body) = query(&server, "e", "xml", "SELECT 1").await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("Unsupported format: xml"));
    let response = client()
        .post(server.url("/query?db=e"))
        .header("Content-Type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(results(&server, "e", "SELECT count(*) AS n FROM m").await, vec![json!({"n": 1})], "still serving");
    // INSERT goes through the write path and answers with its row count.
    let inserted = results(&server, "e", "INSERT INTO m (host, v, time) VALUES ('b', 2, now())").await;
    assert_eq!(inserted, vec![json!({"count": 1})]);
    assert_eq!(results(&server, "e", "SELECT count(*) AS n FROM m").await, vec![json!({"n": 2})]);
    // Only a POST changes anything: a GET can come from any web page.
    let url = server.url("/api/v3/query_sql?db=e&q=CREATE%20VIEW%20v%20AS%20SELECT%201");
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        results(&server, "e", "SELECT count(*) AS n FROM information_schema.views WHERE table_name = 'v'").await,
        vec![json!({"n": 0})]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_need_credentials_when_a_user_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[],
        &[("HTTP_BASIC_AUTH_USERNAME", "u"), ("HTTP_BASIC_AUTH_PASSWORD", "p")],
    );
    let url = server.url("/query");
    let body = json!({"query": "SHOW DATABASES"}).to_string();
    let status = client().post(&url).body(body.clone()).send().await.unwrap().status().as_u16();
    assert_eq!(status, 401);
    let status = client().post(&url).basic_auth("u", Some("p")).body(body).send().await.unwrap().status().as_u16();
    assert_eq!(status, 200);
    // A page of the server's own origin: its preflight needs no credentials.
    let own_origin = format!("http://127.0.0.1:{}", server.http_port);
    let preflight =
        client().request(reqwest::Method::OPTIONS, &url).header("Origin", &own_origin).send().await.unwrap();
    assert_eq!(preflight.status().as_u16(), 200, "CORS preflight needs no credentials");
    assert_eq!(preflight.headers()["access-control-allow-origin"], own_origin.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_other_origins_cannot_write_or_run_sql_and_curl_can() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--cors-allow-origins", "https://dash.example.com"]);
    let evil = "https://evil.example";
    // A text/plain POST needs no preflight: the browser sends it, with its Origin.
    for (path, body) in [("/query?db=x", "DROP VIEW v"), ("/write?db=x", "m v=1"), ("/api/v3/query_sql?db=x", "")] {
        let response = client()
            .post(server.url(path))
            .header("Origin", evil)
            .header("Content-Type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{path}");
        assert!(response.headers().get("access-control-allow-origin").is_none(), "{path}");
        let text = response.text().await.unwrap();
        assert!(text.contains("--cors-allow-origins"), "{path}: {text}");
    }
    let preflight =
        client().request(reqwest::Method::OPTIONS, server.url("/query")).header("Origin", evil).send().await.unwrap();
    assert_eq!(preflight.status().as_u16(), 403);
    assert!(!dir.path().join("data/x").exists(), "the refused write wrote nothing");
    // Health and readiness change nothing: any page may ask (and not read the answer).
    let health = client().get(server.url("/health")).header("Origin", evil).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // curl sends no Origin: it writes and queries.
    let curl = |args: &[&str]| {
        let output = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*"])
            .args(args)
            .output()
            .expect("curl is installed by tests/run");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(curl(&["-XPOST", &server.url("/write?db=x"), "--data-binary", "m v=1 1700000000000000000"]), "204");
    assert_eq!(curl(&["-XPOST", &server.url("/query?db=x"), "-d", "SELECT count(*) FROM m"]), "200");

    // An allowed origin's page may, and may read the answer.
    let response = client()
        .post(server.url("/query?db=x"))
        .header("Origin", "https://dash.example.com")
        .json_body(&json!({"query": "SELECT count(*) AS n FROM m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "https://dash.example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_and_time_limits_end_the_query_not_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let pg_port = crate::support::free_port();
    let server = Server::start(
        &dir.path().join("data"),
        &["--query-memory-bytes", "2MiB", "--query-timeout-s", "1", "--pg-port", &pg_port.to_string()],
    );
    let body: String =
        (0..20_000).map(|i| format!("m,host=h{} s=\"{}\" {}\n", i % 50, "x".repeat(200), 1_700_000_000 + i)).collect();
    assert_eq!(post(&server.url("/write?db=l&precision=s"), body).await.0, 204);

    let memory_hog = "SELECT host, string_agg(s, ',') FROM m GROUP BY host";
    let response =
        client().post(server.url("/query?db=l")).json_body(&json!({ "query": memory_hog })).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 429, "out of memory is \"retry later\", not the query's fault");
    assert!(response.headers().contains_key("retry-after"));
    let message = response.text().await.unwrap();
    assert!(message.contains("HOURGLASS_QUERY_MEMORY_BYTES"), "{message}");
    let pg = crate::postgres::connect(pg_port, "l", "u", "").await.expect("connect over Postgres");
    let error = pg.simple_query(memory_hog).await.unwrap_err();
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::OUT_OF_MEMORY), "{error:?}");

    let (status, message) = query_error(&server, "l", "SELECT count(*) FROM generate_series(1, 100000000000) a").await;
    assert_eq!(status, 504, "{message}");
    assert!(message.contains("HOURGLASS_QUERY_TIMEOUT_S"), "{message}");

    assert_eq!(results(&server, "l", "SELECT count(*) AS n FROM m").await, vec![json!({"n": 20000})], "still serving");
}

/// A query over many overlapping files reads them all at once, and their
/// Parquet readers hold memory DataFusion's pool does not see: that memory
/// is reserved from the pool first, so a query that would take more than the
/// pool allows is refused as out of memory (not run past the bound), and the
/// same query on the same files with room enough is answered.
#[tokio::test(flavor = "multi_thread")]
async fn the_readers_of_overlapping_files_count_against_the_query_memory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let fields = 8;
    let (files, rows_per_file) = (20, 20_000);
    {
        let server = Server::start(&root, &["--save-timeout-s", "0.2", "--no-merges"]);
        for file in 0..files {
            // Every file spans the same hour, each with a host of its own.
            let body: String = (0..rows_per_file)
                .map(|i| {
                    let values: Vec<String> =
                        (0..fields).map(|f| format!("f{f}={}", (i * 7 + f) * 100 + file)).collect();
                    format!("m,host=h{file} {} {}\n", values.join(","), 1_700_000_000_000u64 + i as u64)
                })
                .collect();
            let persisted = crate::support::metric(&server, "hourglass_persisted_files_total").await;
            assert_eq!(post(&server.url("/write?db=r&precision=ms"), body).await.0, 204);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while crate::support::metric(&server, "hourglass_persisted_files_total").await == persisted {
                assert!(std::time::Instant::now() < deadline, "the buffer was not persisted");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        assert_eq!(crate::support::listed_files(&root, "r", "m").len(), files);
    }
    let every_field: Vec<String> = (0..fields).map(|f| format!("max(f{f}) AS f{f}")).collect();
    let sql = format!("SELECT count(*) AS n, {} FROM m", every_field.join(", "));

    // About 1.7 MiB of readers per file of 20,000 rows, 34 MiB in all: past
    // a 24 MiB pool, which the merged batches alone fit in.
    let small = Server::start(&root, &["--no-merges", "--query-memory-bytes", "24MiB"]);
    let (status, message) = query_error(&small, "r", &sql).await;
    assert_eq!(status, 429, "{message}");
    assert!(message.contains("DeduplicateExec readers"), "the refusal names what holds the memory: {message}");
    drop(small);

    let roomy = Server::start(&root, &["--no-merges", "--query-memory-bytes", "512MiB"]);
    let answer = results(&roomy, "r", &sql).await;
    assert_eq!(answer[0]["n"], json!(files * rows_per_file), "{answer:?}");
    let top = ((rows_per_file - 1) * 7 + 7) * 100 + files - 1;
    assert_eq!(answer[0]["f7"].as_f64(), Some(top as f64), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_past_the_admission_limits_wait_then_are_refused_on_every_front() {
    let dir = tempfile::tempdir().unwrap();
    let (pg_port, flight_port) = (crate::support::free_port(), crate::support::free_port());
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--max-concurrent-queries",
            "1",
            "--max-queued-queries",
            "1",
            // The queued query waits through the checks below, however slow the machine.
            "--query-queue-timeout-s",
            "300",
            "--pg-port",
            &pg_port.to_string(),
            "--flightsql-port",
            &flight_port.to_string(),
        ],
    );
    // A result the client does not read keeps its query running.
    let huge = json!({"query": "SELECT * FROM generate_series(1, 1000000000000) t(x)"});
    let running = client().post(server.url("/query?db=default&format=csv")).json_body(&huge).send().await.unwrap();
    assert_eq!(running.status().as_u16(), 200);
    assert_eq!(crate::support::metric(&server, "hourglass_queries_running").await, 1);
    // The next query waits for the slot...
    let waiting = tokio::spawn({
        let url = server.url("/query?db=default");
        async move { client().post(url).json_body(&json!({"query": "SELECT 42 AS n"})).send().await.unwrap() }
    });
    assert!(crate::support::wait_for(std::time::Duration::from_secs(20), || {
        crate::support::block_on_thread(|| crate::support::metric(&server, "hourglass_queries_queued")) == 1
    }));
    // ...and with the queue full, every front refuses at once: "busy, retry shortly".
    let refused =
        client().post(server.url("/query?db=default")).json_body(&json!({"query": "SELECT 1"})).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.text().await.unwrap().contains("HOURGLASS_MAX_CONCURRENT_QUERIES"));
    let pg = crate::postgres::connect(pg_port, "default", "u", "").await.expect("connect over Postgres");
    let error = pg.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS), "{error:?}");
    let error = crate::flight::query_on(flight_port, "SELECT 1").await.unwrap_err();
    assert_eq!(crate::flight::code(&error), tonic::Code::ResourceExhausted, "{error}");

    // The slot frees when the first result's stream ends; the waiting query runs.
    drop(running);
    let answered = waiting.await.unwrap();
    assert_eq!(answered.status().as_u16(), 200);
    let body: Value = json_of(answered).await;
    assert_eq!(body["results"], json!([{"n": 42}]));
    assert!(crate::support::wait_for(std::time::Duration::from_secs(20), || {
        crate::support::block_on_thread(|| crate::support::metric(&server, "hourglass_queries_running")) == 0
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_that_waits_past_the_queue_timeout_is_refused_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let pg_port = crate::support::free_port();
    let server = Server::start(
        &dir.path().join("data"),
        &["--max-concurrent-queries", "1", "--query-queue-timeout-s", "1", "--pg-port", &pg_port.to_string()],
    );
    // A result the client does not read holds the only slot.
    let huge = json!({"query": "SELECT * FROM generate_series(1, 1000000000000) t(x)"});
    let running = client().post(server.url("/query?db=default&format=csv")).json_body(&huge).send().await.unwrap();
    assert_eq!(running.status().as_u16(), 200);

    let refused =
        client().post(server.url("/query?db=default")).json_body(&json!({"query": "SELECT 1"})).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let text = refused.text().await.unwrap();
    assert!(text.contains("waited 1 s") && text.contains("HOURGLASS_QUERY_QUEUE_TIMEOUT_S"), "{text}");
    let pg = crate::postgres::connect(pg_port, "default", "u", "").await.expect("connect over Postgres");
    let error = pg.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS), "{error:?}");
    assert_eq!(crate::support::metric(&server, "hourglass_queries_queued").await, 0, "the refused left the queue");

    drop(running);
    assert!(crate::support::wait_for(std::time::Duration::from_secs(20), || {
        crate::support::block_on_thread(|| crate::support::metric(&server, "hourglass_queries_running")) == 0
    }));
    let answered = client()
        .post(server.url("/query?db=default"))
        .json_body(&json!({"query": "SELECT 7 AS n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status().as_u16(), 200);
}
