//! The shared catalog in Redis (`GIGAPI_METADATA_TYPE=redis`): what lets
//! writers, readers and a compactor run as separate processes over one S3
//! layer. Redis is the truth; each process serves reads from its own
//! in-memory view, which a background task keeps at most a poll interval
//! (plus a round trip) behind.
//!
//! Every change is one Lua script on one table's keys (see [`keys`]): a file
//! commit states the files it removes, which must still be listed, and
//! carries an id, so a retry after a lost reply is applied once; a schema
//! change states the version it extends and is retried on fresh state when
//! another process got there first. Each change takes the table's next
//! sequence number and is logged, which is how followers read only what
//! changed. Redis being unreachable is a transient error: commits wait for
//! it (their outcome must be known before anything else is written), schema
//! changes give up after a while with [`CatalogError::Unavailable`].

mod deletes;
mod keys;
mod readers;
mod relations;
mod tokens;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use super::memory::{catalog_reads_from_view, CatalogView, PartitionState};
use super::schema::SchemaFile;
use super::{Catalog, CatalogError, Column, Commit, FileEntry, PartitionKey, SharedDeletes, TableSchema};
use keys::{parse_table_member, table_member, Keys, TableKeys};
pub use tokens::RedisTokens;

/// How to reach the shared catalog, and who this process is in it.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]` (`GIGAPI_METADATA_URL`).
    pub url: String,
    /// The prefix of every key, so that several clusters can share a Redis.
    pub prefix: String,
    /// This process's writer id: the catalog records per writer which WAL
    /// sequence its files cover, since every writer has its own WAL.
    pub writer_id: String,
    /// How often the view checks Redis for changes.
    pub poll_interval: Duration,
    /// How long a compaction lease lasts unless renewed: how soon a standby
    /// compactor takes over from one that died.
    pub lease_ttl: Duration,
    /// How long after it starts a commit may still add files. The orphan
    /// sweep deletes unlisted files older than the grace period, so a commit
    /// that waited for Redis longer than this must not list its file (half
    /// the grace period leaves room for clocks that disagree).
    pub commit_deadline: Duration,
}

/// How long a schema change keeps trying while Redis is unreachable before
/// the write that needs it is refused as "retry later".
const SCHEMA_RETRY_FOR: Duration = Duration::from_secs(10);

/// A full check of every table's sequence at least this often, even when the
/// epoch did not move (a writer that died between its commit and its epoch
/// bump).
const FULL_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The catalog shared through Redis.
pub struct RedisCatalog {
    connection: ConnectionManager,
    keys: Keys,
    writer_id: String,
    view: CatalogView,
    commit_script: Script,
    schema_script: Script,
    lease_script: Script,
    relations_script: Script,
    deletes_script: Script,
    alive_script: Script,
    /// Bumped whenever the view's tombstones of a table change: writers
    /// carry new deletes out on their buffers.
    tombstones_changed: tokio::sync::watch::Sender<u64>,
    lease_ttl: Duration,
    commit_deadline: Duration,
    /// Serializes schema changes within this process; other processes are
    /// kept out by the schema version.
    schema_lock: tokio::sync::Mutex<()>,
    /// Held while reading Redis into the view, and while a commit publishes
    /// its partition, so that an older read never overwrites a newer one.
    apply_lock: tokio::sync::Mutex<SyncState>,
    /// When the view last matched Redis (for the lag metric and readiness).
    last_sync: std::sync::Mutex<Instant>,
}

impl std::fmt::Debug for RedisCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCatalog").field("keys", &self.keys).field("writer_id", &self.writer_id).finish()
    }
}

/// What the follower has read so far.
#[derive(Debug, Default)]
struct SyncState {
    /// The epoch at the last sync.
    epoch: Option<u64>,
    /// Each table's change sequence as last read.
    seen: HashMap<(String, String), u64>,
    /// When every table was last checked whatever the epoch said.
    full_check: Option<Instant>,
}

/// Whether a Redis error may go away by itself: Redis down, restarting,
/// loading its data, or a connection cut.
fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(error.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading))
        // Loading its data, a failover in progress, a script running long.
        || matches!(error.code(), Some("LOADING" | "READONLY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "BUSY"))
}

fn redis_error(context: &str, error: RedisError) -> CatalogError {
    if is_transient(&error) {
        CatalogError::Unavailable(format!("{context}: the Redis catalog is unreachable ({error}); retry shortly"))
    } else {
        CatalogError::Shared(format!("{context}: {error}"))
    }
}

/// A Redis URL fit for a log line: its password replaced.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

/// Why [`connect`] failed.
enum Unreachable {
    /// The URL is not one redis-rs takes.
    Url(String),
    /// Redis did not answer: what was tried, and the error.
    Redis(String, RedisError),
}

/// A connection to the Redis at `url` that reconnects by itself, with the
/// time limits every use of the shared catalog has.
async fn connect(url: &str) -> Result<ConnectionManager, Unreachable> {
    let shown = without_password(url);
    let client = redis::Client::open(url).map_err(|e| Unreachable::Url(format!("GIGAPI_METADATA_URL {shown}: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| Unreachable::Redis(format!("connecting to {shown}"), e))
}

fn decode<T: for<'de> serde::Deserialize<'de>>(what: &str, json: &str) -> Result<T, CatalogError> {
    serde_json::from_str(json).map_err(|e| CatalogError::Corrupt { path: what.to_owned(), message: e.to_string() })
}

impl RedisCatalog {
    /// Connects, reads the whole catalog into memory, and starts following
    /// changes. Fails if Redis cannot be reached now.
    pub async fn open(options: RedisOptions) -> Result<Arc<RedisCatalog>, CatalogError> {
        let connection = connect(&options.url).await.map_err(|e| match e {
            Unreachable::Url(message) => CatalogError::Shared(message),
            Unreachable::Redis(context, e) => redis_error(&context, e),
        })?;
        let catalog = Arc::new(RedisCatalog {
            connection,
            keys: Keys::new(&options.prefix),
            writer_id: options.writer_id,
            view: CatalogView::default(),
            commit_script: Script::new(include_str!("commit.lua")),
            schema_script: Script::new(include_str!("schema.lua")),
            lease_script: Script::new(include_str!("lease.lua")),
            relations_script: Script::new(include_str!("relations.lua")),
            deletes_script: Script::new(include_str!("deletes.lua")),
            alive_script: Script::new(include_str!("alive.lua")),
            tombstones_changed: tokio::sync::watch::channel(0).0,
            lease_ttl: options.lease_ttl,
            commit_deadline: options.commit_deadline,
            schema_lock: tokio::sync::Mutex::new(()),
            apply_lock: tokio::sync::Mutex::new(SyncState::default()),
            last_sync: std::sync::Mutex::new(Instant::now()),
        });
        catalog.sync(true).await?;
        tokio::spawn(follow(Arc::downgrade(&catalog), options.poll_interval));
        Ok(catalog)
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Claims this process's writer id for the data root `instance` (its
    /// own id): refused if another root already writes under it, since the
    /// catalog keeps one WAL position per writer id.
    pub async fn claim_writer(&self, instance: &str) -> Result<(), CatalogError> {
        let mut connection = self.connection();
        let key = self.keys.writers();
        let _: bool = redis::cmd("HSETNX")
            .arg(&key)
            .arg(&self.writer_id)
            .arg(instance)
            .query_async(&mut connection)
            .await
            .map_err(|e| redis_error("claiming the writer id", e))?;
        let holder: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg(&self.writer_id)
            .query_async(&mut connection)
            .await
            .map_err(|e| redis_error("claiming the writer id", e))?;
        match holder {
            Some(holder) if holder == instance => Ok(()),
            holder => Err(CatalogError::Shared(format!(
                "writer id {:?} is already used by the data root whose .hourglass-id is {}: every writer needs its \
                 own id",
                self.writer_id,
                holder.unwrap_or_default()
            ))),
        }
    }

    /// Brings the view up to date: every table whose sequence moved since
    /// the last sync, if the epoch moved (or `force`, or a full check is due).
    pub async fn sync(&self, force: bool) -> Result<(), CatalogError> {
        let started = Instant::now();
        let mut connection = self.connection();
        let epoch: Option<u64> = redis::cmd("GET")
            .arg(self.keys.epoch())
            .query_async(&mut connection)
            .await
            .map_err(|e| redis_error("reading the catalog's epoch", e))?;
        let epoch = epoch.unwrap_or(0);
        let mut state = self.apply_lock.lock().await;
        let full_due = state.full_check.is_none_or(|t| t.elapsed() >= FULL_CHECK_EVERY);
        if !force && !full_due && state.epoch == Some(epoch) {
            *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = started;
            return Ok(());
        }
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.tables())
            .query_async(&mut connection)
            .await
            .map_err(|e| redis_error("listing the catalog's tables", e))?;
        let tables: Vec<(String, String)> = members.iter().filter_map(|m| parse_table_member(m)).collect();
        let mut pipe = redis::pipe();
        for (database, table) in &tables {
            pipe.cmd("GET").arg(self.keys.table(database, table).seq());
        }
        let sequences: Vec<Option<u64>> = if tables.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut connection)
                .await
                .map_err(|e| redis_error("reading the tables' change sequences", e))?
        };
        for ((database, table), sequence) in tables.into_iter().zip(sequences) {
            let Some(sequence) = sequence else { continue };
            let key = (database, table);
            let seen = state.seen.get(&key).copied();
            if seen == Some(sequence) {
                continue;
            }
            let read = match seen {
                Some(seen) => self.read_changes(&key.0, &key.1, seen).await?,
                None => self.read_table(&key.0, &key.1).await?,
            };
            state.seen.insert(key, read);
        }
        state.epoch = Some(epoch);
        state.full_check = Some(Instant::now());
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = started;
        Ok(())
    }

    /// Reads a whole table into the view; returns the sequence it read at
    /// (the contents may be newer, never older).
    async fn read_table(&self, database: &str, table: &str) -> Result<u64, CatalogError> {
        let keys = self.keys.table(database, table);
        let mut connection = self.connection();
        let (sequence, hours): (Option<u64>, Vec<i64>) = redis::pipe()
            .cmd("GET")
            .arg(keys.seq())
            .cmd("ZRANGE")
            .arg(keys.partitions())
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .map_err(|e| redis_error(&format!("reading table {database}.{table}"), e))?;
        let Some(schema) = self.read_schema(&keys, database, table).await? else {
            // Listed before its schema went in: next time.
            return Ok(0);
        };
        let partitions: BTreeMap<_, _> =
            self.read_partitions(&keys, database, table, &hours).await?.into_iter().collect();
        self.view.set_table(database, table, Arc::new(schema.1), schema.0, partitions);
        Ok(sequence.unwrap_or(0))
    }

    /// Reads what changed in a table since `seen` into the view; returns the
    /// sequence it read up to.
    async fn read_changes(&self, database: &str, table: &str, seen: u64) -> Result<u64, CatalogError> {
        let keys = self.keys.table(database, table);
        let mut connection = self.connection();
        let changes: Vec<(String, u64)> = redis::cmd("ZRANGE")
            .arg(keys.log())
            .arg(format!("({seen}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("WITHSCORES")
            .query_async(&mut connection)
            .await
            .map_err(|e| redis_error(&format!("reading the changes of {database}.{table}"), e))?;
        // The log keeps the last 10,000 changes: a view further behind reads
        // the whole table.
        if changes.first().is_none_or(|(_, first)| *first != seen + 1) {
            return self.read_table(database, table).await;
        }
        let mut hours = BTreeSet::new();
        let mut schema_changed = false;
        for (member, _) in &changes {
            // `<seq>|<hour>|<writer>|<lease>`, `<seq>|schema` or `<seq>|deletes`.
            match member.split('|').nth(1) {
                Some("schema") => schema_changed = true,
                // Tombstones come with every read of partitions.
                Some("deletes") => {}
                Some(hour) => {
                    if let Ok(hour) = hour.parse::<i64>() {
                        hours.insert(hour);
                    }
                }
                None => {}
            }
        }
        if schema_changed {
            if let Some((version, schema)) = self.read_schema(&keys, database, table).await? {
                self.view.set_schema_version(database, table, Arc::new(schema), version);
            }
        }
        let hours: Vec<i64> = hours.into_iter().collect();
        for (key, partition) in self.read_partitions(&keys, database, table, &hours).await? {
            self.view.set_partition(database, table, key, partition);
        }
        Ok(changes.last().map_or(seen, |(_, sequence)| *sequence))
    }

    /// A table's schema and its version, if it has one yet.
    async fn read_schema(
        &self,
        keys: &TableKeys,
        database: &str,
        table: &str,
    ) -> Result<Option<(u64, TableSchema)>, CatalogError> {
        let mut connection = self.connection();
        let (version, json): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(keys.schema())
            .arg("version")
            .arg("json")
            .query_async(&mut connection)
            .await
            .map_err(|e| redis_error(&format!("reading the schema of {database}.{table}"), e))?;
        match (version, json) {
            (Some(version), Some(json)) => {
                let file: SchemaFile = decode(&keys.schema(), &json)?;
                Ok(Some((version, file.into_schema())))
            }
            _ => Ok(None),
        }
    }

    /// Partitions' files and this writer's WAL sequence in each, all read in
    /// one round trip and one transaction (a table of a thousand hours is
    /// read at a reader's start-up in one go, not a thousand). The table's
    /// tombstones are read in the same transaction and published in the
    /// view before the caller publishes the partitions: the view never holds
    /// a file stamped past a delete it does not have (a merge of it would
    /// carry the stamp over rows that delete hides).
    async fn read_partitions(
        &self,
        keys: &TableKeys,
        database: &str,
        table: &str,
        hours: &[i64],
    ) -> Result<Vec<(PartitionKey, PartitionState)>, CatalogError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for &hour in hours {
            pipe.cmd("HGETALL").arg(keys.files(hour)).cmd("HGET").arg(keys.wal(hour)).arg(&self.writer_id);
        }
        pipe.cmd("HGETALL").arg(keys.tombstones());
        let context = || format!("reading the partitions of {database}.{table}");
        let replies: Vec<redis::Value> =
            pipe.query_async(&mut self.connection()).await.map_err(|e| redis_error(&context(), e))?;
        let unexpected = |e: redis::ParsingError| CatalogError::Shared(format!("{}: {e}", context()));
        let mut replies = replies.into_iter();
        let mut partitions = Vec::with_capacity(hours.len());
        for &hour in hours {
            let (Some(files), Some(wal)) = (replies.next(), replies.next()) else {
                return Err(CatalogError::Shared(format!("{}: too few replies", context())));
            };
            let files: HashMap<String, String> = redis::from_redis_value(files).map_err(unexpected)?;
            let wal_sequence: Option<u64> = redis::from_redis_value(wal).map_err(unexpected)?;
            let mut entries = Vec::with_capacity(files.len());
            for json in files.values() {
                entries.push(decode::<FileEntry>(&keys.files(hour), json)?);
            }
            // The order files were added in is lost in a hash; time then id is stable.
            entries.sort_by(|a, b| (a.min_time, &a.id).cmp(&(b.min_time, &b.id)));
            partitions
                .push((PartitionKey(hour), PartitionState { files: entries, wal_sequence: wal_sequence.unwrap_or(0) }));
        }
        let Some(tombstones) = replies.next() else {
            return Err(CatalogError::Shared(format!("{}: too few replies", context())));
        };
        let tombstones = self.decode_tombstones(keys, redis::from_redis_value(tombstones).map_err(unexpected)?)?;
        self.publish_tombstones_in_view(database, table, tombstones);
        Ok(partitions)
    }

    /// Bumps the epoch so that followers look now rather than at their next full check.
    async fn announce(&self) {
        let mut connection = self.connection();
        let bumped: Result<u64, RedisError> =
            redis::cmd("INCR").arg(self.keys.epoch()).query_async(&mut connection).await;
        if let Err(error) = bumped {
            tracing::warn!(%error, "could not bump the catalog's epoch; readers see the change at their next full check");
        }
    }

    async fn add_columns_once(
        &self,
        database: &str,
        table: &str,
        columns: &[Column],
        max_columns: usize,
    ) -> Result<Option<Arc<TableSchema>>, CatalogError> {
        let keys = self.keys.table(database, table);
        let current = self.read_schema(&keys, database, table).await?;
        let (version, base) = match current {
            Some((version, schema)) => (version, schema),
            None => (0, TableSchema::default()),
        };
        let merged = match base.merged_with(table, columns, max_columns)? {
            Some(merged) => merged,
            None if version > 0 => {
                let schema = Arc::new(base);
                self.view.set_schema_version(database, table, Arc::clone(&schema), version);
                return Ok(Some(schema));
            }
            None => base,
        };
        let mut connection = self.connection();
        // Listed first: a reader skips a listed table until its schema is in.
        let _: i64 = redis::cmd("SADD")
            .arg(self.keys.tables())
            .arg(table_member(database, table))
            .query_async(&mut connection)
            .await
            .map_err(|e| redis_error(&format!("listing table {database}.{table}"), e))?;
        let json = serde_json::to_string(&SchemaFile::from_schema(table, &merged))
            .map_err(|e| CatalogError::Encode { path: keys.schema(), message: e.to_string() })?;
        let (outcome, _): (String, String) = self
            .schema_script
            .key(keys.schema())
            .key(keys.seq())
            .key(keys.log())
            .arg(version)
            .arg(json)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| redis_error(&format!("changing the schema of {database}.{table}"), e))?;
        if outcome != "ok" {
            // Another process changed the schema first: merge again with theirs.
            return Ok(None);
        }
        self.announce().await;
        let schema = Arc::new(merged);
        // A later version the follower read meanwhile stays.
        self.view.set_schema_version(database, table, Arc::clone(&schema), version + 1);
        Ok(Some(schema))
    }
}

/// Keeps the view of a catalog following Redis until the catalog is dropped.
async fn follow(catalog: Weak<RedisCatalog>, interval: Duration) {
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(interval).await;
        let Some(catalog) = catalog.upgrade() else { return };
        match catalog.sync(false).await {
            Ok(()) => {
                if let Some(since) = failing_since.take() {
                    tracing::info!(after_s = since.elapsed().as_secs_f64(), "the Redis catalog is reachable again");
                }
            }
            Err(error) => {
                if failing_since.is_none() {
                    tracing::warn!(%error, "cannot follow the Redis catalog; queries see the catalog as it was");
                    failing_since = Some(Instant::now());
                }
            }
        }
    }
}

#[async_trait]
impl Catalog for RedisCatalog {
    catalog_reads_from_view!();

    async fn add_columns(
        &self,
        database: &str,
        table: &str,
        columns: &[Column],
        max_columns: usize,
    ) -> Result<Arc<TableSchema>, CatalogError> {
        // Most writes bring no new column: answered from memory.
        if let Some(current) = self.view.table_schema(database, table) {
            if current.merged_with(table, columns, max_columns)?.is_none() {
                return Ok(current);
            }
        }
        let _guard = self.schema_lock.lock().await;
        let deadline = Instant::now() + SCHEMA_RETRY_FOR;
        let mut delay = Duration::from_millis(20);
        loop {
            match self.add_columns_once(database, table, columns, max_columns).await {
                Ok(Some(schema)) => return Ok(schema),
                // Lost a race with another process: merge with the new version.
                Ok(None) if Instant::now() < deadline => continue,
                Ok(None) => {
                    return Err(CatalogError::Unavailable(format!(
                        "the schema of {database}.{table} kept changing under this write for {} s; retry",
                        SCHEMA_RETRY_FOR.as_secs()
                    )))
                }
                Err(CatalogError::Unavailable(message)) if Instant::now() < deadline => {
                    tracing::debug!(%message, "retrying a schema change");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Waits for Redis while it is unreachable: the commit's outcome must be
    /// known before the caller writes anything else (a persister that wrote
    /// the rows again would have them twice). A retry of a commit that did go
    /// in is recognised by its id.
    async fn commit(&self, commit: Commit) -> Result<(), CatalogError> {
        let keys = self.keys.table(&commit.database, &commit.table);
        let hour = commit.partition.0;
        let commit_id = uuid::Uuid::new_v4().to_string();
        let mut added = Vec::with_capacity(commit.add.len());
        for file in &commit.add {
            let json = serde_json::to_string(file)
                .map_err(|e| CatalogError::Encode { path: keys.files(hour), message: e.to_string() })?;
            added.push((file.id.clone(), json));
        }
        let deadline = std::time::SystemTime::now() + self.commit_deadline;
        let deadline_ms = deadline.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let mut invocation = self.commit_script.prepare_invoke();
        invocation
            .key(keys.files(hour))
            .key(keys.wal(hour))
            .key(keys.partitions())
            .key(keys.seq())
            .key(keys.log())
            .key(keys.commits())
            .key(keys.lease())
            .arg(hour)
            .arg(&commit_id)
            .arg(&self.writer_id)
            .arg(commit.wal_sequence)
            .arg(commit.lease.map(|token| token.to_string()).unwrap_or_default())
            .arg(deadline_ms.to_string())
            .arg(commit.remove.len());
        for id in &commit.remove {
            invocation.arg(id);
        }
        invocation.arg(added.len());
        for (id, json) in &added {
            invocation.arg(id).arg(json);
        }
        let mut delay = Duration::from_millis(20);
        let mut warned = false;
        let (outcome, detail): (String, String) = loop {
            let mut connection = self.connection();
            let attempt = match invocation.invoke_async(&mut connection).await {
                // A test may lose the reply of a commit that went in (src/faults.rs).
                Ok(reply) => match crate::faults::injected("redis-commit-reply-lost", &commit.table) {
                    Some(lost) => Err(RedisError::from(lost)),
                    None => Ok(reply),
                },
                Err(error) => Err(error),
            };
            match attempt {
                Ok(reply) => break reply,
                // Once an attempt's outcome is unknown, every later answer but
                // the script's own is retried under the same id: giving up
                // would let the caller write the rows again.
                Err(error) if is_transient(&error) || warned => {
                    if !warned {
                        tracing::warn!(
                            %error,
                            database = %commit.database,
                            table = %commit.table,
                            partition = %commit.partition,
                            "the Redis catalog is unreachable; the commit waits for it"
                        );
                        warned = true;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(error) => return Err(redis_error("committing files", error)),
            }
        };
        if outcome == "late" {
            return Err(CatalogError::Unavailable(format!(
                "the commit to {}.{} {} waited for Redis past its deadline ({} s): its files are left for the \
                 orphan sweep and written again",
                commit.database,
                commit.table,
                commit.partition,
                self.commit_deadline.as_secs_f64()
            )));
        }
        if outcome == "fenced" {
            return Err(CatalogError::Fenced { database: commit.database, table: commit.table, holder: detail });
        }
        if outcome == "missing" {
            return Err(CatalogError::MissingFile {
                database: commit.database,
                table: commit.table,
                partition: commit.partition,
                id: detail,
            });
        }
        if outcome == "applied" {
            tracing::info!(
                database = %commit.database,
                table = %commit.table,
                "the commit had gone in before its reply was lost: it is applied once"
            );
        } else if warned {
            tracing::info!(database = %commit.database, table = %commit.table, "the Redis catalog took the commit");
        }
        self.announce().await;
        // Published from Redis itself, which may already hold later changes
        // of other processes: never an older state than Redis has.
        let mut state = self.apply_lock.lock().await;
        match self.read_partitions(&keys, &commit.database, &commit.table, &[hour]).await {
            Ok(read) => {
                for (key, partition) in read {
                    self.view.set_partition(&commit.database, &commit.table, key, partition);
                }
            }
            // Committed, but not read back: the follower reads the whole
            // table at its next poll.
            Err(_) => {
                state.seen.remove(&(commit.database.clone(), commit.table.clone()));
                state.epoch = None;
            }
        }
        Ok(())
    }

    async fn compaction_lease(&self, database: &str, table: &str) -> Result<Option<u64>, CatalogError> {
        let keys = self.keys.table(database, table);
        let mut connection = self.connection();
        let ttl_ms = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let (outcome, detail): (String, String) = self
            .lease_script
            .key(keys.lease())
            .key(keys.fence())
            .arg(&self.writer_id)
            .arg(ttl_ms)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| redis_error(&format!("taking the compaction lease on {database}.{table}"), e))?;
        if outcome != "ok" {
            tracing::debug!(%database, %table, holder = %detail, "another process compacts this table");
            return Ok(None);
        }
        detail
            .parse()
            .map(Some)
            .map_err(|_| CatalogError::Shared(format!("the lease on {database}.{table} has the token {detail:?}")))
    }

    async fn refresh(&self) -> Result<(), CatalogError> {
        self.sync(true).await
    }

    fn shared_deletes(&self) -> Option<&dyn SharedDeletes> {
        Some(self)
    }

    fn readers(&self) -> Option<&dyn crate::catalog::ReaderRegistry> {
        Some(self)
    }

    async fn remove_tombstones(&self, database: &str, table: &str, sequences: &[u64]) -> Result<(), CatalogError> {
        self.forget_tombstones(database, table, sequences).await
    }

    fn lag(&self) -> Option<Duration> {
        Some(self.last_sync.lock().unwrap_or_else(|p| p.into_inner()).elapsed())
    }

    fn stopped(&self) -> Option<String> {
        None
    }
}
