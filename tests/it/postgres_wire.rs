//! The Postgres front answering as PostgreSQL 15 does where clients notice:
//! column names, times as text, results of a multi-statement query, start-up
//! errors, COPY TO and binary COPY, measurements whose names hold dots,
//! Grafana's catalog queries, the connection limit, and a shutdown that lets
//! a COPY in flight finish. Expected values are PostgreSQL 15's.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use crate::postgres::{connect, psql, server_with_rows, simple_rows};
use crate::support::{client, json_of, post, wait_for, JsonBody};

/// The column names and rows of a simple query.
async fn named_rows(client: &tokio_postgres::Client, sql: &str) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let names = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::RowDescription(columns) => Some(columns.iter().map(|c| c.name().to_owned()).collect()),
            _ => None,
        })
        .unwrap_or_default();
    (names, simple_rows(messages))
}

fn texts(row: &[&str]) -> Vec<Option<String>> {
    row.iter().map(|v| Some(v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn columns_are_named_and_times_written_as_postgresql_does() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let client = connect(port, "d", "anyone", "").await.expect("connect");

    for (sql, names) in [
        ("SELECT 1", vec!["?column?"]),
        ("SELECT avg(usage), count(*), max(time) AS latest FROM cpu", vec!["avg", "count", "latest"]),
        ("SELECT upper(host), host, usage::text, 1::int FROM cpu LIMIT 1", vec!["upper", "host", "usage", "int4"]),
        ("SELECT count(*) AS \"Rows\", count(*) AS Lower FROM cpu", vec!["Rows", "lower"]),
        ("SELECT *, n + 1 FROM cpu LIMIT 1", vec!["host", "region", "usage", "n", "time", "?column?"]),
    ] {
        assert_eq!(named_rows(&client, sql).await.0, names, "{sql}");
    }
    // The extended protocol describes the same names.
    let statement = client.prepare("SELECT avg(usage), count(*) FROM cpu WHERE n > $1").await.unwrap();
    let described: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(described, ["avg", "count"]);
    // HTTP keeps the engine's names.
    let answer: serde_json::Value = client_json(&server, "SELECT count(*) FROM cpu").await;
    assert_eq!(answer["results"][0]["count(*)"], 3, "{answer}");

    // Times in text: no zero fraction, no trailing zeros, the offset as +00.
    let (_, rows) = named_rows(&client, "SELECT time FROM cpu WHERE host = 'a'").await;
    assert_eq!(rows, [texts(&["2023-11-14 22:13:20+00"])]);
    let (_, rows) = named_rows(
        &client,
        "SELECT time + interval '500 milliseconds', time + interval '1 microsecond' FROM cpu WHERE host = 'a'",
    )
    .await;
    assert_eq!(rows, [texts(&["2023-11-14 22:13:20.5+00", "2023-11-14 22:13:20.000001+00"])]);
    let (_, rows) = named_rows(&client, "SELECT CAST(time AS timestamp) FROM cpu WHERE host = 'b'").await;
    assert_eq!(rows, [texts(&["2023-11-14 22:14:20"])]);
}

async fn client_json(server: &crate::support::Server, sql: &str) -> serde_json::Value {
    let response =
        client().post(server.url("/query?db=d")).json_body(&serde_json::json!({ "query": sql })).send().await;
    json_of(response.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_string_runs_its_statements_in_order_and_stops_at_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let client = connect(port, "d", "anyone", "").await.expect("connect");
    let insert = |host: &str| {
        format!("INSERT INTO cpu (host, region, usage, n, time) VALUES ('{host}', 'eu', 1, 1, '2023-11-14T23:00:00Z')")
    };
    // psql 15 shows every result of a query string: here the first two, then the error.
    let sql =
        format!("{}; SELECT 'first' AS a; SELECT nope FROM cpu; {}; SELECT 'last' AS c", insert("m1"), insert("m2"));
    let output = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "anyone", "-d", "d", "-c", &sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed by tests/run");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success());
    assert!(stdout.contains("INSERT 0 1") && stdout.contains("first"), "{stdout}");
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(!stdout.contains("last"), "nothing runs after the error: {stdout}");
    let (_, rows) = named_rows(&client, "SELECT host FROM cpu WHERE host IN ('m1', 'm2')").await;
    assert_eq!(rows, [texts(&["m1"])], "the insert after the error did not run");
}

/// A Postgres start-up message for `database`.
fn startup_message(database: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (key, value) in [("user", "anyone"), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_up_error_closes_the_connection_without_ready_for_query() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    socket.write_all(&startup_message("no_such_database")).unwrap();
    // Everything the server sends until it closes the connection.
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).expect("the server closes the connection");
    let mut kinds = Vec::new();
    let mut at = 0;
    while at + 5 <= answer.len() {
        kinds.push(answer[at] as char);
        at += 1 + u32::from_be_bytes([answer[at + 1], answer[at + 2], answer[at + 3], answer[at + 4]]) as usize;
    }
    assert_eq!(kinds, ['E'], "one ErrorResponse, then the close: {:?}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("3D000"));
    assert!(String::from_utf8_lossy(&answer).contains("FATAL"));

    // An unknown database named in a query is the query's error: the session goes on.
    let client = connect(port, "d", "anyone", "").await.expect("connect");
    let error = client.simple_query("SHOW TABLES FROM no_such_database").await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::INVALID_CATALOG_NAME), "{error:?}");
    assert_eq!(simple_rows(client.simple_query("SELECT 1").await.unwrap()), [texts(&["1"])]);
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_copies_a_table_and_a_query_out_to_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    connect(port, "d", "anyone", "").await.expect("front is up");
    let file = dir.path().join("out.csv");
    let copied = psql(
        port,
        &format!("\\copy (SELECT host, usage, time FROM cpu ORDER BY host) to '{}' with csv header", file.display()),
    );
    assert_eq!(copied.trim(), "COPY 3");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "host,usage,time\na,1.5,2023-11-14 22:13:20+00\nb,2.5,2023-11-14 22:14:20+00\nc,3.5,2023-11-14 22:15:20+00\n"
    );
    let file = dir.path().join("cpu.tsv");
    assert_eq!(psql(port, &format!("\\copy cpu (host, n) to '{}'", file.display())).trim(), "COPY 3");
    let mut lines: Vec<String> = std::fs::read_to_string(&file).unwrap().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["a\t3", "b\t4", "c\t5"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_measurement_whose_name_holds_a_dot_is_one_name_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    assert_eq!(post(&server.url("/write?db=d"), "cpu.load,host=a v=1 1700000000000000000").await.0, 204);
    // A database `cpu` with a table `load`: what splitting the name on the dot would find.
    assert_eq!(post(&server.url("/write?db=cpu"), "load,host=z v=99 1700000000000000000").await.0, 204);
    let client = connect(port, "d", "anyone", "").await.expect("connect");

    let sink = client.copy_in("COPY \"cpu.load\" (host, v, time) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"b\t2\t2023-11-14 22:13:21+00\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);
    let sink = client.copy_in("COPY public.\"cpu.load\" (host, v, time) FROM STDIN WITH (FORMAT csv)").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"c,3,2023-11-14T22:13:22Z\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);

    let (_, rows) = named_rows(&client, "SELECT host, v FROM \"cpu.load\" ORDER BY host").await;
    assert_eq!(rows, [texts(&["a", "1"]), texts(&["b", "2"]), texts(&["c", "3"])]);
    let out = client.copy_out("COPY \"cpu.load\" (host, v) TO STDOUT").await.unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    let mut lines: Vec<String> = String::from_utf8(chunks.concat()).unwrap().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["a\t1", "b\t2", "c\t3"]);
    let (_, rows) = named_rows(&client, "DESCRIBE \"cpu.load\"").await;
    let columns: Vec<_> = rows.iter().map(|r| r[0].clone().unwrap_or_default()).collect();
    assert_eq!(columns, ["host", "v", "time"]);
    // The other database's `load` was not touched.
    let other = connect(port, "cpu", "anyone", "").await.expect("connect to cpu");
    let (_, rows) = named_rows(&other, "SELECT count(*) FROM load").await;
    assert_eq!(rows, [texts(&["1"])]);
}

#[tokio::test(flavor = "multi_thread")]
async fn grafanas_column_and_table_lists_work_for_a_table_named_without_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let client = connect(port, "d", "anyone", "").await.expect("connect");
    let search_path = "quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )";
    // Grafana's query builder, word for word, for the table `cpu`.
    let columns = |table: &str| {
        format!(
            "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\"
  FROM information_schema.columns
  WHERE
    CASE WHEN array_length(parse_ident('{table}'),1) = 2
      THEN quote_ident(table_schema) = (parse_ident('{table}'))[1]
        AND quote_ident(table_name) = (parse_ident('{table}'))[2]
      ELSE quote_ident(table_name) = '{table}'
        AND
        {search_path}
    END"
        )
    };
    let expected = vec![
        texts(&["host", "text"]),
        texts(&["region", "text"]),
        texts(&["usage", "double precision"]),
        texts(&["n", "bigint"]),
        texts(&["time", "timestamp with time zone"]),
    ];
    let (names, rows) = named_rows(&client, &columns("cpu")).await;
    assert_eq!(names, ["column", "type"]);
    assert_eq!(rows, expected, "the table named without its schema");
    assert_eq!(named_rows(&client, &columns("public.cpu")).await.1, expected, "the table with its schema");

    // Grafana's table list: tables on the search path by name alone.
    let tables = format!(
        "SELECT
    CASE WHEN {search_path} THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS \"table\"
  FROM information_schema.tables
  WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog', '_timescaledb_cache',
    '_timescaledb_catalog', '_timescaledb_internal', '_timescaledb_config', 'timescaledb_information',
    'timescaledb_experimental')
  ORDER BY CASE WHEN {search_path} THEN 0 ELSE 1 END, 1"
    );
    let (_, rows) = named_rows(&client, &tables).await;
    assert_eq!(rows, [texts(&["cpu"])]);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_are_refused_as_postgresql_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server_with_rows(&dir.path().join("data"), &["--pg-max-connections", "2"], &[]).await;
    let first = connect(port, "d", "anyone", "").await.expect("first");
    let second = connect(port, "d", "anyone", "").await.expect("second");
    let error = match connect(port, "d", "anyone", "").await {
        Ok(_) => panic!("a third connection was accepted"),
        Err(e) => e,
    };
    assert_eq!(error.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{error:?}");
    let message = error.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("too many clients"), "{message}");
    assert_eq!(simple_rows(second.simple_query("SELECT 1").await.unwrap()), [texts(&["1"])]);
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match connect(port, "d", "anyone", "").await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no place freed after a connection closed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_in_flight_when_the_server_is_stopped_finishes_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = server_with_rows(&dir.path().join("data"), &[], &[]).await;
    let loading = connect(port, "d", "anyone", "").await.expect("connect");
    let idle = connect(port, "d", "anyone", "").await.expect("connect");
    let sink = loading.copy_in("COPY cpu (host, region, usage, n, time) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"s1\teu\t1\t1\t2023-11-14 23:00:00+00\n")).await.unwrap();

    server.sigterm();
    // New connections are refused, idle ones closed...
    assert!(wait_for(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()));
    assert!(idle.simple_query("SELECT 1").await.is_err(), "an idle connection is closed at shutdown");
    // ...and the load in flight goes on to its end.
    sink.send(Bytes::from_static(b"s2\teu\t2\t2\t2023-11-14 23:00:01+00\n")).await.unwrap();
    assert_eq!(sink.finish().await.expect("the COPY finishes during the shutdown"), 2);
    drop(loading);
    assert!(server.wait_exit().success(), "{}", server.log_text());

    server.restart();
    let client = connect(port, "d", "anyone", "").await.expect("connect after the restart");
    let (_, rows) = named_rows(&client, "SELECT host FROM cpu WHERE host LIKE 's%' ORDER BY host").await;
    assert_eq!(rows, [texts(&["s1"]), texts(&["s2"])]);
}
