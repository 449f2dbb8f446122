//! Writers and readers as separate `hourglass` processes over one Redis
//! catalog and one S3 layer: real Redis (redis_server.rs) and real S3
//! (SeaweedFS), every process on loopback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::redis_server::RedisServer;
use crate::support::{client, command, free_port, post, wait_for, JsonBody, SeaweedFs, Server};

/// Redis, S3 and a directory for the processes' roots.
struct Cluster {
    redis: RedisServer,
    seaweed: SeaweedFs,
    dir: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        Cluster {
            redis: RedisServer::start(&dir.join("redis")),
            seaweed: SeaweedFs::start(&dir.join("seaweedfs")),
            dir: dir.to_path_buf(),
        }
    }

    /// The settings every process of the cluster shares: the Redis catalog and
    /// the global S3 layer.
    fn shared_args(&self) -> Vec<String> {
        vec![
            "--metadata-type".into(),
            "redis".into(),
            "--metadata-url".into(),
            self.redis.url(),
            "--layer".into(),
            format!("{},global=true", self.seaweed.layer_flag("lake", "lake")),
        ]
    }

    /// Starts a process in `mode` on its own root `name`, with `extra` settings.
    fn process(&self, name: &str, mode: &str, extra: &[&str]) -> Server {
        self.process_with_env(name, mode, extra, &[])
    }

    /// [`Self::process`] with environment variables.
    fn process_with_env(&self, name: &str, mode: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = self.shared_args();
        args.extend(["--mode".to_owned(), mode.to_owned()]);
        // Persist often, unless the test keeps rows in a writer's buffer.
        if !extra.contains(&"--save-timeout-s") {
            args.extend(["--save-timeout-s".to_owned(), "0.5".to_owned()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_with_env(&self.dir.join(name), &args, env)
    }
}

/// Writes `count` rows of host `host` to a writer, from `first` on; every row
/// has its own `n`, so duplicates show.
async fn write_rows(writer: &Server, host: &str, first: u64, count: u64) {
    let body: String = (first..first + count)
        .map(|n| format!("m,host={host} n={n}i {}\n", 1_700_000_000_000_000_000u64 + n * 1_000_000))
        .collect();
    let (status, text) = post(&writer.url("/write?db=default"), body).await;
    assert_eq!(status, 204, "{text}");
}

/// Writes `rounds` batches of 50 rows from `first` on, one every 600 ms, so
/// that the writer persists several level-1 files for a compactor to merge.
async fn write_in_rounds(writer: &Server, first: u64, rounds: u64) {
    for round in 0..rounds {
        write_rows(writer, "w", first + round * 50, 50).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}

/// A process's id in the catalog: its data root's own id (no --writer-id given).
fn id_of(server: &Server) -> String {
    std::fs::read_to_string(server.root.join(".hourglass-id")).expect("the root's id").trim().to_owned()
}

/// Runs `sql` over a server's HTTP API: the status and the JSON answer
/// (None when the server cannot be reached or answers no JSON).
async fn query(server: &Server, sql: &str) -> Option<(u16, serde_json::Value)> {
    let response = client()
        .post(server.url("/query?db=default"))
        .json_body(&serde_json::json!({ "query": sql }))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, serde_json::from_str(&response.text().await.ok()?).ok()?))
}

/// `count(*)` and `count(DISTINCT n)` of `m` over a server's HTTP API; None
/// while the table is unknown there.
async fn counts(server: &Server) -> Option<(u64, u64)> {
    let (_, body) = query(server, "SELECT count(*) AS rows, count(DISTINCT n) AS distinct_n FROM m").await?;
    let row = &body["results"][0];
    Some((row["rows"].as_u64()?, row["distinct_n"].as_u64()?))
}

/// Polls `condition` every 100 ms until it holds: false if it still does not
/// after `timeout` (an async [`wait_for`]).
async fn eventually<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut condition: impl FnMut() -> F,
) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a reader sees `want` rows, each once; panics with what it saw.
async fn wait_for_rows(reader: &Server, want: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        seen = counts(reader).await;
        if seen == Some((want, want)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the reader saw (rows, distinct) = {seen:?}, not {want} rows each once:\n{}", reader.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_written_to_two_writers_are_read_back_from_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let mut first_writer = cluster.process("writer-1", "writeonly", &[]);
    let second_writer = cluster.process("writer-2", "writeonly", &[]);
    let (pg_port, flight_port) = (free_port(), free_port());
    let pg = pg_port.to_string();
    let flight = flight_port.to_string();
    let reader = cluster.process("reader-1", "readonly", &["--pg-port", &pg, "--flightsql-port", &flight]);
    let second_reader = cluster.process("reader-2", "readonly", &[]);

    write_rows(&first_writer, "w1", 0, 500).await;
    write_rows(&second_writer, "w2", 500, 500).await;
    wait_for_rows(&reader, 1000).await;
    wait_for_rows(&second_reader, 1000).await;

    // The same rows over the Postgres wire and FlightSQL.
    let postgres = crate::postgres::connect(pg_port, "default", "u", "").await.expect("Postgres connection");
    let rows = postgres.query("SELECT host, count(*) FROM m GROUP BY host ORDER BY host", &[]).await.unwrap();
    let per_host: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(per_host, [("w1".to_owned(), 500), ("w2".to_owned(), 500)]);
    let flight_rows = crate::flight::query_on(flight_port, "SELECT count(*) AS n FROM m").await.expect("FlightSQL");
    assert_eq!(flight_rows[0]["n"], "1000");

    // A writer killed with rows acknowledged and not yet persisted replays its
    // own WAL: nothing lost, nothing twice.
    write_rows(&first_writer, "w1", 1000, 300).await;
    first_writer.kill9();
    first_writer.restart();
    wait_for_rows(&reader, 1300).await;
    write_rows(&first_writer, "w1", 1300, 100).await;
    wait_for_rows(&second_reader, 1400).await;

    // A reader started later sees everything at once.
    let late_reader = cluster.process("reader-3", "readonly", &[]);
    assert_eq!(counts(&late_reader).await, Some((1400, 1400)));
    drop(second_writer);

    // A writer whose id another data root already writes under is refused:
    // the catalog keeps one WAL position per writer id.
    let taken = id_of(&first_writer);
    let output = command()
        .args(cluster.shared_args())
        .args(["--mode", "writeonly", "--writer-id", &taken, "--http-port", &free_port().to_string()])
        .arg("--root")
        .arg(dir.path().join("writer-3"))
        .output()
        .expect("run hourglass");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HOURGLASS_WRITER_ID") && stderr.contains("already used"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_go_on_while_redis_restarts_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path());
    let writer = cluster.process("writer", "writeonly", &[]);
    let reader = cluster.process("reader", "readonly", &[]);
    write_rows(&writer, "w", 0, 200).await;
    wait_for_rows(&reader, 200).await;

    // Acknowledged from the WAL while the catalog is away.
    cluster.redis.kill();
    write_rows(&writer, "w", 200, 200).await;
    write_rows(&writer, "w", 400, 200).await;
    assert_eq!(counts(&reader).await, Some((200, 200)), "the reader keeps its last view");
    assert!(
        wait_for(Duration::from_secs(20), || writer.log_text().contains("the commit waits for it")),
        "the writer's persister waits for Redis:\n{}",
        writer.log_text()
    );
    // A reader that cannot follow the catalog for long says so in /ready.
    let readiness = || async { crate::support::get(&reader.url("/ready")).await };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = readiness().await;
        if status == 503 && body.contains("Redis catalog") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "/ready never said the view is stale: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(crate::support::metric(&reader, "hourglass_catalog_lag_ms").await >= 10_000);
    cluster.redis.restart();
    wait_for_rows(&reader, 600).await;
    let log = writer.log_text();
    // Or, had a commit gone in as Redis died, its retry found it applied.
    assert!(log.contains("the Redis catalog took the commit") || log.contains("applied once"), "{log}");
    assert_eq!(readiness().await.0, 200, "ready again once the view follows Redis");
}

/// A role that cannot work is refused at start with one line naming the setting.
#[test]
fn a_shared_catalog_without_what_it_needs_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |args: &[&str]| {
        let output = command().arg("--root").arg(dir.path().join("data")).args(args).output().expect("run hourglass");
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        String::from_utf8_lossy(&output.stderr).trim().to_owned()
    };
    let message = refused(&["--metadata-type", "redis"]);
    assert!(message.contains("GIGAPI_METADATA_URL") && !message.contains('\n'), "{message}");
    let message =
        refused(&["--metadata-type", "redis", "--metadata-url", "redis://127.0.0.1:1/0", "--mode", "readonly"]);
    assert!(message.contains("GIGAPI_LAYERS_0_GLOBAL") && !message.contains('\n'), "{message}");
}

/// The compactions in a table's change log, in commit order: (writer id,
/// lease token) of every change made under a lease.
fn compactions_in_log(redis: &RedisServer) -> Vec<(String, u64)> {
    let reply = redis.command(&["ZRANGE", "hourglass:{default/m}:log", "0", "-1"]).unwrap_or_default();
    reply
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            match fields[..] {
                [_, _, writer, token] if !token.is_empty() => Some((writer.to_owned(), token.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_compactor_takes_over_and_two_never_compact_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let writer = cluster.process("writer", "writeonly", &[]);
    let reader = cluster.process("reader", "readonly", &[]);
    // A lease of a few merge intervals: a loaded machine must not lose it by a late tick.
    let compacting = ["--merge-timeout-s", "1", "--compaction-lease-s", "4"];
    let mut active = cluster.process("compactor-a", "compaction", &compacting);
    let first_id = id_of(&active);
    write_in_rounds(&writer, 0, 4).await;
    let active_id = |log: &[(String, u64)]| log.first().map(|(writer, _)| writer.clone());
    assert!(
        wait_for(Duration::from_secs(30), || !compactions_in_log(&cluster.redis).is_empty()),
        "the compactor merged nothing:\n{}",
        active.log_text()
    );
    let first_holder = active_id(&compactions_in_log(&cluster.redis)).unwrap();
    assert_eq!(first_holder, first_id);

    // A second compactor waits while the first holds the lease...
    let standby = cluster.process("compactor-b", "compaction", &compacting);
    let second_id = id_of(&standby);
    write_in_rounds(&writer, 200, 4).await;
    assert!(compactions_in_log(&cluster.redis).iter().all(|(writer, _)| writer == &first_holder));
    // ...and takes over once the first dies.
    active.kill9();
    let before = compactions_in_log(&cluster.redis).len();
    write_in_rounds(&writer, 400, 4).await;
    assert!(
        wait_for(Duration::from_secs(30), || {
            compactions_in_log(&cluster.redis).iter().skip(before).any(|(writer, _)| writer == &second_id)
        }),
        "the standby never compacted:\n{}",
        standby.log_text()
    );

    // From the catalog's own history: the lease tokens of the commits never
    // go back, so no commit of the first holder came after the second began.
    let log = compactions_in_log(&cluster.redis);
    assert!(log.windows(2).all(|pair| pair[0].1 <= pair[1].1), "{log:?}");
    let holders: Vec<&String> = log.iter().map(|(writer, _)| writer).collect();
    let switch = holders.iter().position(|w| **w == second_id).unwrap();
    assert!(holders[..switch].iter().all(|w| **w == first_id), "{log:?}");
    assert!(holders[switch..].iter().all(|w| **w == second_id), "{log:?}");
    wait_for_rows(&reader, 600).await;
}

/// A compactor held up past its lease (a long pause between writing a merged
/// file and committing it) finds on waking that a standby has taken over: its
/// commit is refused by the fence, and the table's history shows none of its
/// changes after the standby's first.
#[tokio::test(flavor = "multi_thread")]
async fn a_compactor_that_lost_its_lease_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let writer = cluster.process("writer", "writeonly", &[]);
    let reader = cluster.process("reader", "readonly", &[]);
    let compacting = ["--merge-timeout-s", "1", "--compaction-lease-s", "3"];
    let stale = cluster.process("compactor-a", "compaction", &compacting);
    let stale_id = id_of(&stale);
    // Its first merge stops after writing the merged file, before the commit.
    crate::support::arm_failpoint(&stale, "merge-before-commit", "pause").await;
    write_in_rounds(&writer, 0, 4).await;
    let merged_written =
        || async { cluster.seaweed.keys("lake/default/m").await.iter().any(|key| key.ends_with(".2.parquet")) };
    assert!(
        eventually(Duration::from_secs(30), merged_written).await,
        "the first compactor wrote no merged file:\n{}",
        stale.log_text()
    );

    // The standby takes the expired lease and compacts.
    let standby = cluster.process("compactor-b", "compaction", &compacting);
    let standby_id = id_of(&standby);
    write_rows(&writer, "w", 200, 50).await;
    assert!(
        wait_for(Duration::from_secs(30), || compactions_in_log(&cluster.redis).iter().any(|(w, _)| w == &standby_id)),
        "the standby never compacted:\n{}",
        standby.log_text()
    );

    // The first wakes up: its commit is fenced.
    crate::support::arm_failpoint(&stale, "merge-before-commit", "off").await;
    assert!(
        wait_for(Duration::from_secs(20), || stale.log_text().contains("is no longer this process's")),
        "the stale compactor's commit was not refused:\n{}",
        stale.log_text()
    );
    // It may have promoted a file before its merge stopped; nothing after the standby began.
    let log = compactions_in_log(&cluster.redis);
    let takeover = log.iter().position(|(w, _)| w == &standby_id).unwrap();
    assert!(log[takeover..].iter().all(|(w, _)| w != &stale_id), "{log:?}");
    assert!(log[..takeover].iter().all(|(w, _)| w == &stale_id), "{log:?}");
    wait_for_rows(&reader, 250).await;
}

/// A writer compacts on the shared catalog only when told to.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_compacts_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let writer = cluster.process("writer", "writeonly", &["--writer-compacts", "--merge-timeout-s", "1"]);
    let writer_id = id_of(&writer);
    write_in_rounds(&writer, 0, 4).await;
    assert!(
        wait_for(Duration::from_secs(30), || compactions_in_log(&cluster.redis).iter().any(|(w, _)| w == &writer_id)),
        "the writer never compacted:\n{}",
        writer.log_text()
    );
}

/// The event time of row `n` in `m`, as write_rows gives it (ns).
fn time_of(n: u64) -> i64 {
    1_700_000_000_000_000_000 + n as i64 * 1_000_000
}

/// A writer takes rows on every write front (Postgres INSERT and COPY,
/// FlightSQL bulk ingest, HTTP), the readers see them all, and the writer
/// refuses reads with a pointer to the readers.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_takes_rows_on_every_write_front() {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
    use futures::SinkExt;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let (pg_port, flight_port) = (free_port(), free_port());
    let (pg, flight) = (pg_port.to_string(), flight_port.to_string());
    let writer = cluster.process("writer", "writeonly", &["--pg-port", &pg, "--flightsql-port", &flight]);
    let reader = cluster.process("reader", "readonly", &[]);
    write_rows(&writer, "http", 0, 100).await;

    let postgres = crate::postgres::connect(pg_port, "default", "u", "").await.expect("Postgres connection");
    let values: Vec<String> = (100..150).map(|n| format!("({}, 'insert', {n})", time_of(n))).collect();
    let inserted =
        postgres.execute(&format!("INSERT INTO m (time, host, n) VALUES {}", values.join(", ")), &[]).await.unwrap();
    assert_eq!(inserted, 50);
    let sink = postgres.copy_in("COPY m (host, n, time) FROM STDIN").await.expect("COPY");
    futures::pin_mut!(sink);
    let lines: String = (150..250)
        .map(|n| format!("copy\t{n}\t{}\n", chrono::DateTime::from_timestamp_nanos(time_of(n)).to_rfc3339()))
        .collect();
    sink.send(bytes::Bytes::from(lines)).await.unwrap();
    assert_eq!(sink.finish().await.expect("COPY done"), 100);

    let tag = [("iox::column::type".to_owned(), "iox::column_type::tag".to_owned())].into();
    let schema = Arc::new(Schema::new(vec![
        Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("host", DataType::Utf8, true).with_metadata(tag),
        Field::new("n", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampNanosecondArray::from((250..350).map(time_of).collect::<Vec<_>>()).with_timezone("UTC"))
                as ArrayRef,
            Arc::new(StringArray::from(vec!["flight"; 100])),
            Arc::new(Int64Array::from((250..350).collect::<Vec<i64>>())),
        ],
    )
    .unwrap();
    let mut flight_client = crate::flight::sql_client(flight_port, Some("default")).await;
    let command = crate::flight::ingest_command("m", TableNotExistOption::Fail, TableExistsOption::Append);
    let ingested = flight_client.execute_ingest(command, futures::stream::iter(vec![Ok(batch)])).await.unwrap();
    assert_eq!(ingested, 100);

    // The writer reads no table: its answer would not be a reader's.
    let refused = postgres.query("SELECT count(*) FROM m", &[]).await.unwrap_err();
    assert_eq!(crate::postgres::sqlstate(&refused), tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
    let message =
        |error: &tokio_postgres::Error| error.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message(&refused).contains("writeonly"), "{refused:?}");
    let refused = postgres.execute("CREATE VIEW v AS SELECT 1", &[]).await.unwrap_err();
    assert!(message(&refused).contains("readonly or aio"), "{refused:?}");
    let refused = postgres.execute("ALTER TABLE m RENAME TO m2", &[]).await.unwrap_err();
    assert!(message(&refused).contains("writeonly"), "{refused:?}");
    let one: i64 = postgres.query_one("SELECT 1::bigint", &[]).await.unwrap().get(0);
    assert_eq!(one, 1, "a query that reads no table (a driver's ping) runs");
    // What psql's \l and JDBC's getCatalogs read: the server's catalogs, no data.
    let databases = postgres.query("SELECT datname FROM pg_catalog.pg_database", &[]).await.unwrap();
    assert!(databases.iter().any(|r| r.get::<_, String>(0) == "default"));
    let (status, body) = query(&writer, "SELECT count(*) FROM m").await.expect("an answer");
    assert_eq!(status, 403, "{body}");

    wait_for_rows(&reader, 350).await;
    let (_, body) = query(&reader, "SELECT host, count(*) AS n FROM m GROUP BY host ORDER BY host").await.unwrap();
    let per_host: Vec<(String, u64)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["host"].as_str().unwrap().to_owned(), r["n"].as_u64().unwrap()))
        .collect();
    let want = [("copy", 100), ("flight", 100), ("http", 100), ("insert", 50)];
    assert_eq!(per_host, want.map(|(h, n)| (h.to_owned(), n)));
}

/// Schemas, views and tables made by SQL on one reader are the cluster's:
/// another reader (and one started later) sees them within a poll, a
/// table's rows are read from the shared layer, and a drop on the other
/// reader removes the table everywhere at once and its file once the grace
/// period has passed.
#[tokio::test(flavor = "multi_thread")]
async fn a_view_created_on_one_reader_is_visible_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let writer = cluster.process("writer", "writeonly", &[]);
    let (pg_port, pg) = {
        let port = free_port();
        (port, port.to_string())
    };
    // One grace period for every process, as docs/scale-out.md asks; short,
    // so that the sweep of a dropped table's file comes within the test.
    let grace = ["--file-grace-s", "12", "--query-timeout-s", "12"];
    let first = cluster.process("reader-1", "readonly", &["--pg-port", &pg, grace[0], grace[1], grace[2], grace[3]]);
    let second = cluster.process("reader-2", "readonly", &grace);
    let _compactor = cluster.process("compactor", "compaction", &grace);
    write_rows(&writer, "w", 0, 100).await;
    wait_for_rows(&first, 100).await;

    let postgres = crate::postgres::connect(pg_port, "default", "u", "").await.expect("Postgres connection");
    postgres.batch_execute("CREATE SCHEMA analytics").await.unwrap();
    postgres.batch_execute("CREATE VIEW analytics.big AS SELECT host, n FROM m WHERE n >= 50").await.unwrap();
    postgres.batch_execute("CREATE TABLE analytics.snapshot AS SELECT host, n FROM m WHERE n < 10").await.unwrap();

    /// `count(*)` of a relation on a reader, once it answers (within 30 s).
    async fn count_on(reader: &Server, relation: &str) -> u64 {
        let sql = format!("SELECT count(*) AS n FROM {relation}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = query(reader, &sql).await.expect("an answer");
            if status == 200 {
                return body["results"][0]["n"].as_u64().expect("a count");
            }
            assert!(std::time::Instant::now() < deadline, "{sql} answered {status} {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(count_on(&second, "analytics.big").await, 50);
    assert_eq!(count_on(&second, "analytics.snapshot").await, 10);
    // The view sees new rows; the table made by AS is a snapshot.
    write_rows(&writer, "w", 100, 100).await;
    wait_for_rows(&second, 200).await;
    assert_eq!(count_on(&second, "analytics.big").await, 150);
    assert_eq!(count_on(&second, "analytics.snapshot").await, 10);
    let table_files = || cluster.seaweed.keys("lake/_catalog/tables/default/");
    assert_eq!(table_files().await.len(), 1, "the table's one file is on the shared layer");

    // A reader started later has them too.
    let late = cluster.process("reader-3", "readonly", &grace);
    assert_eq!(count_on(&late, "analytics.snapshot").await, 10);

    // Dropped on the second reader: gone on the first within a poll...
    let (status, body) = query(&second, "DROP TABLE analytics.snapshot").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let relations = || cluster.redis.command(&["HGET", "hourglass:relations", "json"]).unwrap_or_default();
    assert!(relations().contains("\"dropped\""), "the drop is remembered for the sweep: {}", relations());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = query(&first, "SELECT count(*) FROM analytics.snapshot").await.unwrap();
        // Not a table whose file cannot be read: no such table.
        if status == 400 && body["error"].as_str().is_some_and(|e| e.contains("not found")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the first reader still has the dropped table: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tables = postgres
        .query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'analytics' ORDER BY 1", &[])
        .await
        .unwrap();
    assert_eq!(tables.iter().map(|r| r.get(0)).collect::<Vec<String>>(), ["big"]);
    // ...and its file is swept by the compactor once the grace period has
    // passed (a query that was reading it had that long to finish; the
    // compactor sweeps once a grace period).
    let swept = || async { table_files().await.is_empty() && !relations().contains("\"dropped\"") };
    assert!(eventually(Duration::from_secs(60), swept).await, "the dropped table's file stays: {}", relations());
}

/// The writes (not schema changes, not compactions) in a table's change log.
fn writes_in_log(redis: &RedisServer) -> usize {
    let reply = redis.command(&["ZRANGE", "hourglass:{default/m}:log", "0", "-1"]).unwrap_or_default();
    reply.lines().filter(|line| matches!(line.split('|').collect::<Vec<_>>()[..], [_, _, _, ""])).count()
}

/// A commit whose reply is lost after Redis applied it (a cut connection)
/// is retried under its id, and Redis applies it once: one change in the
/// table's log, every row once.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_whose_reply_was_lost_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let writer =
        cluster.process_with_env("writer", "writeonly", &[], &[("FAILPOINTS", "redis-commit-reply-lost=1*return")]);
    let reader = cluster.process("reader", "readonly", &[]);
    write_rows(&writer, "w", 0, 100).await;
    wait_for_rows(&reader, 100).await;
    assert!(
        wait_for(Duration::from_secs(10), || writer.log_text().contains("applied once")),
        "the lost reply was not recognised:\n{}",
        writer.log_text()
    );
    assert_eq!(writes_in_log(&cluster.redis), 1, "the retry of an applied commit changed the catalog again");
}

/// `kill -9` of each process in turn (a writer, a reader, the compactor, the
/// other writer, the other reader) at random moments of a write load on
/// both writers: once all are back, both readers read every acknowledged row
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_any_process_during_writes_loses_and_doubles_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let compacting = ["--merge-timeout-s", "1", "--compaction-lease-s", "4"];
    let mut processes = [
        cluster.process("writer-1", "writeonly", &[]),
        cluster.process("writer-2", "writeonly", &[]),
        cluster.process("reader-1", "readonly", &[]),
        cluster.process("reader-2", "readonly", &[]),
        cluster.process("compactor", "compaction", &compacting),
    ];
    let urls = [processes[0].url("/write?db=default"), processes[1].url("/write?db=default")];
    let stop = Arc::new(AtomicBool::new(false));
    const ROWS: u64 = 50;
    // Batches alternate between the writers, each sent until it is
    // acknowledged: a writer being killed or restarted refuses or drops it,
    // and a batch it may have taken before dying is sent again (same rows).
    let load = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut batch = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let writer = (batch % 2) as usize;
                let body: String = (batch * ROWS..(batch + 1) * ROWS)
                    .map(|n| format!("m,host=w{writer} n={n}i {}\n", time_of(n)))
                    .collect();
                let deadline = std::time::Instant::now() + Duration::from_secs(90);
                loop {
                    let sent = client().post(&urls[writer]).body(body.clone()).send().await;
                    if sent.is_ok_and(|response| response.status() == 204) {
                        break;
                    }
                    assert!(std::time::Instant::now() < deadline, "batch {batch} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                batch += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            batch
        }
    });
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    for (turn, victim) in [0usize, 2, 4, 1, 3].into_iter().enumerate() {
        let delay =
            300 + (seed.wrapping_mul(6364136223846793005).wrapping_add(turn as u64 * 1442695040888963407) >> 33) % 1200;
        eprintln!("killing process {victim} after {delay} ms");
        tokio::time::sleep(Duration::from_millis(delay)).await;
        processes[victim].kill9();
        processes[victim].restart();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let batches = load.await.unwrap();
    assert!(batches >= 10, "the load ran {batches} batches only");
    wait_for_rows(&processes[2], batches * ROWS).await;
    wait_for_rows(&processes[3], batches * ROWS).await;
}

/// A writer cut off from Redis acknowledges writes from its WAL until its
/// buffer's bound, then refuses them with 503 and the reason; once Redis is
/// back every acknowledged row reaches the readers, and writes are taken again.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_cut_off_from_redis_refuses_writes_at_its_bound_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path());
    let writer = cluster.process("writer", "writeonly", &["--max-buffer-bytes", "256KiB"]);
    let reader = cluster.process("reader", "readonly", &[]);
    write_rows(&writer, "w", 0, 50).await;
    wait_for_rows(&reader, 50).await;

    cluster.redis.kill();
    let mut acknowledged = 50;
    let refusal = loop {
        let body: String =
            (acknowledged..acknowledged + 50).map(|n| format!("m,host=w n={n}i {}\n", time_of(n))).collect();
        let (status, text) = post(&writer.url("/write?db=default"), body).await;
        match status {
            204 => acknowledged += 50,
            503 => break text,
            other => panic!("{other}: {text}"),
        }
        assert!(acknowledged < 200_000, "the buffer's bound was never reached");
    };
    assert!(refusal.contains("HOURGLASS_MAX_BUFFER_BYTES"), "{refusal}");
    assert!(acknowledged > 100, "only {acknowledged} rows were taken before the bound");

    cluster.redis.restart();
    wait_for_rows(&reader, acknowledged).await;
    write_rows(&writer, "w", acknowledged, 50).await;
    wait_for_rows(&reader, acknowledged + 50).await;
}

/// `count(*)` of `m` per host on a reader, by host; None while `m` is
/// unknown there.
async fn rows_per_host(reader: &Server) -> Option<Vec<(String, u64)>> {
    let (_, body) = query(reader, "SELECT host, count(*) AS n FROM m GROUP BY host ORDER BY host").await?;
    body["results"].as_array()?.iter().map(|r| Some((r["host"].as_str()?.to_owned(), r["n"].as_u64()?))).collect()
}

/// Waits until a reader counts `want` rows per host; panics with what it saw.
async fn wait_for_hosts(reader: &Server, want: &[(&str, u64)], logs: &[&Server]) {
    let want: Vec<(String, u64)> = want.iter().map(|(h, n)| (h.to_string(), *n)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        seen = rows_per_host(reader).await;
        if seen.as_ref() == Some(&want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs: Vec<String> = logs.iter().map(|s| s.log_text()).collect();
    panic!("the reader saw {seen:?}, not {want:?}:\n{}", logs.join("\n----\n"));
}

/// The tombstones the shared catalog keeps for `m`.
fn tombstones_of_m(redis: &RedisServer) -> u64 {
    let reply = redis.command(&["HLEN", "hourglass:{default/m}:tombstones"]).unwrap_or_default();
    reply.trim().parse().unwrap_or(u64::MAX)
}

/// A delete sent to one writer hides the rows of every writer from the
/// readers, those still in another writer's buffer and WAL included (also
/// after that writer is killed and replays); a write after the delete
/// stays, whichever writer takes it; readers refuse deletes with a pointer
/// to the writers; and once every writer has carried the delete out, the
/// compactor rewrites the files and the catalog forgets the tombstone.
#[tokio::test(flavor = "multi_thread")]
async fn a_delete_on_one_writer_reaches_every_writer_and_reader() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let pg_port = free_port();
    let first_writer = cluster.process("writer-1", "writeonly", &["--pg-port", &pg_port.to_string()]);
    // Keeps its rows in its buffer and WAL: only a restart or a shutdown persists them.
    let mut second_writer = cluster.process("writer-2", "writeonly", &["--save-timeout-s", "3600"]);
    let reader = cluster.process("reader", "readonly", &[]);
    write_rows(&first_writer, "a", 0, 100).await;
    write_rows(&first_writer, "b", 100, 100).await;
    write_rows(&second_writer, "a", 200, 100).await;
    write_rows(&second_writer, "b", 300, 100).await;
    wait_for_hosts(&reader, &[("a", 100), ("b", 100)], &[&first_writer]).await;

    let postgres = crate::postgres::connect(pg_port, "default", "u", "").await.expect("Postgres connection");
    postgres.execute("DELETE FROM m WHERE host = 'a'", &[]).await.expect("DELETE on a writer");
    // Written after the delete returned, to both writers: kept.
    write_rows(&second_writer, "a", 400, 10).await;
    write_rows(&first_writer, "a", 410, 10).await;
    // The second writer carried the delete out on its WAL: a replay after
    // kill -9 keeps its rows of b and its write after the delete.
    second_writer.kill9();
    second_writer.restart();
    // A shutdown persists what the replay put back in its buffer.
    assert!(second_writer.terminate().success(), "{}", second_writer.log_text());
    second_writer.restart();
    wait_for_hosts(&reader, &[("a", 20), ("b", 200)], &[&first_writer, &second_writer, &reader]).await;

    // InfluxDB's delete on the other writer, by series and time.
    let body = serde_json::json!({
        "start": chrono::DateTime::from_timestamp_nanos(time_of(100)).to_rfc3339(),
        "stop": chrono::DateTime::from_timestamp_nanos(time_of(149)).to_rfc3339(),
        "predicate": "_measurement=\"m\" AND host=\"b\"",
    });
    let (status, text) = post(&second_writer.url("/api/v2/delete?bucket=default"), body.to_string()).await;
    assert_eq!(status, 204, "{text}");
    wait_for_hosts(&reader, &[("a", 20), ("b", 150)], &[&second_writer, &reader]).await;
    assert!(tombstones_of_m(&cluster.redis) >= 1);

    // With the deletes' WAL records persisted and gone, rows written after
    // them and replayed after kill -9 are still past them.
    assert!(second_writer.terminate().success(), "{}", second_writer.log_text());
    second_writer.restart();
    write_rows(&second_writer, "a", 600, 5).await;
    second_writer.kill9();
    second_writer.restart();
    wait_for_hosts(&reader, &[("a", 25), ("b", 150)], &[&second_writer, &reader]).await;
    // The same on a writer that persists every 0.5 s: once its file is in,
    // the WAL holds no delete, only the rows written after it (killed before
    // the next persist, almost always).
    let mut first_writer = first_writer;
    write_rows(&first_writer, "a", 620, 5).await;
    wait_for_hosts(&reader, &[("a", 30), ("b", 150)], &[&first_writer, &reader]).await;
    write_rows(&first_writer, "a", 625, 5).await;
    first_writer.kill9();
    first_writer.restart();
    wait_for_hosts(&reader, &[("a", 35), ("b", 150)], &[&first_writer, &reader]).await;

    // A reader takes no delete: writes go to writers.
    let (status, body) = query(&reader, "DELETE FROM m WHERE host = 'b'").await.expect("an answer");
    assert!(status >= 400 && body.to_string().contains("writeonly or aio"), "{status} {body}");

    // A compactor rewrites the files without the deleted rows; the
    // tombstones then go, and the rows stay as they were.
    let compactor = cluster.process("compactor", "compaction", &["--merge-timeout-s", "1"]);
    assert!(
        wait_for(Duration::from_secs(60), || tombstones_of_m(&cluster.redis) == 0),
        "the tombstones stayed:\n{}",
        compactor.log_text()
    );
    wait_for_hosts(&reader, &[("a", 35), ("b", 150)], &[&compactor, &reader]).await;
    let distinct = counts(&reader).await.expect("counts");
    assert_eq!(distinct, (185, 185), "each row once");
}

/// Asserts that `server` spreads `sql` over the readers: its EXPLAIN shows stages.
async fn assert_spread(server: &Server, sql: &str) {
    let plan = query(server, &format!("EXPLAIN {sql}")).await;
    assert!(format!("{plan:?}").contains("Stage"), "{sql} is not spread: {plan:?}");
}

/// The rows of a query's answer over the HTTP API, or its error.
async fn answer(server: &Server, sql: &str) -> serde_json::Value {
    match query(server, sql).await {
        Some((200, body)) => body["results"].clone(),
        other => panic!("{sql}: {other:?}\n{}", server.log_text()),
    }
}

/// The readers' worker secret, as the shared catalog keeps it.
#[cfg(feature = "distributed")]
fn worker_secret(redis: &RedisServer) -> String {
    redis.command(&["GET", "hourglass:worker_secret"]).unwrap_or_default().trim().to_owned()
}

/// The worker served on `flight_port` answers only calls that carry its
/// cluster's secret, and refuses, even from the cluster, a stage that
/// writes or that reads outside the storage layers.
#[cfg(feature = "distributed")]
async fn assert_worker_kept_to_its_cluster(cluster: &Cluster, flight_port: &str) {
    use datafusion::datasource::file_format::options::CsvReadOptions;
    use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
    use datafusion::prelude::SessionContext;
    use datafusion_distributed::grpc::DefaultChannelResolver;
    use datafusion_distributed::{ChannelResolver, GetWorkerInfoRequest, MaybeEncoded, SetPlanRequest, TaskKey};
    use futures::StreamExt;
    use hourglassdb::query::distributed::security::{SecretChannels, WorkerSecret};

    let url = url::Url::parse(&format!("http://127.0.0.1:{flight_port}")).unwrap();
    let without = DefaultChannelResolver::default().get_worker_client_for_url(&url).await.unwrap();
    let wrong = SecretChannels::new(&WorkerSecret::new("0123456789abcdef").unwrap());
    for mut client in [without, wrong.get_worker_client_for_url(&url).await.unwrap()] {
        let refused = client.get_worker_info(GetWorkerInfoRequest {}).await.err().expect("a call without the secret");
        assert!(refused.to_string().contains("only the readers of its cluster may call it"), "{refused}");
    }
    let secret = worker_secret(&cluster.redis);
    assert_eq!(secret.len(), 64, "{secret:?}");
    let channels = SecretChannels::new(&WorkerSecret::new(&secret).unwrap());
    let info = channels.get_worker_client_for_url(&url).await.unwrap().get_worker_info(GetWorkerInfoRequest {}).await;
    assert_eq!(info.unwrap().version, env!("CARGO_PKG_VERSION"));

    let outside = cluster.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("private.csv"), "a\n1\n").unwrap();
    let context = SessionContext::new();
    let private = outside.join("private.csv");
    context.register_csv("private", private.to_str().unwrap(), CsvReadOptions::new()).await.unwrap();
    let written = outside.join("written.csv");
    for (sql, why) in [
        (format!("COPY (SELECT 1 AS a) TO '{}' STORED AS CSV", written.display()), "it writes"),
        ("SELECT * FROM private".to_owned(), "which is not a storage layer"),
    ] {
        let plan = context.sql(&sql).await.unwrap().create_physical_plan().await.unwrap();
        let request = SetPlanRequest {
            task_key: TaskKey { query_id: uuid::Uuid::new_v4(), stage_id: 0, task_number: 0 },
            task_count: 1,
            plan: MaybeEncoded::Decoded(plan),
            work_unit_feed_declarations: vec![],
            target_worker_url: url.clone(),
            query_start_time_ns: 0,
        };
        let mut client = channels.get_worker_client_for_url(&url).await.unwrap();
        let sent = client
            .coordinator_channel(
                Default::default(),
                request,
                futures::stream::empty().boxed(),
                ExecutionPlanMetricsSet::new(),
                &context.task_ctx(),
            )
            .await;
        // The refusal is the call's error, or the first of its stream.
        let refusal = match sent {
            Err(error) => error.to_string(),
            Ok(mut stream) => match stream.next().await {
                Some(Err(error)) => error.to_string(),
                _ => panic!("the worker took {sql}"),
            },
        };
        assert!(refusal.contains("a reader's worker refuses a stage") && refusal.contains(why), "{sql}: {refusal}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_spread_over_three_readers_answers_as_one_reader_does() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let writer = cluster.process("writer", "writeonly", &[]);
    // Six hours of four hosts: a file per hour for the workers to share.
    let mut body = String::new();
    for hour in 0..6u64 {
        for host in ["a", "b", "c", "d"] {
            for i in 0..50u64 {
                let time = 1_700_000_000_000_000_000u64 + hour * 3_600_000_000_000 + i * 60_000_000_000;
                body.push_str(&format!("cpu,host={host} usage={}.5,n={i}i {time}\n", hour * 10 + i));
            }
        }
    }
    let (status, text) = post(&writer.url("/write?db=default"), body).await;
    assert_eq!(status, 204, "{text}");
    let ports: Vec<String> = (0..3).map(|_| free_port().to_string()).collect();
    // On by default: the flag is not given.
    let readers: Vec<Server> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            cluster.process(
                &format!("reader{i}"),
                "readonly",
                &["--flightsql-port", port, "--distributed-min-bytes", "0"],
            )
        })
        .collect();
    let local = cluster.process("local", "readonly", &["--distributed", "false"]);
    let all = || async {
        let (Some((_, a)), Some((_, b))) = (
            query(&readers[0], "SELECT count(*) AS n FROM cpu").await,
            query(&local, "SELECT count(*) AS n FROM cpu").await,
        ) else {
            return false;
        };
        a["results"][0]["n"] == 1200 && b["results"][0]["n"] == 1200
    };
    assert!(eventually(Duration::from_secs(60), all).await, "{}", readers[0].log_text());

    // The readers find each other through their heartbeats within seconds.
    let grouped =
        "SELECT host, count(*) AS rows, avg(usage) AS mean, max(n) AS top FROM cpu GROUP BY host ORDER BY host";
    let spread = || async {
        let Some((200, body)) = query(&readers[0], &format!("EXPLAIN {grouped}")).await else { return false };
        body.to_string().contains("Stage")
    };
    let explained = eventually(Duration::from_secs(30), spread).await;
    let plan = query(&readers[0], &format!("EXPLAIN {grouped}")).await;
    assert!(explained, "the plan is not spread: {plan:?}\n{}", readers[0].log_text());
    let local_plan = query(&local, &format!("EXPLAIN {grouped}")).await;
    assert!(!format!("{local_plan:?}").contains("Stage"), "{local_plan:?}");
    // It names the workers: the three readers.
    let shown = format!("{plan:?}");
    for port in &ports {
        assert!(shown.contains(&format!("http://127.0.0.1:{port}/")), "reader on {port} not listed: {shown}");
    }
    #[cfg(feature = "distributed")]
    assert_worker_kept_to_its_cluster(&cluster, &ports[1]).await;

    for sql in [
        grouped,
        "SELECT count(*) AS rows, sum(n) AS total FROM cpu",
        "SELECT date_trunc('hour', time) AS hour, host, max(usage) AS peak FROM cpu GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT host, usage FROM cpu WHERE usage > 55 ORDER BY time, host LIMIT 20",
    ] {
        assert_spread(&readers[0], sql).await;
        assert_eq!(answer(&readers[0], sql).await, answer(&local, sql).await, "{sql}");
    }
    // A reader started now is a worker from its first heartbeat.
    let port = free_port().to_string();
    let late = cluster.process(
        "reader3",
        "readonly",
        &["--flightsql-port", &port, "--distributed", "true", "--distributed-min-bytes", "0"],
    );
    let four = || async {
        let Some((200, body)) = query(&readers[0], &format!("EXPLAIN {grouped}")).await else { return false };
        body.to_string().contains("tasks=4")
    };
    assert!(eventually(Duration::from_secs(30), four).await, "{}", late.log_text());
    assert_eq!(answer(&readers[0], grouped).await, answer(&local, grouped).await);
    // A worker that dies: the queries sent to it fail with an error to
    // retry (HTTP 503), never a partial answer, until its heartbeats stop
    // counting and the others answer without it.
    let mut late = late;
    late.kill9();
    let expected = answer(&local, grouped).await;
    let mut failures = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut recovered = false;
    while !recovered && std::time::Instant::now() < deadline {
        match query(&readers[0], grouped).await {
            Some((200, body)) => {
                assert_eq!(body["results"], expected, "a partial answer");
                recovered = true;
            }
            other => {
                failures.push(format!("{other:?}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(recovered, "{failures:?}");
    // The dead reader stays listed for seconds after its last heartbeat, and
    // a query right after the kill has a task for it.
    assert!(!failures.is_empty(), "no query met the dead reader");
    let other: Vec<&String> =
        failures.iter().filter(|f| !(f.contains("503") && f.contains("could not be reached; retry"))).collect();
    assert!(other.is_empty(), "{other:?}");

    // A gap fill travels with HourglassDB's codec; a window function stays
    // where it was received.
    let gap_fill = "SELECT date_bin_gapfill(INTERVAL '30 minutes', time) AS bucket, host, avg(usage) AS usage, \
                    locf(max(n)) AS top FROM cpu WHERE time >= '2023-11-14T21:00:00Z' AND time < '2023-11-15T05:00:00Z' \
                    GROUP BY 1, 2 ORDER BY 1, 2";
    assert_spread(&readers[0], gap_fill).await;
    let filled = answer(&readers[0], gap_fill).await;
    assert_eq!(filled.as_array().map(Vec::len), Some(16 * 4), "every bucket of every host");
    assert_eq!(filled, answer(&local, gap_fill).await);
    let window = "SELECT time, host, difference(usage) OVER (PARTITION BY host ORDER BY time) AS change FROM cpu \
                  WHERE host = 'b' ORDER BY time";
    let plan = query(&readers[0], &format!("EXPLAIN {window}")).await;
    assert!(!format!("{plan:?}").contains("Stage"), "{plan:?}");
    assert_eq!(answer(&readers[0], window).await, answer(&local, window).await);

    // Rows written again over the first hour: a file that overlaps the
    // hour's first, merged with it row by row, by one task.
    let again: String = (0..50u64)
        .map(|i| format!("cpu,host=a usage=-{i}.5 {}\n", 1_700_000_000_000_000_000u64 + i * 60_000_000_000))
        .collect();
    let (status, text) = post(&writer.url("/write?db=default"), again).await;
    assert_eq!(status, 204, "{text}");
    let merged = || async {
        for server in [&local, &readers[0]] {
            let Some((200, body)) = query(server, "SELECT count(*) AS n FROM cpu WHERE usage < 0").await else {
                return false;
            };
            if body["results"][0]["n"] != 50 {
                return false;
            }
        }
        true
    };
    assert!(eventually(Duration::from_secs(60), merged).await, "{}", local.log_text());
    let plan = query(&readers[0], &format!("EXPLAIN {grouped}")).await;
    let shown = format!("{plan:?}");
    assert!(shown.contains("DeduplicateExec") && shown.contains("Stage"), "{shown}");
    for sql in [
        grouped,
        "SELECT count(*) AS rows, min(usage) AS low, sum(n) AS total FROM cpu",
        "SELECT time, usage, n FROM cpu WHERE host = 'a' ORDER BY time LIMIT 60",
        // The overlapping hour alone: a merge with no other part beside it.
        "SELECT host, count(*) AS rows, sum(usage) AS total FROM cpu WHERE time < '2023-11-14T23:00:00Z' GROUP BY host \
         ORDER BY host",
    ] {
        assert_spread(&readers[0], sql).await;
        assert_eq!(answer(&readers[0], sql).await, answer(&local, sql).await, "{sql}");
    }
    assert_eq!(answer(&readers[0], "SELECT count(*) AS n FROM cpu").await[0]["n"], 1200);

    // A reader that stops takes itself out of the live readers as it
    // stops (not five seconds later); the others go on over two tasks.
    let registry = format!("hourglass:readers:{}", env!("CARGO_PKG_VERSION"));
    let listed = || cluster.redis.command(&["ZRANGE", &registry, "0", "-1"]).unwrap_or_default();
    let third = format!("127.0.0.1:{}", ports[2]);
    assert!(listed().contains(&third), "{}", listed());
    let mut readers = readers;
    let mut stopping = readers.pop().expect("three readers");
    // Queries spread while it stops all answer: it serves the stages it is
    // sent until the others have read the list without it.
    let expected = answer(&local, grouped).await;
    stopping.sigterm();
    let mut during = Vec::new();
    let mut after = 0;
    while after < 5 {
        during.push(query(&readers[0], grouped).await);
        let serving = client().get(stopping.url("/ready")).send().await.is_ok_and(|r| r.status() == 200);
        if !serving {
            after += 1;
        }
    }
    let failed: Vec<_> = during.iter().filter(|q| !matches!(q, Some((200, b)) if b["results"] == expected)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} queries failed while a reader stopped: {failed:?}",
        failed.len(),
        during.len()
    );
    assert!(stopping.wait_exit().success(), "{}", stopping.log_text());
    assert!(!listed().contains(&third), "{}", listed());
    let two = || async {
        let Some((200, body)) = query(&readers[0], &format!("EXPLAIN {grouped}")).await else { return false };
        body.to_string().contains("tasks=2")
    };
    assert!(eventually(Duration::from_secs(30), two).await, "{}", readers[0].log_text());
    assert_eq!(answer(&readers[0], grouped).await, answer(&local, grouped).await);

    // EXPLAIN ANALYZE counts what the catalog pruned once, as one reader
    // does, however many tasks read the files.
    let files_scanned = |plan: serde_json::Value| {
        let text = plan.to_string();
        let at = text.find("files_scanned=").map(|i| i + "files_scanned=".len());
        at.map(|i| text[i..].chars().take_while(char::is_ascii_digit).collect::<String>())
    };
    let analyze = format!("EXPLAIN ANALYZE {grouped}");
    let spread_count = files_scanned(answer(&readers[0], &analyze).await);
    assert!(spread_count.is_some(), "no files_scanned in the spread EXPLAIN ANALYZE");
    assert_eq!(spread_count, files_scanned(answer(&local, &analyze).await));
    let metrics = client().get(readers[0].url("/metrics")).send().await.unwrap().text().await.unwrap();
    let spread_total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hourglass_queries_spread_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(spread_total.is_some_and(|n| n >= 10), "{spread_total:?}");

    // A worker killed while its task runs (the join takes seconds; the kill
    // comes as it starts): the query fails with the error to retry, not a
    // partial answer.
    let heavy =
        "SELECT a.host, count(*) AS rows FROM cpu a JOIN cpu b ON a.host = b.host JOIN cpu c ON b.host = c.host \
                 AND c.n < 3 GROUP BY a.host ORDER BY a.host";
    let expected = answer(&local, heavy).await;
    let running = {
        let coordinator = readers[0].url("/query?db=default");
        tokio::spawn(async move {
            let response = client().post(coordinator).json_body(&serde_json::json!({ "query": heavy })).send().await;
            let response = response.expect("the coordinator answers");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    };
    let queries_running = || async {
        let metrics = client().get(readers[0].url("/metrics")).send().await.ok()?.text().await.ok()?;
        metrics.lines().find_map(|l| l.strip_prefix("hourglass_queries_running ")?.trim().parse::<u64>().ok())
    };
    assert!(
        eventually(Duration::from_secs(30), || async { queries_running().await.is_some_and(|n| n > 0) }).await,
        "the heavy query never ran"
    );
    let started = std::time::Instant::now();
    let mut worker = readers.pop().expect("two readers");
    worker.kill9();
    let (status, body) = running.await.expect("the query task");
    eprintln!("the heavy query ended {:?} after the kill: {status}", started.elapsed());
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("could not be reached; retry"), "{body}");
    assert!(
        eventually(Duration::from_secs(30), || async {
            matches!(query(&readers[0], heavy).await, Some((200, body)) if body["results"] == expected)
        })
        .await,
        "{}",
        readers[0].log_text()
    );

    // A reader started after the secret changed in Redis (the others kept
    // the old one): its spread queries fail with what to do, not as lost
    // workers to retry.
    #[cfg(feature = "distributed")]
    {
        let changed = "f".repeat(64);
        assert!(cluster.redis.command(&["SET", "hourglass:worker_secret", &changed]).is_some());
        let port = free_port().to_string();
        let odd = cluster.process("odd", "readonly", &["--flightsql-port", &port, "--distributed-min-bytes", "0"]);
        let refused = || async {
            matches!(query(&odd, grouped).await, Some((500, body))
                if body.to_string().contains("restart all the readers together"))
        };
        assert!(
            eventually(Duration::from_secs(30), refused).await,
            "{:?}\n{}",
            query(&odd, grouped).await,
            odd.log_text()
        );
    }
}
