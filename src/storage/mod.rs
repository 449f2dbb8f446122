//! Where Parquet files live: storage layers (local disk or S3, through
//! object_store), file paths, and the Parquet and row-order kernels.
//!
//! Layer 0 receives new files; the compactor moves files down the layers as their
//! TTL passes. On a local layer files are written crash-safely (see [`fs`]); an S3
//! put is atomic by itself.

pub mod fs;
pub mod parquet;
pub mod sort;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub use self::parquet::ParquetOptions;
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

/// What a streamed Parquet write produced: what the catalog records of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenFile {
    /// File size in bytes.
    pub size_bytes: u64,
    /// Rows written.
    pub row_count: u64,
    /// Smallest event time written (ns); `i64::MAX` for no rows.
    pub min_time: i64,
    /// Largest event time written (ns); `i64::MIN` for no rows.
    pub max_time: i64,
}

impl WrittenFile {
    fn add(&mut self, batch: &RecordBatch, time: usize) {
        self.row_count += batch.num_rows() as u64;
        if let Some((min, max)) = time_range(batch, time) {
            self.min_time = self.min_time.min(min);
            self.max_time = self.max_time.max(max);
        }
    }
}

#[derive(Debug)]
enum Backend {
    Fs { root: PathBuf },
    ObjectStore,
}

/// An opened storage layer.
#[derive(Debug)]
pub struct Layer {
    config: LayerConfig,
    backend: Backend,
    /// The layer as an object store, rooted at the layer's root (or prefix).
    store: Arc<dyn ObjectStore>,
    /// The URL under which the query engine finds `store`.
    url: String,
}

/// The parts of an S3 layer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// Path-style (`host/bucket/key`) rather than virtual-host requests.
    pub path_style: bool,
    /// Credentials given in the URL (`s3://key:secret@host/...`).
    pub credentials: Option<(String, String)>,
}

impl S3Url {
    /// Parses `s3://[key:secret@]host[:port]/bucket[/prefix][?secure=true|false][&url-style=vhost|path]`.
    pub fn parse(url: &str) -> Result<S3Url, String> {
        let rest = url.strip_prefix("s3://").ok_or("an S3 layer URL starts with s3://")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').ok_or("the S3 URL has no bucket: s3://host/bucket")?;
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (key, secret) = userinfo.split_once(':').ok_or("credentials in the URL are key:secret")?;
                (Some((key.to_owned(), secret.to_owned())), host)
            }
            None => (None, authority),
        };
        if host.is_empty() {
            return Err("the S3 URL has no endpoint host".into());
        }
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err("the S3 URL has no bucket: s3://host/bucket".into());
        }
        let mut secure = true;
        let mut path_style = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "secure" => {
                    secure = match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        other => return Err(format!("secure={other}: expected true or false")),
                    }
                }
                "url-style" => {
                    path_style = match value {
                        "path" => true,
                        "vhost" => false,
                        other => return Err(format!("url-style={other}: expected path or vhost")),
                    }
                }
                other => return Err(format!("unknown S3 URL parameter '{other}' (known: secure, url-style)")),
            }
        }
        Ok(S3Url {
            endpoint: format!("{}://{host}", if secure { "https" } else { "http" }),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            path_style,
            credentials,
        })
    }
}

/// The local directory of an fs layer URL (`file:///data`, `/data` or `./data`).
pub fn fs_layer_root(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}

impl Layer {
    /// Opens layer number `index`: checks the configuration and creates a local
    /// layer's directory, but does not contact remote storage.
    pub fn open(index: usize, config: LayerConfig) -> Result<Layer, StorageError> {
        let error = |message: String| StorageError::Config { layer: config.name.clone(), message };
        let url = format!("hourglass-layer-{index}://store");
        let (backend, store): (Backend, Arc<dyn ObjectStore>) = match config.layer_type {
            LayerType::Fs => {
                let root = fs_layer_root(&config.url);
                std::fs::create_dir_all(&root).map_err(|e| error(format!("cannot create {}: {e}", root.display())))?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| error(format!("{}: {e}", root.display())))?;
                (Backend::Fs { root }, Arc::new(local))
            }
            LayerType::S3 => {
                let url = S3Url::parse(&config.url).map_err(error)?;
                let (key, secret) = match (&config.auth_key, &config.auth_secret, &url.credentials) {
                    (Some(k), Some(s), _) => (k.clone(), s.clone()),
                    (None, None, Some((k, s))) => (k.clone(), s.clone()),
                    _ => return Err(error("an S3 layer needs both AUTH_KEY and AUTH_SECRET".into())),
                };
                let store = AmazonS3Builder::new()
                    .with_endpoint(&url.endpoint)
                    .with_bucket_name(&url.bucket)
                    .with_region("us-east-1")
                    .with_access_key_id(key)
                    .with_secret_access_key(secret)
                    .with_virtual_hosted_style_request(!url.path_style)
                    .with_allow_http(url.endpoint.starts_with("http://"))
                    .build()
                    .map_err(|e| error(e.to_string()))?;
                let prefix = url.prefix;
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(store)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(store, prefix.as_str()))
                };
                (Backend::ObjectStore, store)
            }
        };
        Ok(Layer { config, backend, store, url })
    }

    /// The layer as an object store whose paths are relative to the layer root.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The URL the query engine registers [`Self::object_store`] under.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The layer's configuration.
    pub fn config(&self) -> &LayerConfig {
        &self.config
    }

    /// The local directory of an fs layer.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Fs { root } => Some(root),
            Backend::ObjectStore => None,
        }
    }

    /// Writes `batch`, already in `order`, as a Parquet file at `relative` (a path
    /// under the layer root). Returns the file size in bytes.
    pub async fn write_parquet(
        &self,
        relative: &str,
        batch: RecordBatch,
        order: RowOrder,
        options: ParquetOptions,
    ) -> Result<u64, StorageError> {
        match &self.backend {
            Backend::Fs { root } => {
                let path = root.join(relative);
                let display = path.display().to_string();
                let io = |source| StorageError::Io { path: display.clone(), source };
                tokio::task::spawn_blocking(move || -> Result<u64, StorageError> {
                    let io = |source| StorageError::Io { path: path.display().to_string(), source };
                    let mut parquet_error = None;
                    fs::write_atomic(&path, |file| {
                        let sink = std::io::BufWriter::with_capacity(1 << 20, file);
                        match parquet::write_batch(sink, &batch, &order, options) {
                            Ok(mut sink) => std::io::Write::flush(&mut sink),
                            Err(e) => {
                                parquet_error = Some(e);
                                Err(std::io::Error::other("parquet encoding failed"))
                            }
                        }
                    })
                    .map_err(|e| match parquet_error.take() {
                        Some(p) => StorageError::Parquet(p),
                        None => io(e),
                    })?;
                    Ok(std::fs::metadata(&path).map_err(io)?.len())
                })
                .await
                .map_err(|e| io(std::io::Error::other(e)))?
            }
            Backend::ObjectStore => {
                let bytes =
                    tokio::task::spawn_blocking(move || parquet::write_batch(Vec::new(), &batch, &order, options))
                        .await
                        .map_err(|e| StorageError::Io {
                            path: relative.to_owned(),
                            source: std::io::Error::other(e),
                        })??;
                let size = bytes.len() as u64;
                let location = object_store::path::Path::from(relative);
                self.store
                    .put(&location, PutPayload::from(bytes))
                    .await
                    .map_err(|source| StorageError::ObjectStore { layer: self.config.name.clone(), source })?;
                Ok(size)
            }
        }
    }
}

impl Layer {
    /// Writes `batches`, already in `order`, as one Parquet file at `relative`
    /// (a path under the layer root), a batch at a time: memory holds a row
    /// group, not the file, so a merge of gigabytes stays small. On local disk
    /// the file appears whole or not at all (temporary file, fsync, rename);
    /// on S3 it is a multipart upload that only completes at the end.
    pub async fn write_parquet_stream<S>(
        &self,
        relative: &str,
        mut batches: S,
        order: &RowOrder,
        options: ParquetOptions,
    ) -> Result<WrittenFile, StorageError>
    where
        S: futures::Stream<Item = Result<RecordBatch, arrow::error::ArrowError>> + Unpin + Send,
    {
        use futures::StreamExt;
        let properties = parquet::writer_properties(order, options)?;
        let mut written = WrittenFile { size_bytes: 0, row_count: 0, min_time: i64::MAX, max_time: i64::MIN };
        match &self.backend {
            Backend::Fs { root } => {
                let (batches, counted) = (&mut batches, &mut written);
                let schema = Arc::clone(&order.schema);
                let size = write_local_file(root, relative, |file| async move {
                    let mut writer = ::parquet::arrow::AsyncArrowWriter::try_new(file, schema, Some(properties))?;
                    while let Some(batch) = batches.next().await {
                        let batch = batch.map_err(StorageError::Input)?;
                        counted.add(&batch, order.time);
                        writer.write(&batch).await?;
                    }
                    writer.finish().await?;
                    Ok(writer.into_inner())
                })
                .await?;
                written.size_bytes = size;
            }
            Backend::ObjectStore => {
                let location = object_store::path::Path::from(relative);
                let sink = object_store::buffered::BufWriter::new(Arc::clone(&self.store), location);
                let mut writer =
                    ::parquet::arrow::AsyncArrowWriter::try_new(sink, Arc::clone(&order.schema), Some(properties))?;
                let result = async {
                    while let Some(batch) = batches.next().await {
                        let batch = batch.map_err(StorageError::Input)?;
                        written.add(&batch, order.time);
                        writer.write(&batch).await?;
                    }
                    writer.finish().await?;
                    Ok::<_, StorageError>(())
                }
                .await;
                if let Err(error) = result {
                    // The upload never completes: nothing appears at `location`.
                    let _ = writer.into_inner().abort().await;
                    return Err(error);
                }
                // `finish` shut the sink down, which completed the upload.
                written.size_bytes = self
                    .store
                    .head(&object_store::path::Path::from(relative))
                    .await
                    .map_err(|source| StorageError::ObjectStore { layer: self.config.name.clone(), source })?
                    .size;
            }
        }
        Ok(written)
    }
}

/// A file found by listing a layer: what the orphan sweep needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Path relative to the layer root: `<db>/<table>/date=../hour=../<name>`.
    pub relative: String,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

impl Layer {
    fn store_error(&self) -> impl Fn(object_store::Error) -> StorageError + '_ {
        move |source| StorageError::ObjectStore { layer: self.config.name.clone(), source }
    }

    /// Deletes the file at `relative`; a file already gone is not an error.
    pub async fn delete(&self, relative: &str) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Fs { root } => {
                let path = root.join(relative);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(StorageError::Io { path: path.display().to_string(), source }),
                }
            }
            Backend::ObjectStore => match self.store.delete(&object_store::path::Path::from(relative)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.store_error()(e)),
            },
        }
    }

    /// The files inside hour-partition directories
    /// (`<db>/<table>/date=YYYY-MM-DD/hour=HH/<name>`): Parquet files and
    /// temporary files, listed so that files no catalog entry names can be
    /// found. Nothing else under the root (the WAL, catalog files of other
    /// kinds) is listed.
    pub async fn list_partition_files(&self) -> Result<Vec<StoredObject>, StorageError> {
        fn in_partition(relative: &str) -> bool {
            let parts: Vec<&str> = relative.split('/').collect();
            parts.len() == 5 && parts[2].starts_with("date=") && parts[3].starts_with("hour=")
        }
        match &self.backend {
            Backend::Fs { root } => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || list_local_partition_files(&root))
                    .await
                    .map_err(|e| StorageError::Io { path: String::new(), source: std::io::Error::other(e) })?
            }
            Backend::ObjectStore => {
                use futures::TryStreamExt;
                let objects: Vec<object_store::ObjectMeta> =
                    self.store.list(None).try_collect().await.map_err(self.store_error())?;
                Ok(objects
                    .into_iter()
                    .map(|o| StoredObject { relative: o.location.to_string(), modified: o.last_modified.into() })
                    .filter(|o| in_partition(&o.relative))
                    .collect())
            }
        }
    }

    /// Copies the file at `relative` from `source` to the same path on this
    /// layer, streaming (memory holds a chunk, not the file), and checks the
    /// copy: its size must be `size_bytes` and its Parquet footer must read
    /// back with `row_count` rows. On local disk the copy is crash-safe
    /// (temporary file, fsync, rename); on S3 it is a multipart upload that
    /// completes only at the end.
    pub async fn copy_from(
        &self,
        source: &Layer,
        relative: &str,
        size_bytes: u64,
        row_count: u64,
    ) -> Result<(), StorageError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let location = object_store::path::Path::from(relative);
        let mut chunks = source.store.get(&location).await.map_err(source.store_error())?.into_stream();
        match &self.backend {
            Backend::Fs { root } => {
                write_local_file(root, relative, |mut file| async move {
                    while let Some(chunk) = chunks.next().await {
                        file.write_all(&chunk.map_err(source.store_error())?)
                            .await
                            .map_err(|e| StorageError::Io { path: relative.to_owned(), source: e })?;
                    }
                    Ok(file)
                })
                .await?;
            }
            Backend::ObjectStore => {
                let mut sink = object_store::buffered::BufWriter::new(Arc::clone(&self.store), location.clone());
                let mut result = Ok(());
                while let Some(chunk) = chunks.next().await {
                    let written = match chunk {
                        Ok(bytes) => sink
                            .write_all(&bytes)
                            .await
                            .map_err(|e| StorageError::Io { path: relative.to_owned(), source: e }),
                        Err(e) => Err(source.store_error()(e)),
                    };
                    if let Err(e) = written {
                        result = Err(e);
                        break;
                    }
                }
                if let Err(error) = result {
                    let _ = sink.abort().await;
                    return Err(error);
                }
                sink.shutdown().await.map_err(|e| StorageError::Io { path: relative.to_owned(), source: e })?;
            }
        }
        let check = self.check_parquet(relative, size_bytes, row_count).await;
        if check.is_err() {
            let _ = self.delete(relative).await;
        }
        check
    }

    /// Reads back the size and the Parquet footer of the file at `relative`
    /// and fails unless they are `size_bytes` and `row_count`.
    pub async fn check_parquet(&self, relative: &str, size_bytes: u64, row_count: u64) -> Result<(), StorageError> {
        let location = object_store::path::Path::from(relative);
        let mismatch = |message: String| StorageError::BadCopy { layer: self.config.name.clone(), message };
        let size = self.store.head(&location).await.map_err(self.store_error())?.size;
        if size != size_bytes || size < 12 {
            return Err(mismatch(format!("{relative}: {size} bytes where {size_bytes} were expected")));
        }
        let tail = self.store.get_range(&location, size - 8..size).await.map_err(self.store_error())?;
        if &tail[4..8] != b"PAR1" {
            return Err(mismatch(format!("{relative}: not a Parquet file (no PAR1 at its end)")));
        }
        let footer = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if footer + 12 > size {
            return Err(mismatch(format!("{relative}: its Parquet footer length {footer} exceeds the file")));
        }
        let metadata_bytes =
            self.store.get_range(&location, size - 8 - footer..size - 8).await.map_err(self.store_error())?;
        let metadata = ::parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&metadata_bytes)?;
        let rows = metadata.file_metadata().num_rows();
        if u64::try_from(rows).ok() != Some(row_count) {
            return Err(mismatch(format!("{relative}: {rows} rows where {row_count} were expected")));
        }
        Ok(())
    }
}

/// Writes the file at `relative` under `root` crash-safely from async code:
/// `fill` writes a temporary file beside it and hands it back; it is then
/// fsynced, renamed into place, and its directory fsynced, so after a crash
/// the file is whole or absent. On error the temporary file is removed.
/// Returns the file's size.
async fn write_local_file<F, Fut>(root: &Path, relative: &str, fill: F) -> Result<u64, StorageError>
where
    F: FnOnce(tokio::fs::File) -> Fut,
    Fut: std::future::Future<Output = Result<tokio::fs::File, StorageError>>,
{
    use tokio::io::AsyncWriteExt;
    let path = root.join(relative);
    let io = |source| StorageError::Io { path: path.display().to_string(), source };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
    let created = dir.clone();
    tokio::task::spawn_blocking(move || fs::create_dir_all_synced(&created))
        .await
        .map_err(|e| io(std::io::Error::other(e)))?
        .map_err(io)?;
    let temp = fs::temp_path_for(&path);
    let result = async {
        let file = tokio::fs::File::create(&temp).await.map_err(io)?;
        let mut file = fill(file).await?;
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        drop(file);
        tokio::fs::rename(&temp, &path).await.map_err(io)?;
        tokio::task::spawn_blocking(move || fs::sync_dir(&dir))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)?;
        Ok(size)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

/// Walks `<root>/<db>/<table>/date=*/hour=*/` for files (see
/// [`Layer::list_partition_files`]).
fn list_local_partition_files(root: &Path) -> Result<Vec<StoredObject>, StorageError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| StorageError::Io { path, source }
    };
    let dirs = |dir: &Path, prefix: Option<&str>| -> Result<Vec<(String, PathBuf)>, StorageError> {
        let mut found = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(io(dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(dir))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            let is_dir = entry.file_type().map_err(io(dir))?.is_dir();
            if is_dir && prefix.is_none_or(|p| name.starts_with(p)) && !name.starts_with('_') {
                found.push((name, entry.path()));
            }
        }
        Ok(found)
    };
    let mut files = Vec::new();
    for (database, db_dir) in dirs(root, None)? {
        for (table, table_dir) in dirs(&db_dir, None)? {
            for (date, date_dir) in dirs(&table_dir, Some("date="))? {
                for (hour, hour_dir) in dirs(&date_dir, Some("hour="))? {
                    for entry in std::fs::read_dir(&hour_dir).map_err(io(&hour_dir))? {
                        let entry = entry.map_err(io(&hour_dir))?;
                        let Ok(name) = entry.file_name().into_string() else { continue };
                        let metadata = entry.metadata().map_err(io(&entry.path()))?;
                        if !metadata.is_file() {
                            continue;
                        }
                        files.push(StoredObject {
                            relative: format!("{database}/{table}/{date}/{hour}/{name}"),
                            modified: metadata.modified().map_err(io(&entry.path()))?,
                        });
                    }
                }
            }
        }
    }
    Ok(files)
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
        if configs.is_empty() {
            return Err(StorageError::Config { layer: String::new(), message: "no storage layer configured".into() });
        }
        let layers: Vec<Layer> =
            configs.into_iter().enumerate().map(|(i, c)| Layer::open(i, c)).collect::<Result<_, _>>()?;
        // Two layers on one place would have a move copy a file onto itself
        // and then delete it as the old copy.
        let mut places: Vec<(String, &str)> = Vec::new();
        for layer in &layers {
            let place = match &layer.backend {
                Backend::Fs { root } => {
                    format!("fs:{}", root.canonicalize().unwrap_or_else(|_| root.clone()).display())
                }
                Backend::ObjectStore => match S3Url::parse(&layer.config.url) {
                    Ok(url) => format!("s3:{}/{}/{}", url.endpoint, url.bucket, url.prefix),
                    Err(_) => format!("s3:{}", layer.config.url),
                },
            };
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
