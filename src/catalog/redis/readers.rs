//! The live readers of a cluster in Redis (see
//! [`crate::catalog::ReaderRegistry`]): one sorted set of FlightSQL URLs by
//! their last heartbeat, kept by `alive.lua` as the writers' is.

use async_trait::async_trait;

use super::RedisCatalog;
use crate::catalog::{CatalogError, ReaderRegistry};

#[async_trait]
impl ReaderRegistry for RedisCatalog {
    async fn reader_heartbeat(&self, url: &str) -> Result<Vec<String>, CatalogError> {
        self.heartbeats(self.keys.readers(), url, "recording a reader's heartbeat").await
    }
}
