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
