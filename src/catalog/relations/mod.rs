//! Schemas, tables and views that SQL creates (dbt's models, a BI tool's
//! saved views), beside the measurements that writes create.
//!
//! A view is its SQL, planned again whenever it is read, so it sees new rows.
//! A table made by `CREATE TABLE ... AS` is a snapshot: its rows are written
//! once as Parquet ([`files`]), and a rename changes only its name. All
//! definitions are one JSON document with a version ([`log`]): a change is
//! made on a copy, stored if nobody changed the document meanwhile (else
//! made again on the new document), and only then made current here. With
//! the shared catalog every process follows the document, so a view created
//! on one reader is seen on every other within a poll.

pub mod files;
pub mod log;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::errors::{Classified, ErrorKind};
pub use files::RelationFiles;
pub use log::{RelationFile, RelationLog, StoreOutcome};

/// What a relation is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RelationKind {
    /// Rows written once, in the Parquet files of directory `id`.
    Table {
        /// The directory of its files, under the database's table directory.
        id: String,
    },
    /// A stored query.
    View {
        /// The query, as written in `CREATE VIEW`.
        sql: String,
    },
}

/// A table or view that SQL created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    /// Its schema (`public` or one made by `CREATE SCHEMA`).
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Table or view.
    #[serde(flatten)]
    pub kind: RelationKind,
}

/// Why a change to the relations was refused.
#[derive(Debug, thiserror::Error)]
pub enum RelationError {
    /// The name is taken.
    #[error("relation \"{0}\" already exists")]
    AlreadyExists(String),
    /// The schema is taken.
    #[error("schema \"{0}\" already exists")]
    SchemaExists(String),
    /// No such relation.
    #[error("relation \"{0}\" does not exist")]
    NotFound(String),
    /// No such schema.
    #[error("schema \"{0}\" does not exist")]
    SchemaNotFound(String),
    /// The statement is for a table and names a view, or the reverse.
    #[error("\"{name}\" is not {expected}")]
    WrongKind {
        /// The relation.
        name: String,
        /// "a table" or "a view".
        expected: &'static str,
    },
    /// The schema name belongs to the server.
    #[error("schema name \"{0}\" is reserved")]
    Reserved(String),
    /// The schema still holds relations and CASCADE was not given.
    #[error("cannot drop schema \"{0}\" because other objects depend on it (use DROP SCHEMA ... CASCADE)")]
    SchemaNotEmpty(String),
    /// The definitions could not be written or read.
    #[error("relation catalog {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The new definitions are in place but their directory's fsync failed:
    /// whether the change survives a crash is unknown, so the store takes no
    /// more changes until it is reloaded from disk.
    #[error(
        "relation catalog {path}: the change may or may not have reached the disk ({message}); no more \
         CREATE, ALTER or DROP until the server restarts"
    )]
    OutcomeUnknown {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// An earlier change's outcome is unknown.
    #[error("the relation catalog takes no changes since a write whose outcome is unknown ({0}); restart the server")]
    Stopped(String),
    /// The shared catalog cannot be reached now: retry shortly.
    #[error("{0}")]
    Unavailable(String),
    /// This process does not change the relations.
    #[error("{0}")]
    Refused(String),
    /// A change came too late for the files it names: nothing was changed.
    #[error("{0}")]
    Late(String),
}

impl Classified for RelationError {
    fn kind(&self) -> ErrorKind {
        match self {
            RelationError::NotFound(_) | RelationError::SchemaNotFound(_) => ErrorKind::Missing,
            RelationError::Io { .. } | RelationError::OutcomeUnknown { .. } | RelationError::Stopped(_) => {
                ErrorKind::Internal
            }
            RelationError::Unavailable(_) | RelationError::Late(_) => ErrorKind::Unavailable,
            RelationError::Refused(_) => ErrorKind::Forbidden,
            _ => ErrorKind::Invalid,
        }
    }

    fn sqlstate(&self) -> &'static str {
        match self {
            RelationError::AlreadyExists(_) => "42P07",
            RelationError::SchemaExists(_) => "42P06",
            RelationError::NotFound(_) => "42P01",
            RelationError::SchemaNotFound(_) => "3F000",
            RelationError::SchemaNotEmpty(_) => "2BP01",
            RelationError::WrongKind { .. } => "42809",
            RelationError::Reserved(_) => "42939",
            RelationError::Io { .. } | RelationError::OutcomeUnknown { .. } | RelationError::Stopped(_) => "58030",
            RelationError::Unavailable(_) | RelationError::Late(_) => "57P03",
            // read_only_sql_transaction
            RelationError::Refused(_) => "25006",
        }
    }
}

fn kind_name(kind: &RelationKind) -> &'static str {
    match kind {
        RelationKind::Table { .. } => "a table",
        RelationKind::View { .. } => "a view",
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DatabaseRelations {
    schemas: BTreeSet<String>,
    relations: Vec<Relation>,
    /// Tables dropped from a shared document whose files stay for the
    /// grace period, since other processes may still be reading them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dropped: Vec<DroppedTable>,
}

/// A table whose definition is gone and whose files wait out the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DroppedTable {
    /// The table's id.
    id: String,
    /// When it was dropped (ms since the epoch).
    at_ms: u64,
}

impl DatabaseRelations {
    fn table_ids(&self) -> BTreeSet<&str> {
        self.relations
            .iter()
            .filter_map(|r| match &r.kind {
                RelationKind::Table { id } => Some(id.as_str()),
                RelationKind::View { .. } => None,
            })
            .collect()
    }
}

fn ms_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RelationsFile {
    databases: BTreeMap<String, DatabaseRelations>,
}

/// The schema every database has; it holds the measurements.
const PUBLIC: &str = "public";

/// Schemas every database has, which SQL cannot create or drop.
const RESERVED_SCHEMAS: &[&str] = &[PUBLIC, "information_schema", "pg_catalog"];

/// Changes made again on a newer document before giving up.
const MAX_CONFLICTS: usize = 20;

/// The document as last read or written, and its version.
#[derive(Debug, Default)]
struct Current {
    version: u64,
    relations: RelationsFile,
}

/// The relations of every database, served from memory, stored in a
/// [`RelationLog`], with the files of tables in [`RelationFiles`].
#[derive(Debug)]
pub struct RelationStore {
    log: Arc<dyn RelationLog>,
    files: RelationFiles,
    current: RwLock<Arc<Current>>,
    /// Serialises this process's changes, so that two never start from the same version.
    change: tokio::sync::Mutex<()>,
    /// Why the store takes no more changes, once a write's outcome is unknown.
    stopped: std::sync::Mutex<Option<String>>,
    /// Why this process makes no changes at all (a reader of a data root
    /// whose own process keeps the document).
    refuses: Option<String>,
}

fn parse(json: Option<String>, what: &str) -> Result<RelationsFile, RelationError> {
    match json {
        None => Ok(RelationsFile::default()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| RelationError::Io { path: what.to_owned(), message: format!("corrupt: {e}") }),
    }
}

impl RelationStore {
    /// Loads the relations from `log`. `refuses`, when set, is why this
    /// process may not change them.
    pub async fn open(
        log: Arc<dyn RelationLog>,
        files: RelationFiles,
        refuses: Option<String>,
    ) -> Result<Arc<RelationStore>, RelationError> {
        let (version, json) = log.load().await?;
        let relations = parse(json, "the relations document")?;
        Ok(Arc::new(RelationStore {
            log,
            files,
            current: RwLock::new(Arc::new(Current { version, relations })),
            change: tokio::sync::Mutex::new(()),
            stopped: std::sync::Mutex::new(None),
            refuses,
        }))
    }

    /// Keeps following the document, every `interval`, until the store is
    /// dropped: the changes of other processes, and a change of this one
    /// whose statement was cancelled after the document was stored.
    pub fn follow(self: &Arc<Self>, interval: Duration) {
        let store: Weak<RelationStore> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(interval).await;
                let Some(store) = store.upgrade() else { return };
                match store.reload_if_changed().await {
                    Ok(()) => failing = false,
                    Err(error) if !failing => {
                        tracing::warn!(%error, "cannot follow the shared relations; queries see them as they were");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// Reads the document again if its version moved.
    async fn reload_if_changed(&self) -> Result<(), RelationError> {
        if self.log.version().await? != self.current().version {
            self.reload().await?;
        }
        Ok(())
    }

    /// Reads the document again, between this process's changes.
    async fn reload(&self) -> Result<(), RelationError> {
        let _between_changes = self.change.lock().await;
        self.reload_now().await
    }

    /// Reads the document again and makes it current, whatever its version:
    /// the store is the truth, even one restored to an older state. The
    /// caller holds the change lock, so no change of this process is between
    /// its store and making it current.
    async fn reload_now(&self) -> Result<(), RelationError> {
        let (version, json) = self.log.load().await?;
        let relations = parse(json, "the relations document")?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Arc::new(Current { version, relations });
        Ok(())
    }

    fn current(&self) -> Arc<Current> {
        Arc::clone(&self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Where the files of tables are.
    pub fn files(&self) -> &RelationFiles {
        &self.files
    }

    /// Removes the files of tables no relation names: left by a CREATE
    /// TABLE ... AS that was cancelled, timed out or cut by a crash before
    /// its commit, or by a crash between a DROP's commit and its file
    /// removal. Only files older than `older_than` go: with a shared
    /// document another process may be about to commit a younger one. The
    /// files are listed before the document is read again, so a table
    /// committed in between is named, or too young to judge. Returns how
    /// many tables' files were removed.
    pub async fn remove_orphans(&self, older_than: Duration) -> usize {
        let listed = match self.files.list().await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "cannot list the files of tables made by SQL; none is removed");
                return 0;
            }
        };
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, "cannot read the relations; no table's files are removed");
            return 0;
        }
        let current = self.current();
        let cutoff = SystemTime::now().checked_sub(older_than).unwrap_or(SystemTime::UNIX_EPOCH);
        let cutoff_ms = ms_since_epoch(cutoff);
        // Named: by a relation, or by a drop younger than the grace period.
        let mut named: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut expired_drops = Vec::new();
        for (database, d) in &current.relations.databases {
            named.extend(d.table_ids().into_iter().map(|id| (database.as_str(), id)));
            for dropped in &d.dropped {
                if dropped.at_ms > cutoff_ms {
                    named.insert((database.as_str(), dropped.id.as_str()));
                } else if !expired_drops.contains(database) {
                    expired_drops.push(database.clone());
                }
            }
        }
        let mut removed = 0;
        for table in listed {
            if named.contains(&(table.database.as_str(), table.id.as_str())) || table.newest > cutoff {
                continue;
            }
            tracing::info!(database = %table.database, id = %table.id, "removing the files of a table no relation names");
            self.files.remove(&table.database, &table.id).await;
            removed += 1;
        }
        // The drops whose files are now gone are forgotten.
        for database in expired_drops {
            let forgotten = self
                .update(&database, None, |d| {
                    d.dropped.retain(|t| t.at_ms > cutoff_ms);
                    Ok(())
                })
                .await;
            if let Err(error) = forgotten {
                tracing::warn!(%database, %error, "cannot forget the dropped tables; the next sweep tries again");
            }
        }
        removed
    }

    /// Lets go of the files of `relation`, just dropped or replaced: deleted
    /// now when this process alone uses them, or left for the sweep once the
    /// grace period has passed when others may still be reading them.
    pub async fn release(&self, database: &str, relation: &Relation) {
        if let RelationKind::Table { id } = &relation.kind {
            if !self.log.shared() {
                self.files.remove(database, id).await;
            }
        }
    }

    /// The databases SQL made a schema, table or view in: they exist while
    /// these do, with no measurement in them.
    pub fn databases(&self) -> Vec<String> {
        self.current()
            .relations
            .databases
            .iter()
            .filter(|(_, d)| !d.schemas.is_empty() || !d.relations.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The schemas SQL created in `database`.
    pub fn schemas(&self, database: &str) -> Vec<String> {
        self.current()
            .relations
            .databases
            .get(database)
            .map(|d| d.schemas.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `schema` exists in `database` (`public` always does).
    pub fn schema_exists(&self, database: &str, schema: &str) -> bool {
        schema == PUBLIC || self.current().relations.databases.get(database).is_some_and(|d| d.schemas.contains(schema))
    }

    /// The relations of one schema.
    pub fn relations(&self, database: &str, schema: &str) -> Vec<Relation> {
        self.current()
            .relations
            .databases
            .get(database)
            .map(|d| d.relations.iter().filter(|r| r.schema == schema).cloned().collect())
            .unwrap_or_default()
    }

    /// One relation.
    pub fn get(&self, database: &str, schema: &str, name: &str) -> Option<Relation> {
        self.current()
            .relations
            .databases
            .get(database)?
            .relations
            .iter()
            .find(|r| r.schema == schema && r.name == name)
            .cloned()
    }

    /// Applies `change` to a copy of `database`'s relations, stores the
    /// document, then makes the copy current. When another process changed
    /// the document first, the change is made again on theirs. A change that
    /// names files written since `files_since` is refused by a shared store
    /// once the orphan sweep may have judged them.
    async fn update<T>(
        &self,
        database: &str,
        files_since: Option<SystemTime>,
        change: impl Fn(&mut DatabaseRelations) -> Result<T, RelationError>,
    ) -> Result<T, RelationError> {
        if let Some(reason) = &self.refuses {
            return Err(RelationError::Refused(reason.clone()));
        }
        let _one_at_a_time = self.change.lock().await;
        if let Some(reason) = self.stopped() {
            return Err(RelationError::Stopped(reason));
        }
        for _ in 0..MAX_CONFLICTS {
            let current = self.current();
            let mut next = current.relations.clone();
            let d = next.databases.entry(database.to_owned()).or_default();
            let before: BTreeSet<String> = d.table_ids().into_iter().map(str::to_owned).collect();
            let result = change(d)?;
            if self.log.shared() {
                // Another process may be reading a table dropped here.
                let at_ms = ms_since_epoch(SystemTime::now());
                let kept = d.table_ids();
                let gone: Vec<String> = before.into_iter().filter(|id| !kept.contains(id.as_str())).collect();
                d.dropped.extend(gone.into_iter().map(|id| DroppedTable { id, at_ms }));
            }
            let json = serde_json::to_string_pretty(&next)
                .map_err(|e| RelationError::Io { path: "the relations document".into(), message: e.to_string() })?;
            match self.log.store(current.version, &json, files_since).await {
                Ok(StoreOutcome::Stored) => {
                    let version = current.version + 1;
                    *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                        Arc::new(Current { version, relations: next });
                    return Ok(result);
                }
                Ok(StoreOutcome::Conflict) => self.reload_now().await?,
                Ok(StoreOutcome::Late) => {
                    return Err(RelationError::Late(
                        "the statement ran longer than half the file grace period (the larger of \
                         HOURGLASS_FILE_GRACE_S and HOURGLASS_QUERY_TIMEOUT_S), after which the orphan sweep may \
                         delete the table's file; nothing was changed. Raise HOURGLASS_FILE_GRACE_S on every \
                         process to make tables that take this long"
                            .into(),
                    ))
                }
                Err(error @ RelationError::OutcomeUnknown { .. }) => {
                    tracing::error!(%error, "the relation catalog stopped");
                    *self.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
                    return Err(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(RelationError::Unavailable(format!(
            "the relations kept changing under this statement ({MAX_CONFLICTS} tries); retry"
        )))
    }

    /// Why the store takes no more changes, if a write's outcome was unknown.
    pub fn stopped(&self) -> Option<String> {
        self.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Why this process makes no changes, if it makes none.
    pub fn refuses(&self) -> Option<&str> {
        self.refuses.as_deref()
    }

    /// `CREATE SCHEMA [IF NOT EXISTS]`.
    pub async fn create_schema(&self, database: &str, schema: &str, if_not_exists: bool) -> Result<(), RelationError> {
        if RESERVED_SCHEMAS.contains(&schema) {
            return if if_not_exists && schema == PUBLIC {
                Ok(())
            } else {
                Err(RelationError::Reserved(schema.to_owned()))
            };
        }
        if if_not_exists && self.schema_exists(database, schema) {
            return Ok(());
        }
        self.update(database, None, |d| {
            if d.schemas.contains(schema) {
                return if if_not_exists { Ok(()) } else { Err(RelationError::SchemaExists(schema.to_owned())) };
            }
            d.schemas.insert(schema.to_owned());
            Ok(())
        })
        .await
    }

    /// `DROP SCHEMA [IF EXISTS] ... [CASCADE]`: returns the relations dropped with it.
    pub async fn drop_schema(
        &self,
        database: &str,
        schema: &str,
        if_exists: bool,
        cascade: bool,
    ) -> Result<Vec<Relation>, RelationError> {
        if RESERVED_SCHEMAS.contains(&schema) {
            return Err(RelationError::Reserved(schema.to_owned()));
        }
        self.update(database, None, |d| {
            if !d.schemas.contains(schema) {
                return if if_exists { Ok(Vec::new()) } else { Err(RelationError::SchemaNotFound(schema.to_owned())) };
            }
            let (dropped, kept): (Vec<Relation>, Vec<Relation>) =
                d.relations.iter().cloned().partition(|r| r.schema == schema);
            if !dropped.is_empty() && !cascade {
                return Err(RelationError::SchemaNotEmpty(schema.to_owned()));
            }
            d.relations = kept;
            d.schemas.remove(schema);
            Ok(dropped)
        })
        .await
    }

    /// `DROP DATABASE`: removes every schema, table and view SQL made in
    /// `database` and returns the relations (their files are the caller's to
    /// delete).
    pub async fn drop_database(&self, database: &str) -> Result<Vec<Relation>, RelationError> {
        if !self.current().relations.databases.contains_key(database) {
            return Ok(Vec::new());
        }
        self.update(database, None, |d| {
            d.schemas.clear();
            Ok(std::mem::take(&mut d.relations))
        })
        .await
    }

    /// Adds a relation; with `or_replace`, replaces one of the same name and
    /// returns it. `taken` says whether the name is taken by something this
    /// store does not hold (a measurement).
    /// `files_since` is when the files of a new table began to be written.
    pub async fn create(
        &self,
        database: &str,
        relation: Relation,
        or_replace: bool,
        taken: bool,
        files_since: Option<SystemTime>,
    ) -> Result<Option<Relation>, RelationError> {
        let full = format!("{}.{}", relation.schema, relation.name);
        if taken {
            return Err(RelationError::AlreadyExists(full));
        }
        self.update(database, files_since, |d| {
            // Checked on the document being changed: a schema dropped meanwhile is gone.
            if relation.schema != PUBLIC && !d.schemas.contains(&relation.schema) {
                return Err(RelationError::SchemaNotFound(relation.schema.clone()));
            }
            let existing = d.relations.iter().position(|r| r.schema == relation.schema && r.name == relation.name);
            let replaced = match existing {
                Some(_) if !or_replace => return Err(RelationError::AlreadyExists(full.clone())),
                Some(i) if kind_name(&d.relations[i].kind) != kind_name(&relation.kind) => {
                    return Err(RelationError::WrongKind { name: full.clone(), expected: kind_name(&relation.kind) })
                }
                Some(i) => Some(d.relations.remove(i)),
                None => None,
            };
            d.relations.push(relation.clone());
            Ok(replaced)
        })
        .await
    }

    /// `ALTER TABLE ... RENAME TO` (of a table or a view), within its schema.
    pub async fn rename(
        &self,
        database: &str,
        schema: &str,
        from: &str,
        to: &str,
        taken: bool,
    ) -> Result<(), RelationError> {
        if taken {
            return Err(RelationError::AlreadyExists(format!("{schema}.{to}")));
        }
        self.update(database, None, |d| {
            if d.relations.iter().any(|r| r.schema == schema && r.name == to) {
                return Err(RelationError::AlreadyExists(format!("{schema}.{to}")));
            }
            let relation = d
                .relations
                .iter_mut()
                .find(|r| r.schema == schema && r.name == from)
                .ok_or_else(|| RelationError::NotFound(format!("{schema}.{from}")))?;
            relation.name = to.to_owned();
            Ok(())
        })
        .await
    }

    /// `DROP TABLE|VIEW`: removes the relation and returns it (its files are
    /// the caller's to delete).
    pub async fn drop_relation(
        &self,
        database: &str,
        schema: &str,
        name: &str,
    ) -> Result<Option<Relation>, RelationError> {
        if self.get(database, schema, name).is_none() {
            return Ok(None);
        }
        self.update(database, None, |d| {
            let i = d.relations.iter().position(|r| r.schema == schema && r.name == name);
            Ok(i.map(|i| d.relations.remove(i)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(schema: &str, name: &str) -> Relation {
        Relation { schema: schema.into(), name: name.into(), kind: RelationKind::View { sql: "SELECT 1".into() } }
    }

    async fn open(root: &std::path::Path) -> Arc<RelationStore> {
        let disk: Arc<dyn crate::storage::disk::Disk> = Arc::new(crate::storage::disk::RealDisk);
        let files = RelationFiles::local(Arc::clone(&disk), root).expect("files");
        RelationStore::open(Arc::new(RelationFile::new(disk, root)), files, None).await.expect("open")
    }

    #[tokio::test]
    async fn changes_survive_reopening_and_refusals_change_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path()).await;
        store.create_schema("d", "analytics", false).await.expect("schema");
        store.create_schema("d", "analytics", true).await.expect("if not exists");
        assert!(matches!(store.create_schema("d", "analytics", false).await, Err(RelationError::SchemaExists(_))));
        store.create("d", view("analytics", "v_tmp"), false, false, None).await.expect("create");
        assert!(matches!(
            store.create("d", view("analytics", "v_tmp"), false, false, None).await,
            Err(RelationError::AlreadyExists(_))
        ));
        assert!(matches!(
            store.create("d", view("nope", "v"), false, false, None).await,
            Err(RelationError::SchemaNotFound(_))
        ));
        store.rename("d", "analytics", "v_tmp", "v", false).await.expect("rename");
        assert!(matches!(
            store.drop_schema("d", "analytics", false, false).await,
            Err(RelationError::SchemaNotEmpty(_))
        ));

        // A table's file written and never committed.
        let id = RelationFiles::new_id();
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "x",
            arrow::datatypes::DataType::Int64,
            false,
        )]));
        let batch = arrow::array::RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3]))],
        )
        .expect("batch");
        let rows = store
            .files()
            .write::<_, crate::storage::StorageError>("d", &id, schema, futures::stream::iter(vec![Ok(batch)]))
            .await
            .expect("write");
        assert_eq!(rows, 3);
        let orphan = dir.path().join("_catalog/tables/d").join(&id);
        assert!(orphan.join("data.parquet").exists());
        let reopened = open(dir.path()).await;
        assert_eq!(reopened.remove_orphans(Duration::ZERO).await, 1);
        assert!(!orphan.exists(), "an uncommitted table's directory is removed at start-up");
        assert_eq!(reopened.schemas("d"), ["analytics"]);
        assert_eq!(reopened.relations("d", "analytics"), [view("analytics", "v")]);
        assert_eq!(reopened.drop_relation("d", "analytics", "v").await.expect("drop"), Some(view("analytics", "v")));
        assert_eq!(reopened.drop_relation("d", "analytics", "v").await.expect("drop again"), None);
        assert!(reopened.drop_schema("d", "analytics", false, false).await.expect("empty").is_empty());
        assert!(open(dir.path()).await.schemas("d").is_empty());
    }
}
