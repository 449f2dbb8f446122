//! Every database as a DataFusion catalog, with the schema `public` holding one
//! table per measurement. Everything is looked up in the catalog when asked, so
//! a table exists for queries as soon as its first row is acknowledged.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::view::ViewTable;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::context::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;

use super::information_schema::{ComputedTable, PgInformationSchema, INFORMATION_SCHEMA};
use super::pg_catalog::PgCatalogOfDatabase;
use datafusion::arrow::datatypes::Schema;

/// The schema datafusion-pg-catalog registers.
const PG_CATALOG: &str = "pg_catalog";
use super::table::{BufferedRows, TableWriter, TimeseriesTable};
use crate::catalog::relations::{Relation, RelationKind, RelationStore};
use crate::catalog::Catalog;
use crate::storage::Storage;

/// The schema that holds a database's tables.
pub const SCHEMA: &str = "public";

/// What the providers need to build tables.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) buffer: Option<Arc<dyn BufferedRows>>,
    pub(crate) writer: Option<Arc<dyn TableWriter>>,
    /// Schemas every database shows besides `public` (`pg_catalog`), registered
    /// once at start-up.
    pub(crate) shared_schemas: Arc<RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>>,
    /// Schemas, tables and views that SQL created.
    pub(crate) relations: Arc<RelationStore>,
    /// The engine's session, set once it is built: views are planned with it
    /// when they are read.
    pub(crate) view_planner: Arc<OnceLock<SessionState>>,
    /// The views being planned, outermost first (`db.schema.name`).
    pub(crate) view_stack: Arc<Vec<String>>,
    /// `pg_catalog`'s exported tables, and each database's `pg_catalog`.
    pub(crate) pg_catalogs: Arc<PgCatalogs>,
    /// The one database a session limited to it sees (a token's): the
    /// others are in no listing and no name resolves in them.
    pub(crate) only: Option<String>,
}

impl Sources {
    /// Whether a session over these sources sees `database`.
    fn sees(&self, database: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == database)
    }

    /// Every database: those with measurements, and those with only what
    /// SQL made (a database whose measurements were dropped keeps its
    /// views), sorted.
    pub(crate) fn databases(&self) -> Vec<String> {
        let mut names = self.catalog.databases();
        names.extend(self.relations.databases());
        names.sort();
        names.dedup();
        names
    }
}

/// A database, and the one database the session that reads its `pg_catalog`
/// is limited to (a token's), if any.
type PgCatalogKey = (String, Option<String>);

/// Each database's `pg_catalog`, made on first use and kept.
#[derive(Debug, Default)]
pub(crate) struct PgCatalogs {
    /// Loaded on first use: start-up does not pay for them.
    static_tables: OnceLock<Arc<datafusion_postgres::datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables>>,
    /// By database and the one database the session is limited to, if any.
    by_database: std::sync::Mutex<BTreeMap<PgCatalogKey, Arc<dyn SchemaProvider>>>,
}

/// The catalog list of one database, for its `pg_catalog`.
#[derive(Debug)]
struct OneDatabase {
    database: String,
    sources: Sources,
}

impl CatalogProviderList for OneDatabase {
    fn register_catalog(&self, _name: String, _catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![self.database.clone()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == self.database).then(|| {
            Arc::new(DatabaseProvider { database: self.database.clone(), sources: self.sources.clone() })
                as Arc<dyn CatalogProvider>
        })
    }
}

impl Sources {
    /// The `pg_catalog` of one database (see [`PgCatalogOfDatabase`]).
    fn pg_catalog_of(&self, database: &str) -> Option<Arc<dyn SchemaProvider>> {
        let mut by_database = self.pg_catalogs.by_database.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A session limited to one database plans views with its own limits:
        // its pg_catalog is not the one of a session that sees everything.
        let key = (database.to_owned(), self.only.clone());
        if let Some(existing) = by_database.get(&key) {
            return Some(Arc::clone(existing));
        }
        // The provider keeps the sources it was made with: those of the engine,
        // not of a view being planned.
        let mut sources = self.clone();
        sources.view_stack = Arc::default();
        let one = Arc::new(OneDatabase { database: database.to_owned(), sources }) as Arc<dyn CatalogProviderList>;
        let static_tables = match self.pg_catalogs.static_tables.get() {
            Some(tables) => Arc::clone(tables),
            None => match super::pg_catalog::static_tables() {
                Ok(tables) => Arc::clone(self.pg_catalogs.static_tables.get_or_init(|| tables)),
                Err(e) => {
                    tracing::warn!("cannot load pg_catalog's tables: {e}");
                    return None;
                }
            },
        };
        match super::pg_catalog::pg_catalog_over(one, static_tables) {
            Ok(provider) => {
                by_database.insert(key, Arc::clone(&provider));
                Some(provider)
            }
            Err(e) => {
                tracing::warn!(database, "cannot make pg_catalog: {e}");
                None
            }
        }
    }
}

/// Views within views are planned this deep at most.
const MAX_VIEW_DEPTH: usize = 16;

impl Sources {
    /// The table provider of a relation SQL created: a view planned now (so it
    /// sees the tables as they are), or the Parquet file of a table. One that
    /// cannot be opened (a view over a dropped table, a view that reads
    /// itself) is still listed, and fails with the reason when it is read:
    /// listing the catalog must not fail, nor recurse, because of one relation.
    async fn relation_table(&self, database: &str, relation: &Relation) -> Arc<dyn TableProvider> {
        let opened = match &relation.kind {
            RelationKind::View { sql } => self.plan_view(database, relation, sql).await,
            RelationKind::Table { id } => self.open_table(database, id).await,
        };
        opened.unwrap_or_else(|e| {
            let kind = match relation.kind {
                RelationKind::View { .. } => TableType::View,
                RelationKind::Table { .. } => TableType::Base,
            };
            // Listed with no columns; reading it fails with the reason.
            let message = format!("{}.{} cannot be read: {e}", relation.schema, relation.name);
            Arc::new(ComputedTable::new(Arc::new(Schema::empty()), kind, move || {
                let message = message.clone();
                Box::pin(async move { Err(DataFusionError::Plan(message)) })
            }))
        })
    }

    async fn plan_view(&self, database: &str, relation: &Relation, sql: &str) -> Result<Arc<dyn TableProvider>> {
        let base = self
            .view_planner
            .get()
            .ok_or_else(|| DataFusionError::Internal("views are read before the engine is ready".into()))?;
        let key = format!("{database}.{}.{}", relation.schema, relation.name);
        if self.view_stack.contains(&key) {
            return Err(DataFusionError::Plan(format!(
                "the view reads itself (through {})",
                self.view_stack.join(", ")
            )));
        }
        if self.view_stack.len() >= MAX_VIEW_DEPTH {
            return Err(DataFusionError::Plan(format!("views nest deeper than {MAX_VIEW_DEPTH}")));
        }
        // The view's own tables are looked up through sources that know which
        // views are being planned, so a cycle ends here instead of in a stack overflow.
        let mut inner = self.clone();
        let mut stack = (*self.view_stack).clone();
        stack.push(key);
        inner.view_stack = Arc::new(stack);
        let state = SessionStateBuilder::new_from_existing(super::database_session(base, database))
            .with_catalog_list(Arc::new(DatabaseList::new(inner)))
            .build();
        let plan = state.create_logical_plan(sql).await?;
        Ok(Arc::new(ViewTable::new(plan, Some(sql.to_owned()))))
    }

    async fn open_table(&self, database: &str, id: &str) -> Result<Arc<dyn TableProvider>> {
        let state = self
            .view_planner
            .get()
            .ok_or_else(|| DataFusionError::Internal("tables are read before the engine is ready".into()))?;
        let url = ListingTableUrl::parse(self.relations.files().url(database, id))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let files = self.relations.files();
        let schema = match files.known_schema(database, id) {
            Some(schema) => schema,
            None => {
                let schema = options.infer_schema(state, &url).await?;
                files.remember_schema(database, id, Arc::clone(&schema));
                schema
            }
        };
        let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
        Ok(Arc::new(ListingTable::try_new(config)?))
    }
}

/// All databases.
#[derive(Debug)]
pub(crate) struct DatabaseList {
    sources: Sources,
}

impl DatabaseList {
    pub(crate) fn new(sources: Sources) -> Self {
        DatabaseList { sources }
    }
}

impl CatalogProviderList for DatabaseList {
    fn register_catalog(&self, _name: String, _catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        // Databases come into being with their first write; nothing else registers them.
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        let mut names = self.sources.databases();
        names.retain(|name| self.sources.sees(name));
        names
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (self.sources.sees(name) && self.sources.databases().iter().any(|d| d == name)).then(|| {
            Arc::new(DatabaseProvider { database: name.to_owned(), sources: self.sources.clone() })
                as Arc<dyn CatalogProvider>
        })
    }
}

/// One database.
#[derive(Debug)]
struct DatabaseProvider {
    database: String,
    sources: Sources,
}

impl DatabaseProvider {
    fn shared_schemas(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<dyn SchemaProvider>>> {
        self.sources.shared_schemas.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl CatalogProvider for DatabaseProvider {
    fn schema_names(&self) -> Vec<String> {
        let mut names = vec![SCHEMA.to_owned(), INFORMATION_SCHEMA.to_owned()];
        names.extend(self.shared_schemas().keys().cloned());
        names.extend(self.sources.relations.schemas(&self.database));
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SCHEMA {
            return Some(Arc::new(TablesProvider { database: self.database.clone(), sources: self.sources.clone() }));
        }
        if name == INFORMATION_SCHEMA {
            let this = DatabaseProvider { database: self.database.clone(), sources: self.sources.clone() };
            return Some(Arc::new(PgInformationSchema::new(
                &self.database,
                Arc::new(this),
                Arc::new(DatabaseList::new(self.sources.clone())),
            )));
        }
        if let Some(shared) = self.shared_schemas().get(name) {
            if name == PG_CATALOG {
                let this = DatabaseProvider { database: self.database.clone(), sources: self.sources.clone() };
                let scoped = self.sources.pg_catalog_of(&self.database)?;
                // datafusion-pg-catalog lists a `postgres` database whether or
                // not one exists; `pg_database` shows only those that do and
                // that this session sees.
                let shown = match &self.sources.only {
                    Some(only) => vec![only.clone()],
                    None => self.sources.databases(),
                };
                return Some(Arc::new(PgCatalogOfDatabase::new(Arc::new(this), scoped, Arc::clone(shared), shown)));
            }
            return Some(Arc::clone(shared));
        }
        self.sources.relations.schema_exists(&self.database, name).then(|| {
            Arc::new(RelationsProvider {
                database: self.database.clone(),
                schema: name.to_owned(),
                sources: self.sources.clone(),
            }) as Arc<dyn SchemaProvider>
        })
    }

    /// Only the engine's set-up registers schemas (`pg_catalog`); they are
    /// shared by every database. Users cannot create schemas.
    fn register_schema(&self, name: &str, schema: Arc<dyn SchemaProvider>) -> Result<Option<Arc<dyn SchemaProvider>>> {
        if name == SCHEMA {
            return Err(DataFusionError::Plan(format!("the schema {SCHEMA} cannot be replaced")));
        }
        let mut shared = self.sources.shared_schemas.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(shared.insert(name.to_owned(), schema))
    }
}

/// The measurements of one database.
#[derive(Debug)]
struct TablesProvider {
    database: String,
    sources: Sources,
}

#[async_trait]
impl SchemaProvider for TablesProvider {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.sources.catalog.tables(&self.database);
        names.extend(self.sources.relations.relations(&self.database, SCHEMA).into_iter().map(|r| r.name));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some(schema) = self.sources.catalog.table_schema(&self.database, name) else {
            return match self.sources.relations.get(&self.database, SCHEMA, name) {
                Some(relation) => Ok(Some(self.sources.relation_table(&self.database, &relation).await)),
                None => Ok(None),
            };
        };
        Ok(Some(Arc::new(TimeseriesTable::new(
            &self.database,
            name,
            schema,
            Arc::clone(&self.sources.catalog),
            Arc::clone(&self.sources.storage),
            self.sources.buffer.clone(),
            self.sources.writer.clone(),
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.sources.catalog.table_schema(&self.database, name).is_some()
            || self.sources.relations.get(&self.database, SCHEMA, name).is_some()
    }
}

/// A schema made by `CREATE SCHEMA`, holding tables and views SQL created.
#[derive(Debug)]
struct RelationsProvider {
    database: String,
    schema: String,
    sources: Sources,
}

#[async_trait]
impl SchemaProvider for RelationsProvider {
    fn table_names(&self) -> Vec<String> {
        self.sources.relations.relations(&self.database, &self.schema).into_iter().map(|r| r.name).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        match self.sources.relations.get(&self.database, &self.schema, name) {
            Some(relation) => Ok(Some(self.sources.relation_table(&self.database, &relation).await)),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.sources.relations.get(&self.database, &self.schema, name).is_some()
    }
}
