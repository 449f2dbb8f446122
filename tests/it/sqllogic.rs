//! Runs `sql/*.slt` against the engine in process, over the fixtures of
//! `sql/fixtures/<database>.lp`.
//!
//! Every file runs three times over the same rows held three ways, because the
//! engine reads them along different paths: all in the write buffer, all in
//! Parquet files (one file per `# persist` section, so sections overlap file
//! over file), and the sections before the last `# persist` in files with the
//! rest in the buffer (buffer over file).
//!
//! Values are printed the way the Postgres runner will print them: NULL as
//! `NULL`, an empty string as `(empty)`, floats in their shortest round-trip
//! form, timestamps in RFC 3339 UTC with only the fraction they need.
//!
//! The same files run over the Postgres wire and over FlightSQL too, against
//! the server process (fixture sections persisted by restarts, the last one in
//! the buffer): over Postgres with values printed from the text it sends and
//! types from the prepared statement's columns; over FlightSQL from the Arrow
//! batches of the statement's one endpoint.
//!
//! `HOURGLASS_SLT_COMPLETE=1 tests/run sqllogic` rewrites the expected results
//! from what the engine returns; review the diff before committing it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use futures::TryStreamExt;
use hourglassdb::catalog::DEFAULT_DATABASE;
use hourglassdb::ingest::line_protocol::Precision;
use hourglassdb::ingest::{Ingester, LineProtocolWrite};
use hourglassdb::query::{QueryEngine, QueryError};
use hourglassdb::server::Components;
use sqllogictest::{ColumnType, DBOutput};

/// How the fixture rows are held when the files run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Holding {
    Buffer,
    Files,
    FilesThenBuffer,
}

/// The column types of the `query` header: the letters DataFusion's own
/// sqllogictest files use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Type {
    Text,
    Integer,
    Float,
    Boolean,
    Timestamp,
    Other,
}

impl ColumnType for Type {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'T' => Type::Text,
            'I' => Type::Integer,
            'R' => Type::Float,
            'B' => Type::Boolean,
            'P' => Type::Timestamp,
            _ => Type::Other,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Type::Text => 'T',
            Type::Integer => 'I',
            Type::Float => 'R',
            Type::Boolean => 'B',
            Type::Timestamp => 'P',
            Type::Other => '?',
        }
    }
}

fn column_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Dictionary(_, value) => column_type(value),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::Text,
        t if t.is_integer() => Type::Integer,
        t if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) => Type::Float,
        DataType::Boolean => Type::Boolean,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => Type::Timestamp,
        _ => Type::Other,
    }
}

/// One cell, printed as the Postgres runner prints it.
fn cell(array: &dyn Array, formatter: &ArrayFormatter<'_>, row: usize) -> String {
    if array.is_null(row) {
        return "NULL".into();
    }
    let float = match array.data_type() {
        DataType::Float64 => Some(array.as_any().downcast_ref::<arrow::array::Float64Array>().map(|a| a.value(row))),
        DataType::Float32 => {
            Some(array.as_any().downcast_ref::<arrow::array::Float32Array>().map(|a| f64::from(a.value(row))))
        }
        _ => None,
    };
    let text = match float {
        Some(Some(value)) => format!("{value}"),
        _ => formatter.value(row).to_string(),
    };
    if text.is_empty() {
        "(empty)".into()
    } else {
        text
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.fZ"));
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter<'_>> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("every column type can be printed"))
            .collect();
        for row in 0..batch.num_rows() {
            out.push(batch.columns().iter().zip(&formatters).map(|(c, f)| cell(c.as_ref(), f, row)).collect());
        }
    }
    out
}

/// A result in Arrow as the runner compares it.
fn arrow_output(schema: &arrow::datatypes::Schema, batches: &[RecordBatch]) -> DBOutput<Type> {
    if schema.fields().is_empty() {
        return DBOutput::StatementComplete(0);
    }
    DBOutput::Rows { types: schema.fields().iter().map(|f| column_type(f.data_type())).collect(), rows: rows(batches) }
}

/// A connection: the engine with `default` as its database.
struct Engine(Arc<QueryEngine>);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SqlError(String);

impl From<QueryError> for SqlError {
    fn from(e: QueryError) -> Self {
        SqlError(e.to_string())
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Engine {
    type Error = SqlError;
    type ColumnType = Type;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Type>, SqlError> {
        let output = self.0.sql(DEFAULT_DATABASE, sql, &hourglassdb::access::Access::Full).await?;
        let schema = Arc::clone(&output.schema);
        let batches: Vec<RecordBatch> = output.stream.try_collect().await.map_err(|e| SqlError(e.to_string()))?;
        Ok(arrow_output(&schema, &batches))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "hourglass"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

fn sql_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sql")
}

/// Sections of a fixture, split at `# persist` lines.
fn sections(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in text.lines() {
        if line.trim() == "# persist" {
            out.push(String::new());
        } else {
            let last = out.last_mut().expect("one section at least");
            last.push_str(line);
            last.push('\n');
        }
    }
    out
}

async fn write(ingester: &Ingester, database: &str, body: String) {
    let write = LineProtocolWrite {
        precision: Precision::Nanosecond,
        accept_partial: false,
        no_sync: false,
        received_at_ns: 0,
    };
    let outcome = ingester
        .write_line_protocol(ingester.admit().await.expect("a write slot"), database, Bytes::from(body), write)
        .await
        .expect("fixture writes");
    assert_eq!(outcome.rejected_lines, 0, "fixture {database}: {:?}", outcome.errors);
}

/// A fresh server's components under `root`, holding the fixtures as `holding` says.
async fn load(root: &Path, holding: Holding) -> Components {
    let args = ["hourglass", "--root", root.to_str().expect("utf-8 temp path"), "--save-timeout-s", "3600"];
    let parsed = hourglassdb::cli::parse(args.iter().map(Into::into).collect()).expect("settings");
    let settings = parsed.cli.settings;
    let layers = hourglassdb::config::resolve_layers(&settings, &|_| None, None).expect("layers");
    let components = Components::open(&settings, layers).await.expect("components open");
    let ingester = components.ingester.as_ref().expect("aio mode writes");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(sql_dir().join("fixtures"))
        .expect("sql/fixtures")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "lp"))
        .collect();
    fixtures.sort();
    for path in fixtures {
        let database = path.file_stem().and_then(|s| s.to_str()).expect("fixture name").to_owned();
        let sections = sections(&std::fs::read_to_string(&path).expect("fixture"));
        let last = sections.len() - 1;
        for (i, section) in sections.into_iter().enumerate() {
            write(ingester, &database, section).await;
            let persist = match holding {
                Holding::Buffer => false,
                Holding::Files => true,
                Holding::FilesThenBuffer => i < last,
            };
            if persist {
                let report = ingester.persist_now().await.expect("persist");
                assert_eq!(report.failed, 0);
            }
        }
    }
    components
}

fn sql_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(sql_dir())
        .expect("sql/")
        .map(|e| e.expect("sql entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no sql/*.slt files");
    files
}

/// A runner of one file on `engine`, as the in-process runs make it.
fn engine_runner(
    engine: &Arc<QueryEngine>,
) -> sqllogictest::Runner<Engine, impl sqllogictest::MakeConnection<Conn = Engine>> {
    let engine = Arc::clone(engine);
    let connect = move || {
        let engine = Arc::clone(&engine);
        async move { Ok::<_, SqlError>(Engine(engine)) }
    };
    let mut runner = sqllogictest::Runner::new(connect);
    runner.add_label("hourglass");
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_files_pass_over_buffer_files_and_both() {
    let files = sql_files();
    let complete = std::env::var_os("HOURGLASS_SLT_COMPLETE").is_some();
    let mut failures = Vec::new();
    for holding in [Holding::Buffer, Holding::Files, Holding::FilesThenBuffer] {
        let dir = tempfile::tempdir().expect("temp dir");
        let components = load(&dir.path().join("data"), holding).await;
        let engine = Arc::clone(components.engine.as_ref().expect("aio mode queries"));
        for file in &files {
            let mut runner = engine_runner(&engine);
            if complete && holding == Holding::Buffer {
                runner
                    .update_test_file(
                        file,
                        " ",
                        sqllogictest::default_validator,
                        sqllogictest::default_normalizer,
                        sqllogictest::strict_column_validator,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("completing {}: {e}", file.display()));
            } else if let Err(e) = runner.run_file_async(file).await {
                failures.push(format!("{} ({holding:?}):\n{}", file.display(), e.display(true)));
            }
        }
        if let Some(ingester) = &components.ingester {
            ingester.shutdown().await.expect("shutdown");
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

/// The three workers of [`sql_files_answer_the_same_spread_over_three_workers`].
#[cfg(feature = "distributed")]
#[derive(Debug)]
struct FixedWorkers(Vec<url::Url>);

#[cfg(feature = "distributed")]
impl hourglassdb::query::distributed::Workers for FixedWorkers {
    fn urls(&self) -> Vec<url::Url> {
        self.0.clone()
    }
}

/// Every file again over the rows in Parquet files (what a cluster's reader
/// reads), each query spread over three workers served on loopback ports
/// (datafusion-distributed's gRPC service, as a reader serves it on its
/// FlightSQL port, with the secret and the stage check): every stage is
/// encoded, sent, decoded and run by a worker, and the answers must be the
/// ones the engine gives alone. Deletes and inserts run where they were
/// received, as in a cluster's writer.
#[cfg(feature = "distributed")]
#[tokio::test(flavor = "multi_thread")]
async fn sql_files_answer_the_same_spread_over_three_workers() {
    use hourglassdb::query::distributed::security::WorkerSecret;
    use hourglassdb::query::distributed::DistributionSettings;

    let dir = tempfile::tempdir().expect("temp dir");
    let components = load(&dir.path().join("data"), Holding::Files).await;
    let alone = Arc::clone(components.engine.as_ref().expect("aio mode queries"));
    let ports: Vec<u16> = (0..3).map(|_| crate::support::free_port()).collect();
    let urls = ports.iter().map(|p| url::Url::parse(&format!("http://127.0.0.1:{p}")).expect("url")).collect();
    let secret = WorkerSecret::new("sqllogic-secret").expect("secret");
    let settings = DistributionSettings { enabled: true, min_bytes: 0 };
    let spread = Arc::new(alone.coordinating(Arc::new(FixedWorkers(urls)), settings, secret));
    let mut servers = Vec::new();
    for port in &ports {
        let served = spread.distributed_worker().expect("a coordinating engine serves a worker");
        let service =
            tonic::service::interceptor::InterceptedService::new(served.worker.into_worker_server(), served.check);
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
        servers.push(tokio::spawn(tonic::transport::Server::builder().add_service(service).serve(address)));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for port in &ports {
        while tokio::net::TcpStream::connect(("127.0.0.1", *port)).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "worker on {port} did not listen");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let mut explain = Engine(Arc::clone(&spread));
    let plan = sqllogictest::AsyncDB::run(&mut explain, "EXPLAIN SELECT host, count(*) FROM cpu GROUP BY host")
        .await
        .expect("explain");
    let sqllogictest::DBOutput::Rows { rows, .. } = plan else { panic!("EXPLAIN answers rows") };
    let plan = rows.concat().join("\n");
    assert!(plan.contains("tasks=3"), "not spread over the three workers:\n{plan}");

    let mut failures = Vec::new();
    for file in sql_files() {
        let mut runner = engine_runner(&spread);
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{} (spread over three workers):\n{}", file.display(), e.display(true)));
        }
    }
    // About half the files' queries are spread (50 of 106 when this was
    // written); the rest are catalog queries or keep a window function, a
    // gap fill, a delete or rows inserted into the buffer here.
    let spread_count = spread.queries_spread();
    assert!(spread_count >= 40, "only {spread_count} queries were spread");
    for server in servers {
        server.abort();
    }
    if let Some(ingester) = &components.ingester {
        ingester.shutdown().await.expect("shutdown");
    }
    assert!(failures.is_empty(), "{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

/// A connection over the Postgres wire.
struct PgWire(tokio_postgres::Client);

fn pg_column_type(pg: &tokio_postgres::types::Type) -> Type {
    use tokio_postgres::types::Type as Pg;
    match *pg {
        Pg::TEXT | Pg::VARCHAR | Pg::BPCHAR | Pg::NAME => Type::Text,
        Pg::INT2 | Pg::INT4 | Pg::INT8 | Pg::NUMERIC => Type::Integer,
        Pg::FLOAT4 | Pg::FLOAT8 => Type::Float,
        Pg::BOOL => Type::Boolean,
        Pg::TIMESTAMPTZ | Pg::TIMESTAMP | Pg::DATE => Type::Timestamp,
        _ => Type::Other,
    }
}

/// A value as Postgres sent it in text, printed as the in-process runner prints it.
fn pg_cell(value: Option<&str>, column: &Type) -> String {
    let Some(text) = value else { return "NULL".into() };
    match column {
        _ if text.is_empty() => "(empty)".into(),
        Type::Boolean => match text {
            "t" => "true".into(),
            "f" => "false".into(),
            other => other.into(),
        },
        Type::Float => text.parse::<f64>().map_or_else(|_| text.to_owned(), |v| format!("{v}")),
        Type::Timestamp => chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
            .unwrap_or_else(|_| text.to_owned()),
        _ => text.to_owned(),
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for PgWire {
    type Error = SqlError;
    type ColumnType = Type;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Type>, SqlError> {
        let error = |e: tokio_postgres::Error| {
            SqlError(e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_owned()))
        };
        // Types from the prepared statement; values from the simple protocol's text.
        let types: Vec<Type> = match self.0.prepare(sql).await {
            Ok(statement) => statement.columns().iter().map(|c| pg_column_type(c.type_())).collect(),
            Err(e) => return Err(error(e)),
        };
        let messages = self.0.simple_query(sql).await.map_err(error)?;
        let mut completed = None;
        let rows: Vec<Vec<String>> = messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| pg_cell(row.get(i), &types[i])).collect())
                }
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => {
                    completed = Some(n);
                    None
                }
                _ => None,
            })
            .collect();
        // INSERT and DELETE answer their count in the command tag (`DELETE 2`),
        // where the other fronts return a `count` row.
        let counted = sql
            .trim_start()
            .get(..6)
            .is_some_and(|w| w.eq_ignore_ascii_case("insert") || w.eq_ignore_ascii_case("delete"));
        if let (true, true, Some(n)) = (counted, rows.is_empty(), completed) {
            return Ok(DBOutput::Rows { types: vec![Type::Integer], rows: vec![vec![n.to_string()]] });
        }
        if types.is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "postgres"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A connection over FlightSQL.
struct FlightSql(arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>);

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for FlightSql {
    type Error = SqlError;
    type ColumnType = Type;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Type>, SqlError> {
        let error = |e: arrow_flight::error::FlightError| match e {
            arrow_flight::error::FlightError::Tonic(status) => SqlError(status.message().to_owned()),
            other => SqlError(other.to_string()),
        };
        let info = self.0.execute(sql.to_owned(), None).await.map_err(error)?;
        let schema = info.clone().try_decode_schema().map_err(|e| SqlError(e.to_string()))?;
        let ticket =
            info.endpoint.first().and_then(|e| e.ticket.clone()).ok_or_else(|| SqlError("no ticket".into()))?;
        let batches: Vec<RecordBatch> =
            self.0.do_get(ticket).await.map_err(error)?.try_collect().await.map_err(error)?;
        Ok(arrow_output(&schema, &batches))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "flightsql"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_files_pass_over_the_postgres_wire_and_flightsql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pg_port = crate::support::free_port();
    let port = pg_port.to_string();
    let flight_port = crate::support::free_port().to_string();
    let mut server = crate::support::Server::start(
        &dir.path().join("data"),
        &["--pg-port", &port, "--flightsql-port", &flight_port, "--save-timeout-s", "3600"],
    );
    let fixture = sections(&std::fs::read_to_string(sql_dir().join("fixtures/default.lp")).expect("fixture"));
    let last = fixture.len() - 1;
    for (i, section) in fixture.into_iter().enumerate() {
        let (status, body) = crate::support::post(&server.url("/write?db=default&precision=ns"), section).await;
        assert_eq!(status, 204, "{body}");
        if i < last {
            assert!(server.terminate().success());
            server.restart();
        }
    }
    let config = format!("host=127.0.0.1 port={pg_port} dbname=default user=slt connect_timeout=10");
    let mut failures = Vec::new();
    for file in sql_files() {
        let connect = {
            let config = config.clone();
            move || {
                let config = config.clone();
                async move {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    loop {
                        match tokio_postgres::connect(&config, tokio_postgres::NoTls).await {
                            Ok((client, connection)) => {
                                tokio::spawn(connection);
                                return Ok(PgWire(client));
                            }
                            Err(_) if std::time::Instant::now() < deadline => {
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await
                            }
                            Err(e) => return Err(SqlError(e.to_string())),
                        }
                    }
                }
            }
        };
        let mut runner = sqllogictest::Runner::new(connect);
        runner.add_label("postgres");
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{} (Postgres):\n{}", file.display(), e.display(true)));
        }

        let address = format!("http://127.0.0.1:{flight_port}");
        let connect = move || {
            let address = address.clone();
            async move {
                let channel = tonic::transport::Endpoint::from_shared(address)
                    .map_err(|e| SqlError(e.to_string()))?
                    .connect()
                    .await
                    .map_err(|e| SqlError(e.to_string()))?;
                Ok(FlightSql(arrow_flight::sql::client::FlightSqlServiceClient::new(channel)))
            }
        };
        let mut runner = sqllogictest::Runner::new(connect);
        runner.add_label("flightsql");
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{} (FlightSQL):\n{}", file.display(), e.display(true)));
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}
