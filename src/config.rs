//! Settings: flags, environment variables and an optional TOML file, in that order
//! of precedence, then the defaults.
//!
//! GigAPI's environment variable names are honoured exactly, so a GigAPI
//! deployment switches by changing its image; new settings are `HOURGLASS_*`. In
//! the TOML file every setting is its flag name without the dashes in front
//! (`http-port = 7971`; `_` works for `-`, and `[http] port = 7971` means
//! `http-port`), and layers are `[[layers]]` tables.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::storage::{LayerConfig, LayerType, S3Url};

/// Which parts of the server run (`GIGAPI_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Everything: writes, queries, compaction.
    Aio,
    /// Writes on every front (HTTP line protocol, Postgres INSERT and COPY,
    /// FlightSQL ingest), no query that reads a table; compaction too with the
    /// json catalog, or with --writer-compacts.
    Writeonly,
    /// Queries on every front, and (on the Redis catalog) CREATE, ALTER and
    /// DROP of schemas, views and tables; no writes.
    Readonly,
    /// Compaction only.
    Compaction,
}

impl Mode {
    /// Whether this mode accepts writes.
    pub fn writes(self) -> bool {
        matches!(self, Mode::Aio | Mode::Writeonly)
    }

    /// Whether this mode runs the compactor (level merges, layer moves, retention).
    pub fn compacts(self) -> bool {
        !matches!(self, Mode::Readonly)
    }

    /// Whether this mode answers queries.
    pub fn queries(self) -> bool {
        matches!(self, Mode::Aio | Mode::Readonly)
    }

    /// Whether this mode runs the SQL fronts (Postgres, FlightSQL): those
    /// that answer queries, and `writeonly` for `INSERT`, `COPY` and bulk
    /// ingest.
    pub fn speaks_sql(self) -> bool {
        self.queries() || self.writes()
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Aio => "aio",
            Mode::Writeonly => "writeonly",
            Mode::Readonly => "readonly",
            Mode::Compaction => "compaction",
        })
    }
}

/// Where the catalog lives (`GIGAPI_METADATA_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetadataType {
    /// JSON files beside the data (`metadata.json` per hour partition).
    Json,
    /// A shared Redis server (`GIGAPI_METADATA_URL`).
    Redis,
}

/// Log verbosity (`LOGLEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-request detail.
    Debug,
    /// Start-up, shutdown and notable events.
    Info,
    /// Problems the server works around.
    Warn,
    /// Failures only.
    Error,
    /// Same as error (GigAPI's name).
    Fatal,
}

impl LogLevel {
    /// The tracing filter directive for this level.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Fatal => "error",
        }
    }
}

/// A byte size: a number with an optional unit (`64MiB`, `10MB`, `512k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: u64 =
            number.parse().map_err(|_| format!("'{s}' is not a size such as 1048576, 512KiB or 64MiB"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            other => return Err(format!("unknown size unit '{other}' (use B, KB, KiB, MB, MiB, GB or GiB)")),
        };
        number.checked_mul(factor).map(ByteSize).ok_or_else(|| format!("'{s}' is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a Postgres client proves its password (`HOURGLASS_PG_AUTH_METHOD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PgAuthMethod {
    /// SCRAM-SHA-256: the password never crosses the wire (PostgreSQL's default).
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge and response, for old drivers.
    Md5,
    /// The password in clear text; use it only over TLS or on loopback.
    Password,
}

impl std::fmt::Display for PgAuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PgAuthMethod::ScramSha256 => "scram-sha-256",
            PgAuthMethod::Md5 => "md5",
            PgAuthMethod::Password => "password",
        })
    }
}

/// Parses a duration such as `30s`, `10m`, `12h`, `7d`, `4w`, `1h30m` or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(split);
        let number: f64 =
            number.parse().map_err(|_| format!("'{s}' is not a duration such as 30s, 10m, 12h, 7d or 4w"))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "" => return Err(format!("'{s}' needs a unit: ms, s, m, h, d or w")),
            other => return Err(format!("unknown duration unit '{other}' in '{s}' (use ms, s, m, h, d or w)")),
        };
        total += number * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("'{s}': {e}"))
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("'{s}' must be more than 0"));
    }
    // Past what a Duration holds, turning it into one would panic.
    Duration::try_from_secs_f64(v).map(|_| v).map_err(|_| format!("'{s}' is more seconds than a timer holds"))
}

fn positive_count(s: &str) -> Result<usize, String> {
    let v: usize = s.trim().parse().map_err(|_| format!("'{s}' is not a whole number"))?;
    if v > 0 {
        Ok(v)
    } else {
        Err("must be at least 1".into())
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
        "false" | "0" | "no" | "off" | "f" | "n" | "" => Ok(false),
        other => Err(format!("'{other}' is not true or false")),
    }
}

/// Every setting of the server. The field docs are the `--help` text.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Read settings from this TOML file; flags and environment variables win over it.
    #[arg(long, env = "HOURGLASS_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Root directory for data, the WAL and the local catalog.
    #[arg(long, env = "GIGAPI_ROOT", value_name = "DIR", default_value = "./data", global = true)]
    pub root: PathBuf,

    /// Which parts run: aio (everything), writeonly, readonly, compaction.
    #[arg(long, env = "GIGAPI_MODE", value_enum, default_value = "aio", global = true)]
    pub mode: Mode,

    /// Seconds between writes of the buffer to level-1 Parquet files.
    #[arg(long = "save-timeout-s", env = "GIGAPI_SAVE_TIMEOUT_S", value_name = "SECONDS", default_value = "1", value_parser = positive_seconds, global = true)]
    pub save_timeout_s: f64,

    /// Seconds between level 1 to 2 merges (level 2 to 3 every ten times that, 3 to 4 every hundred).
    #[arg(long = "merge-timeout-s", env = "GIGAPI_MERGE_TIMEOUT_S", value_name = "SECONDS", default_value = "10", value_parser = positive_seconds, global = true)]
    pub merge_timeout_s: f64,

    /// Turn the background compactor off (level merges, layer moves and
    /// retention); the admin call and `hourglass compact` still run it on demand.
    #[arg(long, env = "GIGAPI_NO_MERGES", value_name = "BOOL", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set, global = true)]
    pub no_merges: bool,

    /// Largest file each merge level writes, one size per level: the first is
    /// level 1 to 2, the next 2 to 3, and so on (the number of sizes is the
    /// number of merge levels).
    #[arg(
        long,
        env = "HOURGLASS_MERGE_MAX_BYTES",
        value_name = "SIZES",
        default_value = "100MiB,400MiB,4GiB",
        value_delimiter = ',',
        global = true
    )]
    pub merge_max_bytes: Vec<ByteSize>,

    /// How often each merge level runs, as a multiple of --merge-timeout-s, one
    /// factor per level (as many as --merge-max-bytes has sizes).
    #[arg(long, env = "HOURGLASS_MERGE_INTERVAL_FACTORS", value_name = "FACTORS", default_value = "1,10,100", value_delimiter = ',', value_parser = positive_seconds, global = true)]
    pub merge_interval_factors: Vec<f64>,

    /// Merges (and layer moves) running at once, each on its own hour partition.
    #[arg(long, env = "HOURGLASS_MERGE_CONCURRENCY", value_name = "N", default_value = "2", value_parser = positive_count, global = true)]
    pub merge_concurrency: usize,

    /// Seconds a file replaced by a merge, moved to another layer or expired
    /// stays on storage before it is deleted, so that queries already reading it
    /// finish; never less than --query-timeout-s. Files the catalog does not list
    /// (left by a crash) are deleted once this old.
    #[arg(long = "file-grace-s", env = "HOURGLASS_FILE_GRACE_S", value_name = "SECONDS", default_value = "60", value_parser = positive_seconds, global = true)]
    pub file_grace_s: f64,

    /// Where the catalog lives: json (files beside the data) or redis.
    #[arg(long, env = "GIGAPI_METADATA_TYPE", value_enum, default_value = "json", global = true)]
    pub metadata_type: MetadataType,

    /// Redis URL of a shared catalog (redis://host:6379/0), for --metadata-type redis.
    #[arg(long, env = "GIGAPI_METADATA_URL", value_name = "URL", global = true)]
    pub metadata_url: Option<String>,

    /// Prefix of every key the Redis catalog writes, so that several clusters
    /// can share one Redis.
    #[arg(long, env = "HOURGLASS_REDIS_PREFIX", value_name = "PREFIX", default_value = "hourglass", global = true)]
    pub redis_prefix: String,

    /// How often a process checks the Redis catalog for changes made by other
    /// processes: the most a reader's view of the files lags behind.
    #[arg(long = "catalog-poll-ms", env = "HOURGLASS_CATALOG_POLL_MS", value_name = "MS", default_value = "100", value_parser = clap::value_parser!(u64).range(1..=60_000), global = true)]
    pub catalog_poll_ms: u64,

    /// Seconds a compactor's lease on a table lasts unless renewed (Redis
    /// catalog): how soon a standby compactor takes over from one that died.
    #[arg(long = "compaction-lease-s", env = "HOURGLASS_COMPACTION_LEASE_S", value_name = "SECONDS", default_value = "30", value_parser = positive_seconds, global = true)]
    pub compaction_lease_s: f64,

    /// With the Redis catalog, a `writeonly` process also competes for the
    /// compaction leases (merges, layer moves, retention, the orphan sweep),
    /// as `compaction` processes do. Off by default: writers only write.
    #[arg(long, env = "HOURGLASS_WRITER_COMPACTS", value_name = "BOOL", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set, global = true)]
    pub writer_compacts: bool,

    /// This writer's id in a shared catalog, which records per writer how far
    /// each one's WAL is persisted: every writer needs its own, kept across
    /// restarts. Default: the host name and the data root.
    #[arg(long, env = "HOURGLASS_WRITER_ID", value_name = "ID", global = true)]
    pub writer_id: Option<String>,

    /// Address the HTTP API listens on.
    #[arg(long, env = "HTTP_HOST", value_name = "ADDRESS", default_value = "0.0.0.0", global = true)]
    pub http_host: String,

    /// Port of the HTTP API (writes, queries, health, metrics).
    #[arg(long, env = "HTTP_PORT", value_name = "PORT", default_value = "7971", global = true)]
    pub http_port: u16,

    /// User name for HTTP basic auth (and the other fronts); no auth when unset.
    #[arg(long, env = "HTTP_BASIC_AUTH_USERNAME", value_name = "USER", global = true)]
    pub http_basic_auth_username: Option<String>,

    /// Password for HTTP basic auth (and the other fronts).
    #[arg(long, env = "HTTP_BASIC_AUTH_PASSWORD", value_name = "PASSWORD", hide_env_values = true, global = true)]
    pub http_basic_auth_password: Option<String>,

    /// Failed logins one client address may make per minute on all fronts
    /// together; past it the address is turned away, whatever it presents,
    /// until its failures are a minute old (HTTP 429, Postgres 28000,
    /// gRPC RESOURCE_EXHAUSTED). Every failure is logged with the address.
    /// 0 turns the limit off.
    #[arg(long, env = "HOURGLASS_LOGIN_FAILURES_PER_MINUTE", value_name = "N", default_value = "10", global = true)]
    pub login_failures_per_minute: usize,

    /// Port of the FlightSQL front (Arrow Flight SQL over gRPC: ADBC, JDBC,
    /// Grafana's FlightSQL and InfluxDB 3 data sources, influxdb3 clients).
    #[arg(long, env = "FLIGHTSQL_PORT", value_name = "PORT", default_value = "8082", global = true)]
    pub flightsql_port: u16,

    /// Run the FlightSQL front.
    #[arg(long, env = "FLIGHTSQL_ENABLE", value_name = "BOOL", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set, global = true)]
    pub flightsql_enable: bool,

    /// Port of the Postgres front.
    #[arg(long, env = "PG_PORT", value_name = "PORT", default_value = "5432", global = true)]
    pub pg_port: u16,

    /// Run the Postgres front.
    #[arg(long, env = "PG_ENABLE", value_name = "BOOL", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set, global = true)]
    pub pg_enable: bool,

    /// How Postgres clients prove their password when a user is configured:
    /// scram-sha-256, md5 or password (clear text).
    #[arg(long, env = "HOURGLASS_PG_AUTH_METHOD", value_enum, default_value = "scram-sha-256", global = true)]
    pub pg_auth_method: PgAuthMethod,

    /// TLS certificate chain (PEM) of every front; with --tls-key, the HTTP
    /// API takes HTTPS only, Postgres clients that ask for TLS
    /// (sslmode=require) get it, and FlightSQL takes TLS only (grpc+tls://).
    /// A certificate or key that cannot be used stops the server at start-up.
    #[arg(long, env = "HOURGLASS_TLS_CERT", value_name = "FILE", requires = "tls_key", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM, PKCS#8: "BEGIN PRIVATE KEY") for --tls-cert.
    #[arg(long, env = "HOURGLASS_TLS_KEY", value_name = "FILE", requires = "tls_cert", global = true)]
    pub tls_key: Option<PathBuf>,

    /// Log level: debug, info, warn, error (or fatal).
    #[arg(long, env = "LOGLEVEL", value_enum, default_value = "info", global = true)]
    pub log_level: LogLevel,

    /// A storage layer, repeatable, in data-flow order:
    /// name=NAME,type=fs|s3,url=URL[,ttl=DURATION][,global=BOOL][,auth-key=KEY][,auth-secret=SECRET].
    /// Also GIGAPI_LAYERS_<i>_{NAME,TYPE,URL,TTL,GLOBAL,AUTH_KEY,AUTH_SECRET}. Default: one fs layer at --root.
    #[arg(long = "layer", value_name = "SPEC", global = true)]
    pub layers: Vec<String>,

    /// Largest write request body, after decompression (413 past it).
    #[arg(long, env = "HOURGLASS_MAX_BODY_BYTES", value_name = "SIZE", default_value = "32MiB", global = true)]
    pub max_body_bytes: ByteSize,

    /// Longest line protocol line; longer lines are rejected.
    #[arg(long, env = "HOURGLASS_MAX_LINE_BYTES", value_name = "SIZE", default_value = "1MiB", global = true)]
    pub max_line_bytes: ByteSize,

    /// Most columns (tags, fields and time) a table may have.
    #[arg(long, env = "HOURGLASS_MAX_COLUMNS_PER_TABLE", value_name = "N", default_value = "1000", value_parser = positive_count, global = true)]
    pub max_columns_per_table: usize,

    /// Most deletes a table may have that the compactor has not yet carried
    /// out; each one is a filter every query of the table's older files
    /// applies.
    #[arg(long, env = "HOURGLASS_MAX_TOMBSTONES", value_name = "N", default_value = "100", value_parser = positive_count, global = true)]
    pub max_tombstones: usize,

    /// Memory the write path may hold: rows waiting to be persisted, request
    /// bodies being read and parsed, and the sorted copy being persisted.
    /// Writes past it are refused with 503 before their bodies are kept.
    #[arg(long, env = "HOURGLASS_MAX_BUFFER_BYTES", value_name = "SIZE", default_value = "512MiB", global = true)]
    pub max_buffer_bytes: ByteSize,

    /// The buffer is persisted before the save timeout once it holds this
    /// much; keep it well under --max-buffer-bytes (a quarter), so that the
    /// sorted copy being persisted and new writes fit beside it.
    #[arg(long, env = "HOURGLASS_FLUSH_BUFFER_BYTES", value_name = "SIZE", default_value = "128MiB", global = true)]
    pub flush_buffer_bytes: ByteSize,

    /// Memory the last-value cache may hold, all tables together: the last
    /// row of every series, kept by the write path so that latest-value and
    /// distinct-tag queries (`DISTINCT ON (host) ... ORDER BY host, time
    /// DESC`, `SELECT DISTINCT host FROM cpu`) read memory, not files. A
    /// table that would pass it reads its files for those queries. Used in
    /// the aio mode on the local catalog; 0 turns it off.
    #[arg(
        long,
        env = "HOURGLASS_LAST_VALUE_CACHE_BYTES",
        value_name = "SIZE",
        default_value = "256MiB",
        global = true
    )]
    pub last_value_cache_bytes: ByteSize,

    /// Most write requests parsed or waiting for the WAL at once; more wait
    /// up to --write-queue-timeout-s, then get 503. A write's body is read
    /// only once it has a place.
    #[arg(long, env = "HOURGLASS_MAX_CONCURRENT_WRITES", value_name = "N", default_value = "64", value_parser = positive_count, global = true)]
    pub max_concurrent_writes: usize,

    /// Seconds a write waits for a place among --max-concurrent-writes before
    /// it is refused with 503.
    #[arg(long = "write-queue-timeout-s", env = "HOURGLASS_WRITE_QUEUE_TIMEOUT_S", value_name = "SECONDS", default_value = "10", value_parser = positive_seconds, global = true)]
    pub write_queue_timeout_s: f64,

    /// Seconds a write that has its place may take to send its body; a
    /// slower one gets 408 and its place goes to the next write.
    #[arg(long = "write-body-timeout-s", env = "HOURGLASS_WRITE_BODY_TIMEOUT_S", value_name = "SECONDS", default_value = "30", value_parser = positive_seconds, global = true)]
    pub write_body_timeout_s: f64,

    /// Size at which a WAL segment is closed and a new one started.
    #[arg(long, env = "HOURGLASS_WAL_SEGMENT_BYTES", value_name = "SIZE", default_value = "64MiB", global = true)]
    pub wal_segment_bytes: ByteSize,

    /// Memory all running queries may use together, counting the readers of
    /// overlapping files a query merges; sorts and aggregations spill to disk
    /// past it, and a query that still does not fit fails with a clear error.
    #[arg(long, env = "HOURGLASS_QUERY_MEMORY_BYTES", value_name = "SIZE", default_value = "2GiB", global = true)]
    pub query_memory_bytes: ByteSize,

    /// Seconds a query may run before it is cancelled.
    #[arg(long = "query-timeout-s", env = "HOURGLASS_QUERY_TIMEOUT_S", value_name = "SECONDS", default_value = "300", value_parser = positive_seconds, global = true)]
    pub query_timeout_s: f64,

    /// Queries running at once on every front together; more wait in a
    /// queue of --max-queued-queries. 0: four per CPU, as more only share
    /// the same cores, each running slower and holding its memory longer.
    #[arg(long, env = "HOURGLASS_MAX_CONCURRENT_QUERIES", value_name = "N", default_value = "0", global = true)]
    pub max_concurrent_queries: usize,

    /// Queries waiting for one of --max-concurrent-queries at once; more are
    /// refused at once (HTTP 429 with Retry-After, Postgres 53300, FlightSQL
    /// ResourceExhausted). 0 refuses every query past the running ones.
    #[arg(long, env = "HOURGLASS_MAX_QUEUED_QUERIES", value_name = "N", default_value = "256", global = true)]
    pub max_queued_queries: usize,

    /// Seconds a query may wait in that queue; then it is refused as busy
    /// (HTTP 429 with Retry-After, Postgres 53300, FlightSQL
    /// ResourceExhausted) rather than left to wait toward its time limit.
    #[arg(long = "query-queue-timeout-s", env = "HOURGLASS_QUERY_QUEUE_TIMEOUT_S", value_name = "SECONDS", default_value = "30", value_parser = positive_seconds, global = true)]
    pub query_queue_timeout_s: f64,

    /// Largest query request body over HTTP (413 past it).
    #[arg(long, env = "HOURGLASS_MAX_QUERY_BYTES", value_name = "SIZE", default_value = "16MiB", global = true)]
    pub max_query_bytes: ByteSize,

    /// Longest line (or binary row) of a Postgres COPY FROM; a longer one
    /// ends the COPY with an error.
    #[arg(long, env = "HOURGLASS_MAX_COPY_LINE_BYTES", value_name = "SIZE", default_value = "16MiB", global = true)]
    pub max_copy_line_bytes: ByteSize,

    /// Largest gRPC message the FlightSQL front takes or sends (one batch of
    /// an ingest, a parameter binding, one batch of a result).
    #[arg(
        long,
        env = "HOURGLASS_FLIGHTSQL_MAX_MESSAGE_BYTES",
        value_name = "SIZE",
        default_value = "64MiB",
        global = true
    )]
    pub flightsql_max_message_bytes: ByteSize,

    /// Spread one query over the readers of a cluster (readonly mode on the
    /// Redis catalog): the reader that receives a query plans it and sends
    /// its stages to the live readers' FlightSQL ports, where each reader
    /// serves a worker beside FlightSQL. Queries below
    /// --distributed-min-bytes, and those with a window function, run where they
    /// were received. A worker answers only calls that carry the secret
    /// the readers share in the catalog (`<prefix>:worker_secret`), and
    /// runs only plans that read the storage layers and write nothing.
    /// Off where FlightSQL uses TLS, and for a reader bound to every
    /// address without --flightsql-advertise-url. Needs a build with the
    /// `distributed` feature (the default).
    #[arg(long, env = "HOURGLASS_DISTRIBUTED", value_name = "BOOL", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set, global = true)]
    pub distributed: bool,

    /// Bytes of files a query must scan to be spread over the readers.
    #[arg(long, env = "HOURGLASS_DISTRIBUTED_MIN_BYTES", value_name = "SIZE", default_value = "64MiB", global = true)]
    pub distributed_min_bytes: ByteSize,

    /// The address other readers reach this reader's FlightSQL port at, as
    /// a URL (`http://reader-1:8082`); by default http:// with --http-host
    /// and --flightsql-port. A reader bound to every address (0.0.0.0)
    /// needs it to take part in distributed queries.
    #[arg(long, env = "HOURGLASS_FLIGHTSQL_ADVERTISE_URL", value_name = "URL", global = true)]
    pub flightsql_advertise_url: Option<String>,

    /// Most Postgres connections open at once; more are refused with
    /// PostgreSQL's "too many clients" (53300).
    #[arg(long, env = "HOURGLASS_PG_MAX_CONNECTIONS", value_name = "N", default_value = "100", value_parser = positive_count, global = true)]
    pub pg_max_connections: usize,

    /// Most FlightSQL (gRPC) connections open at once; more are closed at once.
    #[arg(long, env = "HOURGLASS_FLIGHTSQL_MAX_CONNECTIONS", value_name = "N", default_value = "100", value_parser = positive_count, global = true)]
    pub flightsql_max_connections: usize,

    /// Web origins (scheme://host[:port], comma-separated, or *) whose pages
    /// may send writes and SQL to the HTTP API; a request from any other
    /// origin (a browser sends `Origin`) is refused with 403. Default: none,
    /// only pages of the server's own origin. Clients that send no Origin
    /// (curl, client libraries) are not affected.
    #[arg(long, env = "HOURGLASS_CORS_ALLOW_ORIGINS", value_name = "ORIGINS", value_delimiter = ',', global = true)]
    pub cors_allow_origins: Vec<String>,

    /// Serve the web UI at `/` on the HTTP port (in modes that answer
    /// queries): a table browser, a SQL editor with a result grid and
    /// charts, and the server's state. It asks for the same credentials as
    /// the HTTP API.
    #[arg(long, env = "GIGAPI_UI", value_name = "BOOL", default_value = "true", num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set, global = true)]
    pub ui: bool,

    /// Seconds requests in flight may run on after SIGTERM or SIGINT before
    /// their connections are closed (on every front).
    #[arg(long = "shutdown-timeout-s", env = "HOURGLASS_SHUTDOWN_TIMEOUT_S", value_name = "SECONDS", default_value = "30", value_parser = positive_seconds, global = true)]
    pub shutdown_timeout_s: f64,

    /// Threads one query may use (0: one per CPU).
    #[arg(long, env = "HOURGLASS_QUERY_PARTITIONS", value_name = "N", default_value = "0", global = true)]
    pub query_partitions: usize,

    /// Partitions written to Parquet at once by the persister.
    #[arg(long, env = "HOURGLASS_PERSIST_CONCURRENCY", value_name = "N", default_value = "2", value_parser = positive_count, global = true)]
    pub persist_concurrency: usize,
}

/// A setting that cannot be used, named as the user named it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct SettingError {
    /// The setting: flag and variable.
    pub setting: String,
    /// What is wrong.
    pub message: String,
}

impl SettingError {
    /// An error about the setting with this flag and environment variable.
    pub fn new(flag: &str, env: &str, message: impl Into<String>) -> Self {
        SettingError { setting: format!("{env} (--{flag})"), message: message.into() }
    }
}

/// Layer fields read from a flag, the environment or TOML.
#[derive(Debug, Default, Clone)]
struct LayerFields {
    name: Option<String>,
    layer_type: Option<String>,
    url: Option<String>,
    ttl: Option<String>,
    global: Option<String>,
    auth_key: Option<String>,
    auth_secret: Option<String>,
}

impl LayerFields {
    fn set(&mut self, key: &str, value: String) -> Result<(), String> {
        let slot = match key.to_ascii_lowercase().replace('_', "-").as_str() {
            "name" => &mut self.name,
            "type" => &mut self.layer_type,
            "url" => &mut self.url,
            "ttl" => &mut self.ttl,
            "global" => &mut self.global,
            "auth-key" => &mut self.auth_key,
            "auth-secret" => &mut self.auth_secret,
            other => {
                return Err(format!(
                    "unknown layer field '{other}' (known: name, type, url, ttl, global, auth-key, auth-secret)"
                ))
            }
        };
        *slot = Some(value);
        Ok(())
    }

    fn into_config(self, index: usize) -> Result<LayerConfig, String> {
        let name = self.name.unwrap_or_else(|| format!("layer{index}"));
        let layer_type = match self.layer_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("fs") | None => LayerType::Fs,
            Some("s3") => LayerType::S3,
            Some(other) => return Err(format!("layer {index} ('{name}'): unknown type '{other}' (use fs or s3)")),
        };
        let url = self.url.ok_or_else(|| format!("layer {index} ('{name}') has no URL"))?;
        if layer_type == LayerType::S3 {
            S3Url::parse(&url).map_err(|e| format!("layer {index} ('{name}'): {e}"))?;
        }
        let ttl = match self.ttl.as_deref() {
            None | Some("") => None,
            Some(ttl) => {
                let d = parse_duration(ttl).map_err(|e| format!("layer {index} ('{name}') TTL: {e}"))?;
                (!d.is_zero()).then_some(d)
            }
        };
        let global = match self.global.as_deref() {
            None => layer_type == LayerType::S3,
            Some(g) => parse_bool(g).map_err(|e| format!("layer {index} ('{name}') GLOBAL: {e}"))?,
        };
        Ok(LayerConfig { name, layer_type, url, global, ttl, auth_key: self.auth_key, auth_secret: self.auth_secret })
    }
}

/// Parses `--layer name=..,type=..,url=..` specs.
fn layers_from_flags(specs: &[String]) -> Result<Vec<LayerFields>, String> {
    specs
        .iter()
        .map(|spec| {
            let mut fields = LayerFields::default();
            for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
                let (key, value) =
                    part.split_once('=').ok_or_else(|| format!("'{part}' in --layer is not key=value"))?;
                fields.set(key.trim(), value.trim().to_owned())?;
            }
            Ok(fields)
        })
        .collect()
}

/// Reads `GIGAPI_LAYERS_<i>_*` (and GigAPI README's `GIGAPI_LAYER_<i>_*` spelling).
fn layers_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<LayerFields>, String> {
    let mut layers = Vec::new();
    for index in 0.. {
        let mut fields = LayerFields::default();
        let mut any = false;
        for key in ["NAME", "TYPE", "URL", "TTL", "GLOBAL", "AUTH_KEY", "AUTH_SECRET"] {
            let value =
                env(&format!("GIGAPI_LAYERS_{index}_{key}")).or_else(|| env(&format!("GIGAPI_LAYER_{index}_{key}")));
            if let Some(value) = value {
                fields.set(key, value)?;
                any = true;
            }
        }
        if !any {
            break;
        }
        layers.push(fields);
    }
    Ok(layers)
}

fn layers_from_toml(value: &toml::Value) -> Result<Vec<LayerFields>, String> {
    let list = value.as_array().ok_or("'layers' must be an array of tables ([[layers]])")?;
    list.iter()
        .map(|table| {
            let table = table.as_table().ok_or("each [[layers]] entry must be a table")?;
            let mut fields = LayerFields::default();
            for (key, value) in table {
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                fields.set(key, text)?;
            }
            Ok(fields)
        })
        .collect()
}

/// A TOML config file as `(flag, value)` pairs, with its `[[layers]]` apart.
#[derive(Debug, Default)]
pub struct TomlSettings {
    /// Settings by flag name.
    pub pairs: Vec<(String, String)>,
    /// The `layers` array, if any.
    pub layers: Option<toml::Value>,
}

/// Flattens a TOML document into `(flag, value)` pairs; `layers` is returned apart.
pub fn flatten_toml(document: &str) -> Result<TomlSettings, String> {
    let table: toml::Table = document.parse().map_err(|e: toml::de::Error| {
        let message = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(", ");
        match e.span() {
            Some(span) => {
                format!("line {}: {message}", document[..span.start.min(document.len())].lines().count().max(1))
            }
            None => message,
        }
    })?;
    let mut pairs = Vec::new();
    let mut layers = None;
    fn walk(prefix: &str, table: &toml::Table, pairs: &mut Vec<(String, String)>, layers: &mut Option<toml::Value>) {
        for (key, value) in table {
            let key = key.replace('_', "-");
            let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}-{key}") };
            match value {
                toml::Value::Table(inner) => walk(&name, inner, pairs, layers),
                toml::Value::Array(_) if name == "layers" => *layers = Some(value.clone()),
                toml::Value::String(s) => pairs.push((name, s.clone())),
                other => pairs.push((name, other.to_string())),
            }
        }
    }
    walk("", &table, &mut pairs, &mut layers);
    Ok(TomlSettings { pairs, layers })
}

/// The storage layers, from flags, else the environment, else TOML, else one fs
/// layer at the root.
pub fn resolve_layers(
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
    toml_layers: Option<&toml::Value>,
) -> Result<Vec<LayerConfig>, SettingError> {
    let error = |message: String| SettingError { setting: "GIGAPI_LAYERS_<i>_* (--layer)".into(), message };
    let mut fields = layers_from_flags(&settings.layers).map_err(error)?;
    if fields.is_empty() {
        fields = layers_from_env(env).map_err(error)?;
    }
    if fields.is_empty() {
        if let Some(value) = toml_layers {
            fields = layers_from_toml(value).map_err(error)?;
        }
    }
    if fields.is_empty() {
        return Ok(vec![LayerConfig {
            name: "default".into(),
            layer_type: LayerType::Fs,
            url: settings.root.display().to_string(),
            global: false,
            ttl: None,
            auth_key: None,
            auth_secret: None,
        }]);
    }
    let layers: Vec<LayerConfig> =
        fields.into_iter().enumerate().map(|(i, f)| f.into_config(i)).collect::<Result<_, _>>().map_err(error)?;
    for (i, layer) in layers.iter().enumerate() {
        if layers[..i].iter().any(|l| l.name == layer.name) {
            return Err(error(format!("two layers are named '{}'", layer.name)));
        }
    }
    Ok(layers)
}
