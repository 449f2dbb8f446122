//! Where Parquet files live: storage layers (local disk or S3, through
//! object_store), file paths, and the Parquet and row-order kernels.
//!
//! Layer 0 receives new files; the compactor moves files down the layers as their
//! TTL passes. On a local layer files are written crash-safely (see [`fs`]); an S3
//! put is atomic by itself.

pub mod disk;
#[cfg(any(test, feature = "fault-injection"))]
mod disk_store;
pub mod fs;
mod layer;
mod listing;
pub mod parquet;
mod s3_url;
#[cfg(any(test, feature = "fault-injection"))]
pub mod sim_disk;
pub mod sort;

use std::sync::Arc;
use std::time::Duration;

pub use self::layer::{Layer, WrittenFile};
pub use self::listing::StoredObject;
pub use self::parquet::ParquetOptions;
pub use self::s3_url::{fs_layer_root, S3Url};
pub use self::sort::{
    align_to_schema, group_starts, key_rows, sort_and_deduplicate, take_groups, time_range, RowOrder,
};

/// The kind of storage behind a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// A directory on local disk.
    Fs,
    /// An S3-compatible bucket.
    S3,
}

/// One storage layer as configured (`GIGAPI_LAYERS_<i>_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerConfig {
    /// Unique name; the catalog records it for every file.
    pub name: String,
    /// Local disk or S3.
    pub layer_type: LayerType,
    /// `file:///path` or a path for fs; `s3://endpoint/bucket/prefix?secure=..&url-style=..` for S3.
    pub url: String,
    /// Whether every node of a cluster can reach the layer.
    pub global: bool,
    /// How long a file stays before it moves to the next layer (or, on the last
    /// layer, is deleted); `None` keeps it for ever.
    pub ttl: Option<Duration>,
    /// S3 access key.
    pub auth_key: Option<String>,
    /// S3 secret key.
    pub auth_secret: Option<String>,
}

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A layer's configuration is unusable.
    #[error("layer '{layer}': {message}")]
    Config {
        /// The layer.
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// Local disk I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The object store failed.
    #[error("layer '{layer}': {source}")]
    ObjectStore {
        /// The layer.
        layer: String,
        /// The error.
        source: object_store::Error,
    },
    /// Encoding Parquet failed.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    /// A copied file does not read back as the file it copies.
    #[error("layer '{layer}': the copy is not intact: {message}")]
    BadCopy {
        /// The layer written to.
        layer: String,
        /// What differs.
        message: String,
    },
    /// The rows to write could not be produced (a streamed write's input failed).
    #[error("reading the rows to write: {0}")]
    Input(arrow::error::ArrowError),
}

/// The path of a table's file, relative to the table directory:
/// `date=YYYY-MM-DD/hour=HH/<id>.<level>.parquet`.
pub fn file_path_in_table(partition_dir: &str, id: &str, level: u8) -> String {
    format!("{partition_dir}/{id}.{level}.parquet")
}

/// The path of a table's file relative to a layer root.
pub fn file_path_in_layer(database: &str, table: &str, path_in_table: &str) -> String {
    format!("{database}/{table}/{path_in_table}")
}

/// Every configured layer, in data-flow order.
#[derive(Debug)]
pub struct Storage {
    layers: Vec<Layer>,
}

impl Storage {
    /// Opens every layer; there must be at least one.
    pub fn open(configs: Vec<LayerConfig>) -> Result<Storage, StorageError> {
        Storage::open_on(configs, Arc::new(disk::RealDisk))
    }

    /// Opens every layer, local ones on `disk` (a simulated disk in crash
    /// tests); there must be at least one.
    pub fn open_on(configs: Vec<LayerConfig>, disk: Arc<dyn disk::Disk>) -> Result<Storage, StorageError> {
        if configs.is_empty() {
            return Err(StorageError::Config { layer: String::new(), message: "no storage layer configured".into() });
        }
        let layers: Vec<Layer> =
            configs.into_iter().enumerate().map(|(i, c)| Layer::open(i, c, &disk)).collect::<Result<_, _>>()?;
        // Two layers on one place would have a move copy a file onto itself
        // and then delete it as the old copy.
        let mut places: Vec<(String, &str)> = Vec::new();
        for layer in &layers {
            let place = layer.place();
            if let Some((_, other)) = places.iter().find(|(p, _)| *p == place) {
                return Err(StorageError::Config {
                    layer: layer.name().to_owned(),
                    message: format!("it stores files in the same place as layer '{other}'; give each layer its own"),
                });
            }
            places.push((place, layer.name()));
        }
        Ok(Storage { layers })
    }

    /// The layer that receives new files.
    pub fn first(&self) -> &Layer {
        &self.layers[0]
    }

    /// A layer by name.
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name() == name)
    }

    /// Every layer, in order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
}
