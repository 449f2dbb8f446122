//! Test support: the real `hourglass` binary as a child process on free loopback
//! ports, with helpers to write to it and read what it stored.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Environment variables the server reads; removed so the caller's shell cannot leak in.
const SERVER_ENV: &[&str] = &[
    "GIGAPI_ROOT",
    "GIGAPI_SAVE_TIMEOUT_S",
    "GIGAPI_MERGE_TIMEOUT_S",
    "GIGAPI_NO_MERGES",
    "GIGAPI_MODE",
    "GIGAPI_METADATA_TYPE",
    "GIGAPI_METADATA_URL",
    "HTTP_PORT",
    "HTTP_HOST",
    "HTTP_BASIC_AUTH_USERNAME",
    "HTTP_BASIC_AUTH_PASSWORD",
    "FLIGHTSQL_PORT",
    "FLIGHTSQL_ENABLE",
    "PG_PORT",
    "PG_ENABLE",
    "HOURGLASS_PG_AUTH_METHOD",
    "HOURGLASS_TLS_CERT",
    "HOURGLASS_TLS_KEY",
    "LOGLEVEL",
    "HOURGLASS_CONFIG",
    "RUST_LOG",
];

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

/// The server binary.
pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hourglass"))
}

/// A `hourglass` command with a clean environment.
pub(crate) fn command() -> Command {
    let mut command = Command::new(binary());
    for name in SERVER_ENV {
        command.env_remove(name);
    }
    for (name, _) in std::env::vars() {
        if name.starts_with("GIGAPI_LAYER") || name.starts_with("HOURGLASS_") {
            command.env_remove(name);
        }
    }
    command
}

/// A running server. Killed (SIGKILL) when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    /// The data root.
    pub(crate) root: PathBuf,
    /// The HTTP port.
    pub(crate) http_port: u16,
    extra_args: Vec<String>,
    extra_env: Vec<(String, String)>,
    log: PathBuf,
}

impl Server {
    /// Starts a server on `root` with `args` added to the defaults.
    pub(crate) fn start(root: &Path, args: &[&str]) -> Server {
        Server::start_with_env(root, args, &[])
    }

    /// Starts a server with extra arguments and environment variables.
    pub(crate) fn start_with_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Server {
            child: None,
            root: root.to_path_buf(),
            http_port: free_port(),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            log: root.with_extension(format!("log-{}", free_port())),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let mut command = command();
        command
            .arg("--root")
            .arg(&self.root)
            .args(["--http-host", "127.0.0.1", "--http-port", &self.http_port.to_string()])
            .args(&self.extra_args)
            .env("LOGLEVEL", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        // The FlightSQL front only where a test asks for it by giving its port.
        if !self.extra_args.iter().any(|a| a == "--flightsql-port") {
            command.args(["--flightsql-enable", "false"]);
        }
        // The Postgres front only where a test asks for it by giving its port.
        if !self.extra_args.iter().any(|a| a == "--pg-port") {
            command.args(["--pg-enable", "false"]);
        }
        for (k, v) in &self.extra_env {
            command.env(k, v);
        }
        self.child = Some(command.spawn().expect("start hourglass"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("server exited during start-up ({status}):\n{}", self.log_text());
            }
            if self.health_answers() {
                return;
            }
            if Instant::now() > deadline {
                panic!("server did not start within 30 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True once `GET /health` answers 200: the server is past WAL replay and serving.
    fn health_answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
            return false;
        }
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200")
    }

    /// What the server logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The base URL of the HTTP API.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server not running");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not exit within 60 s of SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same root and port.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs a stopped server");
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An HTTP client for tests.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("client")
}

/// Posts `body` to `url`; returns the status and body text.
pub(crate) async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = client().post(url).body(body).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A catalog file entry, as the tests need it.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct ListedFile {
    /// Path relative to the table directory.
    pub(crate) path: String,
    /// Rows.
    pub(crate) row_count: u64,
    /// Smallest time.
    pub(crate) min_time: i64,
    /// Largest time.
    pub(crate) max_time: i64,
}

#[derive(Debug, serde::Deserialize)]
struct ListedPartition {
    files: Vec<ListedFile>,
}

/// The files the catalog lists for a table, by partition directory.
pub(crate) fn listed_files(root: &Path, database: &str, table: &str) -> Vec<ListedFile> {
    let table_dir = root.join(database).join(table);
    let mut files = Vec::new();
    let Ok(dates) = std::fs::read_dir(&table_dir) else { return files };
    let mut dates: Vec<_> = dates.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dates.sort();
    for date in dates {
        let mut hours: Vec<_> = std::fs::read_dir(&date).unwrap().flatten().map(|e| e.path()).collect();
        hours.sort();
        for hour in hours {
            let metadata = hour.join("metadata.json");
            if let Ok(text) = std::fs::read_to_string(&metadata) {
                let partition: ListedPartition = serde_json::from_str(&text).expect("metadata.json parses");
                files.extend(partition.files);
            }
        }
    }
    files
}

/// Reads a Parquet file.
pub(crate) fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet metadata")
        .build()
        .expect("parquet reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("parquet batches")
}

/// Every row of the files the catalog lists for a table, as column → text maps.
pub(crate) fn table_rows(root: &Path, database: &str, table: &str) -> Vec<BTreeMap<String, String>> {
    let mut rows = Vec::new();
    for file in listed_files(root, database, table) {
        let batches = read_parquet(&root.join(database).join(table).join(&file.path));
        rows.extend(batches.iter().flat_map(batch_rows));
    }
    rows
}

/// The rows of a batch as column → text maps, nulls left out.
pub(crate) fn batch_rows(batch: &RecordBatch) -> Vec<BTreeMap<String, String>> {
    let options = FormatOptions::default();
    let formatters: Vec<_> =
        batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter")).collect();
    (0..batch.num_rows())
        .map(|row| {
            batch
                .schema()
                .fields()
                .iter()
                .zip(&formatters)
                .enumerate()
                .filter(|(i, _)| batch.column(*i).is_valid(row))
                .map(|(_, (field, formatter))| (field.name().clone(), formatter.value(row).to_string()))
                .collect()
        })
        .collect()
}

/// A map literal for row comparisons.
pub(crate) fn row(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Polls `condition` until it holds or `timeout` passes.
pub(crate) fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    condition()
}

/// A self-signed certificate for 127.0.0.1 and localhost, and its PKCS#8 key,
/// made by openssl (installed by tests/run).
pub(crate) fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // An end-entity certificate: rustls refuses a CA certificate as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed by tests/run");
    assert!(status.success());
    (cert, key)
}

/// The Python of the virtualenv that tests/run makes, with the Python clients and dbt.
pub(crate) fn test_python() -> String {
    std::env::var("HOURGLASS_TEST_PYTHON")
        .expect("HOURGLASS_TEST_PYTHON is set by tests/run, which installs the Python clients and dbt: run tests/run")
}
