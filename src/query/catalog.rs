//! Every database as a DataFusion catalog, with the schema `public` holding one
//! table per measurement. Everything is looked up in the catalog when asked, so
//! a table exists for queries as soon as its first row is acknowledged.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableProvider;

use super::information_schema::{PgInformationSchema, INFORMATION_SCHEMA};
use super::table::{BufferedRows, TableWriter, TimeseriesTable};
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
        self.shared_schemas().get(name).cloned()
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
        self.sources.catalog.tables(&self.database)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some(schema) = self.sources.catalog.table_schema(&self.database, name) else {
            return Ok(None);
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
    }
}
