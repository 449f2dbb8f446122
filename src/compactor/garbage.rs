//! Deleting files: replaced files once their grace period is over, and files
//! no catalog entry names (what a crash between writing a file and committing
//! it leaves behind).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::catalog::Catalog;
use crate::storage::fs::TEMP_PREFIX;
use crate::storage::{file_path_in_layer, Storage};

#[derive(Debug, Clone)]
struct Pending {
    due: Instant,
    layer: String,
    relative: String,
}

/// Files waiting for deletion, in memory: after a restart the orphan sweep
/// finds them, since the catalog no longer names them.
#[derive(Debug)]
pub(super) struct Garbage {
    grace: Duration,
    pending: Mutex<Vec<Pending>>,
}

impl Garbage {
    pub(super) fn new(grace: Duration) -> Self {
        Garbage { grace, pending: Mutex::new(Vec::new()) }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deletes `relative` on `layer` once the grace period has passed.
    pub(super) fn schedule(&self, layer: &str, relative: String) {
        let now = Instant::now();
        let due = now.checked_add(self.grace).unwrap_or_else(|| now + Duration::from_secs(86_400));
        self.pending().push(Pending { due, layer: layer.to_owned(), relative });
    }

    /// Files scheduled and not yet deleted.
    pub(super) fn waiting(&self) -> usize {
        self.pending().len()
    }

    /// Deletes the scheduled files whose time has come; a failed deletion is
    /// kept and tried again. Returns how many went and what failed.
    pub(super) async fn delete_due(&self, storage: &Storage) -> (u64, Vec<String>) {
        let now = Instant::now();
        let due: Vec<Pending> = {
            let mut pending = self.pending();
            let (due, waiting): (Vec<Pending>, Vec<Pending>) = pending.drain(..).partition(|p| p.due <= now);
            *pending = waiting;
            due
        };
        let mut deleted = 0;
        let mut errors = Vec::new();
        for file in due {
            let Some(layer) = storage.layer(&file.layer) else {
                errors.push(format!("deleting {}: layer '{}' is not configured", file.relative, file.layer));
                continue;
            };
            match layer.delete(&file.relative).await {
                Ok(()) => deleted += 1,
                Err(error) => {
                    errors.push(format!("deleting {} from layer '{}': {error}", file.relative, file.layer));
                    self.pending().push(file);
                }
            }
        }
        (deleted, errors)
    }

    /// Deletes, on every layer, the Parquet and temporary files of partition
    /// directories that no catalog entry names, are not waiting for deletion,
    /// and were last written longer than the grace period ago: a file being
    /// written, or written and about to be committed, is younger than that.
    /// Only tables named in `leased` (`<db>/<table>`) are swept.
    pub(super) async fn remove_orphans(
        &self,
        catalog: &Arc<dyn Catalog>,
        storage: &Storage,
        leased: &HashSet<String>,
    ) -> (u64, Vec<String>) {
        let mut removed = 0;
        let mut errors = Vec::new();
        // Every layer is listed before the catalog is read: a file committed
        // in between is then in the catalog, or too young to be judged.
        let mut listings = Vec::new();
        for layer in storage.layers() {
            match layer.list_partition_files().await {
                Ok(listed) => listings.push((layer, listed)),
                Err(error) => errors.push(format!("listing layer '{}': {error}", layer.name())),
            }
        }
        // A shared catalog is read afresh now, after the listing: its view
        // may be a poll behind.
        if let Err(error) = catalog.refresh().await {
            errors.push(format!("no file is swept: {error}"));
            return (removed, errors);
        }
        // One pass over the catalog: the tables it knows, and each file as
        // `(layer, path under the layer root)`.
        let mut tables: HashSet<String> = HashSet::new();
        let mut known: HashSet<(String, String)> = HashSet::new();
        for database in catalog.databases() {
            for table in catalog.tables(&database) {
                tables.insert(format!("{database}/{table}"));
                for partition in catalog.files(&database, &table, i64::MIN, i64::MAX) {
                    for file in partition.files {
                        known.insert((file.layer, file_path_in_layer(&database, &table, &file.path)));
                    }
                }
            }
        }
        // A catalog that names a layer the configuration lacks (a renamed
        // layer, say) would make that layer's files look unlisted: sweep nothing.
        if let Some((missing, _)) = known.iter().find(|(layer, _)| storage.layer(layer).is_none()) {
            errors.push(format!(
                "the catalog lists files on layer '{missing}', which is not configured (GIGAPI_LAYERS_<i>_NAME); \
                 no file is swept until it is"
            ));
            return (removed, errors);
        }
        let waiting: HashSet<(String, String)> =
            self.pending().iter().map(|p| (p.layer.clone(), p.relative.clone())).collect();
        let cutoff = SystemTime::now().checked_sub(self.grace).unwrap_or(SystemTime::UNIX_EPOCH);
        for (layer, listed) in listings {
            for object in listed {
                let name = object.relative.rsplit('/').next().unwrap_or_default();
                // Only names this server writes, in tables its catalog knows:
                // a bucket shared with other data keeps that data.
                let table_known = object.relative.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
                let key = (layer.name().to_owned(), object.relative.clone());
                if !tables.contains(&table_known)
                    || !leased.contains(&table_known)
                    || !(name.starts_with(TEMP_PREFIX) || is_data_file_name(name))
                    || known.contains(&key)
                    || waiting.contains(&key)
                    || object.modified > cutoff
                {
                    continue;
                }
                match layer.delete(&object.relative).await {
                    Ok(()) => {
                        tracing::info!(layer = layer.name(), file = %object.relative, "removed a file no catalog entry names");
                        removed += 1;
                    }
                    Err(error) => {
                        errors.push(format!("deleting {} from layer '{}': {error}", object.relative, layer.name()))
                    }
                }
            }
        }
        (removed, errors)
    }
}

/// Whether `name` is a data file name this server writes: `<uuid>.<level>.parquet`.
fn is_data_file_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".parquet") else { return false };
    let Some((id, level)) = stem.rsplit_once('.') else { return false };
    !level.is_empty() && level.bytes().all(|b| b.is_ascii_digit()) && uuid::Uuid::parse_str(id).is_ok()
}
