//! The parts of compaction: the rows of a partition's files merged as readers
//! merge them, streamed into one Parquet file.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::TryStreamExt;
use hourglassdb::catalog::PartitionKey;
use hourglassdb::ingest::line_protocol::Precision;
use hourglassdb::ingest::{Ingester, LineProtocolWrite};
use hourglassdb::server::Components;
use hourglassdb::storage::{file_path_in_layer, file_path_in_table, ParquetOptions};

use crate::support::{
    arm_failpoint, batch_rows, client, command, free_port, listed_files, post, read_parquet, wait_for, Server,
};

async fn write_and_persist(ingester: &Ingester, body: &str) {
    let write =
        LineProtocolWrite { precision: Precision::Second, accept_partial: false, no_sync: false, received_at_ns: 0 };
    let outcome = ingester
        .write_line_protocol(ingester.admit().await.expect("a write slot"), "db", Bytes::from(body.to_owned()), write)
        .await
        .expect("write");
    assert_eq!(outcome.rejected_lines, 0, "{:?}", outcome.errors);
    assert_eq!(ingester.persist_now().await.expect("persist").failed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn merged_files_stream_the_rows_queries_see_into_one_sorted_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let args = ["hourglass", "--root", root.to_str().unwrap(), "--save-timeout-s", "3600"];
    let settings = hourglassdb::cli::parse(args.iter().map(Into::into).collect()).expect("settings").cli.settings;
    let layers = hourglassdb::config::resolve_layers(&settings, &|_| None, None).expect("layers");
    let components = Components::open(&settings, layers).await.expect("open");
    let ingester = components.ingester.as_ref().unwrap();
    let engine = components.engine.as_ref().unwrap();

    // Three files of one hour: a point rewritten, a field added to a point.
    write_and_persist(
        ingester,
        "cpu,host=a,region=eu u=1 1700000000\ncpu,host=b,region=us u=2 1700000000\ncpu,host=a,region=eu u=3 1700000001",
    )
    .await;
    write_and_persist(ingester, "cpu,host=a,region=eu u=10 1700000000\ncpu,host=c,region=us u=5 1700000002").await;
    write_and_persist(ingester, "cpu,host=b,region=us v=7i 1700000000").await;
    let partitions = components.catalog.files("db", "cpu", i64::MIN, i64::MAX);
    assert_eq!(partitions.len(), 1);
    let files = partitions[0].files.clone();
    assert_eq!(files.len(), 3);

    let expected: Vec<BTreeMap<String, String>> = engine
        .sql("db", "SELECT * FROM cpu ORDER BY host, region, time", &hourglassdb::access::Access::Full)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .iter()
        .flat_map(batch_rows)
        .collect();
    assert_eq!(expected.len(), 4, "{expected:?}");
    // The last write wins field by field: a's rewritten usage, b's added field.
    let at = |host: &str| expected.iter().find(|r| r["host"] == host && r["time"].starts_with("2023-11-14T22:13:20"));
    assert_eq!(at("a").map(|r| r["u"].as_str()), Some("10.0"));
    assert_eq!(at("b").map(|r| (r["u"].as_str(), r["v"].as_str())), Some(("2.0", "7")));

    let merged = engine.merged_files("db", "cpu", files).await.expect("merge plan");
    let batches = merged.stream.map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)));
    let schema = components.catalog.table_schema("db", "cpu").unwrap();
    let partition = PartitionKey::for_time(1_700_000_000_000_000_000);
    let in_table = file_path_in_table(&partition.dir_name(), "merged", 2);
    let relative = file_path_in_layer("db", "cpu", &in_table);
    let layer = components.storage.first();
    let written = layer
        .write_parquet_stream(&relative, batches, &schema.row_order(), ParquetOptions::default())
        .await
        .expect("streamed write");
    assert_eq!(written.row_count, 4);
    assert_eq!((written.min_time, written.max_time), (1_700_000_000_000_000_000, 1_700_000_002_000_000_000));

    let path = layer.local_root().expect("a local layer").join(&relative);
    assert_eq!(written.size_bytes, std::fs::metadata(&path).unwrap().len());
    let rows: Vec<BTreeMap<String, String>> = read_parquet(&path).iter().flat_map(batch_rows).collect();
    assert_eq!(rows, expected, "the merged file holds what queries read, in key order");
    // No temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    ingester.shutdown().await.unwrap();
}

/// Opens every component in process on `root`, with `extra` flags.
async fn open(root: &std::path::Path, extra: &[&str]) -> Components {
    let mut args = vec!["hourglass", "--root", root.to_str().unwrap(), "--save-timeout-s", "3600", "--no-merges"];
    args.extend_from_slice(extra);
    let settings = hourglassdb::cli::parse(args.iter().map(Into::into).collect()).expect("settings").cli.settings;
    let layers = hourglassdb::config::resolve_layers(&settings, &|_| None, None).expect("layers");
    Components::open(&settings, layers).await.expect("open")
}

async fn query_rows(engine: &hourglassdb::query::QueryEngine, sql: &str) -> Vec<BTreeMap<String, String>> {
    engine
        .sql("db", sql, &hourglassdb::access::Access::Full)
        .await
        .expect(sql)
        .collect()
        .await
        .expect(sql)
        .iter()
        .flat_map(batch_rows)
        .collect()
}

/// Per partition directory: the levels of its files, sorted.
fn levels_by_partition(components: &Components, table: &str) -> BTreeMap<String, Vec<u8>> {
    let mut levels = BTreeMap::new();
    for listed in components.catalog.files("db", table, i64::MIN, i64::MAX) {
        let mut found: Vec<u8> = listed.files.iter().map(|f| f.level).collect();
        found.sort();
        levels.insert(listed.partition.unwrap().dir_name(), found);
    }
    levels
}

/// The Parquet and temporary files on disk in a table's partition directories.
fn files_on_disk(root: &std::path::Path, table: &str) -> Vec<String> {
    let mut found = Vec::new();
    let table_dir = root.join("db").join(table);
    for date in std::fs::read_dir(&table_dir).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
        for hour in std::fs::read_dir(date.path()).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(hour.path()).into_iter().flatten().flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".parquet") || name.starts_with(".tmp-") {
                    found.push(file.path().strip_prefix(&table_dir).unwrap().display().to_string());
                }
            }
        }
    }
    found.sort();
    found
}

fn catalog_paths(components: &Components, table: &str) -> Vec<String> {
    let mut paths: Vec<String> = components
        .catalog
        .files("db", table, i64::MIN, i64::MAX)
        .into_iter()
        .flat_map(|p| p.files)
        .map(|f| f.path)
        .collect();
    paths.sort();
    paths
}

#[tokio::test(flavor = "multi_thread")]
async fn many_small_files_become_one_file_per_level_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let components = open(&root, &["--file-grace-s", "1", "--query-timeout-s", "1"]).await;
    let ingester = components.ingester.as_ref().unwrap();
    let engine = components.engine.as_ref().unwrap();
    let compactor = components.compactor.as_ref().expect("aio mode compacts");

    // Twelve writes over two hours: each point of host a is rewritten every
    // round, so only its last value may survive; b gets a field per round.
    let hour = 1_700_002_800; // the start of an hour
    for round in 0..12 {
        let mut body = String::new();
        for minute in 0..30 {
            let t = hour + minute * 60;
            body.push_str(&format!("cpu,host=a u={round} {t}\ncpu,host=a u={round} {}\n", t + 3600));
            body.push_str(&format!("cpu,host=b f{round}={round} {t}\n"));
            body.push_str(&format!("cpu,host=c,round=r{round} u={minute} {t}\n"));
        }
        write_and_persist(ingester, &body).await;
    }
    let before = levels_by_partition(&components, "cpu");
    assert_eq!(before.len(), 2);
    assert!(before.values().all(|levels| levels == &vec![1; 12]), "{before:?}");
    let all = "SELECT * FROM cpu ORDER BY host, round, time";
    let expected = query_rows(engine, all).await;
    let count = "SELECT count(*) AS n FROM cpu";
    // a: 30 minutes in two hours; b: 30 points; c: a series per round.
    assert_eq!(query_rows(engine, count).await[0]["n"], "450");
    let a: Vec<_> = expected.iter().filter(|r| r["host"] == "a").collect();
    assert_eq!(a.len(), 60);
    assert!(a.iter().all(|r| r["u"] == "11.0"), "the last write of a point wins");

    let report = compactor.run_now(None, None).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.merges.len(), 2, "{report:?}");
    assert!(report.merges.iter().all(|m| m.input_files == 12 && m.from_level == 1 && m.to_level == 2));
    assert_eq!(levels_by_partition(&components, "cpu").values().collect::<Vec<_>>(), [&vec![2], &vec![2]]);
    assert_eq!(query_rows(engine, all).await, expected, "a merge changes no answer");
    // The merged file holds each point once: its rows are the table's rows.
    let merged_rows: u64 = report.merges.iter().map(|m| m.output_rows).sum();
    assert_eq!(merged_rows, expected.len() as u64);
    assert_eq!(report.files_waiting_for_deletion, 24);

    // More writes: a second level-2 file per hour, then level 2 merges into 3.
    for round in 12..15 {
        write_and_persist(ingester, &format!("cpu,host=a u={round} {hour}\ncpu,host=a u={round} {}", hour + 3600))
            .await;
    }
    let expected = query_rows(engine, all).await;
    assert_eq!(expected.iter().filter(|r| r["host"] == "a" && r["u"] == "14.0").count(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = compactor.run_now(None, None).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mut merged: Vec<(u8, u8, usize)> =
        report.merges.iter().map(|m| (m.from_level, m.to_level, m.input_files)).collect();
    merged.sort();
    assert_eq!(merged, [(1, 2, 3), (1, 2, 3), (2, 3, 2), (2, 3, 2)], "a level's output merges on at the next");
    assert_eq!(levels_by_partition(&components, "cpu").values().collect::<Vec<_>>(), [&vec![3], &vec![3]]);
    assert_eq!(query_rows(engine, all).await, expected, "merges change no answer");
    // The first run's inputs were past their grace period: deleted now.
    assert_eq!(report.files_deleted, 24);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = compactor.run_now(None, None).await;
    assert!(report.merges.is_empty() && report.errors.is_empty(), "{report:?}");
    assert_eq!(report.files_waiting_for_deletion, 0);
    assert_eq!(files_on_disk(&root, "cpu"), catalog_paths(&components, "cpu"), "storage holds what the catalog lists");
    ingester.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_reading_while_a_merge_commits_gets_every_row_once() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    // No query outlives the grace of the files a merge replaces. 5 s, not 1:
    // a debug build under the whole suite's load took over a second for one
    // of these queries.
    let components = open(&root, &["--file-grace-s", "5", "--query-timeout-s", "5"]).await;
    let ingester = components.ingester.as_ref().unwrap();
    let engine = components.engine.as_ref().unwrap();
    let compactor = components.compactor.as_ref().unwrap();

    // Eight files of 5,000 rows each in one hour, every row its own point.
    let start = 1_700_002_800_000_000_000i64;
    for file in 0..8 {
        let body: String =
            (0..5000).map(|i| format!("m,s=s{} v={i}i {}\n", i % 10, start + (file * 5000 + i) * 1_000_000)).collect();
        let write = LineProtocolWrite {
            precision: Precision::Nanosecond,
            accept_partial: false,
            no_sync: false,
            received_at_ns: 0,
        };
        ingester
            .write_line_protocol(ingester.admit().await.expect("a write slot"), "db", Bytes::from(body), write)
            .await
            .expect("write");
        ingester.persist_now().await.expect("persist");
    }

    // A query has planned on the eight files and read its first batch...
    let output = engine.sql("db", "SELECT s, time, v FROM m", &hourglassdb::access::Access::Full).await.expect("query");
    let mut stream = output.stream;
    let first = stream.next().await.expect("a batch").expect("rows");
    assert!(first.num_rows() > 0 && first.num_rows() < 40_000);

    // ...when a merge replaces them all.
    let report = compactor.run_now(None, None).await;
    assert_eq!(report.merges.len(), 1, "{report:?}");
    assert_eq!(components.catalog.files("db", "m", i64::MIN, i64::MAX)[0].files.len(), 1);

    // It finishes on the files it started with, and sees every row once.
    let mut rows = first.num_rows();
    let mut seen = std::collections::HashSet::new();
    let mut note = |batch: &arrow::array::RecordBatch| {
        let time = batch.column(1).as_any().downcast_ref::<arrow::array::TimestampNanosecondArray>().unwrap();
        for i in 0..batch.num_rows() {
            assert!(seen.insert(time.value(i)), "row at {} read twice", time.value(i));
        }
    };
    note(&first);
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("the query finishes after the commit");
        rows += batch.num_rows();
        note(&batch);
    }
    assert_eq!(rows, 40_000);

    // Queries keep agreeing while merges commit under them.
    for round in 0..5 {
        let body: String = (0..2000).map(|i| format!("m,s=t{round} v={i}i {}\n", start + i * 1_000_000)).collect();
        let write = LineProtocolWrite {
            precision: Precision::Nanosecond,
            accept_partial: false,
            no_sync: false,
            received_at_ns: 0,
        };
        ingester
            .write_line_protocol(ingester.admit().await.expect("a write slot"), "db", Bytes::from(body), write)
            .await
            .expect("write");
        ingester.persist_now().await.expect("persist");
    }
    let expected = 40_000 + 5 * 2000;
    let reader = {
        let engine = std::sync::Arc::clone(engine);
        tokio::spawn(async move {
            let mut counts = Vec::new();
            for _ in 0..20 {
                let rows = query_rows(
                    &engine,
                    "SELECT (SELECT count(*) FROM m) AS n, count(*) AS d FROM (SELECT DISTINCT s, time FROM m)",
                )
                .await;
                counts.push((rows[0]["n"].clone(), rows[0]["d"].clone()));
            }
            counts
        })
    };
    let report = compactor.run_now(None, None).await;
    assert!(report.errors.is_empty() && !report.merges.is_empty(), "{report:?}");
    for (n, d) in reader.await.unwrap() {
        assert_eq!((n.as_str(), d.as_str()), (expected.to_string().as_str(), expected.to_string().as_str()));
    }
    ingester.shutdown().await.unwrap();
}

/// The level in each listed file's name (`<uuid>.<level>.parquet`).
fn listed_levels(root: &std::path::Path, table: &str) -> Vec<u8> {
    let mut levels: Vec<u8> = listed_files(root, "db", table)
        .iter()
        .map(|f| f.path.rsplit('.').nth(1).and_then(|l| l.parse().ok()).expect("a level in the name"))
        .collect();
    levels.sort();
    levels
}

/// The first column of the first row of `sql` over `POST /query`, as a number.
async fn query_number(server: &Server, credentials: &str, sql: &str) -> u64 {
    let response = client()
        .post(server.url(&format!("/query?db=db&format=json{credentials}")))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({ "query": sql }).to_string())
        .send()
        .await
        .expect("query");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{sql}: {body}");
    let value: serde_json::Value = serde_json::from_str(&body).expect("json");
    value["results"][0]["n"].as_u64().unwrap_or_else(|| panic!("{sql}: no n in {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_merges_in_the_background_and_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let auth = [("HTTP_BASIC_AUTH_USERNAME", "admin"), ("HTTP_BASIC_AUTH_PASSWORD", "s3cret")];
    let server = Server::start_with_env(&root, &["--save-timeout-s", "0.2", "--merge-timeout-s", "1"], &auth);
    let write = |server: &Server, round: u32| {
        let url = server.url("/write?db=db&u=admin&p=s3cret");
        async move {
            let (status, body) = post(&url, format!("m,host=h{round} v={round} 1700002800000000000")).await;
            assert_eq!(status, 204, "{body}");
        }
    };
    // Level-1 files appear one by one; the background task merges them into level 2.
    for round in 0..4 {
        write(&server, round).await;
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    assert!(
        wait_for(std::time::Duration::from_secs(20), || listed_levels(&root, "m").contains(&2)),
        "no level-2 file: {:?}\n{}",
        listed_levels(&root, "m"),
        server.log_text()
    );
    let metrics = client().get(server.url("/metrics?u=admin&p=s3cret")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("hourglass_merges_total ") && !l.ends_with(" 0")), "{metrics}");

    // A second process on the same root is refused before it touches anything.
    let second = command()
        .args(["--root", root.to_str().unwrap(), "--http-host", "127.0.0.1"])
        .args(["--http-port", &free_port().to_string(), "--pg-enable", "false", "--flightsql-enable", "false"])
        .output()
        .expect("run");
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another HourglassDB process is using this data root"), "{stderr}");
    drop(server);

    // With background merges off, `hourglass compact` asks the server to merge now.
    let server = Server::start_with_env(&root, &["--save-timeout-s", "0.2", "--no-merges"], &auth);
    let files_before = listed_files(&root, "db", "m").len();
    for round in 4..8 {
        write(&server, round).await;
        let want = files_before + (round - 3) as usize;
        assert!(wait_for(std::time::Duration::from_secs(10), || listed_files(&root, "db", "m").len() >= want));
    }
    let port = server.http_port.to_string();
    let compact = |extra: &[&str]| {
        command().args(["compact", "--http-port", &port]).args(extra).envs(auth).output().expect("hourglass compact")
    };
    let denied = command().args(["compact", "--http-port", &port]).output().unwrap();
    assert_eq!(denied.status.code(), Some(2), "no credentials: {denied:?}");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("401"), "{denied:?}");
    let output = compact(&["--json"]);
    assert!(output.status.success(), "{output:?}\n{}", server.log_text());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let merges = report["merges"].as_array().expect("merges");
    assert!(!merges.is_empty(), "{report}");
    assert_eq!(merges[0]["database"], "db");
    assert_eq!(merges[0]["table"], "m");
    assert_eq!(merges[0]["partition"], "date=2023-11-14/hour=23");
    assert_eq!(merges[0]["from_level"], 1);
    assert_eq!(query_number(&server, "&u=admin&p=s3cret", "SELECT count(*) AS n FROM m").await, 8);
    assert_eq!(listed_levels(&root, "m").iter().filter(|&&l| l == 1).count(), 0, "every level-1 file merged");

    // Nothing left to merge: the summary says so.
    let output = compact(&[]);
    assert!(output.status.success(), "{output:?}");
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("0 merges (0 files)"), "{summary}");
    drop(server);

    // A readonly server does not compact, and says why.
    let server = Server::start(&root, &["--mode", "readonly"]);
    let (status, body) = post(&server.url("/admin/compact"), "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("readonly"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_a_merge_and_its_commit_loses_nothing_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let args = ["--save-timeout-s", "0.3", "--no-merges"];
    let mut server = Server::start(&root, &args);
    // Eight level-1 files of 100,000 distinct points each, in one hour.
    let start = 1_700_002_800_000_000_000i64;
    let per_file = 100_000i64;
    for file in 0..8 {
        let body: String = (0..per_file)
            .map(|i| {
                let n = file * per_file + i;
                format!("m,host=h{} v={n}i,w={n}.5 {}\n", n % 100, start + n * 1000)
            })
            .collect();
        let (status, text) = post(&server.url("/write?db=db&precision=ns"), body).await;
        assert_eq!(status, 204, "{text}");
        let want = file as usize + 1;
        assert!(wait_for(std::time::Duration::from_secs(30), || listed_files(&root, "db", "m").len() >= want));
    }
    let total = 8 * per_file as u64;
    assert_eq!(query_number(&server, "", "SELECT count(*) AS n FROM m").await, total);

    // Merge, and kill the server once the merged file is written and before
    // the catalog commit names it: the stall point holds the merge there.
    arm_failpoint(&server, "merge-before-commit", "sleep(60000)").await;
    let compact_url = server.url("/admin/compact");
    // The request dies with the server: its error is the expected outcome.
    let compact = tokio::spawn(async move { client().post(compact_url).send().await });
    let partition_dir = root.join("db/m/date=2023-11-14/hour=23");
    // Written means renamed from its temporary name to its own.
    let written = wait_for(std::time::Duration::from_secs(60), || {
        std::fs::read_dir(&partition_dir).into_iter().flatten().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with(".tmp-") && name.ends_with(".2.parquet")
        })
    });
    server.kill9();
    assert!(written, "the merge never wrote its file:\n{}", server.log_text());
    let _ = compact.await;
    assert_eq!(listed_files(&root, "db", "m").len(), 8, "the catalog still lists the level-1 files");

    // Once its grace period is over (made so by its modification time), a
    // restart removes the file no commit names.
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for entry in std::fs::read_dir(&partition_dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".2.parquet") {
            std::fs::File::options().write(true).open(entry.path()).unwrap().set_modified(an_hour_ago).unwrap();
        }
    }
    server.restart();
    let on_disk = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&partition_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet") || n.starts_with(".tmp-"))
            .collect();
        names.sort();
        names
    };
    let listed = || -> Vec<String> {
        let mut names: Vec<String> =
            listed_files(&root, "db", "m").iter().map(|f| f.path.rsplit('/').next().unwrap().to_owned()).collect();
        names.sort();
        names
    };
    assert!(
        wait_for(std::time::Duration::from_secs(20), || on_disk() == listed()),
        "left behind: {:?} vs {:?}\n{}",
        on_disk(),
        listed(),
        server.log_text()
    );
    let said = || server.log_text().contains("removed a file no catalog entry names");
    assert!(wait_for(std::time::Duration::from_secs(5), said), "{}", server.log_text());
    // Every point has its own v: as many distinct values as rows means none twice.
    let distinct = "SELECT count(DISTINCT v) AS n FROM m";
    assert_eq!(query_number(&server, "", "SELECT count(*) AS n FROM m").await, total, "nothing lost");
    // Read from the listed files themselves: a distinct count over 800,000
    // rows can pass the 1 s query timeout on a loaded machine.
    let values: std::collections::HashSet<String> =
        crate::support::table_rows(&root, "db", "m").into_iter().filter_map(|mut r| r.remove("v")).collect();
    assert_eq!(values.len() as u64, total, "nothing twice ({distinct})");

    // The merge runs to the end this time, with the same answers.
    let (status, body) = post(&server.url("/admin/compact"), "").await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["merges"][0]["input_files"], 8, "{report}");
    assert_eq!(report["merges"][0]["output_rows"], total, "{report}");
    assert_eq!(query_number(&server, "", "SELECT count(*) AS n FROM m").await, total);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_level_merges_into_itself() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    // One merge level: 1 -> 2, and level 2 is the last.
    let flags = ["--merge-max-bytes", "100MiB", "--merge-interval-factors", "1"];
    let components = open(&root, &flags).await;
    let ingester = components.ingester.as_ref().unwrap();
    let engine = components.engine.as_ref().unwrap();
    let compactor = components.compactor.as_ref().unwrap();
    let all = "SELECT * FROM cpu ORDER BY host, time";
    for round in 0..4 {
        write_and_persist(ingester, &format!("cpu,host=a u={round} 1700002800\ncpu,host=h{round} u=1 1700002801"))
            .await;
        if round % 2 == 1 {
            let expected = query_rows(engine, all).await;
            let report = compactor.run_now(None, None).await;
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            let merged: Vec<(u8, u8, usize)> =
                report.merges.iter().map(|m| (m.from_level, m.to_level, m.input_files)).collect();
            let want: &[(u8, u8, usize)] = if round == 1 { &[(1, 2, 2)] } else { &[(1, 2, 2), (2, 2, 2)] };
            assert_eq!(merged, want);
            assert_eq!(levels_by_partition(&components, "cpu").values().collect::<Vec<_>>(), [&vec![2]]);
            assert_eq!(query_rows(engine, all).await, expected);
        }
    }
    let rows = query_rows(engine, all).await;
    assert_eq!(rows.iter().filter(|r| r["host"] == "a").map(|r| r["u"].as_str()).collect::<Vec<_>>(), ["3.0"]);
    ingester.shutdown().await.unwrap();
}
