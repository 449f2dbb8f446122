//! Schemas, tables and views that SQL creates (dbt's models, a BI tool's
//! saved views), beside the measurements that writes create.
//!
//! A view is its SQL, planned again whenever it is read, so it sees new rows.
//! A table made by `CREATE TABLE ... AS` is a snapshot: its rows are written
//! once as Parquet under `<root>/_catalog/tables/<database>/<id>/`, and a
//! rename changes only its name here. All definitions live in one file,
//! `<root>/_catalog/relations.json`, replaced atomically on every change, so a
//! crash leaves either the old set or the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::errors::{Classified, ErrorKind};
use crate::storage::fs::{create_dir_all_synced, write_atomic_bytes, AtomicWriteError};

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
}

impl Classified for RelationError {
    fn kind(&self) -> ErrorKind {
        match self {
            RelationError::NotFound(_) | RelationError::SchemaNotFound(_) => ErrorKind::Missing,
            RelationError::Io { .. } | RelationError::OutcomeUnknown { .. } | RelationError::Stopped(_) => {
                ErrorKind::Internal
            }
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
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RelationsFile {
    databases: BTreeMap<String, DatabaseRelations>,
}

/// The schema every database has; it holds the measurements.
const PUBLIC: &str = "public";

/// Schemas every database has, which SQL cannot create or drop.
const RESERVED_SCHEMAS: &[&str] = &[PUBLIC, "information_schema", "pg_catalog"];

/// The relations of every database, kept in memory and on disk.
#[derive(Debug)]
pub struct RelationStore {
    dir: PathBuf,
    state: RwLock<RelationsFile>,
    /// Serialises changes, so that two never write the file from the same state.
    change: std::sync::Mutex<()>,
    /// Why the store takes no more changes, once a write's outcome is unknown.
    stopped: std::sync::Mutex<Option<String>>,
}

impl RelationStore {
    /// Loads the relations under `root` (none when the file does not exist).
    pub fn open(root: &Path) -> Result<RelationStore, RelationError> {
        let dir = root.join("_catalog");
        let path = dir.join("relations.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RelationError::Io {
                path: path.display().to_string(),
                message: format!("corrupt: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RelationsFile::default(),
            Err(e) => return Err(RelationError::Io { path: path.display().to_string(), message: e.to_string() }),
        };
        Ok(RelationStore {
            dir,
            state: RwLock::new(state),
            change: std::sync::Mutex::new(()),
            stopped: std::sync::Mutex::new(None),
        })
    }

    /// Removes table directories no relation names: left by a CREATE TABLE ...
    /// AS that was cancelled, timed out or cut by a crash before its commit,
    /// or by a crash between a DROP's commit and its file removal. Run at
    /// start-up by the process that writes, before it takes statements.
    pub fn remove_orphans(&self) {
        let tables = self.dir.join("tables");
        let Ok(databases) = std::fs::read_dir(&tables) else { return };
        let state = self.read();
        for database in databases.flatten() {
            let name = database.file_name().to_string_lossy().into_owned();
            let known: BTreeSet<&str> = state
                .databases
                .get(&name)
                .map(|d| {
                    d.relations
                        .iter()
                        .filter_map(|r| match &r.kind {
                            RelationKind::Table { id } => Some(id.as_str()),
                            RelationKind::View { .. } => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let Ok(dirs) = std::fs::read_dir(database.path()) else { continue };
            for dir in dirs.flatten() {
                if !known.contains(dir.file_name().to_string_lossy().as_ref()) {
                    tracing::info!(dir = %dir.path().display(), "removing the files of a table no relation names");
                    if let Err(e) = std::fs::remove_dir_all(dir.path()) {
                        tracing::warn!(dir = %dir.path().display(), "cannot remove: {e}");
                    }
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RelationsFile> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The directory that holds the files of table `id` of `database`.
    pub fn table_dir(&self, database: &str, id: &str) -> PathBuf {
        self.dir.join("tables").join(database).join(id)
    }

    /// A directory for the files of a table being made, to be passed to
    /// [`RelationStore::create`] once its files are complete.
    pub fn new_table_dir(&self, database: &str) -> Result<(String, PathBuf), RelationError> {
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.table_dir(database, &id);
        create_dir_all_synced(&dir)
            .map_err(|e| RelationError::Io { path: dir.display().to_string(), message: e.to_string() })?;
        Ok((id, dir))
    }

    /// The schemas SQL created in `database`.
    pub fn schemas(&self, database: &str) -> Vec<String> {
        self.read().databases.get(database).map(|d| d.schemas.iter().cloned().collect()).unwrap_or_default()
    }

    /// Whether `schema` exists in `database` (`public` always does).
    pub fn schema_exists(&self, database: &str, schema: &str) -> bool {
        schema == PUBLIC || self.read().databases.get(database).is_some_and(|d| d.schemas.contains(schema))
    }

    /// The relations of one schema.
    pub fn relations(&self, database: &str, schema: &str) -> Vec<Relation> {
        self.read()
            .databases
            .get(database)
            .map(|d| d.relations.iter().filter(|r| r.schema == schema).cloned().collect())
            .unwrap_or_default()
    }

    /// One relation.
    pub fn get(&self, database: &str, schema: &str, name: &str) -> Option<Relation> {
        self.read().databases.get(database)?.relations.iter().find(|r| r.schema == schema && r.name == name).cloned()
    }

    /// Applies `change` to a copy of `database`'s relations, writes the file,
    /// then makes the copy current.
    fn update<T>(
        &self,
        database: &str,
        change: impl FnOnce(&mut DatabaseRelations) -> Result<T, RelationError>,
    ) -> Result<T, RelationError> {
        let _one_at_a_time = self.change.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(reason) = self.stopped() {
            return Err(RelationError::Stopped(reason));
        }
        let mut next = self.read().clone();
        let result = change(next.databases.entry(database.to_owned()).or_default())?;
        let path = self.dir.join("relations.json");
        let io =
            |e: &dyn std::fmt::Display| RelationError::Io { path: path.display().to_string(), message: e.to_string() };
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| io(&e))?;
        create_dir_all_synced(&self.dir).map_err(|e| io(&e))?;
        match write_atomic_bytes(&path, &bytes) {
            Ok(()) => {}
            Err(AtomicWriteError::NotWritten(e)) => return Err(io(&e)),
            Err(AtomicWriteError::OutcomeUnknown(e)) => {
                let error = RelationError::OutcomeUnknown { path: path.display().to_string(), message: e.to_string() };
                tracing::error!(%error, "the relation catalog stopped");
                *self.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
                return Err(error);
            }
        }
        *self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
        Ok(result)
    }

    /// Why the store takes no more changes, if a write's outcome was unknown.
    pub fn stopped(&self) -> Option<String> {
        self.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// `CREATE SCHEMA [IF NOT EXISTS]`.
    pub fn create_schema(&self, database: &str, schema: &str, if_not_exists: bool) -> Result<(), RelationError> {
        if RESERVED_SCHEMAS.contains(&schema) {
            return if if_not_exists && schema == PUBLIC {
                Ok(())
            } else {
                Err(RelationError::Reserved(schema.to_owned()))
            };
        }
        if self.schema_exists(database, schema) {
            return if if_not_exists { Ok(()) } else { Err(RelationError::SchemaExists(schema.to_owned())) };
        }
        self.update(database, |d| {
            d.schemas.insert(schema.to_owned());
            Ok(())
        })
    }

    /// `DROP SCHEMA [IF EXISTS] ... [CASCADE]`: returns the relations dropped with it.
    pub fn drop_schema(
        &self,
        database: &str,
        schema: &str,
        if_exists: bool,
        cascade: bool,
    ) -> Result<Vec<Relation>, RelationError> {
        if RESERVED_SCHEMAS.contains(&schema) {
            return Err(RelationError::Reserved(schema.to_owned()));
        }
        if !self.schema_exists(database, schema) {
            return if if_exists { Ok(Vec::new()) } else { Err(RelationError::SchemaNotFound(schema.to_owned())) };
        }
        self.update(database, |d| {
            let (dropped, kept): (Vec<Relation>, Vec<Relation>) =
                std::mem::take(&mut d.relations).into_iter().partition(|r| r.schema == schema);
            if !dropped.is_empty() && !cascade {
                return Err(RelationError::SchemaNotEmpty(schema.to_owned()));
            }
            d.relations = kept;
            d.schemas.remove(schema);
            Ok(dropped)
        })
    }

    /// Adds a relation; with `or_replace`, replaces one of the same name and
    /// returns it. `taken` says whether the name is taken by something this
    /// store does not hold (a measurement).
    pub fn create(
        &self,
        database: &str,
        relation: Relation,
        or_replace: bool,
        taken: bool,
    ) -> Result<Option<Relation>, RelationError> {
        let full = format!("{}.{}", relation.schema, relation.name);
        if taken {
            return Err(RelationError::AlreadyExists(full));
        }
        self.update(database, |d| {
            // Checked under the change lock: a schema dropped meanwhile is gone.
            if relation.schema != PUBLIC && !d.schemas.contains(&relation.schema) {
                return Err(RelationError::SchemaNotFound(relation.schema.clone()));
            }
            let existing = d.relations.iter().position(|r| r.schema == relation.schema && r.name == relation.name);
            let replaced = match existing {
                Some(_) if !or_replace => return Err(RelationError::AlreadyExists(full)),
                Some(i) if kind_name(&d.relations[i].kind) != kind_name(&relation.kind) => {
                    return Err(RelationError::WrongKind { name: full, expected: kind_name(&relation.kind) })
                }
                Some(i) => Some(d.relations.remove(i)),
                None => None,
            };
            d.relations.push(relation);
            Ok(replaced)
        })
    }

    /// `ALTER TABLE ... RENAME TO` (of a table or a view), within its schema.
    pub fn rename(&self, database: &str, schema: &str, from: &str, to: &str, taken: bool) -> Result<(), RelationError> {
        if taken {
            return Err(RelationError::AlreadyExists(format!("{schema}.{to}")));
        }
        self.update(database, |d| {
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
    }

    /// `DROP TABLE|VIEW`: removes the relation and returns it (its files are
    /// the caller's to delete).
    pub fn drop(&self, database: &str, schema: &str, name: &str) -> Result<Option<Relation>, RelationError> {
        if self.get(database, schema, name).is_none() {
            return Ok(None);
        }
        self.update(database, |d| {
            let i = d.relations.iter().position(|r| r.schema == schema && r.name == name);
            Ok(i.map(|i| d.relations.remove(i)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(schema: &str, name: &str) -> Relation {
        Relation { schema: schema.into(), name: name.into(), kind: RelationKind::View { sql: "SELECT 1".into() } }
    }

    #[test]
    fn changes_survive_reopening_and_refusals_change_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RelationStore::open(dir.path()).expect("open");
        store.create_schema("d", "analytics", false).expect("schema");
        store.create_schema("d", "analytics", true).expect("if not exists");
        assert!(matches!(store.create_schema("d", "analytics", false), Err(RelationError::SchemaExists(_))));
        store.create("d", view("analytics", "v_tmp"), false, false).expect("create");
        assert!(matches!(
            store.create("d", view("analytics", "v_tmp"), false, false),
            Err(RelationError::AlreadyExists(_))
        ));
        assert!(matches!(store.create("d", view("nope", "v"), false, false), Err(RelationError::SchemaNotFound(_))));
        store.rename("d", "analytics", "v_tmp", "v", false).expect("rename");
        assert!(matches!(store.drop_schema("d", "analytics", false, false), Err(RelationError::SchemaNotEmpty(_))));

        let (_, orphan) = store.new_table_dir("d").expect("a table directory never committed");
        let reopened = RelationStore::open(dir.path()).expect("reopen");
        reopened.remove_orphans();
        assert!(!orphan.exists(), "an uncommitted table's directory is removed at start-up");
        assert_eq!(reopened.schemas("d"), ["analytics"]);
        assert_eq!(reopened.relations("d", "analytics"), [view("analytics", "v")]);
        assert_eq!(reopened.drop("d", "analytics", "v").expect("drop"), Some(view("analytics", "v")));
        assert_eq!(reopened.drop("d", "analytics", "v").expect("drop again"), None);
        assert!(reopened.drop_schema("d", "analytics", false, false).expect("empty").is_empty());
        assert!(RelationStore::open(dir.path()).expect("again").schemas("d").is_empty());
    }
}
