//! Every database as a DataFusion catalog, with the schema `public` holding one
//! table per measurement. Everything is looked up in the catalog when asked, so
//! a table exists for queries as soon as its first row is acknowledged.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableProvider;

use super::table::{BufferedRows, TimeseriesTable};
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

impl CatalogProvider for DatabaseProvider {
    fn schema_names(&self) -> Vec<String> {
        vec![SCHEMA.to_owned()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == SCHEMA).then(|| {
            Arc::new(TablesProvider { database: self.database.clone(), sources: self.sources.clone() })
                as Arc<dyn SchemaProvider>
        })
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
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.sources.catalog.table_schema(&self.database, name).is_some()
    }
}
