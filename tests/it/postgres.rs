//! The Postgres front against real clients: tokio-postgres (simple and extended
//! protocol, text and binary) and psql 15.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::support::{free_port, post, self_signed, test_python, Server};

pub(crate) const ROWS: &str = "cpu,host=a,region=eu usage=1.5,n=3i 1700000000000000000
cpu,host=b,region=us usage=2.5,n=4i 1700000060000000000
cpu,host=c,region=us usage=3.5,n=5i 1700000120000000000";

/// A server with the Postgres front on a free port, holding [`ROWS`] in `d`.
pub(crate) async fn server_with_rows(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (Server, u16) {
    let pg_port = free_port();
    let port = pg_port.to_string();
    let mut all = vec!["--pg-port", port.as_str()];
    all.extend_from_slice(args);
    let server = Server::start_with_env(root, &all, env);
    let auth = env.iter().find(|(k, _)| *k == "HTTP_BASIC_AUTH_PASSWORD").map(|(_, p)| format!("&u=u&p={p}"));
    let url = server.url(&format!("/write?db=d{}", auth.unwrap_or_default()));
    assert_eq!(post(&url, ROWS.to_owned()).await.0, 204);
    (server, pg_port)
}

/// Connects, retrying while the front starts; returns the last error otherwise.
pub(crate) async fn connect(
    port: u16,
    database: &str,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let config =
        format!("host=127.0.0.1 port={port} dbname={database} user={user} password={password} connect_timeout=5");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&config, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return Ok(client);
            }
            Err(e) if e.as_db_error().is_none() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn refused(result: Result<Client, tokio_postgres::Error>) -> tokio_postgres::Error {
    match result {
        Ok(_) => panic!("the connection was accepted"),
        Err(e) => e,
    }
}

pub(crate) fn sqlstate(error: &tokio_postgres::Error) -> SqlState {
    error.code().cloned().unwrap_or_else(|| panic!("no SQLSTATE in {error:?}"))
}

pub(crate) fn simple_rows(messages: Vec<SimpleQueryMessage>) -> Vec<Vec<Option<String>>> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokio_postgres_reads_typed_rows_over_simple_and_extended_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let client = connect(port, "d", "anyone", "").await.expect("connect");

    // Simple protocol: text.
    let rows = simple_rows(client.simple_query("SELECT host, usage, n FROM cpu ORDER BY host").await.unwrap());
    assert_eq!(rows[0], vec![Some("a".into()), Some("1.5".into()), Some("3".into())]);
    assert_eq!(rows.len(), 3);

    // Extended protocol: binary results, parameters typed by inference.
    let statement = client
        .prepare("SELECT host, usage, n, time FROM cpu WHERE region = $1 AND n > $2 ORDER BY time")
        .await
        .unwrap();
    assert_eq!(statement.params(), &[Type::TEXT, Type::INT8]);
    let types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(types, vec![Type::TEXT, Type::FLOAT8, Type::INT8, Type::TIMESTAMPTZ]);
    let rows = client.query(&statement, &[&"us", &4i64]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "c");
    assert_eq!(rows[0].get::<_, f64>(1), 3.5);
    assert_eq!(rows[0].get::<_, i64>(2), 5);
    let time: DateTime<Utc> = rows[0].get(3);
    assert_eq!(time, DateTime::from_timestamp(1_700_000_120, 0).unwrap());

    // Parameters whose type the client declares.
    let statement = client.prepare_typed("SELECT count(*) FROM cpu WHERE usage > $1", &[Type::FLOAT8]).await.unwrap();
    assert_eq!(client.query_one(&statement, &[&2.0f64]).await.unwrap().get::<_, i64>(0), 2);

    // A portal with a row limit gives the rows in pieces.
    let mut transaction_client = connect(port, "d", "anyone", "").await.unwrap();
    let transaction = transaction_client.transaction().await.unwrap();
    let statement = transaction.prepare("SELECT host FROM cpu ORDER BY host").await.unwrap();
    let portal = transaction.bind(&statement, &[]).await.unwrap();
    let first = transaction.query_portal(&portal, 2).await.unwrap();
    let rest = transaction.query_portal(&portal, 2).await.unwrap();
    assert_eq!((first.len(), rest.len()), (2, 1));
    assert_eq!(rest[0].get::<_, String>(0), "c");
    transaction.commit().await.unwrap();

    // The session agrees with the start-up parameters.
    let row = client
        .query_one("SELECT current_database(), current_schema(), version(), current_setting('server_version_num')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "d");
    assert_eq!(row.get::<_, String>(1), "public");
    assert!(row.get::<_, String>(2).starts_with("PostgreSQL 15.0 (HourglassDB"), "{}", row.get::<_, String>(2));
    assert_eq!(row.get::<_, String>(3), "150000");
    let shown = simple_rows(client.simple_query("SHOW server_version").await.unwrap());
    assert_eq!(shown, vec![vec![Some(format!("15.0 (HourglassDB {})", env!("CARGO_PKG_VERSION")))]]);

    // Fully qualified names reach another database.
    let count = client.query_one(r#"SELECT count(*) FROM "d"."public"."cpu""#, &[]).await.unwrap();
    assert_eq!(count.get::<_, i64>(0), 3);

    // A comment-only query (Grafana's ping) is an empty query, not an error.
    assert!(simple_rows(client.simple_query("-- ping").await.unwrap()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_get_their_sqlstate_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let client = connect(port, "d", "anyone", "").await.unwrap();
    let cases = [
        ("SELECT * FROM nope", SqlState::UNDEFINED_TABLE),
        ("SELECT nope FROM cpu", SqlState::UNDEFINED_COLUMN),
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT CAST('x' AS BIGINT)", SqlState::INVALID_TEXT_REPRESENTATION),
        ("COPY (SELECT 1) TO '/tmp/x'", SqlState::INSUFFICIENT_PRIVILEGE),
    ];
    for (sql, expected) in cases {
        let error = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), expected, "{sql}: {error:?}");
        let error = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&error), expected, "{sql} (extended): {error:?}");
    }
    assert_eq!(client.query_one("SELECT count(*) FROM cpu", &[]).await.unwrap().get::<_, i64>(0), 3);

    let error = refused(connect(port, "no_such_db", "anyone", "").await);
    assert_eq!(sqlstate(&error), SqlState::INVALID_CATALOG_NAME);
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_are_checked_with_scram_md5_and_cleartext() {
    for method in ["scram-sha-256", "md5", "password"] {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("HTTP_BASIC_AUTH_USERNAME", "u"),
            ("HTTP_BASIC_AUTH_PASSWORD", "secret"),
            ("HOURGLASS_PG_AUTH_METHOD", method),
        ];
        let (_server, port) = server_with_rows(&dir.path().join("data"), &[], &env).await;
        let client = connect(port, "d", "u", "secret").await.unwrap_or_else(|e| panic!("{method}: {e:?}"));
        assert_eq!(client.query_one("SELECT count(*) FROM cpu", &[]).await.unwrap().get::<_, i64>(0), 3);
        for (user, password) in [("u", "wrong"), ("nobody", "secret")] {
            let error = refused(connect(port, "d", user, password).await);
            assert_eq!(sqlstate(&error), SqlState::INVALID_PASSWORD, "{method} {user}/{password}");
        }
    }
}

pub(crate) fn psql(port: u16, command: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "anyone", "-d", "d", "-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed by tests/run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "psql -c '{command}': {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_meta_commands_describe_databases_schemas_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    // A second database: its schemas and tables are not this connection's.
    assert_eq!(post(&server.url("/write?db=other"), "elsewhere v=1").await.0, 204);
    connect(port, "d", "anyone", "").await.expect("front is up");

    let databases = psql(port, "\\l");
    let names: Vec<&str> =
        databases.lines().filter(|l| l.contains('|')).filter_map(|l| l.split('|').next()).map(str::trim).collect();
    assert_eq!(names, ["Name", "d", "default", "other"], "every database, and no other: {databases}");

    let schemas = psql(port, "\\dn");
    assert_eq!(schemas.lines().filter(|l| l.trim_start().starts_with("public ")).count(), 1, "{schemas}");

    for command in ["\\dt", "\\d"] {
        let tables = psql(port, command);
        assert!(tables.lines().any(|l| l.contains("public") && l.contains("cpu") && l.contains("table")), "{tables}");
        assert!(!tables.contains("elsewhere"), "{tables}");
    }

    let table = psql(port, "\\d cpu");
    for (column, pg_type) in [
        ("host", "text"),
        ("region", "text"),
        ("usage", "double precision"),
        ("n", "bigint"),
        ("time", "timestamp with time zone"),
    ] {
        assert!(
            table.lines().any(|l| l.split('|').next().map(str::trim) == Some(column) && l.contains(pg_type)),
            "{column} {pg_type}: {table}"
        );
    }

    let rows = psql(port, "SELECT host, n FROM cpu WHERE n >= 4 ORDER BY host");
    assert!(rows.contains(" b    | 4") && rows.contains(" c    | 5") && rows.contains("(2 rows)"), "{rows}");
}

fn pg_error(result: Result<u64, tokio_postgres::Error>) -> (SqlState, String) {
    let error = result.expect_err("the write was refused");
    let message = error.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    (sqlstate(&error), message)
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect("count").get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_and_copy_write_through_the_wal_and_survive_kill_9() {
    use futures::SinkExt;
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let client = connect(port, "d", "anyone", "").await.expect("connect");

    // Simple protocol: the tag says how many rows.
    let rows = client
        .execute(
            "INSERT INTO cpu (host, region, usage, time) VALUES ('d', 'eu', 4.5, '2023-11-14T22:15:00Z'), \
             ('e', 'eu', 5.5, '2023-11-14 22:16:00+00')",
            &[],
        )
        .await
        .expect("insert literals");
    assert_eq!(rows, 2);
    // Extended protocol with parameters typed by the table's columns.
    let statement = client
        .prepare("INSERT INTO cpu (host, region, usage, n, time) VALUES ($1, $2, $3, $4, $5)")
        .await
        .expect("prepare insert");
    assert_eq!(statement.params(), &[Type::TEXT, Type::TEXT, Type::FLOAT8, Type::INT8, Type::TIMESTAMPTZ]);
    let at: DateTime<Utc> = "2023-11-14T22:17:00Z".parse().unwrap();
    assert_eq!(client.execute(&statement, &[&"f", &"us", &6.5f64, &9i64, &at]).await.unwrap(), 1);
    // A row without a time gets the server's now, as in line protocol.
    let before = Utc::now();
    assert_eq!(client.execute("INSERT INTO cpu (host, usage) VALUES ('now', 1)", &[]).await.unwrap(), 1);
    let stamped: DateTime<Utc> = client.query_one("SELECT time FROM cpu WHERE host = 'now'", &[]).await.unwrap().get(0);
    assert!(stamped >= before - chrono::Duration::seconds(1) && stamped <= Utc::now(), "{stamped}");
    // Last write wins: the same series and time replaces the fields named.
    client
        .execute("INSERT INTO cpu (host, region, usage, time) VALUES ('d', 'eu', 40.5, '2023-11-14T22:15:00Z')", &[])
        .await
        .unwrap();
    let usage: f64 = client.query_one("SELECT usage FROM cpu WHERE host = 'd'", &[]).await.unwrap().get(0);
    assert_eq!(usage, 40.5);

    // Refusals carry SQLSTATEs and write nothing.
    let cases = [
        ("INSERT INTO cpu (host, nope, time) VALUES ('x', 1, now())", SqlState::UNDEFINED_COLUMN, "nope"),
        ("INSERT INTO cpu (host, time) VALUES ('x', now())", SqlState::NOT_NULL_VIOLATION, "at least one field"),
        ("INSERT INTO cpu (host, usage) VALUES ('x', 'abc')", SqlState::INVALID_TEXT_REPRESENTATION, "abc"),
        ("INSERT INTO nowhere (v) VALUES (1)", SqlState::UNDEFINED_TABLE, "nowhere"),
        ("UPDATE cpu SET usage = 1", SqlState::FEATURE_NOT_SUPPORTED, "INSERT"),
        ("DELETE FROM cpu WHERE usage > 1", SqlState::FEATURE_NOT_SUPPORTED, "not by field values"),
    ];
    for (sql, state, text) in cases {
        let (code, message) = pg_error(client.execute(sql, &[]).await);
        assert_eq!(code, state, "{sql}: {message}");
        assert!(message.contains(text), "{sql}: {message}");
    }
    assert_eq!(count(&client, "SELECT count(*) FROM cpu WHERE host = 'x'").await, 0);

    // COPY FROM STDIN in CSV and text, through the driver's copy API.
    let sink = client
        .copy_in("COPY cpu (host, region, usage, time) FROM STDIN WITH (FORMAT csv, HEADER true)")
        .await
        .expect("copy csv");
    futures::pin_mut!(sink);
    let csv = "host,region,usage,time\ng,eu,7.5,2023-11-14T22:18:00Z\n\"h,1\",\"\",8.5,2023-11-14 22:19:00+00\r\n";
    sink.send(bytes::Bytes::from(csv)).await.unwrap();
    assert_eq!(sink.finish().await.expect("copy done"), 2);
    let region: Option<String> =
        client.query_one("SELECT region FROM cpu WHERE host = 'h,1'", &[]).await.unwrap().get(0);
    assert_eq!(region.as_deref(), Some(""), "a quoted empty CSV value is a value, not NULL");

    let sink = client.copy_in("COPY cpu (host, n, time) FROM STDIN").await.expect("copy text");
    futures::pin_mut!(sink);
    // Split across messages in the middle of a line, as drivers do.
    for part in ["i\t11\t2023-11-14 22:20:00+00\nj\t1", "2\t2023-11-14 22:21:00+00\n\\.\n"] {
        sink.send(bytes::Bytes::from(part)).await.unwrap();
    }
    assert_eq!(sink.finish().await.expect("copy done"), 2);
    assert_eq!(count(&client, "SELECT n FROM cpu WHERE host = 'j'").await, 12);

    // A bad line fails the COPY, names the line, and the connection goes on.
    let sink = client.copy_in("COPY cpu (host, n, time) FROM STDIN (FORMAT csv)").await.expect("copy");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from("k,1,2023-11-14T22:22:00Z\nl,x,2023-11-14T22:23:00Z\n")).await.unwrap();
    let error = sink.finish().await.expect_err("line 2 is bad");
    assert_eq!(sqlstate(&error), SqlState::INVALID_TEXT_REPRESENTATION);
    let message = error.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("line 2") && message.contains("\"x\""), "{message}");
    let sink = client.copy_in("COPY cpu (host, n, time) FROM STDIN").await.expect("copy");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from("m\t1\tyesterday\nn\t1\n")).await.unwrap();
    let error = sink.finish().await.expect_err("a bad time");
    assert_eq!(sqlstate(&error), SqlState::INVALID_TEXT_REPRESENTATION, "{error:?}");
    let sink = client.copy_in("COPY cpu (host, n, time) FROM STDIN").await.expect("copy");
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from("n\t1\n")).await.unwrap();
    let error = sink.finish().await.expect_err("a missing column");
    assert_eq!(sqlstate(&error), SqlState::BAD_COPY_FILE_FORMAT, "{error:?}");
    // Past the first chunk: the error names the line in the file, and the
    // chunk before it is written.
    let sink = client.copy_in("COPY cpu (host, n, time) FROM STDIN").await.expect("copy");
    futures::pin_mut!(sink);
    let mut big = String::new();
    for i in 0..20_000u64 {
        let at = DateTime::from_timestamp(1_600_000_000 + i as i64, 0).unwrap();
        big.push_str(&format!("bulk\t{i}\t{}\n", at.to_rfc3339()));
    }
    big.push_str("bulk\tnot-a-number\t2023-11-14T22:30:00Z\n");
    sink.send(bytes::Bytes::from(big)).await.unwrap();
    let error = sink.finish().await.expect_err("line 20001 is bad");
    let message = error.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("line 20001") && message.contains("16384 rows were written"), "{message}");
    assert_eq!(count(&client, "SELECT count(*) FROM cpu WHERE host = 'bulk'").await, 16_384);
    // Bad UTF-8 in the second column: the rows before it stay whole.
    let sink = client.copy_in("COPY cpu (host, region, n, time) FROM STDIN").await.expect("copy");
    futures::pin_mut!(sink);
    let mut data = b"utf\teu\t1\t2023-11-14T22:40:00Z\nutf\t".to_vec();
    data.extend_from_slice(&[0xff, 0xfe]);
    data.extend_from_slice(b"\t2\t2023-11-14T22:41:00Z\n");
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    let error = sink.finish().await.expect_err("bad UTF-8");
    assert_eq!(sqlstate(&error), SqlState::CHARACTER_NOT_IN_REPERTOIRE, "{error:?}");
    assert_eq!(count(&client, "SELECT count(*) FROM cpu WHERE host = 'utf'").await, 1);
    client.execute("DELETE FROM cpu WHERE usage > 1", &[]).await.expect_err("no DELETE by field values");
    let (code, _) = pg_error(client.execute("COPY cpu TO '/tmp/cpu.csv'", &[]).await);
    assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE, "a COPY to a file of the server's is refused");
    assert_eq!(count(&client, "SELECT count(*) FROM cpu WHERE host NOT IN ('bulk', 'utf')").await, 11);

    // psql \copy loads a file.
    let file = dir.path().join("load.csv");
    std::fs::write(&file, "host,usage,time\np1,1.25,2023-11-15T00:00:00Z\np2,2.25,2023-11-15T00:00:01Z\n").unwrap();
    let out =
        psql(port, &format!("\\copy cpu (host, usage, time) from '{}' with (format csv, header)", file.display()));
    assert!(out.contains("COPY 2"), "{out}");

    // Every acknowledged row is in the WAL: kill -9 and count again.
    drop(client);
    server.kill9();
    server.restart();
    let client = connect(port, "d", "anyone", "").await.expect("reconnect");
    assert_eq!(count(&client, "SELECT count(*) FROM cpu").await, 13 + 16_384 + 1);
    assert_eq!(count(&client, "SELECT count(*) FROM cpu WHERE host IN ('d', 'g', 'j', 'p2')").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn information_schema_answers_grafana_and_dbt_with_postgres_type_names() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    // Another database's tables stay out of this database's information_schema.
    assert_eq!(post(&server.url("/write?db=other"), "elsewhere v=1,flag=true").await.0, 204);
    let client = connect(port, "d", "anyone", "").await.expect("connect");

    // Grafana's backend schema handler: extended protocol with $1, $2.
    let schemas: Vec<String> = client
        .query(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT LIKE 'pg_%' \
             AND schema_name != 'information_schema' ORDER BY schema_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(schemas, ["public"]);
    let tables: Vec<String> = client
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 \
             AND table_type IN ('BASE TABLE', 'VIEW') ORDER BY table_name",
            &[&"public"],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["cpu"]);
    let columns = client
        .query(
            "SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale, ordinal_position, \
             is_nullable FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
             ORDER BY ordinal_position",
            &[&"public", &"cpu"],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String, Option<i32>, i32)> =
        columns.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(5))).collect();
    let expected = [
        ("host", "text", "text", None, 1),
        ("region", "text", "text", None, 2),
        ("usage", "double precision", "float8", Some(53), 3),
        ("n", "bigint", "int8", Some(64), 4),
        ("time", "timestamp with time zone", "timestamptz", None, 5),
    ];
    let expected: Vec<(String, String, String, Option<i32>, i32)> =
        expected.iter().map(|(a, b, c, d, e)| (a.to_string(), b.to_string(), c.to_string(), *d, *e)).collect();
    assert_eq!(got, expected);
    let time_nullable: String = columns[4].get(6);
    assert_eq!(time_nullable, "NO");

    // Grafana's frontend, over the simple protocol: tables and the columns of
    // a table named `schema.table`.
    let rows = simple_rows(
        client
            .simple_query(
                "SELECT quote_ident(table_name) AS \"table\" FROM information_schema.tables \
                 WHERE quote_ident(table_schema) = 'public' ORDER BY 1",
            )
            .await
            .unwrap(),
    );
    assert_eq!(rows, vec![vec![Some("cpu".to_owned())]]);
    let rows = simple_rows(
        client
            .simple_query(
                "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" FROM information_schema.columns \
                 WHERE CASE WHEN array_length(parse_ident('public.cpu'),1) = 2 \
                 THEN quote_ident(table_schema) = (parse_ident('public.cpu'))[1] \
                 AND quote_ident(table_name) = (parse_ident('public.cpu'))[2] \
                 ELSE quote_ident(table_name) = 'public.cpu' END",
            )
            .await
            .unwrap(),
    );
    let types: Vec<(String, String)> =
        rows.into_iter().map(|r| (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default())).collect();
    assert!(types.contains(&("usage".to_owned(), "double precision".to_owned())), "{types:?}");
    assert!(types.contains(&("time".to_owned(), "timestamp with time zone".to_owned())), "{types:?}");

    // dbt's column listing (get_columns_in_relation).
    let dbt = client
        .query(
            "select column_name, data_type, character_maximum_length, numeric_precision, numeric_scale \
             from INFORMATION_SCHEMA.columns where table_name = 'cpu' and table_schema = 'public' \
             and table_catalog = 'd' order by ordinal_position",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(dbt.len(), 5);

    // The other database sees its own table, with its own types.
    let other = connect(port, "other", "anyone", "").await.expect("connect other");
    let rows = other
        .query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'public' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        got,
        [
            ("elsewhere", "v", "double precision"),
            ("elsewhere", "flag", "boolean"),
            ("elsewhere", "time", "timestamp with time zone")
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_is_served_when_configured_and_a_bad_key_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (cert_arg, key_arg) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    let port = free_port();
    let server = Server::start(
        &dir.path().join("data"),
        &["--pg-port", &port.to_string(), "--tls-cert", &cert_arg, "--tls-key", &key_arg],
    );
    // The HTTP front takes HTTPS only, with the same certificate.
    assert_eq!(crate::support::https_post(&cert, &server.url("/write?db=d"), ROWS), 204);
    connect(port, "d", "anyone", "").await.expect("front is up");
    let output = Command::new("psql")
        .arg(format!("host=127.0.0.1 port={port} dbname=d user=anyone sslmode=require"))
        .args(["-X", "-c", "\\conninfo", "-c", "SELECT count(*) FROM cpu"])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("SSL connection (protocol: TLSv1."), "{stdout}");
    assert!(stdout.contains(" 3\n"), "{stdout}");

    // A key that is not a key: the server refuses to start rather than serve
    // plain text to clients that expect TLS.
    let pg_port = free_port().to_string();
    let http_port = free_port().to_string();
    let root = dir.path().join("other");
    let output = crate::support::command()
        .args(["--root", &root.to_string_lossy(), "--http-port", &http_port, "--pg-port", &pg_port])
        .args(["--tls-cert", &cert_arg, "--tls-key", &cert_arg])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HOURGLASS_TLS_KEY") && stderr.contains("PKCS#8"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_clients_psycopg3_asyncpg_and_psycopg2_query_write_and_copy() {
    let python = test_python();
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    connect(port, "d", "anyone", "").await.expect("front is up");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/pg_clients.py");
    let output = Command::new(python)
        .arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--database", "d"])
        .output()
        .expect("run the Python clients");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for client in ["psycopg3", "asyncpg", "psycopg2"] {
        let ran = stdout.lines().filter(|l| l.starts_with("ok") && l.split_whitespace().nth(1) == Some(client));
        assert!(ran.count() >= 5, "{client} did not run its checks:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_request_stops_a_running_query_with_57014() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let client = connect(port, "d", "anyone", "").await.expect("connect");
    let token = client.cancel_token();
    let started = Instant::now();
    // Minutes of work, unless cancelled.
    let running = tokio::spawn(async move {
        let result = client.query("SELECT count(*) FROM generate_series(1, 100000000000)", &[]).await.map(|_| ());
        (client, result)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(NoTls).await.expect("send the cancel request");
    let (client, result) = tokio::time::timeout(Duration::from_secs(20), running).await.expect("ends").unwrap();
    let error = result.expect_err("the query was cancelled");
    assert_eq!(sqlstate(&error), SqlState::QUERY_CANCELED, "{error:?}");
    let message = error.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert_eq!(message, "canceling statement due to user request", "not the 300 s timeout");
    assert!(started.elapsed() < Duration::from_secs(20));
    // The connection goes on.
    let n: i64 = client.query_one("SELECT count(*) FROM cpu", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn schemas_tables_and_views_from_sql_live_in_the_catalog_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let client = connect(port, "d", "anyone", "").await.expect("connect");
    // What dbt sends for a table model and a view model (simple protocol, 3-part names).
    client
        .batch_execute(
            r#"BEGIN;
            create schema if not exists "analytics";
            COMMIT;
            create schema if not exists "analytics";
            BEGIN;
            create  table "d"."analytics"."by_region__dbt_tmp" as (
                select region, count(*) as points, avg(usage) as usage from "d"."public"."cpu" group by region
            );
            alter table "d"."analytics"."by_region__dbt_tmp" rename to "by_region";
            COMMIT;
            create view "d"."analytics"."busy__dbt_tmp" as (select * from "d"."analytics"."by_region" where points > 1);
            alter table "d"."analytics"."busy__dbt_tmp" rename to "busy";
            drop table if exists "d"."analytics"."by_region__dbt_backup" cascade;"#,
        )
        .await
        .expect("dbt's statements");
    let rows =
        client.query("SELECT region, points, usage FROM analytics.by_region ORDER BY region", &[]).await.unwrap();
    let got: Vec<(String, i64, f64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, [("eu".to_owned(), 1, 1.5), ("us".to_owned(), 2, 3.0)]);
    // A view reads its tables when it is read; a table is a snapshot.
    assert_eq!(
        post(&server.url("/write?db=d"), "cpu,host=d,region=eu usage=9.5,n=1i 1700000180000000000").await.0,
        204
    );
    let busy: Vec<String> = client
        .query("SELECT region FROM analytics.busy ORDER BY region", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(busy, ["us"]);
    client
        .batch_execute(r#"create or replace view analytics.live as (select count(*) as n from "d"."public"."cpu")"#)
        .await
        .unwrap();
    assert_eq!(count(&client, "SELECT n FROM analytics.live").await, 4);

    // dbt tells views from tables by pg_tables and pg_views.
    let listed = client
        .query(
            "select tablename as name, 'table' as type from pg_tables where schemaname ilike 'analytics' \
             union all select viewname as name, 'view' as type from pg_views where schemaname ilike 'analytics' \
             order by name",
            &[],
        )
        .await
        .unwrap();
    let listed: Vec<(String, String)> = listed.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected = [("busy", "view"), ("by_region", "table"), ("live", "view")];
    assert_eq!(listed, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));

    // Mistakes and what stays refused.
    let cases = [
        ("create table analytics.by_region as (select 1 as x)", SqlState::DUPLICATE_TABLE),
        ("create schema analytics", SqlState::DUPLICATE_SCHEMA),
        ("create view nowhere.v as (select 1)", SqlState::INVALID_SCHEMA_NAME),
        ("drop table analytics.missing", SqlState::UNDEFINED_TABLE),
        ("alter table analytics.missing rename to other", SqlState::UNDEFINED_TABLE),
        ("drop view cpu", SqlState::WRONG_OBJECT_TYPE),
        ("alter table cpu rename to cpu2", SqlState::FEATURE_NOT_SUPPORTED),
        ("create table t (x int)", SqlState::FEATURE_NOT_SUPPORTED),
        ("create view public.cpu as (select 1)", SqlState::DUPLICATE_TABLE),
        ("drop schema analytics", SqlState::DEPENDENT_OBJECTS_STILL_EXIST),
        ("drop table analytics.busy", SqlState::WRONG_OBJECT_TYPE),
        ("drop view analytics.by_region", SqlState::WRONG_OBJECT_TYPE),
    ];
    for (sql, state) in cases {
        let (code, message) = pg_error(client.execute(sql, &[]).await);
        assert_eq!(code, state, "{sql}: {message}");
    }

    // What Postgres refuses too, and what would lose writes or crash.
    let cases = [
        ("create or replace view analytics.by_region as (select 1 as x)", SqlState::WRONG_OBJECT_TYPE),
        ("create temporary view tv as (select 1 as x)", SqlState::FEATURE_NOT_SUPPORTED),
        (
            "insert into analytics.by_region (region, points, usage) values ('x', 1, 1.0)",
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        ("create schema pg_catalog", SqlState::RESERVED_NAME),
    ];
    for (sql, state) in cases {
        let (code, message) = pg_error(client.execute(sql, &[]).await);
        assert_eq!(code, state, "{sql}: {message}");
    }
    // Unquoted names fold to lower case, as everywhere in SQL.
    client.batch_execute("ALTER TABLE Analytics.BUSY RENAME TO Hot").await.expect("rename");
    assert_eq!(count(&client, "SELECT count(*) FROM analytics.hot").await, 1);
    // A view that reads the catalog, and a view whose table is gone, neither
    // break nor hang the catalog.
    client
        .batch_execute(
            "create view analytics.meta as (select table_name from information_schema.tables); \
             create table analytics.scratch as (select 1 as x); \
             create view analytics.over_scratch as (select x from analytics.scratch); \
             drop table analytics.scratch",
        )
        .await
        .expect("views over the catalog and over a table to drop");
    let listed =
        count(&client, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'analytics'").await;
    assert_eq!(listed, 5, "by_region, hot, live, meta, over_scratch");
    assert!(count(&client, "SELECT count(*) FROM analytics.meta").await > 5);
    let views: i64 = count(&client, "SELECT count(*) FROM pg_views WHERE viewname = 'over_scratch'").await;
    assert_eq!(views, 1, "a broken view is still listed, so dbt can drop it");
    let error = client.query("SELECT * FROM analytics.over_scratch", &[]).await.expect_err("its table is gone");
    assert!(format!("{error:?}").contains("cannot be read"), "{error:?}");
    client.batch_execute("drop view analytics.over_scratch; drop view analytics.meta").await.unwrap();

    // Everything is still there after kill -9, and DROP SCHEMA ... CASCADE removes it all.
    drop(client);
    server.kill9();
    server.restart();
    let client = connect(port, "d", "anyone", "").await.expect("reconnect");
    assert_eq!(count(&client, r#"SELECT sum(points) FROM "d"."analytics"."by_region""#).await, 3);
    assert_eq!(count(&client, "SELECT n FROM analytics.live").await, 4);
    assert_eq!(count(&client, "SELECT count(*) FROM analytics.hot").await, 1);
    let tables_dir = dir.path().join("data/_catalog/tables/d");
    assert_eq!(std::fs::read_dir(&tables_dir).unwrap().count(), 1, "one table's files");
    client.batch_execute("drop schema analytics cascade").await.expect("drop schema");
    assert_eq!(std::fs::read_dir(&tables_dir).unwrap().count(), 0, "its files are gone");
    let (code, _) = pg_error(client.execute("SELECT * FROM analytics.by_region", &[]).await);
    assert_eq!(code, SqlState::UNDEFINED_TABLE);
}

#[tokio::test(flavor = "multi_thread")]
async fn dbt_runs_a_project_of_table_and_view_models_twice_and_its_models_survive_restart() {
    let python = test_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/dbt_check.py");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let pg_port = free_port();
    let port_arg = pg_port.to_string();
    let mut server = Server::start_with_env(&root, &["--pg-port", &port_arg], &[]);
    let fixture = Command::new(&python).arg(&script).arg("--print-fixture").output().expect("fixture");
    assert!(fixture.status.success());
    let lines = String::from_utf8(fixture.stdout).unwrap();
    assert_eq!(post(&server.url("/write?db=d"), lines).await.0, 204);
    connect(pg_port, "d", "anyone", "").await.expect("front is up");
    let work = dir.path().join("dbt");
    let run = |extra: &[&str]| {
        let output = Command::new(&python)
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &port_arg, "--database", "d", "--work-dir"])
            .arg(&work)
            .args(extra)
            .output()
            .expect("run dbt_check.py");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };
    let first = run(&[]);
    assert!(first.lines().filter(|l| l.starts_with("ok")).count() >= 5, "{first}");
    server.kill9();
    server.restart();
    connect(pg_port, "d", "anyone", "").await.expect("front is up again");
    let after = run(&["--after-restart"]);
    assert!(after.lines().any(|l| l.starts_with("ok")), "{after}");
}
