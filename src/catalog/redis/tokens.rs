//! The token document (see `crate::catalog::tokens`) in Redis: one hash,
//! `<prefix>:tokens`, with its `version` and its `json`, replaced by the
//! same compare-and-set script as the relations document.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;

use super::keys::Keys;
use super::{connect, without_password, Unreachable};
use crate::catalog::tokens::{TokenDocument, TokenError, TokenLog};

/// The tokens of the cluster whose keys start with a prefix.
#[derive(Clone)]
pub struct RedisTokens {
    connection: ConnectionManager,
    key: String,
    shown: String,
    script: Script,
}

impl std::fmt::Debug for RedisTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokens").field("url", &self.shown).field("key", &self.key).finish()
    }
}

impl RedisTokens {
    /// Connects to the Redis at `url` (`GIGAPI_METADATA_URL`); keys start with `prefix`.
    pub async fn open(url: &str, prefix: &str) -> Result<RedisTokens, TokenError> {
        let connection = connect(url).await.map_err(|e| match e {
            Unreachable::Url(message) => TokenError::Io { context: "the Redis catalog".into(), message },
            Unreachable::Redis(context, e) => TokenError::Io { context, message: e.to_string() },
        })?;
        Ok(RedisTokens {
            connection,
            key: Keys::new(prefix).tokens(),
            shown: without_password(url),
            script: Script::new(include_str!("relations.lua")),
        })
    }

    /// One field of the tokens' hash, if it is there.
    async fn field<T: redis::FromRedisValue>(&self, field: &str, doing: &str) -> Result<Option<T>, TokenError> {
        redis::cmd("HGET")
            .arg(&self.key)
            .arg(field)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error(doing, e))
    }

    fn error(&self, doing: &str, e: redis::RedisError) -> TokenError {
        TokenError::Io { context: format!("{doing} in {} ({})", self.shown, self.key), message: e.to_string() }
    }
}

#[async_trait]
impl TokenLog for RedisTokens {
    async fn load(&self) -> Result<TokenDocument, TokenError> {
        match self.field::<String>("json", "reading the tokens").await? {
            None => Ok(TokenDocument::default()),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| TokenError::Corrupt { context: self.key.clone(), message: e.to_string() }),
        }
    }

    async fn version(&self) -> Result<u64, TokenError> {
        Ok(self.field::<u64>("version", "reading the tokens' version").await?.unwrap_or(0))
    }

    async fn store(&self, expected: u64, document: &TokenDocument) -> Result<bool, TokenError> {
        let json = serde_json::to_string(document)
            .map_err(|e| TokenError::Io { context: "encoding the tokens".into(), message: e.to_string() })?;
        // No files ride on this change: the script's deadline is off ('0').
        let (outcome, _): (String, String) = self
            .script
            .key(&self.key)
            .arg(expected)
            .arg(json)
            .arg("0")
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error("changing the tokens", e))?;
        Ok(outcome == "ok")
    }
}
