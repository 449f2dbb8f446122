//! Shared deletes in Redis (see [`crate::catalog::SharedDeletes`]): each
//! table's tombstones in one hash, keyed by the change sequence the delete
//! took (so a delete is ordered with the table's commits and a later one
//! always has a larger sequence), what each writer carried out in another,
//! and the writers' heartbeats in one sorted set. `deletes.lua` changes the
//! first two atomically; `alive.lua` the last.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::keys::TableKeys;
use super::{decode, redis_error, RedisCatalog};
use crate::catalog::{CatalogError, DeletePredicate, SharedDeletes, Tombstone, HEARTBEAT_EVERY};

/// How recent a writer's heartbeat must be for a delete to wait for it:
/// five of the heartbeats writers send every [`HEARTBEAT_EVERY`].
const ALIVE_FOR: Duration = Duration::from_secs(5 * HEARTBEAT_EVERY.as_secs());

/// How long the record of a delete keeps trying while Redis does not answer.
const RECORD_RETRY_FOR: Duration = Duration::from_secs(10);

impl RedisCatalog {
    /// A table's tombstones as its hash in Redis holds them, oldest first.
    pub(super) fn decode_tombstones(
        &self,
        keys: &TableKeys,
        stored: HashMap<u64, String>,
    ) -> Result<Vec<Arc<Tombstone>>, CatalogError> {
        let mut tombstones = Vec::with_capacity(stored.len());
        for (sequence, json) in stored {
            let mut tombstone: Tombstone = decode(&keys.tombstones(), &json)?;
            tombstone.sequence = sequence;
            tombstone.shared = true;
            tombstones.push(Arc::new(tombstone));
        }
        tombstones.sort_by_key(|t| t.sequence);
        Ok(tombstones)
    }

    /// Puts a table's tombstones in the view and tells who waits for them.
    pub(super) fn publish_tombstones_in_view(&self, database: &str, table: &str, tombstones: Vec<Arc<Tombstone>>) {
        if tombstones != self.view.tombstones(database, table) {
            self.view.set_tombstones(database, table, tombstones);
            self.tombstones_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Runs one operation of `deletes.lua` on a table.
    async fn delete_script(
        &self,
        database: &str,
        table: &str,
        what: &str,
        args: &[String],
    ) -> Result<(String, String), CatalogError> {
        let keys = self.keys.table(database, table);
        let mut invocation = self.deletes_script.prepare_invoke();
        invocation.key(keys.tombstones()).key(keys.seq()).key(keys.log()).key(keys.applied());
        for arg in args {
            invocation.arg(arg);
        }
        invocation
            .invoke_async(&mut self.connection())
            .await
            .map_err(|e| redis_error(&format!("{what} of {database}.{table}"), e))
    }

    /// Publishes a table's tombstones after this process changed them, as
    /// a commit publishes its partition: under the apply lock, from Redis
    /// (newer tombstones than the view's files are fine: they hide rows of
    /// older files only). The change is in Redis already: a failure here
    /// leaves it to the follower's next poll.
    async fn publish_tombstones(&self, database: &str, table: &str) {
        self.announce().await;
        let _state = self.apply_lock.lock().await;
        let keys = self.keys.table(database, table);
        let read: Result<HashMap<u64, String>, _> =
            redis::cmd("HGETALL").arg(keys.tombstones()).query_async(&mut self.connection()).await;
        match read.map_err(|e| redis_error("reading the deletes", e)).and_then(|s| self.decode_tombstones(&keys, s)) {
            Ok(tombstones) => self.publish_tombstones_in_view(database, table, tombstones),
            Err(error) => {
                tracing::warn!(%database, %table, %error, "the deletes reach this process's view at its next poll")
            }
        }
    }

    /// Forgets deletes every writer carried out and no file needs (see
    /// [`crate::catalog::Catalog::remove_tombstones`]).
    pub(super) async fn forget_tombstones(
        &self,
        database: &str,
        table: &str,
        sequences: &[u64],
    ) -> Result<(), CatalogError> {
        if sequences.is_empty() {
            return Ok(());
        }
        let mut args = vec!["remove".to_owned()];
        args.extend(sequences.iter().map(u64::to_string));
        self.delete_script(database, table, "forgetting carried-out deletes", &args).await?;
        self.publish_tombstones(database, table).await;
        Ok(())
    }

    async fn alive(&self, beating: &str) -> Result<Vec<String>, CatalogError> {
        self.heartbeats(self.keys.alive(), beating, "reading the writers' heartbeats").await
    }

    /// Beats `beating` (unless empty) into the heartbeats at `key` (see
    /// `alive.lua`), and returns the members that beat within [`ALIVE_FOR`].
    pub(super) async fn heartbeats(&self, key: String, beating: &str, what: &str) -> Result<Vec<String>, CatalogError> {
        let window = u64::try_from(ALIVE_FOR.as_millis()).unwrap_or(u64::MAX);
        self.alive_script
            .key(key)
            .arg(beating)
            .arg(window)
            .invoke_async(&mut self.connection())
            .await
            .map_err(|e| redis_error(what, e))
    }

    /// What each writer carried out of a table's deletes.
    async fn applied_by_writer(&self, database: &str, table: &str) -> Result<HashMap<String, u64>, CatalogError> {
        redis::cmd("HGETALL")
            .arg(self.keys.table(database, table).applied())
            .query_async(&mut self.connection())
            .await
            .map_err(|e| {
                redis_error(&format!("reading which writers carried out the deletes of {database}.{table}"), e)
            })
    }
}

#[async_trait]
impl SharedDeletes for RedisCatalog {
    async fn record(
        &self,
        database: &str,
        table: &str,
        predicate: DeletePredicate,
        issued_at: i64,
        max: usize,
    ) -> Result<Tombstone, CatalogError> {
        // The sequence is the script's to give: stored as the hash field.
        let unsequenced = Tombstone { sequence: 0, issued_at, predicate, shared: true };
        let id = uuid::Uuid::new_v4().to_string();
        let encode_error = |e: serde_json::Error| CatalogError::Encode {
            path: self.keys.table(database, table).tombstones(),
            message: e.to_string(),
        };
        let mut stored = serde_json::to_value(&unsequenced).map_err(encode_error)?;
        stored["id"] = serde_json::Value::String(id.clone());
        let json = serde_json::to_string(&stored).map_err(encode_error)?;
        let args = ["add".to_owned(), max.to_string(), json, id];
        // Retried under its id while Redis does not answer: a delete whose
        // reply was lost is recorded once, and answered as done.
        let deadline = std::time::Instant::now() + RECORD_RETRY_FOR;
        let mut delay = Duration::from_millis(20);
        let (outcome, detail) = loop {
            match self.delete_script(database, table, "recording a delete", &args).await {
                Ok(reply) => break reply,
                Err(CatalogError::Unavailable(message)) if std::time::Instant::now() < deadline => {
                    tracing::debug!(%message, "retrying the record of a delete");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(error) => return Err(error),
            }
        };
        if outcome == "full" {
            return Err(CatalogError::TooManyTombstones { database: database.into(), table: table.into(), max });
        }
        let sequence: u64 = detail.parse().map_err(|_| {
            CatalogError::Shared(format!("recording a delete of {database}.{table}: the script answered {detail:?}"))
        })?;
        self.publish_tombstones(database, table).await;
        Ok(Tombstone { sequence, ..unsequenced })
    }

    async fn applied_here(&self, database: &str, table: &str) -> Result<u64, CatalogError> {
        Ok(self.applied_by_writer(database, table).await?.get(&self.writer_id).copied().unwrap_or(0))
    }

    async fn set_applied_here(&self, database: &str, table: &str, through: u64) -> Result<(), CatalogError> {
        let args = ["applied".to_owned(), self.writer_id.clone(), through.to_string()];
        self.delete_script(database, table, "recording the deletes this writer carried out", &args).await?;
        Ok(())
    }

    async fn writers_behind(&self, database: &str, table: &str, sequence: u64) -> Result<Vec<String>, CatalogError> {
        let alive = self.alive("").await?;
        let applied = self.applied_by_writer(database, table).await?;
        Ok(alive.into_iter().filter(|w| applied.get(w).copied().unwrap_or(0) < sequence).collect())
    }

    async fn applied_everywhere(&self, database: &str, table: &str) -> Result<u64, CatalogError> {
        let writers: Vec<String> = redis::cmd("HKEYS")
            .arg(self.keys.writers())
            .query_async(&mut self.connection())
            .await
            .map_err(|e| redis_error("listing the writers", e))?;
        let applied = self.applied_by_writer(database, table).await?;
        Ok(writers.iter().map(|w| applied.get(w).copied().unwrap_or(0)).min().unwrap_or(u64::MAX))
    }

    async fn heartbeat(&self) -> Result<(), CatalogError> {
        self.alive(&self.writer_id).await.map(drop)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tombstones_changed.subscribe()
    }
}
