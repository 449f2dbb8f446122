//! The FlightSQL front, driven by arrow-flight's own FlightSqlServiceClient
//! and FlightClient, and by the Python clients (ADBC, pyarrow.flight,
//! influxdb3-python) in tests/python/flight_clients.py.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimeUnit};
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, CommandStatementIngest, SqlInfo, TableDefinitionOptions, TableExistsOption,
    TableNotExistOption,
};
use arrow_flight::{FlightClient, FlightInfo, Ticket};
use futures::TryStreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use crate::support::{batch_rows, client, free_port, post, row, self_signed, test_python, Server};

/// A server with the FlightSQL front on a free port, and that port.
fn flight_server(root: &Path, args: &[&str]) -> (Server, u16) {
    let port = free_port();
    let port_text = port.to_string();
    let mut all = vec!["--flightsql-port", port_text.as_str()];
    all.extend_from_slice(args);
    (Server::start(root, &all), port)
}

async fn channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.expect("connect")
}

pub(crate) async fn sql_client(port: u16, database: Option<&str>) -> FlightSqlServiceClient<Channel> {
    let mut client = FlightSqlServiceClient::new(channel(port).await);
    if let Some(database) = database {
        client.set_header("database", database);
    }
    client
}

/// The gRPC code behind a client error.
pub(crate) fn code(error: &FlightError) -> Code {
    if let FlightError::Tonic(status) = error {
        return status.code();
    }
    // Some client calls wrap the status in an Arrow error; its text keeps the code.
    let text = format!("{error:?}");
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::Unauthenticated,
        Code::ResourceExhausted,
        Code::DeadlineExceeded,
        Code::Unimplemented,
        Code::AlreadyExists,
        Code::Cancelled,
        Code::PermissionDenied,
        Code::Unavailable,
    ] {
        if text.contains(&format!("{code:?}")) {
            return code;
        }
    }
    panic!("no gRPC code in: {text}")
}

/// Reads the one endpoint of a FlightInfo, batch by batch.
async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, FlightError> {
    assert_eq!(info.endpoint.len(), 1, "exactly one endpoint (Grafana refuses others)");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let stream = client.do_get(ticket).await?;
    stream.try_collect().await
}

/// Runs a query and returns its rows as column → text maps.
async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<BTreeMap<String, String>>, FlightError> {
    let info = client.execute(sql.to_owned(), None).await?;
    Ok(fetch(client, info).await?.iter().flat_map(batch_rows).collect())
}

/// Runs `sql` over FlightSQL on `port`, in the default database.
pub(crate) async fn query_on(port: u16, sql: &str) -> Result<Vec<BTreeMap<String, String>>, FlightError> {
    query(&mut sql_client(port, None).await, sql).await
}

async fn write_cpu(server: &Server, database: &str) {
    let body = "cpu,host=a usage=1.5 1700000000000000000\ncpu,host=b usage=2.5 1700000001000000000\n\
                cpu,host=a usage=3.5 1700000002000000000\n";
    let (status, text) = post(&server.url(&format!("/write?db={database}")), body).await;
    assert_eq!(status, 204, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_and_prepared_statements_answer_through_one_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = flight_server(&dir.path().join("data"), &[]);
    write_cpu(&server, "mydb").await;
    let mut client = sql_client(port, Some("mydb")).await;

    let rows = query(&mut client, "SELECT host, usage FROM cpu ORDER BY time").await.unwrap();
    assert_eq!(
        rows,
        vec![
            row(&[("host", "a"), ("usage", "1.5")]),
            row(&[("host", "b"), ("usage", "2.5")]),
            row(&[("host", "a"), ("usage", "3.5")])
        ]
    );

    // The FlightInfo's schema is the schema of the data (tags arrive as strings).
    let info = client.execute("SELECT * FROM cpu".into(), None).await.unwrap();
    let announced: Schema = info.clone().try_decode_schema().unwrap();
    let batches = fetch(&mut client, info).await.unwrap();
    assert_eq!(announced.fields(), batches[0].schema().fields());
    assert_eq!(announced.field_with_name("host").unwrap().data_type(), &DataType::Utf8);

    // An empty result still carries its schema.
    let info = client.execute("SELECT host, usage FROM cpu WHERE usage > 100".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.unwrap();
    let mut rows = 0;
    while let Some(batch) = stream.try_next().await.unwrap() {
        rows += batch.num_rows();
    }
    assert_eq!(rows, 0);
    let schema = stream.schema().expect("the schema arrives without rows");
    assert_eq!(schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["host", "usage"]);

    // Results are streamed batch by batch, not collected first.
    let info = client.execute("SELECT value FROM generate_series(1, 100000) AS t(value)".into(), None).await.unwrap();
    let batches = fetch(&mut client, info).await.unwrap();
    assert!(batches.len() > 1, "{} batch(es)", batches.len());
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 100_000);

    // Prepared statements: parameter types from the plan, values bound by DoPut.
    let mut prepared =
        client.prepare("SELECT host, usage FROM cpu WHERE usage > $1 ORDER BY time".into(), None).await.unwrap();
    let parameters = prepared.parameter_schema().unwrap().clone();
    assert_eq!(parameters.fields().len(), 1);
    assert_eq!(parameters.field(0).data_type(), &DataType::Float64);
    assert_eq!(
        prepared.dataset_schema().unwrap().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
        ["host", "usage"]
    );
    for (threshold, expected) in [(2.0, 2), (3.0, 1)] {
        let batch = RecordBatch::try_new(
            Arc::new(parameters.clone()),
            vec![Arc::new(Float64Array::from(vec![threshold])) as ArrayRef],
        )
        .unwrap();
        prepared.set_parameters(batch).unwrap();
        let info = prepared.execute().await.unwrap();
        let rows: usize = fetch(&mut client, info).await.unwrap().iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, expected, "usage > {threshold}");
    }
    prepared.close().await.unwrap();

    // JDBC and ADBC users write `?`; a `?` in a string or a comment is text.
    let mut prepared = client
        .prepare(
            "SELECT '?' AS q, $$?$$ AS d, host /* /* ? */ ? */ FROM cpu WHERE usage > ? AND host <> 'it''s?' -- why?\n"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(prepared.parameter_schema().unwrap().fields().len(), 1);
    let batch = RecordBatch::try_new(
        Arc::new(prepared.parameter_schema().unwrap().clone()),
        vec![Arc::new(Float64Array::from(vec![3.0])) as ArrayRef],
    )
    .unwrap();
    prepared.set_parameters(batch).unwrap();
    let info = prepared.execute().await.unwrap();
    let rows: Vec<BTreeMap<String, String>> =
        fetch(&mut client, info).await.unwrap().iter().flat_map(batch_rows).collect();
    assert_eq!(rows, vec![row(&[("q", "?"), ("d", "?"), ("host", "a")])]);

    // The announced schema is planned with the bound values, as the data is.
    let mut prepared = client.prepare("SELECT ? AS v".into(), None).await.unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)]));
    let batch =
        RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(vec![7])) as ArrayRef]).unwrap();
    prepared.set_parameters(batch).unwrap();
    let info = prepared.execute().await.unwrap();
    let announced: Schema = info.clone().try_decode_schema().unwrap();
    let batches = fetch(&mut client, info).await.unwrap();
    assert_eq!(announced.field(0).data_type(), &DataType::Int64);
    assert_eq!(batches[0].schema().field(0).data_type(), &DataType::Int64);
    assert_eq!(batches.iter().flat_map(batch_rows).collect::<Vec<_>>(), vec![row(&[("v", "7")])]);

    // No rows bound is the client's error, not a crash.
    let mut prepared = client.prepare("SELECT host FROM cpu WHERE usage > ?".into(), None).await.unwrap();
    let empty = RecordBatch::new_empty(Arc::new(Schema::new(vec![Field::new("$1", DataType::Float64, true)])));
    prepared.set_parameters(empty).unwrap();
    let error = match prepared.execute().await {
        Ok(info) => fetch(&mut client, info).await.unwrap_err(),
        Err(error) => error,
    };
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");

    // A value that does not fit the parameter's type is the client's error.
    let mut prepared = client.prepare("SELECT host FROM cpu WHERE usage > $1".into(), None).await.unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)]));
    let bad = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["lots"])) as ArrayRef]).unwrap();
    prepared.set_parameters(bad).unwrap();
    let error = match prepared.execute().await {
        Ok(info) => fetch(&mut client, info).await.unwrap_err(),
        Err(error) => error,
    };
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_commands_list_every_database_without_a_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = flight_server(&dir.path().join("data"), &[]);
    write_cpu(&server, "mydb").await;
    write_cpu(&server, "other").await;
    let mut client = sql_client(port, Some("mydb")).await;
    assert_eq!(
        client.execute_update("CREATE VIEW busy AS SELECT host FROM cpu WHERE usage > 2".into(), None).await.unwrap(),
        0
    );

    let info = client.get_catalogs().await.unwrap();
    let catalogs: Vec<String> = fetch(&mut client, info)
        .await
        .unwrap()
        .iter()
        .flat_map(batch_rows)
        .map(|r| r["catalog_name"].clone())
        .collect();
    assert!(catalogs.contains(&"mydb".to_owned()) && catalogs.contains(&"other".to_owned()), "{catalogs:?}");

    // No catalog given (ADBC's adbc_get_objects, Grafana): every database's schemas.
    let info =
        client.get_db_schemas(CommandGetDbSchemas { catalog: None, db_schema_filter_pattern: None }).await.unwrap();
    let schemas: Vec<(String, String)> = fetch(&mut client, info)
        .await
        .unwrap()
        .iter()
        .flat_map(batch_rows)
        .map(|r| (r["catalog_name"].clone(), r["db_schema_name"].clone()))
        .collect();
    for expected in [("mydb", "public"), ("other", "public"), ("mydb", "information_schema")] {
        assert!(schemas.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{expected:?} in {schemas:?}");
    }

    // Tables with their schemas, every catalog, types BASE TABLE and VIEW.
    let command = CommandGetTables {
        catalog: None,
        db_schema_filter_pattern: Some("public".into()),
        table_name_filter_pattern: None,
        table_types: vec!["BASE TABLE".into(), "VIEW".into()],
        include_schema: true,
    };
    let info = client.get_tables(command).await.unwrap();
    let batches = fetch(&mut client, info).await.unwrap();
    let tables: Vec<(String, String, String)> = batches
        .iter()
        .flat_map(batch_rows)
        .map(|r| (r["catalog_name"].clone(), r["table_name"].clone(), r["table_type"].clone()))
        .collect();
    assert_eq!(
        tables,
        [("mydb", "busy", "VIEW"), ("mydb", "cpu", "BASE TABLE"), ("other", "cpu", "BASE TABLE")].map(|(a, b, c)| (
            a.to_owned(),
            b.to_owned(),
            c.to_owned()
        ))
    );
    let schemas = batches[0].column_by_name("table_schema").expect("include_schema gives table_schema");
    let schemas = schemas.as_any().downcast_ref::<arrow::array::BinaryArray>().unwrap();
    let cpu = arrow::ipc::convert::try_schema_from_ipc_buffer(schemas.value(1)).unwrap();
    assert_eq!(
        cpu.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone())).collect::<Vec<_>>(),
        [
            ("host", DataType::Utf8),
            ("usage", DataType::Float64),
            ("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())))
        ]
    );

    // Grafana's table list: BASE TABLE only, no system tables.
    let command = CommandGetTables { table_types: vec!["BASE TABLE".into()], ..Default::default() };
    let info = client.get_tables(command).await.unwrap();
    let names: Vec<String> =
        fetch(&mut client, info).await.unwrap().iter().flat_map(batch_rows).map(|r| r["table_name"].clone()).collect();
    assert_eq!(names, ["cpu", "cpu"]);

    let info = client.get_table_types().await.unwrap();
    let types: Vec<String> =
        fetch(&mut client, info).await.unwrap().iter().flat_map(batch_rows).map(|r| r["table_type"].clone()).collect();
    assert_eq!(types, ["BASE TABLE", "SYSTEM TABLE", "VIEW"]);

    let info = client.get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerReadOnly]).await.unwrap();
    let info_rows: Vec<BTreeMap<String, String>> =
        fetch(&mut client, info).await.unwrap().iter().flat_map(batch_rows).collect();
    assert_eq!(info_rows.len(), 2);
    assert!(info_rows[0]["value"].contains("HourglassDB"), "{info_rows:?}");
    assert!(info_rows[1]["value"].contains("false"), "{info_rows:?}");

    let info = client.get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None }).await.unwrap();
    let type_names: Vec<String> =
        fetch(&mut client, info).await.unwrap().iter().flat_map(batch_rows).map(|r| r["type_name"].clone()).collect();
    for expected in ["bigint", "double precision", "varchar", "boolean", "timestamp with time zone"] {
        assert!(type_names.contains(&expected.to_owned()), "{expected} in {type_names:?}");
    }

    // Measurements have no keys: empty answers, with the columns the specification gives.
    let keys = arrow_flight::sql::CommandGetPrimaryKeys { catalog: None, db_schema: None, table: "cpu".into() };
    let info = client.get_primary_keys(keys).await.unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    assert_eq!(announced.field(5).name(), "key_sequence");
    let batches = fetch(&mut client, info).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    let table = || "cpu".to_owned();
    let infos = [
        client
            .get_exported_keys(arrow_flight::sql::CommandGetExportedKeys {
                catalog: None,
                db_schema: None,
                table: table(),
            })
            .await
            .unwrap(),
        client
            .get_imported_keys(arrow_flight::sql::CommandGetImportedKeys {
                catalog: None,
                db_schema: None,
                table: table(),
            })
            .await
            .unwrap(),
        client
            .get_cross_reference(arrow_flight::sql::CommandGetCrossReference {
                pk_catalog: None,
                pk_db_schema: None,
                pk_table: table(),
                fk_catalog: None,
                fk_db_schema: None,
                fk_table: table(),
            })
            .await
            .unwrap(),
    ];
    for info in infos {
        let announced = info.clone().try_decode_schema().unwrap();
        assert_eq!(announced.fields().len(), 13);
        assert_eq!(announced.field(0).name(), "pk_catalog_name");
        let batches = fetch(&mut client, info).await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }
}

pub(crate) fn ingest_command(
    table: &str,
    if_not_exist: TableNotExistOption,
    if_exists: TableExistsOption,
) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: if_not_exist as i32,
            if_exists: if_exists as i32,
        }),
        table: table.into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    }
}

fn weather_batch(first_second: i64, rows: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        // Flight encoders send dictionaries as plain strings; the field's
        // metadata says it is a tag, as InfluxDB 3 marks tags.
        Field::new("city", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), true)
            .with_metadata([("iox::column::type".to_owned(), "iox::column_type::tag".to_owned())].into()),
        Field::new("temp", DataType::Float64, true),
        Field::new("reading", DataType::Int64, true),
    ]));
    let times: Vec<i64> = (0..rows).map(|i| (1_700_000_000 + first_second + i) * 1_000_000_000).collect();
    let cities: DictionaryArray<Int32Type> = (0..rows).map(|i| if i % 2 == 0 { "oslo" } else { "rome" }).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(arrow::array::TimestampNanosecondArray::from(times).with_timezone("UTC")) as ArrayRef,
            Arc::new(cities),
            Arc::new(Float64Array::from((0..rows).map(|i| i as f64 / 2.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from((0..rows).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_and_bulk_ingest_go_through_the_write_path_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (mut server, port) = flight_server(&root, &["--save-timeout-s", "3600"]);
    write_cpu(&server, "mydb").await;
    let mut client = sql_client(port, Some("mydb")).await;

    let inserted = client
        .execute_update("INSERT INTO cpu (time, host, usage) VALUES (1700000003000000000, 'c', 4.5), (1700000004000000000, 'd', 5.5)".into(), None)
        .await
        .unwrap();
    assert_eq!(inserted, 2);
    client.execute_update("CREATE SCHEMA analytics".into(), None).await.unwrap();
    client.execute_update("CREATE TABLE analytics.hosts AS SELECT DISTINCT host FROM cpu".into(), None).await.unwrap();
    assert_eq!(
        query(&mut client, "SELECT count(*) AS n FROM analytics.hosts").await.unwrap(),
        vec![row(&[("n", "4")])]
    );

    // A prepared INSERT runs once per bound row.
    let mut prepared =
        client.prepare("INSERT INTO cpu (time, host, usage) VALUES ($1, $2, $3)".into(), None).await.unwrap();
    let parameter_schema = Arc::new(prepared.parameter_schema().unwrap().clone());
    assert_eq!(parameter_schema.fields().len(), 3);
    let bound = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, false),
            Field::new("$2", DataType::Utf8, false),
            Field::new("$3", DataType::Float64, false),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![1_700_000_005_000_000_000, 1_700_000_006_000_000_000])) as ArrayRef,
            Arc::new(StringArray::from(vec!["e", "f"])),
            Arc::new(Float64Array::from(vec![6.5, 7.5])),
        ],
    )
    .unwrap();
    prepared.set_parameters(bound).unwrap();
    assert_eq!(prepared.execute_update().await.unwrap(), 2);
    // Nothing to bind: clients send a batch with no columns, and the statement runs once.
    let mut prepared = client
        .prepare("INSERT INTO cpu (time, host, usage) VALUES (1700000007000000000, 'g', 8.5)".into(), None)
        .await
        .unwrap();
    let nothing = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(0)),
    )
    .unwrap();
    prepared.set_parameters(nothing).unwrap();
    assert_eq!(prepared.execute_update().await.unwrap(), 1);

    // Bulk ingest (ADBC's adbc_ingest): a dictionary column is a tag.
    let batches = vec![Ok(weather_batch(0, 1000)), Ok(weather_batch(1000, 500))];
    let command = ingest_command("weather", TableNotExistOption::Create, TableExistsOption::Append);
    assert_eq!(client.execute_ingest(command, futures::stream::iter(batches)).await.unwrap(), 1500);
    let kinds = query(&mut client, "DESCRIBE weather").await.unwrap();
    let kind_of = |column: &str| kinds.iter().find(|r| r["column_name"] == column).map(|r| r["kind"].clone());
    assert_eq!(kind_of("city").as_deref(), Some("tag"));
    assert_eq!(kind_of("temp").as_deref(), Some("field"));

    // Mode create on an existing table, append to a missing one, a field of another type.
    let command = ingest_command("weather", TableNotExistOption::Create, TableExistsOption::Fail);
    let error = client.execute_ingest(command, futures::stream::iter(vec![Ok(weather_batch(0, 1))])).await.unwrap_err();
    assert_eq!(code(&error), Code::AlreadyExists, "{error}");
    let command = ingest_command("missing", TableNotExistOption::Fail, TableExistsOption::Append);
    let error = client.execute_ingest(command, futures::stream::iter(vec![Ok(weather_batch(0, 1))])).await.unwrap_err();
    assert_eq!(code(&error), Code::NotFound, "{error}");
    let wrong = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
            Field::new("temp", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(arrow::array::TimestampNanosecondArray::from(vec![1]).with_timezone("UTC")) as ArrayRef,
            Arc::new(StringArray::from(vec!["warm"])),
        ],
    )
    .unwrap();
    let command = ingest_command("weather", TableNotExistOption::Create, TableExistsOption::Append);
    let error = client.execute_ingest(command, futures::stream::iter(vec![Ok(wrong)])).await.unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");
    assert!(error.to_string().contains("temp"), "{error}");
    // The ingest's catalog and the database header must agree.
    let mut command = ingest_command("weather", TableNotExistOption::Create, TableExistsOption::Append);
    command.catalog = Some("elsewhere".into());
    let error = client.execute_ingest(command, futures::stream::iter(vec![Ok(weather_batch(0, 1))])).await.unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");
    // A measurement name may hold a dot; the modes see that very table.
    for expected in [None, Some(Code::AlreadyExists)] {
        let command = ingest_command("room.temp", TableNotExistOption::Create, TableExistsOption::Fail);
        let result = client.execute_ingest(command, futures::stream::iter(vec![Ok(weather_batch(0, 2))])).await;
        assert_eq!(result.as_ref().err().map(code), expected, "{result:?}");
    }
    assert_eq!(query(&mut client, "SELECT count(*) AS n FROM \"room.temp\"").await.unwrap(), vec![row(&[("n", "2")])]);
    // A query sent as an update counts its rows.
    assert_eq!(client.execute_update("SELECT * FROM \"room.temp\"".into(), None).await.unwrap(), 2);

    // Every acknowledged row survives a crash.
    server.kill9();
    server.restart();
    let mut client = sql_client(port, Some("mydb")).await;
    assert_eq!(query(&mut client, "SELECT count(*) AS n FROM cpu").await.unwrap(), vec![row(&[("n", "8")])]);
    assert_eq!(
        query(&mut client, "SELECT count(*) AS n, sum(reading) AS s FROM weather").await.unwrap(),
        vec![row(&[("n", "1500"), ("s", &((0..1000).sum::<i64>() + (0..500).sum::<i64>()).to_string())])]
    );
    assert_eq!(
        query(&mut client, "SELECT count(*) AS n FROM analytics.hosts").await.unwrap(),
        vec![row(&[("n", "4")])]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn database_headers_qualified_names_and_errors_map_to_grpc_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) =
        flight_server(&dir.path().join("data"), &["--query-memory-bytes", "2MiB", "--query-timeout-s", "1"]);
    write_cpu(&server, "mydb").await;
    write_cpu(&server, "default").await;

    // Every header name InfluxDB 3's clients use selects the database.
    for header in ["database", "bucket", "bucket-name", "iox-namespace-name", "namespace"] {
        let mut client = sql_client(port, None).await;
        client.set_header(header, "mydb");
        let rows = query(&mut client, "SELECT current_database() AS db, count(*) AS n FROM cpu").await.unwrap();
        assert_eq!(rows, vec![row(&[("db", "mydb"), ("n", "3")])], "{header}");
    }
    // None: the database `default`. A fully qualified name reaches any database.
    let mut client = sql_client(port, None).await;
    assert_eq!(query(&mut client, "SELECT current_database() AS db").await.unwrap(), vec![row(&[("db", "default")])]);
    assert_eq!(
        query(&mut client, "SELECT count(*) AS n FROM mydb.public.cpu").await.unwrap(),
        vec![row(&[("n", "3")])]
    );
    // Two different databases in one call.
    let mut client = sql_client(port, Some("mydb")).await;
    client.set_header("bucket", "default");
    let error = query(&mut client, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");
    assert!(error.to_string().contains("two databases"), "{error}");

    let mut client = sql_client(port, Some("mydb")).await;
    let error = query(&mut client, "SELEKT 1").await.unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");
    let error = query(&mut client, "SELECT * FROM nowhere").await.unwrap_err();
    assert_eq!(code(&error), Code::NotFound, "{error}");
    let mut elsewhere = sql_client(port, Some("nosuchdb")).await;
    let error = query(&mut elsewhere, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&error), Code::NotFound, "{error}");

    // Over the memory limit, and over the time limit.
    let body: String =
        (0..20_000).map(|i| format!("m,host=h{} s=\"{}\" {}\n", i % 50, "x".repeat(200), 1_700_000_000 + i)).collect();
    assert_eq!(post(&server.url("/write?db=mydb&precision=s"), body).await.0, 204);
    let error = query(&mut client, "SELECT host, string_agg(s, ',') FROM m GROUP BY host").await.unwrap_err();
    assert_eq!(code(&error), Code::ResourceExhausted, "{error}");
    let error = query(&mut client, "SELECT count(*) FROM generate_series(1, 100000000000) a").await.unwrap_err();
    assert_eq!(code(&error), Code::DeadlineExceeded, "{error}");
    assert_eq!(query(&mut client, "SELECT count(*) AS n FROM cpu").await.unwrap(), vec![row(&[("n", "3")])]);
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_gives_a_bearer_token_and_every_call_needs_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &["--flightsql-port", &port.to_string()],
        &[("HTTP_BASIC_AUTH_USERNAME", "ada"), ("HTTP_BASIC_AUTH_PASSWORD", "s3cret")],
    );
    let (status, _) = {
        let response = crate::support::client()
            .post(server.url("/write?db=mydb"))
            .basic_auth("ada", Some("s3cret"))
            .body("cpu,host=a usage=1 1700000000000000000")
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), ())
    };
    assert_eq!(status, 204);

    let mut anonymous = sql_client(port, Some("mydb")).await;
    let error = query(&mut anonymous, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&error), Code::Unauthenticated, "{error}");
    let error = anonymous.handshake("ada", "wrong").await.unwrap_err();
    assert!(error.to_string().contains("wrong user, password or token"), "{error}");

    let mut client = sql_client(port, Some("mydb")).await;
    let payload = client.handshake("ada", "s3cret").await.unwrap();
    let token = String::from_utf8(payload.to_vec()).unwrap();
    assert!(token.len() >= 32, "{token}");
    assert_eq!(query(&mut client, "SELECT count(*) AS n FROM cpu").await.unwrap(), vec![row(&[("n", "1")])]);

    // The token works on a new connection; a made-up one does not.
    let mut other = sql_client(port, Some("mydb")).await;
    other.set_token(token.clone());
    assert_eq!(query(&mut other, "SELECT count(*) AS n FROM cpu").await.unwrap(), vec![row(&[("n", "1")])]);
    other.set_token("0123456789abcdef0123456789abcdef".into());
    let error = query(&mut other, "SELECT 1").await.unwrap_err();
    assert_eq!(code(&error), Code::Unauthenticated, "{error}");
    // A handshake with a token from an earlier handshake gives a new one.
    let mut request = tonic::Request::new(futures::stream::iter(vec![arrow_flight::HandshakeRequest::default()]));
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let response = arrow_flight::flight_service_client::FlightServiceClient::new(channel(port).await)
        .handshake(request)
        .await
        .expect("a valid token logs in again");
    assert!(response.metadata().get("authorization").is_some());
    // As on the HTTP front, the password works as a bearer token.
    other.set_token("s3cret".into());
    assert_eq!(query(&mut other, "SELECT count(*) AS n FROM cpu").await.unwrap(), vec![row(&[("n", "1")])]);
}

#[tokio::test(flavor = "multi_thread")]
async fn influxdb3_json_tickets_answer_sql_and_refuse_influxql() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = flight_server(&dir.path().join("data"), &[]);
    write_cpu(&server, "mydb").await;
    let mut client = FlightClient::new(channel(port).await);

    let ticket = br#"{"database": "mydb", "sql_query": "SELECT host, usage FROM cpu WHERE usage > $min ORDER BY time", "query_type": "sql", "params": {"min": 2}}"#;
    let stream = client.do_get(Ticket::new(ticket.to_vec())).await.unwrap();
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let rows: Vec<BTreeMap<String, String>> = batches.iter().flat_map(batch_rows).collect();
    assert_eq!(rows, vec![row(&[("host", "b"), ("usage", "2.5")]), row(&[("host", "a"), ("usage", "3.5")])]);

    let ticket = br#"{"database": "mydb", "sql_query": "SELECT * FROM cpu", "query_type": "influxql"}"#;
    let result = client.do_get(Ticket::new(ticket.to_vec())).await;
    match result.map(|_| ()).expect_err("influxql is refused") {
        arrow_flight::error::FlightError::Tonic(status) => {
            assert_eq!(status.code(), Code::Unimplemented);
            assert!(status.message().contains("InfluxQL"), "{}", status.message());
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_flight_info_stops_a_running_query_with_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = flight_server(&dir.path().join("data"), &[]);
    let mut client = sql_client(port, None).await;
    // Two clients run the same SQL; each GetFlightInfo has a ticket of its own.
    let sql = "SELECT count(*) FROM generate_series(1, 100000000000) a";
    let mut running = Vec::new();
    let mut infos = Vec::new();
    for _ in 0..2 {
        let info = client.execute(sql.into(), None).await.unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let mut reader = sql_client(port, None).await;
        running.push(tokio::spawn(async move {
            let stream = reader.do_get(ticket).await?;
            stream.try_collect::<Vec<RecordBatch>>().await
        }));
        infos.push(info);
    }
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut flight = FlightClient::new(channel(port).await);
    let info = infos.remove(0);
    let result = flight.cancel_flight_info(arrow_flight::CancelFlightInfoRequest::new(info.clone())).await.unwrap();
    assert_eq!(result.status, arrow_flight::CancelStatus::Cancelled as i32);
    let error = running.remove(0).await.unwrap().expect_err("the query was cancelled");
    assert_eq!(code(&error), Code::Cancelled, "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    // The other client's query of the same SQL runs on until it is cancelled itself.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!running[0].is_finished(), "cancelling one FlightInfo stopped another");
    let other = infos.remove(0);
    let result = flight.cancel_flight_info(arrow_flight::CancelFlightInfoRequest::new(other)).await.unwrap();
    assert_eq!(result.status, arrow_flight::CancelStatus::Cancelled as i32);
    let error = running.remove(0).await.unwrap().expect_err("the other query was cancelled");
    assert_eq!(code(&error), Code::Cancelled, "{error}");
    // Nothing runs from that ticket any more.
    let result = flight.cancel_flight_info(arrow_flight::CancelFlightInfoRequest::new(info)).await.unwrap();
    assert_eq!(result.status, arrow_flight::CancelStatus::NotCancellable as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_is_served_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (cert_arg, key_arg) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    let (server, port) = flight_server(&dir.path().join("data"), &["--tls-cert", &cert_arg, "--tls-key", &key_arg]);
    let body = "cpu,host=a usage=1.5 1700000000000000000\ncpu,host=b usage=2.5 1700000001000000000\n\
                cpu,host=a usage=3.5 1700000002000000000\n";
    // The HTTP front takes HTTPS only, with the same certificate.
    assert_eq!(crate::support::https_post(&cert, &server.url("/write?db=mydb"), body), 204);

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&cert).unwrap()))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connection");
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_header("database", "mydb");
    assert_eq!(query(&mut client, "SELECT count(*) AS n FROM cpu").await.unwrap(), vec![row(&[("n", "3")])]);

    // A plain-text client gets no answer from a TLS port.
    let mut plain = sql_client(port, Some("mydb")).await;
    assert!(query(&mut plain, "SELECT 1").await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn python_clients_adbc_pyarrow_flight_and_influxdb3() {
    let python = test_python();
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = flight_server(&dir.path().join("data"), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/flight_clients.py");
    let output = Command::new(python)
        .arg(script)
        .args(["--flight-port", &port.to_string(), "--http-port", &server.http_port.to_string()])
        .output()
        .expect("run the Python clients");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for client in ["adbc", "pyarrow.flight", "influxdb3"] {
        let ran = stdout.lines().filter(|l| l.starts_with("ok") && l.split_whitespace().nth(1) == Some(client));
        assert!(ran.count() >= 2, "{client} did not run its checks:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn adbc_logs_in_with_a_username_and_password() {
    let python = test_python();
    let dir = tempfile::tempdir().unwrap();
    let users = [("HTTP_BASIC_AUTH_USERNAME", "grafana"), ("HTTP_BASIC_AUTH_PASSWORD", "s3cr=t")];
    let port = free_port();
    let server = Server::start_with_env(&dir.path().join("data"), &["--flightsql-port", &port.to_string()], &users);
    let lines = "cpu,host=a usage=1.5 1700000000000000000\ncpu,host=b usage=2.5 1700000060000000000\n\
                 cpu,host=c usage=3.5 1700000120000000000";
    let response = client()
        .post(server.url("/write?db=py"))
        .basic_auth("grafana", Some("s3cr=t"))
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/flight_clients.py");
    let output = Command::new(python)
        .arg(script)
        .args(["--flight-port", &port.to_string(), "--http-port", &server.http_port.to_string()])
        .args(["--user", "grafana", "--password", "s3cr=t"])
        .output()
        .expect("run the Python clients");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok adbc")).count(), 2, "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_being_read_when_the_server_is_stopped_is_sent_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = flight_server(&dir.path().join("data"), &[]);
    let mut client = sql_client(port, None).await;
    let info = client.execute("SELECT x FROM generate_series(1, 2000000) t(x)".to_owned(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut stream = client.do_get(ticket).await.unwrap();
    let first = stream.try_next().await.unwrap().expect("a first batch");
    let mut rows = first.num_rows();

    server.sigterm();
    // No new connection is taken...
    assert!(crate::support::wait_for(std::time::Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    }));
    // ...and the call in flight goes on to its last row.
    while let Some(batch) = stream.try_next().await.expect("the stream runs to its end") {
        rows += batch.num_rows();
    }
    assert_eq!(rows, 2_000_000);
    assert!(server.wait_exit().success(), "{}", server.log_text());
}
