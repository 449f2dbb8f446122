//! API tokens on every front, failed-login limits, and TLS on the HTTP front:
//! the server started as a user starts it, tokens made with `hourglass token`,
//! and real clients (reqwest, tokio-postgres, psql, the FlightSQL client, curl).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tokio_postgres::error::SqlState;
use tonic::transport::Endpoint;
use tonic::Code;

use crate::flight::code;
use crate::postgres::{connect, sqlstate};
use crate::support::{client, command, free_port, self_signed, Server};

const ADMIN: [(&str, &str); 2] = [("HTTP_BASIC_AUTH_USERNAME", "admin"), ("HTTP_BASIC_AUTH_PASSWORD", "pw")];

/// The error of a connection that had to be refused.
fn refused(result: Result<tokio_postgres::Client, tokio_postgres::Error>, what: &str) -> tokio_postgres::Error {
    match result {
        Ok(_) => panic!("{what}: the connection was accepted"),
        Err(error) => error,
    }
}

/// Runs `hourglass token <args>` on the data root `root`; its stdout, which
/// must succeed.
fn token_command(root: &Path, args: &[&str]) -> String {
    let output = command()
        .arg("--root")
        .arg(root)
        .arg("token")
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .expect("hourglass token");
    assert!(output.status.success(), "hourglass token {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn create_token(root: &Path, database: &str, privilege: &str) -> String {
    let token = token_command(root, &["create", "--database", database, privilege]).trim().to_owned();
    assert!(token.starts_with("hgt_"), "{token}");
    token
}

/// A GigAPI query of `database` with `authorization`; its status and body.
async fn http_query(server: &Server, authorization: &str, database: Option<&str>, sql: &str) -> (u16, String) {
    let url = match database {
        Some(database) => server.url(&format!("/query?db={database}")),
        None => server.url("/query"),
    };
    let response = client()
        .post(url)
        .header("Authorization", authorization)
        .header("Content-Type", "application/json")
        .body(serde_json::json!({ "query": sql }).to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn http_write(server: &Server, authorization: &str, database: &str, body: &str) -> (u16, String) {
    let response = client()
        .post(server.url(&format!("/write?db={database}")))
        .header("Authorization", authorization)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_reaches_one_database_at_its_privilege_on_every_front_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (pg_port, flight_port) = (free_port(), free_port());
    let server = Server::start_with_env(
        &root,
        &["--pg-port", &pg_port.to_string(), "--flightsql-port", &flight_port.to_string()],
        &ADMIN,
    );
    let admin = "Basic YWRtaW46cHc="; // admin:pw
    for database in ["a", "b"] {
        let (status, text) = http_write(&server, admin, database, "cpu,host=x v=1 1").await;
        assert_eq!(status, 204, "{text}");
    }
    let reader = create_token(&root, "a", "--read");
    let writer = create_token(&root, "a", "--write");
    let owner = create_token(&root, "a", "--admin");
    let listed = token_command(&root, &["list"]);
    assert_eq!(listed.lines().count(), 4, "a header and three tokens: {listed}");
    assert!(!listed.contains(&reader[20..]), "list shows no secret: {listed}");

    // HTTP: the token's database only, and only what its privilege allows.
    let (read, write, own) = (format!("Token {reader}"), format!("Bearer {writer}"), format!("Token {owner}"));
    let (status, text) = http_query(&server, &read, Some("a"), "SELECT count(*) AS n FROM cpu").await;
    assert_eq!((status, text.contains("\"n\":1")), (200, true), "{text}");
    let (status, text) = http_query(&server, &read, None, "SELECT count(*) AS n FROM cpu").await;
    assert_eq!(status, 200, "no database named: the token's own: {text}");
    let (status, text) = http_query(&server, &read, Some("b"), "SELECT 1").await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = http_query(&server, &read, Some("a"), "SELECT * FROM b.public.cpu").await;
    assert_ne!(status, 200, "another database's table resolves in no session of a token: {text}");
    let (status, text) = http_query(&server, &read, Some("a"), "SHOW DATABASES").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"a\"") && !text.contains("\"b\"") && !text.contains("default"), "{text}");
    assert_eq!(http_write(&server, &read, "a", "cpu,host=y v=2 2").await.0, 403);
    let (status, text) =
        http_query(&server, &read, Some("a"), "INSERT INTO cpu (host, v, time) VALUES ('z', 1, 3)").await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(http_write(&server, &write, "a", "cpu,host=y v=2 2").await.0, 204);
    assert_eq!(http_write(&server, &write, "b", "cpu,host=y v=2 2").await.0, 403);
    let (status, text) = http_query(&server, &write, Some("a"), "CREATE VIEW hosts AS SELECT host FROM cpu").await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = http_query(&server, &own, Some("a"), "CREATE VIEW hosts AS SELECT host FROM cpu").await;
    assert_eq!(status, 200, "{text}");
    // InfluxDB v1's `p=` takes a token, with any user name.
    let v1 = client()
        .post(server.url(&format!("/write?db=a&u=telegraf&p={writer}")))
        .body("cpu,host=w v=3 4")
        .send()
        .await
        .unwrap();
    assert_eq!(v1.status().as_u16(), 204);
    let metrics = client().get(server.url("/metrics")).header("Authorization", &own).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 403, "server-wide endpoints need the configured user");

    // Postgres: the token is the password of any user but the configured one.
    let pg = connect(pg_port, "a", "grafana", &reader).await.expect("a read token connects to its database");
    let n: i64 = pg.query_one("SELECT count(*) FROM cpu", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    let databases: Vec<String> =
        pg.query("SELECT datname FROM pg_database", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(databases, ["a"]);
    let catalogs = pg.simple_query("SHOW CATALOGS").await.expect("SHOW CATALOGS");
    let catalogs: Vec<String> = catalogs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(catalogs, ["a"], "datafusion-postgres' SHOW CATALOGS sees the token's database only");
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(pg_port).user("grafana").password(&reader);
    let (unnamed, connection) = config.connect(tokio_postgres::NoTls).await.expect("no database named");
    tokio::spawn(connection);
    let current: String = unnamed.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    assert_eq!(current, "a", "a token that names no database works in its own");
    let error = pg.execute("INSERT INTO cpu (host, v, time) VALUES ('z', 1, 5)", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&error), SqlState::INSUFFICIENT_PRIVILEGE, "{error:?}");
    let error = pg.simple_query("COPY cpu (host, v) FROM STDIN").await.unwrap_err();
    assert_eq!(sqlstate(&error), SqlState::INSUFFICIENT_PRIVILEGE, "{error:?}");
    let error = refused(connect(pg_port, "b", "grafana", &reader).await, "another database is refused");
    assert_eq!(sqlstate(&error), SqlState::INSUFFICIENT_PRIVILEGE, "{error:?}");
    let error = refused(connect(pg_port, "a", "grafana", "hgt_0000_wrong").await, "a made-up token");
    assert_eq!(sqlstate(&error), SqlState::INVALID_PASSWORD, "{error:?}");
    let writes = connect(pg_port, "a", "loader", &writer).await.unwrap();
    assert_eq!(writes.execute("INSERT INTO cpu (host, v, time) VALUES ('z', 1, 5)", &[]).await.unwrap(), 1);
    let psql = Command::new("psql")
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &pg_port.to_string(), "-U", "someone", "-d", "a"])
        .args(["-c", "SELECT count(*) FROM cpu"])
        .env("PGPASSWORD", &reader)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed by tests/run");
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), "4", "{}", String::from_utf8_lossy(&psql.stderr));

    // FlightSQL: the token as a bearer, and as the handshake's password.
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{flight_port}")).unwrap().connect().await.unwrap();
    let mut flight = FlightSqlServiceClient::new(channel.clone());
    flight.set_token(reader.clone());
    flight.set_header("database", "a");
    let info = flight.execute("SELECT count(*) AS n FROM cpu".into(), None).await.expect("a read token queries");
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<_> = flight.do_get(ticket).await.unwrap().try_collect().await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let info = flight.get_catalogs().await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let catalogs: Vec<arrow::array::RecordBatch> = flight.do_get(ticket).await.unwrap().try_collect().await.unwrap();
    let names: Vec<String> =
        catalogs.iter().flat_map(crate::support::batch_rows).map(|r| r["catalog_name"].clone()).collect();
    assert_eq!(names, ["a"], "GetCatalogs shows the token's database only");
    let error =
        flight.execute_update("INSERT INTO cpu (host, v, time) VALUES ('q', 1, 6)".into(), None).await.unwrap_err();
    assert_eq!(code(&error), Code::PermissionDenied, "{error}");
    flight.set_header("database", "b");
    let error = flight.execute("SELECT 1".into(), None).await.unwrap_err();
    assert_eq!(code(&error), Code::PermissionDenied, "{error}");
    let mut handshake = FlightSqlServiceClient::new(channel.clone());
    handshake.set_header("database", "a");
    handshake.handshake("anyone", &writer).await.expect("a token logs in through the handshake");
    assert!(handshake.execute("SELECT 1".into(), None).await.is_ok());

    let mut session = FlightSqlServiceClient::new(channel.clone());
    session.set_header("database", "a");
    session.handshake("anyone", &reader).await.expect("a read token's session");
    assert!(session.execute("SELECT 1".into(), None).await.is_ok());

    // Revoked: refused everywhere within a second or so.
    let id = reader.trim_start_matches("hgt_").split('_').next().unwrap().to_owned();
    token_command(&root, &["revoke", &id]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = http_query(&server, &read, Some("a"), "SELECT 1").await;
        if status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a revoked token is still taken: {status} {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = refused(connect(pg_port, "a", "grafana", &reader).await, "revoked on Postgres too");
    assert_eq!(sqlstate(&error), SqlState::INVALID_PASSWORD);
    let error = session.execute("SELECT 1".into(), None).await.unwrap_err();
    assert_eq!(code(&error), Code::Unauthenticated, "a session ends with the token that opened it: {error}");
    let log = server.log_text();
    assert!(log.contains("failed login") && log.contains("127.0.0.1"), "failures are logged with the address");
}

#[test]
fn a_server_with_tokens_and_no_user_refuses_to_start_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    create_token(&root, "a", "--read");
    let output = command()
        .arg("--root")
        .arg(&root)
        .args(["--http-host", "127.0.0.1", "--http-port", &free_port().to_string()])
        .args(["--pg-enable", "false", "--flightsql-enable", "false"])
        .output()
        .expect("hourglass");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HTTP_BASIC_AUTH_USERNAME") && stderr.contains("tokens"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_that_fails_too_often_is_turned_away_on_every_front() {
    let dir = tempfile::tempdir().unwrap();
    let pg_port = free_port();
    let mut env = ADMIN.to_vec();
    env.push(("HOURGLASS_LOGIN_FAILURES_PER_MINUTE", "3"));
    let flight_port = free_port();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &["--pg-port", &pg_port.to_string(), "--flightsql-port", &flight_port.to_string()],
        &env,
    );
    let good = "Basic YWRtaW46cHc=";
    assert_eq!(http_write(&server, good, "d", "m v=1 1").await.0, 204);
    for _ in 0..2 {
        assert_eq!(http_write(&server, "Basic YWRtaW46bm8=", "d", "m v=1 1").await.0, 401);
    }
    let error = refused(connect(pg_port, "d", "admin", "nope").await, "a wrong password");
    assert_eq!(sqlstate(&error), SqlState::INVALID_PASSWORD);
    // Three failures: every front now turns the address away, right password or not.
    let response =
        client().post(server.url("/write?db=d")).header("Authorization", good).body("m v=1 2").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().get("retry-after").is_some());
    let error = refused(connect(pg_port, "d", "admin", "pw").await, "turned away");
    assert_eq!(sqlstate(&error), SqlState::INVALID_AUTHORIZATION_SPECIFICATION, "{error:?}");
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{flight_port}")).unwrap().connect().await.unwrap();
    let mut flight = FlightSqlServiceClient::new(channel);
    flight.set_token("pw".into());
    let error = flight.execute("SELECT 1".into(), None).await.unwrap_err();
    assert_eq!(code(&error), Code::ResourceExhausted, "{error}");
    assert!(server.log_text().contains("turned away"), "{}", server.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_front_serves_tls_with_the_certificate_of_the_other_fronts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let server = Server::start(
        &dir.path().join("data"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let https = format!("https://127.0.0.1:{}", server.http_port);
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--cacert"])
            .arg(&cert)
            .args(args)
            .output()
            .expect("curl")
    };
    assert_eq!(String::from_utf8_lossy(&curl(&[&format!("{https}/ping")]).stdout), "204", "HTTPS answers /ping");
    let write = curl(&["--data-binary", "m v=1 1", &format!("{https}/write?db=d")]);
    assert_eq!(String::from_utf8_lossy(&write.stdout), "204");
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{}/ping", server.http_port))
        .output()
        .expect("curl");
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "204", "plain HTTP is not served on a TLS port");
}
