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

use crate::support::{batch_rows, read_parquet};

async fn write_and_persist(ingester: &Ingester, body: &str) {
    let write =
        LineProtocolWrite { precision: Precision::Second, accept_partial: false, no_sync: false, received_at_ns: 0 };
    let outcome = ingester.write_line_protocol("db", Bytes::from(body.to_owned()), write).await.expect("write");
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
        .sql("db", "SELECT * FROM cpu ORDER BY host, region, time")
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
    engine.sql("db", sql).await.expect(sql).collect().await.expect(sql).iter().flat_map(batch_rows).collect()
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
    let components = open(&root, &["--file-grace-s", "1", "--query-timeout-s", "1"]).await;
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
        ingester.write_line_protocol("db", Bytes::from(body), write).await.expect("write");
        ingester.persist_now().await.expect("persist");
    }

    // A query has planned on the eight files and read its first batch...
    let output = engine.sql("db", "SELECT s, time, v FROM m").await.expect("query");
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
        ingester.write_line_protocol("db", Bytes::from(body), write).await.expect("write");
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
