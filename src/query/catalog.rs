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
use datafusion::datasource::TableProvider;
use datafusion::execution::context::SessionState;

use super::information_schema::{PgInformationSchema, INFORMATION_SCHEMA};
use super::postgres::PgCatalogOfDatabase;

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
}

impl Sources {
    /// The table provider of a relation SQL created: a view planned now (so it
    /// sees the tables as they are), or the Parquet files of a table.
    async fn relation_table(&self, database: &str, relation: &Relation) -> Result<Arc<dyn TableProvider>> {
        match &relation.kind {
            RelationKind::View { sql } => {
                let base = self
                    .view_planner
                    .get()
                    .ok_or_else(|| DataFusionError::Internal("views are read before the engine is ready".into()))?;
                let state = super::database_session(base, database);
                let plan = state.create_logical_plan(sql).await.map_err(|e| {
                    DataFusionError::Plan(format!(
                        "view {}.{} no longer plans (a table it reads was dropped or renamed?): {e}",
                        relation.schema, relation.name
                    ))
                })?;
                Ok(Arc::new(ViewTable::new(plan, Some(sql.clone()))))
            }
            RelationKind::Table { id } => {
                let dir = self.relations.table_dir(database, id);
                let file = std::fs::File::open(dir.join("data.parquet"))
                    .map_err(|e| DataFusionError::Execution(format!("table {}: {e}", relation.name)))?;
                let metadata = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, Default::default())?;
                let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
                let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
                let config = ListingTableConfig::new(url)
                    .with_listing_options(options)
                    .with_schema(Arc::clone(metadata.schema()));
                Ok(Arc::new(ListingTable::try_new(config)?))
            }
        }
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
        self.sources.catalog.databases()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.sources.catalog.databases().iter().any(|d| d == name).then(|| {
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
                return Some(Arc::new(PgCatalogOfDatabase::new(Arc::new(this), Arc::clone(shared))));
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
                Some(relation) => self.sources.relation_table(&self.database, &relation).await.map(Some),
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
            Some(relation) => self.sources.relation_table(&self.database, &relation).await.map(Some),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.sources.relations.get(&self.database, &self.schema, name).is_some()
    }
}
