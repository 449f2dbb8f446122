//! The catalogs: the local one's atomic commits, schemas and reloading from
//! disk, and the Redis one shared by several processes.

use hourglassdb::catalog::{
    Catalog, CatalogError, Column, ColumnType, Commit, FileEntry, LocalCatalog, PartitionKey, RedisCatalog,
    RedisOptions,
};

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
        deletes_applied: 0,
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
        lease: None,
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

/// The Redis catalog, opened by three processes' worth of catalogs on one
/// real Redis: schemas merge, each writer's WAL sequence is its own, every
/// view follows the others' commits, a commit's expectations hold, and a
/// compaction lease fences the commits of a holder whose lease expired.
#[tokio::test(flavor = "multi_thread")]
async fn the_redis_catalog_is_one_catalog_for_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let redis = crate::redis_server::RedisServer::start(&dir.path().join("redis"));
    let options = |writer: &str| RedisOptions {
        url: redis.url(),
        prefix: "test".into(),
        writer_id: writer.into(),
        poll_interval: std::time::Duration::from_millis(50),
        lease_ttl: std::time::Duration::from_millis(800),
        commit_deadline: std::time::Duration::from_secs(30),
    };
    let a = RedisCatalog::open(options("a")).await.unwrap();
    let b = RedisCatalog::open(options("b")).await.unwrap();

    // Each adds its own columns; the schema has them all, and B's conflicting
    // type is refused once it knows A's.
    let column = |name: &str, column_type| Column { name: name.into(), column_type };
    a.add_columns("db", "cpu", &[column("host", ColumnType::Tag), column("usage", ColumnType::Float)], 100)
        .await
        .unwrap();
    let schema = b.add_columns("db", "cpu", &[column("cores", ColumnType::Integer)], 100).await.unwrap();
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name.as_ref()).collect();
    assert_eq!(names.len(), 4, "time, host, usage and cores: {names:?}");
    let conflict = b.add_columns("db", "cpu", &[column("usage", ColumnType::Integer)], 100).await;
    assert!(matches!(conflict, Err(CatalogError::Conflict(_))), "{conflict:?}");

    let p0 = PartitionKey::for_time(1_700_000_000_000_000_000);
    let commit = |add: Vec<FileEntry>, remove: Vec<&str>, wal_sequence, lease| Commit {
        database: "db".into(),
        table: "cpu".into(),
        partition: p0,
        add,
        remove: remove.into_iter().map(String::from).collect(),
        wal_sequence,
        lease,
    };
    a.commit(commit(vec![file("x", p0, 10)], vec![], 5, None)).await.unwrap();
    b.commit(commit(vec![file("y", p0, 20)], vec![], 9, None)).await.unwrap();
    assert_eq!(a.partition_wal_sequence("db", "cpu", p0), 5, "A's WAL sequence is A's");
    assert_eq!(b.partition_wal_sequence("db", "cpu", p0), 9, "B's is B's");
    let both = vec![vec!["x".to_string(), "y".to_string()]];
    let all = (p0.start_ns(), p0.end_ns());
    assert!(
        crate::support::wait_for(std::time::Duration::from_secs(5), || ids(&*a, all.0, all.1) == both),
        "A follows B's commit: {:?}",
        ids(&*a, all.0, all.1)
    );
    let missing = b.commit(commit(vec![file("z", p0, 1)], vec!["nope"], 0, None)).await;
    assert!(matches!(missing, Err(CatalogError::MissingFile { .. })), "{missing:?}");

    // One compactor at a time per table; a lease that expired fences its holder.
    let token = a.compaction_lease("db", "cpu").await.unwrap().expect("A takes the lease");
    assert_eq!(b.compaction_lease("db", "cpu").await.unwrap(), None, "B waits while A holds it");
    a.commit(commit(vec![file("xy", p0, 30)], vec!["x", "y"], 0, Some(token))).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let successor = loop {
        if let Some(next) = b.compaction_lease("db", "cpu").await.unwrap() {
            break next;
        }
        assert!(std::time::Instant::now() < deadline, "B never took the expired lease");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(successor > token, "a new holder gets a larger token: {successor} after {token}");
    let fenced = a.commit(commit(vec![file("late", p0, 30)], vec!["xy"], 0, Some(token))).await;
    assert!(matches!(fenced, Err(CatalogError::Fenced { .. })), "{fenced:?}");

    // A catalog opened later reads everything at once.
    let c = RedisCatalog::open(options("c")).await.unwrap();
    assert_eq!(ids(&*c, all.0, all.1), vec![vec!["xy".to_string()]]);
    assert_eq!(c.table_schema("db", "cpu"), b.table_schema("db", "cpu"));
    assert_eq!(c.partition_wal_sequence("db", "cpu", p0), 0, "C has persisted nothing");
}

/// The relations SQL makes, shared through Redis: two processes changing the
/// document at once both get their change in (the second made again on the
/// first's document), the same name twice fails once, a definition of files
/// written too long ago is refused, and a document restored to an older
/// state (Redis flushed) is followed, not fought.
#[tokio::test(flavor = "multi_thread")]
async fn the_shared_relations_are_one_document_for_every_process() {
    use hourglassdb::catalog::relations::{Relation, RelationError, RelationFiles, RelationKind, RelationStore};
    use hourglassdb::storage::{LayerConfig, LayerType, Storage};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    let dir = tempfile::tempdir().unwrap();
    let redis = crate::redis_server::RedisServer::start(&dir.path().join("redis"));
    let storage = Arc::new(
        Storage::open(vec![LayerConfig {
            name: "lake".into(),
            layer_type: LayerType::Fs,
            url: dir.path().join("lake").display().to_string(),
            global: true,
            ttl: None,
            auth_key: None,
            auth_secret: None,
        }])
        .unwrap(),
    );
    let store = |writer: &'static str| {
        let (url, storage) = (redis.url(), Arc::clone(&storage));
        async move {
            let catalog = RedisCatalog::open(RedisOptions {
                url,
                prefix: "test".into(),
                writer_id: writer.into(),
                poll_interval: Duration::from_millis(50),
                lease_ttl: Duration::from_secs(5),
                commit_deadline: Duration::from_secs(1),
            })
            .await
            .unwrap();
            let relations = RelationStore::open(catalog, RelationFiles::shared(storage), None).await.unwrap();
            relations.follow(Duration::from_millis(50));
            relations
        }
    };
    let (a, b) = (store("a").await, store("b").await);
    let view = |name: &str| Relation {
        schema: "public".into(),
        name: name.into(),
        kind: RelationKind::View { sql: "SELECT 1".into() },
    };
    let names = |store: &RelationStore| store.relations("d", "public").into_iter().map(|r| r.name).collect::<Vec<_>>();

    // B has not seen A's change when it makes its own: both go in.
    let (first, second) =
        tokio::join!(a.create("d", view("v1"), false, false, None), b.create("d", view("v2"), false, false, None));
    first.unwrap();
    second.unwrap();
    assert!(crate::support::wait_for(Duration::from_secs(10), || names(&a).len() == 2 && names(&b).len() == 2));
    let mut both = names(&a);
    both.sort();
    assert_eq!(both, ["v1", "v2"]);

    // The same name from both: one wins, the other is told it exists.
    let (first, second) =
        tokio::join!(a.create("d", view("v3"), false, false, None), b.create("d", view("v3"), false, false, None));
    let refused: Vec<_> = [first, second].into_iter().filter_map(Result::err).collect();
    assert!(matches!(refused[..], [RelationError::AlreadyExists(_)]), "{refused:?}");

    // A table whose file was written longer ago than the commit deadline: refused, nothing changed.
    let table = Relation { schema: "public".into(), name: "t".into(), kind: RelationKind::Table { id: "x".into() } };
    let long_ago = SystemTime::now() - Duration::from_secs(5);
    let late = a.create("d", table, false, false, Some(long_ago)).await;
    assert!(matches!(late, Err(RelationError::Late(_))), "{late:?}");
    assert!(a.get("d", "public", "t").is_none());

    // Redis loses the document: every process follows it back to empty.
    redis.command(&["FLUSHALL"]).unwrap();
    assert!(crate::support::wait_for(Duration::from_secs(10), || names(&a).is_empty() && names(&b).is_empty()));
    b.create("d", view("v4"), false, false, None).await.unwrap();
    assert!(crate::support::wait_for(Duration::from_secs(10), || names(&a) == ["v4"]));
}

/// A drop replayed from the WAL finishes one the process began (its record
/// in `dropped.json`, the table still there) and leaves a table made after it.
#[tokio::test]
async fn a_replayed_drop_finishes_a_drop_begun_and_spares_a_table_made_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = LocalCatalog::open(dir.path()).unwrap();
    let columns = [Column { name: "v".into(), column_type: ColumnType::Float }];
    let partition = PartitionKey::for_time(1_700_000_000_000_000_000);
    let commit = |table: &str, id: &str, wal_sequence: u64| Commit {
        database: "db".into(),
        table: table.into(),
        partition,
        add: vec![FileEntry { wal_sequence, ..file(id, partition, 1) }],
        remove: Vec::new(),
        wal_sequence,
        lease: None,
    };
    for table in ["old", "new"] {
        catalog.add_columns("db", table, &columns, 100).await.unwrap();
    }
    catalog.commit(commit("old", "a", 5)).await.unwrap();
    catalog.commit(commit("new", "b", 12)).await.unwrap();
    // As a process that stopped after remembering the drops at 10 and before
    // the directories went: `old` was written before its drop, `new` after.
    std::fs::write(
        dir.path().join("db/dropped.json"),
        r#"{"drops": {"old": {"sequence": 10}, "new": {"sequence": 10}}}"#,
    )
    .unwrap();
    let reopened = LocalCatalog::open(dir.path()).unwrap();
    assert_eq!(reopened.dropped("db", "old"), Some(10));
    reopened.drop_table("db", "old", 10).await.unwrap();
    assert!(reopened.table_schema("db", "old").is_none());
    assert!(!dir.path().join("db/old").exists());
    reopened.drop_table("db", "new", 10).await.unwrap();
    assert!(reopened.table_schema("db", "new").is_some(), "a table with files from after the drop stays");
    // Made again by a later write and holding no file (yet, or any more):
    // a replay of the drop leaves it too.
    reopened.add_columns("db", "old", &columns, 100).await.unwrap();
    reopened.drop_table("db", "old", 10).await.unwrap();
    assert!(reopened.table_schema("db", "old").is_some(), "a table made after the drop stays");
    let remade = LocalCatalog::open(dir.path()).unwrap();
    remade.drop_table("db", "old", 10).await.unwrap();
    assert!(remade.table_schema("db", "old").is_some(), "and after a restart");
    // The layers' directories are to be cleared, across a restart.
    let undeleted = LocalCatalog::open(dir.path()).unwrap().undeleted_drops();
    assert_eq!(undeleted, [("db".to_string(), "old".to_string())]);
    // Once the WAL has let go of everything through 10, the drops are
    // forgotten: one whose files are not yet deleted only once they are.
    reopened.expire_drops(10).await.unwrap();
    assert_eq!(reopened.dropped("db", "new"), None);
    assert_eq!(reopened.dropped("db", "old"), Some(10));
    reopened.drop_files_deleted("db", "old").await.unwrap();
    assert!(reopened.undeleted_drops().is_empty());
    reopened.expire_drops(10).await.unwrap();
    assert_eq!(reopened.dropped("db", "old"), None);
    assert!(!dir.path().join("db/dropped.json").exists());
    let again = LocalCatalog::open(dir.path()).unwrap();
    assert_eq!(again.tables("db"), ["new", "old"]);
}
