//! The front doors and the process around them: start-up checks, the HTTP front,
//! and shutdown on SIGINT or SIGTERM.

pub mod auth;
#[cfg(feature = "distributed")]
mod cluster_readers;
#[cfg(test)]
mod crash_sim;
mod database;
pub(crate) mod flight;
pub mod http;
pub(crate) mod postgres;
pub(crate) mod status;
mod write_path;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::catalog::relations::{RelationFile, RelationFiles, RelationLog, RelationStore};
use crate::catalog::tokens::{TokenFile, TokenLog, Tokens};
use crate::catalog::RedisTokens;
use crate::catalog::{Catalog, CatalogError, LocalCatalog, RedisCatalog, RedisOptions};
use crate::compactor::{Compactor, CompactorOptions, MergeLevel, MAX_FILES_PER_MERGE};
use crate::config::{resolve_layers, MetadataType, Mode, SettingError, Settings};
use crate::ingest::{IngestOptions, Ingester};
use crate::last_values::LastValueCache;
use crate::metrics::Metrics;
use crate::query::{BufferedRows, QueryEngine, QueryOptions, TableWriter};
use crate::storage::disk::RealDisk;
use crate::storage::{ParquetOptions, Storage};
use auth::{Authenticator, Users};
use write_path::{BufferForQueries, InsertsToIngester, MergesThroughEngine};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting cannot be used (exit code 2).
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// Something failed while running (exit code 1).
    #[error("{0}")]
    Runtime(String),
}

/// Checks that the data root exists (creating it) and is writable.
fn prepare_root(root: &Path) -> Result<(), SettingError> {
    let error = |message: String| SettingError::new("root", "GIGAPI_ROOT", format!("{}: {message}", root.display()));
    crate::storage::fs::create_dir_all_synced(&RealDisk, root)
        .map_err(|e| error(format!("cannot create the directory: {e}")))?;
    let probe = root.join(format!(".tmp-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(|e| error(format!("cannot write in the directory: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The query engine's settings.
pub fn query_options(settings: &Settings) -> QueryOptions {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let partitions = match settings.query_partitions {
        0 => cpus,
        n => n,
    };
    let max_concurrent = match settings.max_concurrent_queries {
        0 => 4 * cpus,
        n => n,
    };
    QueryOptions {
        memory_bytes: settings.query_memory_bytes.0 as usize,
        timeout: Duration::from_secs_f64(settings.query_timeout_s),
        target_partitions: partitions,
        spill_dir: settings.root.join("_tmp").join("spill"),
        max_concurrent,
        max_queued: settings.max_queued_queries,
        queue_timeout: Duration::from_secs_f64(settings.query_queue_timeout_s),
        writes_only: settings.mode == Mode::Writeonly,
    }
}

async fn bind(host: &str, port: u16, flag: &str, env: &str) -> Result<TcpListener, SettingError> {
    let address = format!("{host}:{port}");
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(&address)
        .await
        .map_err(|e| SettingError::new(flag, env, format!("cannot resolve {address}: {e}")))?
        .collect();
    let first =
        resolved.first().ok_or_else(|| SettingError::new(flag, env, format!("{address} resolves to nothing")))?;
    TcpListener::bind(first).await.map_err(|e| SettingError::new(flag, env, format!("cannot listen on {first}: {e}")))
}

/// Name of the lock file that keeps a second process off a data root.
pub const ROOT_LOCK_FILE: &str = ".hourglass.lock";

/// Takes the data root's lock, held for the life of the process: two
/// processes on one root would both append to the WAL and rewrite the local
/// catalog, each blind to the other's changes.
fn lock_root(root: &Path) -> Result<std::fs::File, SettingError> {
    let path = root.join(ROOT_LOCK_FILE);
    let error = |message: String| SettingError::new("root", "GIGAPI_ROOT", format!("{}: {message}", root.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| error(format!("cannot open the lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(error(
            "another HourglassDB process is using this data root; stop it, or give this one another --root \
             (to compact the running server's data, run `hourglass compact`, which asks it over HTTP)"
                .into(),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(error(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// Refuses, with the setting to change, a set of roles that cannot work:
/// processes that share a catalog must share the storage its files are on.
fn check_roles(settings: &Settings, layers: &[crate::storage::LayerConfig]) -> Result<(), SettingError> {
    match settings.metadata_type {
        MetadataType::Redis => {
            if settings.metadata_url.as_deref().is_none_or(str::is_empty) {
                return Err(SettingError::new(
                    "metadata-url",
                    "GIGAPI_METADATA_URL",
                    "GIGAPI_METADATA_TYPE=redis needs the Redis URL, for example redis://127.0.0.1:6379/0",
                ));
            }
            if settings.mode != Mode::Aio && !layers.first().is_some_and(|l| l.global) {
                return Err(SettingError::new(
                    "layer",
                    "GIGAPI_LAYERS_0_GLOBAL",
                    format!(
                        "a {} process on the Redis catalog writes and reads files every other process must reach: \
                         its first storage layer must be a global one (an S3 layer with GIGAPI_LAYERS_0_GLOBAL=true)",
                        settings.mode
                    ),
                ));
            }
        }
        MetadataType::Json => {
            if settings.metadata_url.is_some() {
                tracing::warn!("GIGAPI_METADATA_URL is set but GIGAPI_METADATA_TYPE is json: the URL is not used");
            }
        }
    }
    Ok(())
}

/// The schemas, views and tables SQL makes. On the Redis catalog they are
/// shared: followed every poll interval, the files of tables kept on the
/// first (global) layer, and those no relation names swept by the processes
/// that compact, once older than the file grace period. A `readonly`
/// process on the json catalog reads the root's and changes nothing.
async fn open_relations(
    settings: &Settings,
    log: Arc<dyn RelationLog>,
    storage: &Arc<Storage>,
    grace: Duration,
) -> Result<Arc<RelationStore>, ServeError> {
    let files = match settings.metadata_type {
        MetadataType::Json => {
            RelationFiles::local(Arc::new(RealDisk), &settings.root).map_err(|e| ServeError::Runtime(e.to_string()))?
        }
        MetadataType::Redis => RelationFiles::shared(Arc::clone(storage)),
    };
    let refuses = (settings.mode == Mode::Readonly && settings.metadata_type == MetadataType::Json).then(|| {
        "a readonly process on the json catalog reads the relations of the process that owns its data root: \
         change them there, or share them through the Redis catalog (GIGAPI_METADATA_TYPE=redis)"
            .to_owned()
    });
    let relations = RelationStore::open(log, files, refuses)
        .await
        .map_err(|e| ServeError::Runtime(format!("cannot read the relations SQL made: {e}")))?;
    relations.follow(Duration::from_millis(settings.catalog_poll_ms));
    if settings.metadata_type == MetadataType::Redis {
        let local = settings.root.join("_catalog").join("relations.json");
        if local.exists() {
            tracing::warn!(
                file = %local.display(),
                "this data root has schemas, views and tables made with the json catalog; with the Redis catalog \
                 they are not used (create them again, and remove the file and _catalog/tables/ beside it)"
            );
        }
        if runs_compactor(settings) {
            let (relations, every) = (Arc::downgrade(&relations), grace.max(Duration::from_secs(1)));
            tokio::spawn(async move {
                loop {
                    let Some(store) = relations.upgrade() else { return };
                    store.remove_orphans(grace).await;
                    drop(store);
                    tokio::time::sleep(every).await;
                }
            });
        }
    }
    Ok(relations)
}

/// Whether this process merges, moves, expires and sweeps files. On the
/// shared catalog `compaction` processes (and `aio`) do, and writers only
/// when `HOURGLASS_WRITER_COMPACTS` says so: the leases keep them apart, but
/// compacting takes a writer's CPU and memory from ingest.
fn runs_compactor(settings: &Settings) -> bool {
    match settings.metadata_type {
        MetadataType::Json => settings.mode.compacts(),
        MetadataType::Redis => match settings.mode {
            Mode::Aio | Mode::Compaction => true,
            Mode::Writeonly => settings.writer_compacts,
            Mode::Readonly => false,
        },
    }
}

/// The name of the file under a data root that holds the root's own id.
pub const ROOT_ID_FILE: &str = ".hourglass-id";

/// The data root's own id, a UUID made at its first start and kept in
/// [`ROOT_ID_FILE`]: what tells one writer's WAL from another's.
fn root_id(root: &Path) -> Result<String, SettingError> {
    let path = root.join(ROOT_ID_FILE);
    let error = |message: String| SettingError::new("root", "GIGAPI_ROOT", format!("{}: {message}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(format!("cannot read: {e}"))),
    }
    let id = uuid::Uuid::new_v4().to_string();
    crate::storage::fs::write_atomic_bytes(&RealDisk, &path, id.as_bytes())
        .map_err(|e| error(format!("cannot write: {e}")))?;
    Ok(id)
}

/// This process's writer id: the setting, or the data root's own id.
fn writer_id(settings: &Settings) -> Result<String, SettingError> {
    match settings.writer_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => Ok(id.to_owned()),
        None => root_id(&settings.root),
    }
}

/// A duration setting in seconds, checked.
fn seconds(value: f64, flag: &str, env: &str) -> Result<Duration, SettingError> {
    // Ten years: past that a schedule means "never", and adding it to a clock could overflow.
    const LONGEST: f64 = 10.0 * 365.0 * 86_400.0;
    if value <= LONGEST {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(SettingError::new(flag, env, format!("{value} s is more than ten years")))
    }
}

/// The compactor's settings, checked.
pub fn compactor_options(settings: &Settings) -> Result<CompactorOptions, SettingError> {
    if settings.merge_max_bytes.len() != settings.merge_interval_factors.len() {
        return Err(SettingError::new(
            "merge-interval-factors",
            "HOURGLASS_MERGE_INTERVAL_FACTORS",
            format!(
                "{} factors for {} merge levels: give one factor per size in HOURGLASS_MERGE_MAX_BYTES",
                settings.merge_interval_factors.len(),
                settings.merge_max_bytes.len()
            ),
        ));
    }
    if settings.merge_max_bytes.is_empty() || settings.merge_max_bytes.len() > 8 {
        return Err(SettingError::new("merge-max-bytes", "HOURGLASS_MERGE_MAX_BYTES", "give 1 to 8 level sizes"));
    }
    let base = seconds(settings.merge_timeout_s, "merge-timeout-s", "GIGAPI_MERGE_TIMEOUT_S")?;
    let mut levels = Vec::new();
    for (size, factor) in settings.merge_max_bytes.iter().zip(&settings.merge_interval_factors) {
        let interval =
            seconds(settings.merge_timeout_s * factor, "merge-interval-factors", "HOURGLASS_MERGE_INTERVAL_FACTORS")?;
        levels.push(MergeLevel { interval, max_bytes: size.0 });
    }
    let grace = seconds(settings.file_grace_s.max(settings.query_timeout_s), "file-grace-s", "HOURGLASS_FILE_GRACE_S")?;
    Ok(CompactorOptions {
        levels,
        background_merges: !settings.no_merges,
        concurrency: settings.merge_concurrency,
        // A file a query may still read stays at least as long as a query may run.
        grace,
        housekeeping_interval: base,
        max_files_per_merge: MAX_FILES_PER_MERGE,
        lease_renew_every: seconds(
            settings.compaction_lease_s / 3.0,
            "compaction-lease-s",
            "HOURGLASS_COMPACTION_LEASE_S",
        )?
        .max(Duration::from_millis(10)),
        parquet: ParquetOptions::MERGED,
    })
}

fn ingest_options(settings: &Settings) -> IngestOptions {
    IngestOptions {
        max_line_bytes: settings.max_line_bytes.0 as usize,
        max_columns_per_table: settings.max_columns_per_table,
        max_tombstones: settings.max_tombstones,
        max_buffer_bytes: settings.max_buffer_bytes.0 as usize,
        flush_buffer_bytes: settings.flush_buffer_bytes.0 as usize,
        save_interval: Duration::from_secs_f64(settings.save_timeout_s),
        max_concurrent_writes: settings.max_concurrent_writes,
        write_queue_timeout: Duration::from_secs_f64(settings.write_queue_timeout_s),
        wal_segment_bytes: settings.wal_segment_bytes.0,
        persist_concurrency: settings.persist_concurrency,
        parquet: ParquetOptions::default(),
    }
}

/// Resolves on SIGINT or SIGTERM. Created first thing at start-up, so a signal
/// that arrives while the WAL is replaying still ends in a clean shutdown.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Runs the server until SIGINT or SIGTERM, then persists the buffer and returns.
/// Everything behind the front doors, wired together: what `serve` runs, and
/// what tests and tools can open in process.
#[derive(Debug)]
pub struct Components {
    /// The catalog.
    pub catalog: Arc<dyn Catalog>,
    /// The storage layers.
    pub storage: Arc<Storage>,
    /// The process metrics.
    pub metrics: Arc<Metrics>,
    /// The write path, in modes that write.
    pub ingester: Option<Arc<Ingester>>,
    /// The query engine, in modes that query.
    pub engine: Option<Arc<QueryEngine>>,
    /// The compactor, in modes that compact.
    pub compactor: Option<Arc<Compactor>>,
    /// The last-value cache, where this process sees every write.
    pub last_values: Option<Arc<LastValueCache>>,
    /// The API tokens, kept beside the catalog.
    pub tokens: Arc<Tokens>,
    /// The data root's lock, held while the components live (not by a reader).
    _root_lock: Option<std::fs::File>,
    /// This reader's place among the cluster's workers, while it takes part
    /// in distributed queries.
    #[cfg(feature = "distributed")]
    readers: Option<Arc<cluster_readers::LiveReaders>>,
}

/// Where the API tokens are kept: beside the catalog, so that every process
/// sharing it knows every token. `hourglass token` opens the same store.
pub async fn token_log(settings: &Settings) -> Result<Arc<dyn TokenLog>, String> {
    Ok(match settings.metadata_type {
        MetadataType::Json => Arc::new(TokenFile::new(&settings.root)),
        MetadataType::Redis => {
            let url = settings.metadata_url.clone().unwrap_or_default();
            Arc::new(
                RedisTokens::open(&url, &settings.redis_prefix)
                    .await
                    .map_err(|e| format!("cannot reach the tokens in the Redis catalog (GIGAPI_METADATA_URL): {e}"))?,
            )
        }
    })
}

impl Components {
    /// Opens the catalog and storage, replays the WAL, and starts the engine, as
    /// the settings' mode asks.
    pub async fn open(settings: &Settings, layers: Vec<crate::storage::LayerConfig>) -> Result<Components, ServeError> {
        check_roles(settings, &layers)?;
        prepare_root(&settings.root)?;
        // A reader on the shared catalog neither writes nor deletes under its
        // root: it needs no lock, and several may share one root. (On the
        // local catalog it reads the root's catalog, whose writer holds it.)
        let root_lock = match (settings.mode, settings.metadata_type) {
            (Mode::Readonly, MetadataType::Redis) => None,
            _ => Some(lock_root(&settings.root)?),
        };
        let compactor_options = compactor_options(settings)?;
        let storage =
            Arc::new(Storage::open(layers).map_err(|e| SettingError {
                setting: "GIGAPI_LAYERS_<i>_* (--layer)".into(),
                message: e.to_string(),
            })?);
        // The catalog, and where the relations SQL makes are stored: beside
        // it, so that every process sharing the catalog shares them too.
        let (catalog, relation_log): (Arc<dyn Catalog>, Arc<dyn RelationLog>) = match settings.metadata_type {
            MetadataType::Json => (
                Arc::new(LocalCatalog::open(&settings.root).map_err(|e| ServeError::Runtime(e.to_string()))?),
                Arc::new(RelationFile::new(Arc::new(RealDisk), &settings.root)),
            ),
            MetadataType::Redis => {
                let options = RedisOptions {
                    url: settings.metadata_url.clone().unwrap_or_default(),
                    prefix: settings.redis_prefix.clone(),
                    writer_id: writer_id(settings)?,
                    poll_interval: Duration::from_millis(settings.catalog_poll_ms),
                    lease_ttl: seconds(
                        settings.compaction_lease_s,
                        "compaction-lease-s",
                        "HOURGLASS_COMPACTION_LEASE_S",
                    )?,
                    // Every process's sweep waits the grace period for a file
                    // to be committed; half of it leaves room for clocks.
                    commit_deadline: compactor_options.grace / 2,
                };
                tracing::info!(writer_id = %options.writer_id, prefix = %options.prefix, "opening the Redis catalog");
                let writer = options.writer_id.clone();
                let catalog = RedisCatalog::open(options).await.map_err(|e| {
                    ServeError::Runtime(format!("cannot open the Redis catalog (GIGAPI_METADATA_URL): {e}"))
                })?;
                // Two writers under one id would skip each other's rows on replay.
                if settings.mode.writes() {
                    catalog.claim_writer(&root_id(&settings.root)?).await.map_err(|e| match e {
                        CatalogError::Shared(_) => {
                            ServeError::Setting(SettingError::new("writer-id", "HOURGLASS_WRITER_ID", e.to_string()))
                        }
                        other => ServeError::Runtime(format!("cannot claim writer id {writer}: {other}")),
                    })?;
                }
                (Arc::clone(&catalog) as Arc<dyn Catalog>, catalog as Arc<dyn RelationLog>)
            }
        };
        let tokens = Arc::new(Tokens::new(token_log(settings).await.map_err(ServeError::Runtime)?));
        let metrics = Arc::new(Metrics::default());
        // Only where every write of every table passes through this process.
        let last_values = (settings.mode == Mode::Aio
            && settings.metadata_type == MetadataType::Json
            && settings.last_value_cache_bytes.0 > 0)
            .then(|| Arc::new(LastValueCache::new(Arc::clone(&catalog), settings.last_value_cache_bytes.0 as usize)));
        let ingester = if settings.mode.writes() {
            let started = std::time::Instant::now();
            let (ingester, replay) = Ingester::open(
                Arc::new(RealDisk),
                &settings.root,
                Arc::clone(&catalog),
                Arc::clone(&storage),
                Arc::clone(&metrics),
                last_values.clone(),
                ingest_options(settings),
            )
            .await
            .map_err(|e| ServeError::Runtime(e.to_string()))?;
            tracing::info!(
                segments = replay.segments,
                records = replay.records,
                rows_replayed = replay.rows_replayed,
                rows_already_persisted = replay.rows_skipped,
                torn_bytes = replay.torn_bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "WAL replayed"
            );
            Some(ingester)
        } else {
            None
        };
        let compacts = runs_compactor(settings);
        #[cfg(feature = "distributed")]
        let mut readers = None;
        let engine = if settings.mode.speaks_sql() || compacts {
            let buffer =
                ingester.as_ref().map(|i| Arc::new(BufferForQueries(Arc::clone(i.buffer()))) as Arc<dyn BufferedRows>);
            let writer = ingester.as_ref().map(|i| Arc::new(InsertsToIngester(Arc::clone(i))) as Arc<dyn TableWriter>);
            let relations = open_relations(settings, relation_log, &storage, compactor_options.grace).await?;
            if ingester.is_some() && settings.metadata_type == MetadataType::Json {
                // Alone on its root, before it takes statements: any table not named is an orphan.
                relations.remove_orphans(Duration::ZERO).await;
            }
            #[allow(unused_mut)]
            let mut engine = QueryEngine::new(
                Arc::clone(&catalog),
                Arc::clone(&storage),
                buffer,
                writer,
                relations,
                last_values.clone(),
                query_options(settings),
            )
            .map_err(|e| ServeError::Runtime(e.to_string()))?;
            #[cfg(feature = "distributed")]
            if let Some((distribution, own)) = cluster_readers::distribution(settings)? {
                let secret = cluster_readers::worker_secret(catalog.as_ref()).await?;
                tracing::info!(worker = %own, min_bytes = distribution.min_bytes, "queries are spread over the live readers");
                let live = cluster_readers::LiveReaders::join(Arc::clone(&catalog), own);
                engine = engine.coordinating(
                    Arc::clone(&live) as Arc<dyn crate::query::distributed::Workers>,
                    distribution,
                    secret,
                );
                readers = Some(live);
            }
            Some(Arc::new(engine))
        } else {
            None
        };
        let compactor = match (&engine, compacts) {
            (Some(engine), true) => Some(Arc::new(Compactor::new(
                Arc::clone(&catalog),
                Arc::clone(&storage),
                Arc::new(MergesThroughEngine(Arc::clone(engine))),
                Arc::clone(&metrics),
                last_values.clone(),
                compactor_options,
            ))),
            _ => None,
        };
        // The engine merges for the compactor in every mode that compacts; only
        // the modes with SQL fronts hand it to the front doors (a writer's
        // refuses reads: QueryOptions::writes_only).
        let engine = engine.filter(|_| settings.mode.speaks_sql());
        Ok(Components {
            catalog,
            storage,
            metrics,
            ingester,
            engine,
            compactor,
            last_values,
            tokens,
            _root_lock: root_lock,
            #[cfg(feature = "distributed")]
            readers,
        })
    }
}

/// Runs the server until SIGINT or SIGTERM, then lets requests in flight
/// finish (up to the shutdown timeout), persists the buffer and returns.
pub async fn run(settings: Settings, toml_layers: Option<toml::Value>) -> Result<(), ServeError> {
    let shutdown =
        shutdown_signal().map_err(|e| ServeError::Runtime(format!("cannot install signal handlers: {e}")))?;
    crate::faults::arm_from_environment();
    let env = |name: &str| std::env::var(name).ok();
    let layers = resolve_layers(&settings, &env, toml_layers.as_ref())?;
    prepare_root(&settings.root)?;
    // Fail on a busy port before the (possibly long) WAL replay.
    let http_listener = bind(&settings.http_host, settings.http_port, "http-port", "HTTP_PORT").await?;
    let speaks_sql = settings.mode.speaks_sql();
    let flight_listener = if settings.flightsql_enable && speaks_sql {
        Some(bind(&settings.http_host, settings.flightsql_port, "flightsql-port", "FLIGHTSQL_PORT").await?)
    } else {
        None
    };
    let pg_listener = if settings.pg_enable && speaks_sql {
        Some(bind(&settings.http_host, settings.pg_port, "pg-port", "PG_PORT").await?)
    } else {
        None
    };
    let tls = settings.tls_cert.clone().zip(settings.tls_key.clone());
    // Loaded before the replay, so that files that cannot be used stop the start-up at once.
    let pg_tls = match &tls {
        Some((cert, key)) => Some(postgres::check_tls(cert, key).map_err(|message| {
            SettingError::new("tls-cert/--tls-key", "HOURGLASS_TLS_CERT/HOURGLASS_TLS_KEY", message)
        })?),
        None => None,
    };
    let http_tls = pg_tls.clone();
    let components = Components::open(&settings, layers).await?;
    if settings.http_basic_auth_username.as_deref().is_none_or(str::is_empty) {
        // Tokens someone made expect to be asked for: an open server would
        // ignore them and let anyone in.
        let tokens = components.tokens.list().await.map_err(|e| ServeError::Runtime(e.to_string()))?;
        if !tokens.is_empty() {
            return Err(ServeError::Setting(SettingError::new(
                "http-basic-auth-username",
                "HTTP_BASIC_AUTH_USERNAME",
                format!(
                    "{} API tokens exist (hourglass token list) but no user is configured, so every front would \
                     be open and the tokens ignored: set a user, or revoke the tokens",
                    tokens.len()
                ),
            )));
        }
    }
    let (stop_compactor, compactor_stopped) = tokio::sync::watch::channel(false);
    let compactor_task = components.compactor.as_ref().map(|compactor| {
        let options = compactor.options();
        tracing::info!(
            merges = options.background_merges,
            levels = options.levels.len(),
            grace_s = options.grace.as_secs_f64(),
            "compactor running"
        );
        tokio::spawn(Arc::clone(compactor).run(compactor_stopped))
    });
    let users = Users::new(settings.http_basic_auth_username.clone(), settings.http_basic_auth_password.clone());
    if !users.enabled() {
        tracing::warn!(
            "no users are configured (HTTP_BASIC_AUTH_USERNAME): every front is open to anyone who can reach it, \
             and tokens are not asked for"
        );
    }
    let users =
        Arc::new(Authenticator::new(users, Some(Arc::clone(&components.tokens)), settings.login_failures_per_minute));
    let grace = Duration::from_secs_f64(settings.shutdown_timeout_s);
    // Every front stops taking new requests when this fires, and finishes
    // the ones in flight.
    let (stop_fronts, fronts_stopping) = tokio::sync::watch::channel(false);
    let mut fronts = tokio::task::JoinSet::new();
    match (&components.engine, pg_listener) {
        (Some(engine), Some(listener)) => {
            let options = postgres::PgOptions {
                auth: settings.pg_auth_method,
                tls: pg_tls,
                max_connections: settings.pg_max_connections,
                max_copy_line_bytes: settings.max_copy_line_bytes.0 as usize,
                shutdown_grace: grace,
            };
            tracing::info!(
                address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                auth = %options.auth,
                tls = options.tls.is_some(),
                max_connections = options.max_connections,
                "Postgres front listening"
            );
            let (engine, users, stopping) = (Arc::clone(engine), Arc::clone(&users), fronts_stopping.clone());
            fronts.spawn(postgres::serve(engine, users, options, listener, stopping));
        }
        _ if settings.pg_enable => {
            tracing::info!("the Postgres front is off: a compaction process has no SQL fronts (GIGAPI_MODE)")
        }
        _ => {}
    }
    match (&components.engine, flight_listener) {
        (Some(engine), Some(listener)) => {
            let front = flight::FlightFront::new(Arc::clone(engine), components.ingester.clone(), Arc::clone(&users))
                .map_err(ServeError::Runtime)?;
            let options = flight::FlightOptions {
                tls: tls.clone(),
                max_message_bytes: settings.flightsql_max_message_bytes.0 as usize,
            };
            let router = flight::router(front, &options).map_err(|message| {
                SettingError::new("tls-cert/--tls-key", "HOURGLASS_TLS_CERT/HOURGLASS_TLS_KEY", message)
            })?;
            tracing::info!(
                address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                tls = options.tls.is_some(),
                "FlightSQL front listening"
            );
            let (max_connections, stopping) = (settings.flightsql_max_connections, fronts_stopping.clone());
            fronts.spawn(async move {
                if let Err(e) = flight::serve(listener, router, max_connections, stopping).await {
                    tracing::error!("the FlightSQL front stopped: {e}");
                }
            });
        }
        _ if settings.flightsql_enable => {
            tracing::info!("the FlightSQL front is off: a compaction process has no SQL fronts (GIGAPI_MODE)")
        }
        _ => {}
    }
    let state = http::HttpState {
        ingester: components.ingester.clone(),
        engine: components.engine.clone(),
        catalog: Arc::clone(&components.catalog),
        storage: Arc::clone(&components.storage),
        users,
        metrics: Arc::clone(&components.metrics),
        last_values: components.last_values.clone(),
        max_body_bytes: settings.max_body_bytes.0 as usize,
        write_body_timeout: Duration::from_secs_f64(settings.write_body_timeout_s),
        max_query_bytes: settings.max_query_bytes.0 as usize,
        origins: Arc::new(http::AllowedOrigins::new(&settings.cors_allow_origins)),
        mode: settings.mode,
        compactor: components.compactor.clone(),
        ui: settings.ui,
    };
    tracing::info!(
        address = %http_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        root = %settings.root.display(),
        mode = %settings.mode,
        tls = http_tls.is_some(),
        "HourglassDB HTTP API listening"
    );
    {
        let app = http::router(state).into_make_service_with_connect_info::<http::ClientAddress>();
        let mut stopping = fronts_stopping.clone();
        let stopped = async move {
            let _ = stopping.changed().await;
        };
        use std::future::IntoFuture;
        // One served future whichever listener takes the connections.
        let http: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> = match http_tls {
            Some(acceptor) => {
                let listener = http::TlsListener::new(http_listener, acceptor)
                    .map_err(|e| ServeError::Runtime(format!("cannot serve TLS on the HTTP port: {e}")))?;
                Box::pin(axum::serve(listener, app).with_graceful_shutdown(stopped).into_future())
            }
            None => Box::pin(
                axum::serve(http::PlainListener(http_listener), app).with_graceful_shutdown(stopped).into_future(),
            ),
        };
        fronts.spawn(async move {
            if let Err(e) = http.await {
                tracing::error!("the HTTP API stopped: {e}");
            }
        });
    }
    shutdown.await;
    // Out of the cluster's workers first, and serving until the others know.
    #[cfg(feature = "distributed")]
    if let Some(readers) = &components.readers {
        readers.leave().await;
        // The other readers read the list at their next heartbeat: until
        // then they may still send stages here, which are served.
        tokio::time::sleep((2 * crate::catalog::HEARTBEAT_EVERY).min(grace)).await;
    }
    tracing::info!(grace_s = grace.as_secs_f64(), "shutting down: finishing the requests in flight");
    let _ = stop_fronts.send(true);
    // The Postgres front bounds its connections by `grace` itself; a moment
    // more, then whatever still runs is cut off.
    let finished =
        tokio::time::timeout(grace + Duration::from_secs(1), async { while fronts.join_next().await.is_some() {} })
            .await;
    if finished.is_err() {
        tracing::warn!("requests still running after the shutdown timeout (HOURGLASS_SHUTDOWN_TIMEOUT_S) are cut off");
        fronts.shutdown().await;
    }

    let _ = stop_compactor.send(true);
    if let Some(task) = compactor_task {
        let _ = task.await;
    }
    tracing::info!("shutting down: persisting the write buffer");
    if let Some(ingester) = components.ingester {
        let report = ingester.shutdown().await.map_err(|e| ServeError::Runtime(e.to_string()))?;
        tracing::info!(files = report.files, rows = report.rows, "write buffer persisted");
    }
    Ok(())
}

/// Sets up logging and the runtime, runs the server, and maps the outcome to an
/// exit code: 0 after a clean shutdown, 2 for a bad setting, 1 otherwise.
pub fn serve_main(settings: Settings, toml_layers: Option<toml::Value>) -> ExitCode {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,hourglassdb={}", settings.log_level.directive())));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("hourglass").build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, toml_layers)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServeError::Setting(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(ServeError::Runtime(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
