//! The relations document (see `crate::catalog::relations`) in Redis: one
//! hash, `<prefix>:relations`, with its `version` and its `json`, replaced
//! by a script only if its version is still the one the change was made on.

use super::{is_transient, RedisCatalog};
use std::time::SystemTime;

use crate::catalog::relations::{RelationError, RelationLog, StoreOutcome};
use async_trait::async_trait;

fn relation_error(context: &str, error: redis::RedisError) -> RelationError {
    if is_transient(&error) {
        RelationError::Unavailable(format!("{context}: the Redis catalog is unreachable ({error}); retry shortly"))
    } else {
        RelationError::Io { path: context.to_owned(), message: error.to_string() }
    }
}

#[async_trait]
impl RelationLog for RedisCatalog {
    async fn load(&self) -> Result<(u64, Option<String>), RelationError> {
        let (version, json): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.relations())
            .arg("version")
            .arg("json")
            .query_async(&mut self.connection())
            .await
            .map_err(|e| relation_error("reading the relations", e))?;
        Ok((version.unwrap_or(0), json))
    }

    async fn version(&self) -> Result<u64, RelationError> {
        let version: Option<u64> = redis::cmd("HGET")
            .arg(self.keys.relations())
            .arg("version")
            .query_async(&mut self.connection())
            .await
            .map_err(|e| relation_error("reading the relations' version", e))?;
        Ok(version.unwrap_or(0))
    }

    /// A reply lost to a cut connection leaves the outcome unknown: the
    /// statement fails with "retry", and the follower reads whichever
    /// document Redis holds. Files named by the change must go in within
    /// the commit deadline of their writing, on Redis's clock, as a file
    /// commit's do: later, the orphan sweep may have judged them.
    async fn store(
        &self,
        expected: u64,
        json: &str,
        files_since: Option<SystemTime>,
    ) -> Result<StoreOutcome, RelationError> {
        let deadline_ms = files_since
            .and_then(|since| since.checked_add(self.commit_deadline))
            .and_then(|deadline| deadline.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        let (outcome, _): (String, String) = self
            .relations_script
            .key(self.keys.relations())
            .arg(expected)
            .arg(json)
            .arg(deadline_ms.to_string())
            .invoke_async(&mut self.connection())
            .await
            .map_err(|e| relation_error("changing the relations", e))?;
        Ok(match outcome.as_str() {
            "ok" => StoreOutcome::Stored,
            "late" => StoreOutcome::Late,
            _ => StoreOutcome::Conflict,
        })
    }

    fn shared(&self) -> bool {
        true
    }
}
