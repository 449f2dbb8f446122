//! An opened storage layer (local disk or S3 through object_store): writing
//! Parquet files (whole or streamed), deleting, copying between layers, and
//! checking a copy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::disk::Disk;
use super::{
    fs, fs_layer_root, parquet, time_range, LayerConfig, LayerType, ParquetOptions, RowOrder, S3Url, StorageError,
};

/// Retries of a failed S3 request (with exponential backoff from 100 ms).
const S3_MAX_RETRIES: usize = 5;
/// How long an S3 request is retried in all.
const S3_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
pub(super) enum Backend {
    /// A directory. Every write, copy and delete goes through `disk` (a
    /// simulated one in crash tests), and so do reads, through the store
    /// the disk gives (see [`Disk::object_store`]).
    Fs {
        root: PathBuf,
        disk: Arc<dyn Disk>,
    },
    ObjectStore,
}

/// An opened storage layer.
#[derive(Debug)]
pub struct Layer {
    pub(super) config: LayerConfig,
    pub(super) backend: Backend,
    /// The layer as an object store, rooted at the layer's root (or prefix).
    pub(super) store: Arc<dyn ObjectStore>,
    /// The URL under which the query engine finds `store`.
    url: String,
}

impl Layer {
    /// Opens layer number `index`: checks the configuration and creates a local
    /// layer's directory on `disk`, but does not contact remote storage.
    pub fn open(index: usize, config: LayerConfig, disk: &Arc<dyn Disk>) -> Result<Layer, StorageError> {
        Layer::open_at(format!("hourglass-layer-{index}://store"), config, disk)
    }

    /// [`Self::open`], for a layer the query engine finds under `url`
    /// (unique among the layers it reads).
    pub fn open_at(url: String, config: LayerConfig, disk: &Arc<dyn Disk>) -> Result<Layer, StorageError> {
        let error = |message: String| StorageError::Config { layer: config.name.clone(), message };
        let (backend, store): (Backend, Arc<dyn ObjectStore>) = match config.layer_type {
            LayerType::Fs => {
                let root = fs_layer_root(&config.url);
                fs::create_dir_all_synced(disk.as_ref(), &root)
                    .map_err(|e| error(format!("cannot create {}: {e}", root.display())))?;
                let store = disk.object_store(&root).map_err(|e| error(format!("{}: {e}", root.display())))?;
                (Backend::Fs { root, disk: Arc::clone(disk) }, store)
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
                    // A store that is down fails a query in seconds ("retry
                    // later"), not after object_store's default three minutes
                    // (connections time out after its default 5 s).
                    .with_retry(object_store::RetryConfig {
                        max_retries: S3_MAX_RETRIES,
                        retry_timeout: S3_RETRY_TIMEOUT,
                        ..object_store::RetryConfig::default()
                    })
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
            Backend::Fs { root, .. } => Some(root),
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
            Backend::Fs { root, disk } => {
                let path = root.join(relative);
                let display = path.display().to_string();
                let io = |source| StorageError::Io { path: display.clone(), source };
                let disk = Arc::clone(disk);
                tokio::task::spawn_blocking(move || -> Result<u64, StorageError> {
                    let io = |source| StorageError::Io { path: path.display().to_string(), source };
                    let mut parquet_error = None;
                    fs::write_atomic(disk.as_ref(), &path, |file| {
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
                        None => io(e.into()),
                    })
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
        batches: S,
        order: &RowOrder,
        options: ParquetOptions,
    ) -> Result<WrittenFile, StorageError>
    where
        S: futures::Stream<Item = Result<RecordBatch, arrow::error::ArrowError>> + Unpin + Send,
    {
        use futures::StreamExt;
        let properties = parquet::writer_properties(order, options)?;
        let mut written = WrittenFile { size_bytes: 0, row_count: 0, min_time: i64::MAX, max_time: i64::MIN };
        let batches = batches.map(|batch| batch.map_err(StorageError::Input));
        let counted = &mut written;
        let size = self
            .write_batches(relative, Arc::clone(&order.schema), properties, batches, |batch| {
                counted.add(batch, order.time)
            })
            .await?;
        written.size_bytes = size;
        Ok(written)
    }

    /// Writes `batches` of `schema` as one Parquet file at `relative`, a
    /// batch at a time, crash-safely (see [`Self::write_parquet_stream`]);
    /// `each` sees every batch before it is written. Returns the file's size.
    pub async fn write_batches<S, E>(
        &self,
        relative: &str,
        schema: arrow::datatypes::SchemaRef,
        properties: ::parquet::file::properties::WriterProperties,
        mut batches: S,
        mut each: impl FnMut(&RecordBatch) + Send,
    ) -> Result<u64, E>
    where
        S: futures::Stream<Item = Result<RecordBatch, E>> + Unpin + Send,
        E: From<StorageError> + Send,
    {
        use futures::StreamExt;
        match &self.backend {
            Backend::Fs { root, disk } => {
                let (batches, each) = (&mut batches, &mut each);
                let mut failed = None;
                let failed_slot = &mut failed;
                let written = write_local_file(disk, root, relative, |file| async move {
                    let mut writer = ::parquet::arrow::AsyncArrowWriter::try_new(file, schema, Some(properties))?;
                    while let Some(batch) = batches.next().await {
                        let batch = match batch {
                            Ok(batch) => batch,
                            Err(e) => {
                                *failed_slot = Some(e);
                                return Err(StorageError::Io {
                                    path: relative.to_owned(),
                                    source: std::io::Error::other("the rows to write failed"),
                                });
                            }
                        };
                        each(&batch);
                        writer.write(&batch).await?;
                    }
                    writer.finish().await?;
                    Ok(writer.into_inner())
                })
                .await;
                match (written, failed) {
                    (_, Some(input)) => Err(input),
                    (Ok(size), None) => Ok(size),
                    (Err(e), None) => Err(e.into()),
                }
            }
            Backend::ObjectStore => {
                let location = object_store::path::Path::from(relative);
                let sink = object_store::buffered::BufWriter::new(Arc::clone(&self.store), location.clone());
                let mut writer = ::parquet::arrow::AsyncArrowWriter::try_new(sink, schema, Some(properties))
                    .map_err(|e| E::from(StorageError::from(e)))?;
                let result = async {
                    while let Some(batch) = batches.next().await {
                        let batch = batch?;
                        each(&batch);
                        writer.write(&batch).await.map_err(|e| E::from(StorageError::from(e)))?;
                    }
                    writer.finish().await.map_err(|e| E::from(StorageError::from(e)))?;
                    Ok::<_, E>(())
                }
                .await;
                if let Err(error) = result {
                    // The upload never completes: nothing appears at `location`.
                    let _ = writer.into_inner().abort().await;
                    return Err(error);
                }
                // `finish` shut the sink down, which completed the upload.
                Ok(self.store.head(&location).await.map_err(|e| E::from(self.store_error()(e)))?.size)
            }
        }
    }
}

impl Layer {
    pub(super) fn store_error(&self) -> impl Fn(object_store::Error) -> StorageError + '_ {
        move |source| StorageError::ObjectStore { layer: self.config.name.clone(), source }
    }

    /// Where the layer keeps its files, as a string two layers share only
    /// if they store into the same place.
    pub(super) fn place(&self) -> String {
        match &self.backend {
            Backend::Fs { root, .. } => {
                format!("fs:{}", root.canonicalize().unwrap_or_else(|_| root.clone()).display())
            }
            Backend::ObjectStore => match S3Url::parse(&self.config.url) {
                Ok(url) => format!("s3:{}/{}/{}", url.endpoint, url.bucket, url.prefix),
                Err(_) => format!("s3:{}", self.config.url),
            },
        }
    }

    /// Checks that the layer answers now, within `timeout`: its directory
    /// exists, or its object store answers a request (a missing object is an
    /// answer). What `/ready` asks of every layer.
    pub async fn probe(&self, timeout: std::time::Duration) -> Result<(), String> {
        match &self.backend {
            Backend::Fs { root, disk } => {
                let disk = Arc::clone(disk);
                // A hung mount answers nothing; the probe answers in time.
                match tokio::time::timeout(timeout, blocking(root, move |root| disk.stat(root))).await {
                    Ok(Ok(stat)) if stat.is_dir => Ok(()),
                    Ok(Ok(_)) => Err(format!("{} is not a directory", root.display())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                }
            }
            Backend::ObjectStore => {
                let probe = object_store::path::Path::from("_hourglass_ready_probe");
                match tokio::time::timeout(timeout, self.store.head(&probe)).await {
                    Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                }
            }
        }
    }

    /// Deletes the file at `relative`; a file already gone is not an error.
    pub async fn delete(&self, relative: &str) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Fs { root, disk } => {
                let (path, disk) = (root.join(relative), Arc::clone(disk));
                blocking(&path, move |path| match disk.remove_file(path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    removed => removed,
                })
                .await
            }
            Backend::ObjectStore => match self.store.delete(&object_store::path::Path::from(relative)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.store_error()(e)),
            },
        }
    }

    /// Deletes every file under the directory `relative`, so that a crash
    /// cannot bring one back: on local disk the directories are synced (an
    /// object store's delete is durable when it answers). A directory
    /// already gone is not an error.
    pub async fn delete_dir_durably(&self, relative: &str) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Fs { root, disk } => {
                let (path, disk) = (root.join(relative), Arc::clone(disk));
                blocking(&path, move |path| match fs::remove_dir_all_durably(disk.as_ref(), path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    removed => removed,
                })
                .await
            }
            Backend::ObjectStore => self.delete_dir(relative).await,
        }
    }

    /// Deletes every file under the directory `relative` (on local disk, the
    /// directory too); one already gone is not an error.
    pub async fn delete_dir(&self, relative: &str) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Fs { root, disk } => {
                let (path, disk) = (root.join(relative), Arc::clone(disk));
                blocking(&path, move |path| match fs::remove_dir_all(disk.as_ref(), path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    removed => removed,
                })
                .await
            }
            Backend::ObjectStore => {
                for object in self.list_under(relative).await? {
                    self.delete(&object.relative).await?;
                }
                Ok(())
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
            Backend::Fs { root, disk } => {
                write_local_file(disk, root, relative, |mut file| async move {
                    while let Some(chunk) = chunks.next().await {
                        file.send(chunk.map_err(source.store_error())?).await?;
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
        // The store answers with what it has, which need not be the 8 bytes asked for.
        let (Some(length), Some(magic)) = (tail.get(..4), tail.get(4..8)) else {
            return Err(mismatch(format!("{relative}: the store sent {} bytes of its last 8", tail.len())));
        };
        if magic != b"PAR1" {
            return Err(mismatch(format!("{relative}: not a Parquet file (no PAR1 at its end)")));
        }
        let footer = u64::from(u32::from_le_bytes([length[0], length[1], length[2], length[3]]));
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

/// Runs the disk call `call` on `path` on a blocking thread, its error naming the path.
pub(super) async fn blocking<T: Send + 'static>(
    path: &Path,
    call: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    let owned = path.to_path_buf();
    let io = |source| StorageError::Io { path: path.display().to_string(), source };
    tokio::task::spawn_blocking(move || call(&owned)).await.map_err(|e| io(std::io::Error::other(e)))?.map_err(io)
}

/// What a file being written on local disk receives from async code: its
/// bytes in order, then the word that they are all there.
enum Chunk {
    Bytes(bytes::Bytes),
    End,
}

/// The async end of a file written on local disk by [`write_local_file`]:
/// bytes sent here are written by a blocking task, a few chunks behind.
pub(super) struct LocalFileSink {
    sender: tokio::sync::mpsc::Sender<Chunk>,
    relative: String,
}

impl LocalFileSink {
    /// Sends `bytes` to the file; fails if its writer stopped (its own error
    /// is what [`write_local_file`] returns then).
    pub(super) async fn send(&mut self, bytes: bytes::Bytes) -> Result<(), StorageError> {
        self.sender.send(Chunk::Bytes(bytes)).await.map_err(|_| StorageError::Io {
            path: self.relative.clone(),
            source: std::io::Error::other("the file's writer stopped"),
        })
    }
}

impl ::parquet::arrow::async_writer::AsyncFileWriter for LocalFileSink {
    fn write(&mut self, bytes: bytes::Bytes) -> futures::future::BoxFuture<'_, ::parquet::errors::Result<()>> {
        Box::pin(async move { self.send(bytes).await.map_err(|e| ::parquet::errors::ParquetError::External(e.into())) })
    }

    fn complete(&mut self) -> futures::future::BoxFuture<'_, ::parquet::errors::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Why a file being written on local disk was not put in place: its bytes
/// stopped coming before their end.
#[derive(Debug, thiserror::Error)]
#[error("the write was abandoned before its end")]
struct Abandoned;

fn is_abandoned(error: &std::io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<Abandoned>())
}

/// Chunks queued between a [`LocalFileSink`] and its writer: one, so the
/// next row group is encoded while the last is written. A write holds that
/// chunk, the one being written and a 1 MiB buffer (a merged row group can
/// be tens of MiB).
const CHUNKS_IN_FLIGHT: usize = 1;

/// Writes the file at `relative` under `root` on `disk` crash-safely from
/// async code: `fill` sends the bytes to a [`LocalFileSink`] and hands it
/// back, while a blocking task writes them with [`fs::write_atomic`]
/// (temporary file, fsync, rename, directory fsync), so after a crash the
/// file is whole or absent. Unless `fill` succeeds the file is not put in
/// place and the temporary file is removed. A caller cancelled after its
/// last byte may still have the file put in place, uncommitted: the orphan
/// sweep removes it. The writer holds a blocking thread for the whole
/// write. Returns the file's size.
async fn write_local_file<F, Fut>(
    disk: &Arc<dyn Disk>,
    root: &Path,
    relative: &str,
    fill: F,
) -> Result<u64, StorageError>
where
    F: FnOnce(LocalFileSink) -> Fut,
    Fut: std::future::Future<Output = Result<LocalFileSink, StorageError>>,
{
    let path = root.join(relative);
    let (sender, mut receiver) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let disk = Arc::clone(disk);
    let target = path.clone();
    let writer = tokio::task::spawn_blocking(move || {
        fs::write_atomic(disk.as_ref(), &target, |file| {
            let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
            loop {
                match receiver.blocking_recv() {
                    Some(Chunk::Bytes(bytes)) => std::io::Write::write_all(&mut file, &bytes)?,
                    Some(Chunk::End) => return std::io::Write::flush(&mut file),
                    // The bytes stopped before they were all there: no file.
                    None => return Err(std::io::Error::other(Abandoned)),
                }
            }
        })
    });
    let filled = fill(LocalFileSink { sender, relative: relative.to_owned() }).await;
    if let Ok(sink) = &filled {
        // If the writer stopped, its error says why.
        let _ = sink.sender.send(Chunk::End).await;
    }
    let io = |source| StorageError::Io { path: path.display().to_string(), source };
    let written = writer.await.map_err(|e| io(std::io::Error::other(e)))?;
    match (filled, written) {
        (Ok(_), Ok(size)) => Ok(size),
        // The bytes failed first: their error says why.
        (Err(e), Err(fs::AtomicWriteError::NotWritten(w))) if is_abandoned(&w) => Err(e),
        (_, Err(e)) => Err(io(e.into())),
        // Not reached: without the end, the writer puts nothing in place.
        (Err(e), Ok(_)) => Err(e),
    }
}
