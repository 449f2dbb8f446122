//! Clients beyond the Python drivers against the Postgres front, run for
//! real: node-postgres (`pg` and `pg-copy-streams` from npm, tests/node), the
//! PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java, tests/java),
//! the statements DBeaver and Metabase send through that driver, and
//! SQLAlchemy's inspector, which Superset browses a database with.
//! tests/setup installs Node.js, the npm packages, a JDK, the driver and
//! SQLAlchemy.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{client, free_port, test_python, Server};

const USER: &str = "app";
const PASSWORD: &str = "s3cr=t";

/// A server with a user (so the clients log in with a password) and the
/// measurements the clients write to, made by line protocol (a row of host
/// `seed` that their queries leave out).
async fn server(root: &Path) -> (Server, u16) {
    let port = free_port();
    let users = [("HTTP_BASIC_AUTH_USERNAME", USER), ("HTTP_BASIC_AUTH_PASSWORD", PASSWORD)];
    let server = Server::start_with_env(root, &["--pg-port", &port.to_string()], &users);
    for measurement in ["node_m", "jdbc_m"] {
        let response = client()
            .post(server.url("/write?db=clients"))
            .basic_auth(USER, Some(PASSWORD))
            .body(format!("{measurement},host=seed v=0,n=0i 946684800000000000"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
    }
    (server, port)
}

fn checked(what: &str, command: &mut Command, server: &Server) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("run {what}: {e} (tests/setup installs it)"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{stderr}\n{}", server.log_text());
    stdout
}

fn node_modules() -> PathBuf {
    // Where tests/setup puts them: $CARGO_TARGET_DIR/node, with its default.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/hourglassdb/target"));
    target.join("node/node_modules")
}

#[tokio::test(flavor = "multi_thread")]
async fn node_postgres_logs_in_queries_with_parameters_reads_types_and_copies() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = server(&dir.path().join("data")).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/pg_client.js");
    let modules = node_modules();
    assert!(modules.join("pg").exists(), "{} has no pg: run tests/setup", modules.display());
    let stdout = tokio::task::spawn_blocking(move || {
        let mut command = Command::new("node");
        command.arg(script).args([&port.to_string(), "clients", USER, PASSWORD]).env("NODE_PATH", modules);
        checked("node", &mut command, &server)
    })
    .await
    .unwrap();
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok node-pg")).count(), 10, "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jdbc_logs_in_queries_with_parameters_reads_types_and_copies() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = server(&dir.path().join("data")).await;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/JdbcCheck.java");
    let stdout = tokio::task::spawn_blocking(move || {
        let mut command = Command::new("java");
        command.args(["-cp", "/usr/share/java/postgresql.jar"]).arg(source).args([
            &port.to_string(),
            "clients",
            USER,
            PASSWORD,
        ]);
        checked("java", &mut command, &server)
    })
    .await
    .unwrap();
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok jdbc")).count(), 14, "{stdout}");
}

/// Writes the table the BI tools browse: `cpu` in database `bi`, hosts `a`
/// and `b` at 2023-11-14T22:13:20Z.
async fn write_bi_table(server: &Server) {
    let response = client()
        .post(server.url("/write?db=bi"))
        .basic_auth(USER, Some(PASSWORD))
        .body("cpu,host=a usage=1.5,n=1i 1700000000000000000\ncpu,host=b usage=3,n=2i 1700000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn dbeaver_and_metabase_browse_sync_and_chart_through_jdbc() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = server(&dir.path().join("data")).await;
    write_bi_table(&server).await;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/BiToolsCheck.java");
    let stdout = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        for tool in ["dbeaver", "metabase"] {
            let mut command = Command::new("java");
            command.args(["-cp", "/usr/share/java/postgresql.jar"]).arg(&source).args([
                tool,
                &port.to_string(),
                "bi",
                USER,
                PASSWORD,
            ]);
            out.push_str(&checked(&format!("the {tool} check"), &mut command, &server));
        }
        out
    })
    .await
    .unwrap();
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok dbeaver")).count(), 20, "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok metabase")).count(), 25, "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlalchemy_lists_tables_and_columns_with_their_types_as_superset_does() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = server(&dir.path().join("data")).await;
    write_bi_table(&server).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sqlalchemy_check.py");
    let stdout = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(test_python());
        command.arg(script).args([&port.to_string(), USER, PASSWORD]);
        checked("the SQLAlchemy check", &mut command, &server)
    })
    .await
    .unwrap();
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok sqlalchemy")).count(), 13, "{stdout}");
}
