//! A local layer as an object store read through a [`Disk`]: how queries,
//! merges and layer moves read the files of a simulated disk, so that crash
//! tests cover them. It only reads: a layer on local disk writes, copies and
//! deletes through the [`Disk`] itself (see [`super::Layer`]), so every
//! write of a test goes where its power cuts and faults apply.
//!
//! The real file system is read through object_store's own `LocalFileSystem`;
//! this store serves the simulated disk, whose files are small and whose
//! calls do not block: it calls the disk from async code, and reads a whole
//! file for every range.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::disk::{Disk, DiskStat};

const NAME: &str = "DiskStore";

/// The directory `root` of a [`Disk`], read as an object store.
#[derive(Debug)]
pub(crate) struct DiskStore {
    disk: Arc<dyn Disk>,
    root: PathBuf,
}

impl DiskStore {
    /// The files under `root` on `disk`.
    pub(crate) fn new(disk: Arc<dyn Disk>, root: &Path) -> DiskStore {
        DiskStore { disk, root: root.to_path_buf() }
    }

    fn path_of(&self, location: &StorePath) -> PathBuf {
        location.parts().fold(self.root.clone(), |path, part| path.join(part.as_ref()))
    }

    fn meta(&self, location: &StorePath) -> object_store::Result<ObjectMeta> {
        let stat = self.disk.stat(&self.path_of(location)).map_err(|e| store_error(location, e))?;
        if stat.is_dir {
            return Err(not_found(location, "a directory"));
        }
        Ok(object_meta(location.clone(), stat))
    }

    /// What a listing shows of `location`: nothing if it went since the
    /// directory was read, as object_store's `LocalFileSystem` does.
    fn listed(&self, location: &StorePath) -> object_store::Result<Option<ObjectMeta>> {
        match self.meta(location) {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every file under `prefix`, at any depth.
    fn walk(&self, prefix: &StorePath) -> object_store::Result<Vec<ObjectMeta>> {
        let files =
            super::fs::files_under(self.disk.as_ref(), &self.path_of(prefix)).map_err(|e| store_error(prefix, e))?;
        let mut found = Vec::new();
        for (entry, stat) in files {
            let Ok(relative) = entry.path.strip_prefix(&self.root) else { continue };
            let location = StorePath::from_iter(relative.iter().map(|part| part.to_string_lossy().into_owned()));
            found.push(object_meta(location, stat));
        }
        Ok(found)
    }
}

fn object_meta(location: StorePath, stat: DiskStat) -> ObjectMeta {
    ObjectMeta { location, last_modified: stat.modified.into(), size: stat.len, e_tag: None, version: None }
}

fn not_found(location: &StorePath, what: &str) -> object_store::Error {
    object_store::Error::NotFound { path: location.to_string(), source: what.into() }
}

fn store_error(location: &StorePath, error: io::Error) -> object_store::Error {
    if error.kind() == io::ErrorKind::NotFound {
        object_store::Error::NotFound { path: location.to_string(), source: Box::new(error) }
    } else {
        object_store::Error::Generic { store: NAME, source: Box::new(error) }
    }
}

fn read_only(what: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("{what}: a local layer writes through its disk, not its object store").into(),
    }
}

impl fmt::Display for DiskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NAME}({})", self.root.display())
    }
}

#[async_trait]
impl ObjectStore for DiskStore {
    async fn put_opts(&self, _: &StorePath, _: PutPayload, _: PutOptions) -> object_store::Result<PutResult> {
        Err(read_only("put"))
    }

    async fn put_multipart_opts(
        &self,
        _: &StorePath,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only("multipart put"))
    }

    async fn get_opts(&self, location: &StorePath, options: GetOptions) -> object_store::Result<GetResult> {
        let mut meta = self.meta(location)?;
        options.check_preconditions(&meta)?;
        // The size is the bytes read, whatever changed since the stat.
        let whole = if options.head {
            Bytes::new()
        } else {
            let bytes = Bytes::from(self.disk.read(&self.path_of(location)).map_err(|e| store_error(location, e))?);
            meta.size = bytes.len() as u64;
            bytes
        };
        let range = match &options.range {
            Some(range) => range
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic { store: NAME, source: Box::new(e) })?,
            None => 0..meta.size,
        };
        let data = if options.head { whole } else { slice(location, &whole, &range)? };
        let stream = futures::stream::once(futures::future::ready(Ok(data)));
        Ok(GetResult { payload: GetResultPayload::Stream(stream.boxed()), meta, range, attributes: Attributes::new() })
    }

    async fn get_ranges(&self, location: &StorePath, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        let bytes = self.disk.read(&self.path_of(location)).map_err(|e| store_error(location, e))?;
        let whole = Bytes::from(bytes);
        ranges
            .iter()
            .map(|range| {
                let range = GetRange::Bounded(range.clone())
                    .as_range(whole.len() as u64)
                    .map_err(|e| object_store::Error::Generic { store: NAME, source: Box::new(e) })?;
                slice(location, &whole, &range)
            })
            .collect()
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<StorePath>>,
    ) -> BoxStream<'static, object_store::Result<StorePath>> {
        locations.map(|_| Err(read_only("delete"))).boxed()
    }

    fn list(&self, prefix: Option<&StorePath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix = prefix.cloned().unwrap_or_default();
        let items: Vec<object_store::Result<ObjectMeta>> = match self.walk(&prefix) {
            Ok(found) => found.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(items).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&StorePath>) -> object_store::Result<ListResult> {
        let prefix = prefix.cloned().unwrap_or_default();
        let entries = match self.disk.read_dir(&self.path_of(&prefix)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(store_error(&prefix, e)),
        };
        let mut result = ListResult { common_prefixes: Vec::new(), objects: Vec::new() };
        for entry in entries {
            let location = prefix.clone().join(entry.name.as_str());
            if entry.is_dir {
                result.common_prefixes.push(location);
            } else if let Some(meta) = self.listed(&location)? {
                result.objects.push(meta);
            }
        }
        Ok(result)
    }

    async fn copy_opts(&self, _: &StorePath, _: &StorePath, _: CopyOptions) -> object_store::Result<()> {
        Err(read_only("copy"))
    }
}

/// `range` of a file's `bytes`, which the file must hold whole.
fn slice(location: &StorePath, bytes: &Bytes, range: &Range<u64>) -> object_store::Result<Bytes> {
    let (start, end) = (usize::try_from(range.start), usize::try_from(range.end));
    match (start, end) {
        (Ok(start), Ok(end)) if start <= end && end <= bytes.len() => Ok(bytes.slice(start..end)),
        _ => Err(object_store::Error::Generic {
            store: NAME,
            source: format!("{location}: bytes {range:?} of a file of {} bytes", bytes.len()).into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sim_disk::SimDisk;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn reads_lists_and_ranges_what_the_disk_holds_and_fails_with_it() {
        let disk = SimDisk::new(1);
        for dir in ["/layer", "/layer/db", "/layer/db/t"] {
            disk.create_dir(Path::new(dir)).expect("dir");
        }
        let mut file = disk.create(Path::new("/layer/db/t/a.parquet")).expect("file");
        io::Write::write_all(&mut file, b"0123456789").expect("write");
        drop(file);
        let store = DiskStore::new(Arc::new(disk.clone()), Path::new("/layer"));
        let location = StorePath::from("db/t/a.parquet");
        assert_eq!(store.get(&location).await.expect("get").bytes().await.expect("bytes").as_ref(), b"0123456789");
        assert_eq!(store.get_range(&location, 2..5).await.expect("range").as_ref(), b"234");
        assert_eq!(store.head(&location).await.expect("head").size, 10);
        // As object_store's own stores: a range past the end is cut short,
        // one that starts there is refused.
        assert_eq!(store.get_range(&location, 5..11).await.expect("range").as_ref(), b"56789");
        assert!(store.get_range(&location, 10..12).await.is_err());
        let listed: Vec<String> =
            store.list(None).map(|m| m.expect("meta").location.to_string()).collect::<Vec<_>>().await;
        assert_eq!(listed, vec!["db/t/a.parquet".to_owned()]);
        let level = store.list_with_delimiter(Some(&StorePath::from("db"))).await.expect("list");
        assert_eq!(level.common_prefixes, vec![StorePath::from("db/t")]);
        assert!(matches!(
            store.head(&StorePath::from("db/t/missing")).await,
            Err(object_store::Error::NotFound { .. })
        ));
        assert!(store.put(&location, PutPayload::from_static(b"x")).await.is_err(), "it only reads");
        disk.power_cut();
        assert!(store.get(&location).await.is_err(), "a disk without power answers nothing");
    }
}
