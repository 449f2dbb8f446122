//! The live readers of a cluster in Redis (see
//! [`crate::catalog::ReaderRegistry`]): one sorted set of FlightSQL URLs by
//! their last heartbeat, kept by `alive.lua` as the writers' is, and the
//! secret their workers ask for.

use async_trait::async_trait;

use super::{redis_error, RedisCatalog};
use crate::catalog::tokens::random_hex;
use crate::catalog::{CatalogError, ReaderRegistry};

#[async_trait]
impl ReaderRegistry for RedisCatalog {
    async fn reader_heartbeat(&self, url: &str) -> Result<Vec<String>, CatalogError> {
        self.heartbeats(self.keys.readers(), url, "recording a reader's heartbeat").await
    }

    async fn reader_leave(&self, url: &str) -> Result<(), CatalogError> {
        redis::cmd("ZREM")
            .arg(self.keys.readers())
            .arg(url)
            .query_async::<()>(&mut self.connection())
            .await
            .map_err(|e| redis_error("removing a stopping reader from the live readers", e))
    }

    async fn worker_secret(&self) -> Result<String, CatalogError> {
        let key = self.keys.worker_secret();
        // SET NX: of readers starting together, the first one's stands.
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(random_hex(32))
            .arg("NX")
            .query_async(&mut self.connection())
            .await
            .map_err(|e| redis_error("making the readers' worker secret", e))?;
        let secret: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.connection())
            .await
            .map_err(|e| redis_error("reading the readers' worker secret", e))?;
        secret.filter(|s| !s.is_empty()).ok_or_else(|| {
            CatalogError::Shared(format!(
                "{key} is empty or vanished right after it was set: is another tool deleting it?"
            ))
        })
    }
}
