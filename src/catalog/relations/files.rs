//! Where the rows of tables made by `CREATE TABLE ... AS` live: one Parquet
//! file per table, `<database>/<id>/data.parquet`, under `tables/` of the
//! data root's `_catalog` directory for one process, or under
//! `_catalog/tables/` of the first storage layer when processes share the
//! catalog (so that every reader reaches them; `_catalog` is no database's
//! name, so it collides with no measurement's files).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use object_store::ObjectStore;

use super::RelationError;
use crate::storage::{Layer, LayerConfig, LayerType, Storage, StorageError};

/// The name of every table's one file.
const FILE_NAME: &str = "data.parquet";

/// Where the query engine finds the files of one process's own tables
/// (distinct from every storage layer's `hourglass-layer-<i>://store`).
const OWN_URL: &str = "hourglass-relations://store";

/// Where the files of tables made by SQL are kept.
#[derive(Debug)]
pub struct RelationFiles {
    place: Place,
    /// The directory, relative to the layer root, that holds `<database>/<id>/`.
    prefix: &'static str,
    /// The schema of each table read so far: a table's file never changes,
    /// and reading its footer again (on S3, a listing and a request) for
    /// every catalog query would be waste.
    schemas: std::sync::Mutex<std::collections::HashMap<(String, String), SchemaRef>>,
}

#[derive(Debug)]
enum Place {
    /// A directory of this process's own (`<root>/_catalog`).
    Own(Box<Layer>),
    /// The first layer of the storage every process shares.
    First(Arc<Storage>),
}

/// A table directory found by listing, for the orphan sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTable {
    /// The database.
    pub database: String,
    /// The table's id.
    pub id: String,
    /// When its newest file was written.
    pub newest: SystemTime,
}

impl RelationFiles {
    /// Under `<root>/_catalog/tables/` on `disk`: the data root's own, for one process.
    pub fn local(disk: Arc<dyn crate::storage::disk::Disk>, root: &Path) -> Result<RelationFiles, RelationError> {
        let dir = root.join("_catalog");
        let config = LayerConfig {
            name: "_catalog".into(),
            layer_type: LayerType::Fs,
            url: dir.display().to_string(),
            global: false,
            ttl: None,
            auth_key: None,
            auth_secret: None,
        };
        let layer = Layer::open_at(OWN_URL.to_owned(), config, &disk)
            .map_err(|e| RelationError::Io { path: dir.display().to_string(), message: e.to_string() })?;
        Ok(RelationFiles { place: Place::Own(Box::new(layer)), prefix: "tables", schemas: Default::default() })
    }

    /// Under `_catalog/tables/` of the first layer, which every process of a
    /// cluster reaches.
    pub fn shared(storage: Arc<Storage>) -> RelationFiles {
        RelationFiles { place: Place::First(storage), prefix: "_catalog/tables", schemas: Default::default() }
    }

    fn layer(&self) -> &Layer {
        match &self.place {
            Place::Own(layer) => layer,
            Place::First(storage) => storage.first(),
        }
    }

    fn dir(&self, database: &str, id: &str) -> String {
        format!("{}/{database}/{id}", self.prefix)
    }

    /// A new table's id.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// The URL of table `id`'s directory, for the query engine: under the
    /// URL the engine registered the layer's object store under (see
    /// [`Self::own_store`]), so that reads go through the layer's disk.
    pub fn url(&self, database: &str, id: &str) -> String {
        format!("{}/{}/", self.layer().url().trim_end_matches('/'), self.dir(database, id))
    }

    /// The layer of its own the query engine must read these files from,
    /// with its URL; none when they are on the first storage layer, which
    /// the engine reads anyway.
    pub fn own_store(&self) -> Option<(&str, Arc<dyn ObjectStore>)> {
        match &self.place {
            Place::Own(layer) => Some((layer.url(), layer.object_store())),
            Place::First(_) => None,
        }
    }

    /// The schema of table `id`, if it was read before.
    pub fn known_schema(&self, database: &str, id: &str) -> Option<SchemaRef> {
        let schemas = self.schemas.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        schemas.get(&(database.to_owned(), id.to_owned())).cloned()
    }

    /// Remembers the schema of table `id`, read from its file.
    pub fn remember_schema(&self, database: &str, id: &str, schema: SchemaRef) {
        let mut schemas = self.schemas.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        schemas.insert((database.to_owned(), id.to_owned()), schema);
    }

    /// Writes `batches` of `schema` as table `id`'s file, crash-safely
    /// (whole or absent); returns the rows written. `E` carries the input's
    /// errors through.
    pub async fn write<S, E>(&self, database: &str, id: &str, schema: SchemaRef, batches: S) -> Result<usize, E>
    where
        S: futures::Stream<Item = Result<RecordBatch, E>> + Unpin + Send,
        E: From<StorageError> + Send,
    {
        use parquet::basic::{Compression, ZstdLevel};
        use parquet::file::properties::WriterProperties;
        let properties = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
        let relative = format!("{}/{FILE_NAME}", self.dir(database, id));
        let mut rows = 0;
        self.layer().write_batches(&relative, schema, properties, batches, |batch| rows += batch.num_rows()).await?;
        Ok(rows)
    }

    /// Deletes table `id`'s files; a failure is logged (the orphan sweep
    /// finds what is left).
    pub async fn remove(&self, database: &str, id: &str) {
        let dir = self.dir(database, id);
        self.schemas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&(database.to_owned(), id.to_owned()));
        if let Err(error) = self.layer().delete_dir(&dir).await {
            tracing::warn!(%dir, %error, "removing a dropped table's files");
        }
    }

    /// Every table directory there is, named or not.
    pub async fn list(&self) -> Result<Vec<StoredTable>, StorageError> {
        let mut tables: Vec<StoredTable> = Vec::new();
        for object in self.layer().list_under(self.prefix).await? {
            let Some(rest) = object.relative.strip_prefix(self.prefix) else { continue };
            let mut parts = rest.trim_start_matches('/').split('/');
            let (Some(database), Some(id), Some(_)) = (parts.next(), parts.next(), parts.next()) else { continue };
            match tables.iter_mut().find(|t| t.database == database && t.id == id) {
                Some(table) => table.newest = table.newest.max(object.modified),
                None => tables.push(StoredTable {
                    database: database.to_owned(),
                    id: id.to_owned(),
                    newest: object.modified,
                }),
            }
        }
        Ok(tables)
    }
}
