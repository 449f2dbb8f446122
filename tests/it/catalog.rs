//! The local catalog: atomic commits that add and remove files, schemas, and
//! reloading from disk.

use hourglassdb::catalog::{Catalog, CatalogError, Column, ColumnType, Commit, FileEntry, LocalCatalog, PartitionKey};

const HOUR: i64 = 3_600_000_000_000;

fn file(id: &str, partition: PartitionKey, rows: u64) -> FileEntry {
    FileEntry {
        id: id.into(),
        layer: "default".into(),
        path: format!("{}/{id}.1.parquet", partition.dir_name()),
        level: 1,
        size_bytes: 100 * rows,
        row_count: rows,
        min_time: partition.start_ns(),
        max_time: partition.start_ns() + 10,
        wal_sequence: 7,
        chunk_time: 1,
    }
}

fn ids(catalog: &dyn Catalog, min: i64, max: i64) -> Vec<Vec<String>> {
    catalog.files("db", "cpu", min, max).iter().map(|p| p.files.iter().map(|f| f.id.clone()).collect()).collect()
}

#[tokio::test]
async fn commits_add_and_remove_atomically_and_survive_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = LocalCatalog::open(dir.path()).unwrap();
    let columns = [
        Column { name: "host".into(), column_type: ColumnType::Tag },
        Column { name: "usage".into(), column_type: ColumnType::Float },
    ];
    let schema = catalog.add_columns("db", "cpu", &columns, 100).await.unwrap();
    assert_eq!(schema.columns().len(), 3);
    let conflict = catalog
        .add_columns("db", "cpu", &[Column { name: "usage".into(), column_type: ColumnType::Integer }], 100)
        .await;
    assert!(matches!(conflict, Err(CatalogError::Conflict(_))), "{conflict:?}");
    let limit =
        catalog.add_columns("db", "cpu", &[Column { name: "x".into(), column_type: ColumnType::Boolean }], 3).await;
    assert!(matches!(limit, Err(CatalogError::Conflict(_))), "the column limit holds: {limit:?}");

    let p0 = PartitionKey::for_time(1_700_000_000_000_000_000);
    let p1 = PartitionKey(p0.0 + 1);
    let commit = |partition, add: Vec<FileEntry>, remove: Vec<&str>, wal_sequence| Commit {
        database: "db".into(),
        table: "cpu".into(),
        partition,
        add,
        remove: remove.into_iter().map(String::from).collect(),
        wal_sequence,
    };
    catalog.commit(commit(p0, vec![file("a", p0, 10), file("b", p0, 20)], vec![], 5)).await.unwrap();
    catalog.commit(commit(p1, vec![file("c", p1, 30)], vec![], 6)).await.unwrap();
    // The compactor's swap: two files out, one in, in one step.
    catalog.commit(commit(p0, vec![file("ab", p0, 30)], vec!["a", "b"], 5)).await.unwrap();
    // Removing a file that is not there changes nothing.
    let missing = catalog.commit(commit(p0, vec![file("zz", p0, 1)], vec!["a"], 9)).await;
    assert!(matches!(missing, Err(CatalogError::MissingFile { .. })), "{missing:?}");

    let all = (p0.start_ns(), p1.end_ns());
    assert_eq!(ids(&catalog, all.0, all.1), vec![vec!["ab".to_string()], vec!["c".to_string()]]);
    assert_eq!(ids(&catalog, p1.start_ns(), p1.start_ns() + HOUR), vec![vec!["c".to_string()]]);
    assert_eq!(ids(&catalog, p0.start_ns() + 11, p0.end_ns()), vec![Vec::<String>::new()], "file time ranges prune");
    assert_eq!(catalog.partition_wal_sequence("db", "cpu", p0), 5);
    assert_eq!(catalog.partition_wal_sequence("db", "cpu", p1), 6);
    assert_eq!(catalog.max_wal_sequence(), 6);

    let reloaded = LocalCatalog::open(dir.path()).unwrap();
    assert_eq!(reloaded.databases(), ["db", "default"], "`default` always exists");
    assert_eq!(reloaded.tables("db"), ["cpu"]);
    assert_eq!(reloaded.table_schema("db", "cpu"), catalog.table_schema("db", "cpu"));
    assert_eq!(reloaded.files("db", "cpu", all.0, all.1), catalog.files("db", "cpu", all.0, all.1));
    assert_eq!(reloaded.max_wal_sequence(), 6);

    let metadata: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("db/cpu").join(p0.dir_name()).join("metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["type"], "cpu");
    assert_eq!(metadata["row_count"], 30);
    assert_eq!(metadata["wal_sequence"], 5);
    let entry = &metadata["files"][0];
    for key in ["id", "path", "layer", "level", "size_bytes", "row_count", "min_time", "max_time", "wal_sequence"] {
        assert!(!entry[key].is_null(), "metadata.json files carry {key}: {entry}");
    }
    let leftovers: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.contains(".tmp-")).collect();
    assert!(leftovers.is_empty(), "atomic writes leave no temporary files: {leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}
