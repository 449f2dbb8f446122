//! API tokens: a secret a client presents instead of the configured user's
//! password, limited to one database and one privilege.
//!
//! Only a SHA-256 hash of each token is stored, in one JSON document with a
//! version that grows by one per change, beside the catalog: in
//! `<root>/_catalog/tokens.json` on the local catalog, in Redis on the
//! shared one, so that every process of a cluster knows every token.
//! `hourglass token create|list|revoke` changes the document; servers read
//! it again when its version changes, at most [`Tokens::REFRESH`] after the
//! change, so a revoked token is refused by new requests, logins and the
//! sessions it opened within that time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::access::{Access, Privilege};
use crate::storage::disk::RealDisk;
use crate::storage::fs::{create_dir_all_synced, write_atomic_bytes, AtomicWriteError};

/// What every token starts with, so that a token is told from a password
/// without a lookup, and a leaked one is easy to find in a log or a repository.
pub const TOKEN_PREFIX: &str = "hgt_";

/// One token as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its public name, part of the token itself: what `list` shows and `revoke` takes.
    pub id: String,
    /// The database it may use.
    pub database: String,
    /// What it may do there.
    pub privilege: Privilege,
    /// SHA-256 of the whole token, in hex.
    pub hash: String,
    /// When it was made, in seconds since the Unix epoch.
    pub created: i64,
    /// When it stops working, in seconds since the Unix epoch; never if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// What it is for, as given at creation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl TokenRecord {
    /// Whether it has expired at `now` (seconds since the epoch).
    pub fn expired_at(&self, now: i64) -> bool {
        self.expires.is_some_and(|expires| expires <= now)
    }
}

/// Every token, at one version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenDocument {
    /// Grows by one per change; 0 before the first.
    pub version: u64,
    /// The tokens, oldest first.
    pub tokens: Vec<TokenRecord>,
}

/// Why the tokens could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The store could not be read or written.
    #[error("{context}: {message}")]
    Io {
        /// What was being done, and where.
        context: String,
        /// The cause.
        message: String,
    },
    /// The stored document is not one this version reads.
    #[error("{context} is damaged: {message}")]
    Corrupt {
        /// Where it is.
        context: String,
        /// The parse error.
        message: String,
    },
    /// No token has this id.
    #[error("no token has the id {0} (hourglass token list shows them)")]
    NotFound(String),
    /// Others changed the document at every try.
    #[error("the tokens kept changing under this change; try again")]
    Contended,
    /// As many tokens as are kept exist already.
    #[error("there are {0} tokens already, the most kept; revoke some first")]
    TooMany(usize),
    /// A new token's id is taken (drawn again).
    #[error("the new token's id is taken")]
    IdTaken,
}

/// Where the token document is kept.
#[async_trait]
pub trait TokenLog: Send + Sync + std::fmt::Debug {
    /// The stored document (the empty one at version 0 before the first token).
    async fn load(&self) -> Result<TokenDocument, TokenError>;

    /// The stored version alone: what a server polls.
    async fn version(&self) -> Result<u64, TokenError>;

    /// Stores `document` (whose version is `expected + 1`) if the stored
    /// version is still `expected`; false, with nothing changed, if not.
    async fn store(&self, expected: u64, document: &TokenDocument) -> Result<bool, TokenError>;
}

/// `<root>/_catalog/tokens.json`, replaced atomically on every change.
/// `hourglass token` changes it while the server runs, so a change takes
/// an exclusive lock on `tokens.lock` beside it for its read and write.
#[derive(Debug, Clone)]
pub struct TokenFile {
    dir: PathBuf,
}

impl TokenFile {
    /// The document of the data root `root`.
    pub fn new(root: &Path) -> TokenFile {
        TokenFile { dir: root.join("_catalog") }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("tokens.json")
    }

    fn read(path: &Path) -> Result<TokenDocument, TokenError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| TokenError::Corrupt { context: path.display().to_string(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenDocument::default()),
            Err(e) => Err(TokenError::Io { context: format!("reading {}", path.display()), message: e.to_string() }),
        }
    }
}

#[async_trait]
impl TokenLog for TokenFile {
    async fn load(&self) -> Result<TokenDocument, TokenError> {
        let path = self.path();
        tokio::task::spawn_blocking(move || TokenFile::read(&path))
            .await
            .map_err(|e| TokenError::Io { context: "reading the tokens".into(), message: e.to_string() })?
    }

    async fn version(&self) -> Result<u64, TokenError> {
        Ok(self.load().await?.version)
    }

    async fn store(&self, expected: u64, document: &TokenDocument) -> Result<bool, TokenError> {
        let (dir, path) = (self.dir.clone(), self.path());
        let bytes = serde_json::to_vec_pretty(document)
            .map_err(|e| TokenError::Io { context: "encoding the tokens".into(), message: e.to_string() })?;
        tokio::task::spawn_blocking(move || {
            let io = |context: String, e: &dyn std::fmt::Display| TokenError::Io { context, message: e.to_string() };
            create_dir_all_synced(&RealDisk, &dir).map_err(|e| io(format!("creating {}", dir.display()), &e))?;
            let lock_path = dir.join("tokens.lock");
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| io(format!("opening {}", lock_path.display()), &e))?;
            lock.lock().map_err(|e| io(format!("locking {}", lock_path.display()), &e))?;
            if TokenFile::read(&path)?.version != expected {
                return Ok(false);
            }
            match write_atomic_bytes(&RealDisk, &path, &bytes) {
                Ok(()) => Ok(true),
                Err(AtomicWriteError::NotWritten(e)) => Err(io(format!("writing {}", path.display()), &e)),
                Err(AtomicWriteError::OutcomeUnknown(e)) => Err(io(
                    format!(
                        "writing {} (it may or may not hold the change: run `hourglass token list`)",
                        path.display()
                    ),
                    &e,
                )),
            }
        })
        .await
        .map_err(|e| TokenError::Io { context: "writing the tokens".into(), message: e.to_string() })?
    }
}

/// A token just made: the secret, shown once, and what is stored of it.
#[derive(Clone)]
pub struct NewToken {
    /// The token to hand to the client. It is not stored anywhere.
    pub secret: String,
    /// What is stored.
    pub record: TokenRecord,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never goes to a log.
        f.debug_struct("NewToken").field("secret", &"(hidden)").field("record", &self.record).finish()
    }
}

/// The tokens a server checks credentials against, and the changes
/// `hourglass token` makes.
#[derive(Debug)]
pub struct Tokens {
    log: Arc<dyn TokenLog>,
    /// The tokens as last read: checks read it without waiting on the store.
    view: std::sync::RwLock<Arc<View>>,
    /// Held by the one check that reads the store again; the others go on
    /// with the view they have meanwhile.
    refreshing: tokio::sync::Mutex<()>,
}

/// The document as last read, by id.
#[derive(Debug)]
struct View {
    version: u64,
    /// Shared by the views of one version: a refresh that finds the version
    /// unchanged copies no token.
    by_id: Arc<HashMap<String, TokenRecord>>,
    /// When the store was last asked for its version; `None` before the first read.
    checked: Option<Instant>,
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// SHA-256 of `token` in hex.
fn hash_hex(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes` random bytes from the operating system, in hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buffer = vec![0u8; bytes];
    if ring::rand::SystemRandom::new().fill(&mut buffer).is_err() {
        // The operating system's random source failed; v4 UUIDs draw on it
        // through another path. Never a predictable token.
        for chunk in buffer.chunks_mut(16) {
            let uuid = uuid::Uuid::new_v4();
            chunk.copy_from_slice(&uuid.as_bytes()[..chunk.len()]);
        }
    }
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id within a token of the form `hgt_<id>_<secret>`.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some(id)
}

/// Whether two secrets are equal, in a time that does not tell where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// How long a server goes on with the tokens it read before it asks the
    /// store for its version again.
    pub const REFRESH: Duration = Duration::from_secs(1);
    /// The most tokens kept: each is a few hundred bytes in every process.
    pub const MAX: usize = 10_000;
    /// How often a change is tried again when others change the document meanwhile.
    const TRIES: usize = 20;

    /// The tokens of `log`, read on first use.
    pub fn new(log: Arc<dyn TokenLog>) -> Tokens {
        let empty = View { version: 0, by_id: Arc::default(), checked: None };
        Tokens { log, view: std::sync::RwLock::new(Arc::new(empty)), refreshing: tokio::sync::Mutex::new(()) }
    }

    /// What `presented` may do, if it is a token (of the form
    /// `hgt_<id>_<secret>`, told from a password without a lookup) that
    /// exists and has not expired. A store that cannot be read leaves the tokens last read in force.
    pub async fn verify(&self, presented: &str) -> Option<Access> {
        let id = token_id(presented)?;
        let view = self.current().await;
        // Hashed whether or not the id exists, so the time does not tell.
        let hash = hash_hex(presented);
        let record = view.by_id.get(id)?;
        let matches = constant_time_eq(hash.as_bytes(), record.hash.as_bytes());
        (matches && !record.expired_at(now_s())).then(|| Access::Database {
            name: record.database.clone(),
            privilege: record.privilege,
            token: record.id.clone(),
        })
    }

    /// Whether the token `id` still exists and has not expired: a session
    /// opened with it (FlightSQL's handshake) ends when the token does.
    pub async fn still_valid(&self, id: &str) -> bool {
        let view = self.current().await;
        view.by_id.get(id).is_some_and(|record| !record.expired_at(now_s()))
    }

    /// The view, read again from the store if it is older than [`Self::REFRESH`].
    /// One caller reads the store; the others use the view they have, unless
    /// there is none yet. A store that cannot be read leaves the tokens last
    /// read in force.
    async fn current(&self) -> Arc<View> {
        let view = self.snapshot();
        if view.checked.is_some_and(|checked| checked.elapsed() < Self::REFRESH) {
            return view;
        }
        let _refreshing = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) if view.checked.is_some() => return view,
            // The first read: wait for it rather than refuse every token.
            Err(_) => self.refreshing.lock().await,
        };
        let view = self.snapshot();
        if view.checked.is_some_and(|checked| checked.elapsed() < Self::REFRESH) {
            return view;
        }
        let fresh = match self.read(&view).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!("cannot read the tokens, going on with those read before: {e}");
                View { version: view.version, by_id: Arc::clone(&view.by_id), checked: Some(Instant::now()) }
            }
        };
        let fresh = Arc::new(fresh);
        *self.view.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::clone(&fresh);
        fresh
    }

    fn snapshot(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The store's tokens, read whole only when its version moved from `old`'s.
    async fn read(&self, old: &View) -> Result<View, TokenError> {
        let version = self.log.version().await?;
        if version == old.version && old.checked.is_some() {
            return Ok(View { version, by_id: Arc::clone(&old.by_id), checked: Some(Instant::now()) });
        }
        let document = self.log.load().await?;
        let by_id = Arc::new(document.tokens.into_iter().map(|record| (record.id.clone(), record)).collect());
        Ok(View { version: document.version, by_id, checked: Some(Instant::now()) })
    }

    /// Every token, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenRecord>, TokenError> {
        Ok(self.log.load().await?.tokens)
    }

    /// Makes a token for `database` with `privilege`, valid until `expires`
    /// (seconds since the epoch) if given. Expired tokens are dropped from
    /// the document on the way.
    pub async fn create(
        &self,
        database: &str,
        privilege: Privilege,
        expires: Option<i64>,
        description: &str,
    ) -> Result<NewToken, TokenError> {
        for _ in 0..Self::TRIES {
            let id = random_hex(6);
            let secret = format!("{TOKEN_PREFIX}{id}_{}", random_hex(32));
            let record = TokenRecord {
                id,
                database: database.to_owned(),
                privilege,
                hash: hash_hex(&secret),
                created: now_s(),
                expires,
                description: description.to_owned(),
            };
            let added = record.clone();
            let outcome = self
                .change(move |tokens| {
                    let now = now_s();
                    tokens.retain(|t| !t.expired_at(now));
                    if tokens.len() >= Self::MAX {
                        return Err(TokenError::TooMany(tokens.len()));
                    }
                    if tokens.iter().any(|t| t.id == added.id) {
                        return Err(TokenError::IdTaken);
                    }
                    tokens.push(added.clone());
                    Ok(())
                })
                .await;
            match outcome {
                Ok(()) => return Ok(NewToken { secret, record }),
                // 48 random bits met an existing id: draw another.
                Err(TokenError::IdTaken) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(TokenError::Contended)
    }

    /// Removes the token `id`; it stops working everywhere within [`Self::REFRESH`].
    pub async fn revoke(&self, id: &str) -> Result<TokenRecord, TokenError> {
        self.change(|tokens| {
            let index = tokens.iter().position(|t| t.id == id).ok_or_else(|| TokenError::NotFound(id.to_owned()))?;
            Ok(tokens.remove(index))
        })
        .await
    }

    /// Makes `edit` on the stored document and stores it, again on the new
    /// document if another change came first; what the stored edit returned.
    async fn change<T>(&self, edit: impl Fn(&mut Vec<TokenRecord>) -> Result<T, TokenError>) -> Result<T, TokenError> {
        for _ in 0..Self::TRIES {
            let mut document = self.log.load().await?;
            let expected = document.version;
            let outcome = edit(&mut document.tokens)?;
            document.version = expected + 1;
            if self.log.store(expected, &document).await? {
                return Ok(outcome);
            }
        }
        Err(TokenError::Contended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_is_checked_by_its_hash_and_stops_working_when_revoked() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let tokens = Tokens::new(Arc::new(TokenFile::new(dir.path())));
        let made = tokens.create("db", Privilege::Write, None, "a test").await.expect("created");
        let stored = std::fs::read_to_string(dir.path().join("_catalog/tokens.json")).expect("stored");
        assert!(!stored.contains(&made.secret), "the secret itself is never stored");
        let access = tokens.verify(&made.secret).await;
        assert_eq!(
            access,
            Some(Access::Database { name: "db".into(), privilege: Privilege::Write, token: made.record.id.clone() })
        );
        let mut wrong = made.secret.clone();
        wrong.pop();
        wrong.push('x');
        assert_eq!(tokens.verify(&wrong).await, None, "a changed secret");
        assert_eq!(tokens.verify("a password").await, None);

        // Another process (`hourglass token revoke`) revokes it.
        let other = Tokens::new(Arc::new(TokenFile::new(dir.path())));
        other.revoke(&made.record.id).await.expect("revoked");
        assert!(matches!(other.revoke(&made.record.id).await, Err(TokenError::NotFound(_))));
        tokio::time::sleep(Tokens::REFRESH).await;
        assert_eq!(tokens.verify(&made.secret).await, None, "revoked elsewhere, seen after a refresh");
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let tokens = Tokens::new(Arc::new(TokenFile::new(dir.path())));
        let made = tokens.create("db", Privilege::Read, Some(now_s() - 1), "").await.expect("created");
        assert_eq!(tokens.verify(&made.secret).await, None);
    }
}
