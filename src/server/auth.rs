//! Who may connect, and what each may do: every front turns the credentials
//! a client presents into an [`Access`] here, and counts the failures.
//!
//! - The configured user (`HTTP_BASIC_AUTH_USERNAME`/`_PASSWORD`) may do
//!   everything; with no user configured, every front is open.
//! - A token made by `hourglass token create` (`crate::catalog::tokens`)
//!   may use one database at one privilege. It is accepted wherever a
//!   password is: as the password of any user name, or as a
//!   `Token`/`Bearer` credential.
//! - FlightSQL's handshake hands out session tokens ([`SessionTokens`])
//!   that carry the access of the login that made them.
//! - Failed logins are logged with the client's address and limited per
//!   address ([`LoginGuard`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::access::Access;
use crate::catalog::tokens::{constant_time_eq, Tokens};

/// The configured users. With none, every front is open.
#[derive(Debug, Clone, Default)]
pub struct Users {
    user: Option<(String, String)>,
}

/// Credentials a client presented. Its `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (Basic auth, v1 `u`/`p`).
    Password {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token (`Token x` / `Bearer x`): the password, or `user:password`.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { user, .. } => {
                f.debug_struct("Password").field("user", user).field("password", &"(hidden)").finish()
            }
            Credentials::Token(_) => f.write_str("Token((hidden))"),
        }
    }
}

/// Whether two secrets are equal, comparing their SHA-256 digests in
/// constant time, so that neither the position of a difference nor the
/// configured password's length shows in the time taken.
fn same_secret(a: &str, b: &str) -> bool {
    let digest = |text: &str| ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    constant_time_eq(digest(a).as_ref(), digest(b).as_ref())
}

impl Users {
    /// Users from `HTTP_BASIC_AUTH_USERNAME` / `HTTP_BASIC_AUTH_PASSWORD`.
    pub fn new(user: Option<String>, password: Option<String>) -> Self {
        match (user, password) {
            (Some(u), p) if !u.is_empty() => Users { user: Some((u, p.unwrap_or_default())) },
            _ => Users { user: None },
        }
    }

    /// Whether credentials are required.
    pub fn enabled(&self) -> bool {
        self.user.is_some()
    }

    /// The password of `user`, for protocols that verify a hash of it (Postgres'
    /// MD5 and SCRAM) rather than receive it.
    pub fn password_of(&self, user: &str) -> Option<&str> {
        match &self.user {
            Some((name, password)) if name == user => Some(password),
            _ => None,
        }
    }

    /// Whether `credentials` name a user and match its password.
    pub fn check(&self, credentials: &Credentials) -> bool {
        let Some((user, password)) = &self.user else {
            return true;
        };
        match credentials {
            Credentials::Password { user: u, password: p } => same_secret(u, user) & same_secret(p, password),
            Credentials::Token(token) => match token.split_once(':') {
                Some((u, p)) => same_secret(u, user) & same_secret(p, password),
                None => same_secret(token, password),
            },
        }
    }

    /// Parses an `Authorization` header value: `Basic`, `Token` or `Bearer`.
    /// Basic credentials are read with or without base64's `=` padding:
    /// arrow-go (ADBC's FlightSQL driver, Grafana's FlightSQL data source)
    /// sends them without.
    pub fn parse_authorization(value: &str) -> Option<Credentials> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let rest = rest.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let lenient = base64::engine::GeneralPurpose::new(
                    &base64::alphabet::STANDARD,
                    base64::engine::GeneralPurposeConfig::new()
                        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
                );
                let decoded = lenient.decode(rest).ok()?;
                let decoded = String::from_utf8(decoded).ok()?;
                let (user, password) = decoded.split_once(':')?;
                Some(Credentials::Password { user: user.to_owned(), password: password.to_owned() })
            }
            "token" | "bearer" => Some(Credentials::Token(rest.to_owned())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_with_or_without_padding() {
        let expected = Some(Credentials::Password { user: "u".into(), password: "pw".into() });
        // base64("u:pw") is "dTpwdw==".
        assert_eq!(Users::parse_authorization("Basic dTpwdw=="), expected);
        assert_eq!(Users::parse_authorization("Basic dTpwdw"), expected);
        assert_eq!(Users::parse_authorization("basic  dTpwdw= "), expected, "any padding, any case of the scheme");
        assert_eq!(Users::parse_authorization("Basic dTp*dw"), None, "not base64");
    }
}

/// Bearer tokens handed out by a login (FlightSQL's handshake), so that a
/// client that logged in with a password sends a random token on every later
/// call instead of the password. Each carries the access of its login.
/// Tokens live in memory: they end with the process or after
/// [`SessionTokens::LIFETIME`], and at most [`SessionTokens::MAX`] are kept
/// (the oldest go first).
#[derive(Debug, Default)]
pub struct SessionTokens {
    tokens: Mutex<HashMap<String, (Instant, Access)>>,
}

impl SessionTokens {
    /// How long a token stays valid after the login that made it.
    pub const LIFETIME: Duration = Duration::from_secs(24 * 3600);
    /// The most tokens kept at once.
    pub const MAX: usize = 10_000;

    /// Whether `token` has the form of the tokens [`Self::issue`] makes.
    pub fn looks_like_session(token: &str) -> bool {
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// A new token for a client who just logged in with `access`.
    pub fn issue(&self, access: Access) -> String {
        // Two version-4 UUIDs: 244 bits from the operating system's random source.
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.retain(|_, (issued, _)| now.duration_since(*issued) < Self::LIFETIME);
        if tokens.len() >= Self::MAX {
            if let Some(oldest) = tokens.iter().min_by_key(|(_, (issued, _))| *issued).map(|(t, _)| t.clone()) {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(token.clone(), (now, access));
        token
    }

    /// The access of `token`, if it was issued here and has not expired.
    pub fn check(&self, token: &str) -> Option<Access> {
        let tokens = self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.get(token).filter(|(issued, _)| issued.elapsed() < Self::LIFETIME).map(|(_, access)| access.clone())
    }
}

/// Why a client was not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It presented no credentials and the server needs them.
    Missing,
    /// Its credentials match no user and no token.
    Wrong,
    /// Its address failed to log in too often lately; it may try again after this long.
    Blocked(Duration),
}

impl Refusal {
    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            Refusal::Missing => "unauthorized: credentials are required (a user and password, or a token)".into(),
            Refusal::Wrong => "unauthorized: wrong user, password or token".into(),
            Refusal::Blocked(after) => {
                format!("too many failed logins from this address; try again in {} s", after.as_secs().max(1))
            }
        }
    }
}

/// Counts failed logins per client address and turns an address away,
/// whatever it presents, once it failed [`LoginGuard::limit`] times within
/// [`LoginGuard::WINDOW`]: a password or token cannot be guessed at speed.
#[derive(Debug)]
pub struct LoginGuard {
    limit: usize,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginGuard {
    /// The time failures are counted over.
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// The most addresses remembered: past it, those with no recent failure
    /// are forgotten first, then the ones whose last failure is oldest.
    pub const MAX_ADDRESSES: usize = 10_000;

    /// A guard that allows `limit` failures per address per [`Self::WINDOW`]; 0 turns it off.
    pub fn new(limit: usize) -> LoginGuard {
        LoginGuard { limit, failures: Mutex::default() }
    }

    /// How long `client` must wait before it may try again, if it is turned away now.
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let recent = failures.get(&client)?;
        let oldest = recent.front()?;
        (recent.len() >= self.limit).then(|| Self::WINDOW.saturating_sub(oldest.elapsed())).filter(|d| !d.is_zero())
    }

    /// Records a failed login of `user` from `client` on `front`, and logs it.
    pub fn failed(&self, client: Option<IpAddr>, front: &str, user: &str) {
        let Some(client) = client else {
            tracing::warn!(front, user, "failed login");
            return;
        };
        if self.limit == 0 {
            tracing::warn!(front, user, client = %client, "failed login");
            return;
        }
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !failures.contains_key(&client) && failures.len() >= Self::MAX_ADDRESSES {
            failures.retain(|_, times| times.back().is_some_and(|last| now.duration_since(*last) < Self::WINDOW));
            if failures.len() >= Self::MAX_ADDRESSES {
                let oldest = failures.iter().min_by_key(|(_, times)| times.back().copied()).map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
        }
        let recent = failures.entry(client).or_default();
        while recent.front().is_some_and(|first| now.duration_since(*first) >= Self::WINDOW) {
            recent.pop_front();
        }
        recent.push_back(now);
        while recent.len() > self.limit {
            recent.pop_front();
        }
        if recent.len() == self.limit {
            tracing::warn!(
                front,
                user,
                client = %client,
                limit = self.limit,
                window_s = Self::WINDOW.as_secs(),
                "failed login; the address is turned away until its failures are older than the window"
            );
        } else {
            tracing::warn!(front, user, client = %client, "failed login");
        }
    }
}

/// What every front asks: who is this, and what may they do.
#[derive(Debug)]
pub struct Authenticator {
    users: Users,
    tokens: Option<Arc<Tokens>>,
    sessions: SessionTokens,
    guard: LoginGuard,
}

impl Authenticator {
    /// The configured user, the tokens of the catalog, and at most
    /// `failures_per_minute` failed logins per address (0: no limit).
    pub fn new(users: Users, tokens: Option<Arc<Tokens>>, failures_per_minute: usize) -> Authenticator {
        Authenticator { users, tokens, sessions: SessionTokens::default(), guard: LoginGuard::new(failures_per_minute) }
    }

    /// Whether credentials are required: only when a user is configured.
    /// Tokens are checked only then; a server without a user is open.
    pub fn enabled(&self) -> bool {
        self.users.enabled()
    }

    /// The configured user.
    pub fn users(&self) -> &Users {
        &self.users
    }

    /// The sessions FlightSQL's handshake opened.
    pub fn sessions(&self) -> &SessionTokens {
        &self.sessions
    }

    /// The failed-login counter, for fronts whose password check happens
    /// elsewhere (Postgres' MD5 and SCRAM, in pgwire).
    pub fn guard(&self) -> &LoginGuard {
        &self.guard
    }

    /// What a client presenting `credentials` from `client` may do; a
    /// wrong credential is counted against the address and logged.
    pub async fn authenticate(
        &self,
        credentials: Option<&Credentials>,
        client: Option<IpAddr>,
        front: &str,
    ) -> Result<Access, Refusal> {
        if !self.enabled() {
            return Ok(Access::Full);
        }
        if let Some(after) = client.and_then(|ip| self.guard.blocked(ip)) {
            return Err(Refusal::Blocked(after));
        }
        let credentials = credentials.ok_or(Refusal::Missing)?;
        match self.resolve(credentials).await {
            Some(access) => Ok(access),
            None => {
                let user = match credentials {
                    Credentials::Password { user, .. } => user.as_str(),
                    Credentials::Token(_) => "(token)",
                };
                // A session bearer from before a restart (FlightSQL clients
                // keep theirs) is refused but not counted: the client logs
                // in again, and its address must not be turned away for it.
                if !matches!(credentials, Credentials::Token(token) if SessionTokens::looks_like_session(token)) {
                    self.guard.failed(client, front, user);
                }
                Err(Refusal::Wrong)
            }
        }
    }

    /// What `secret`, presented as a password or token, may do as a token
    /// of the catalog (`hourglass token create`).
    async fn token_access(&self, secret: &str) -> Option<Access> {
        self.tokens.as_ref()?.verify(secret).await
    }

    async fn resolve(&self, credentials: &Credentials) -> Option<Access> {
        match credentials {
            Credentials::Password { password, .. } => match self.users.check(credentials) {
                true => Some(Access::Full),
                false => self.token_access(password).await,
            },
            Credentials::Token(token) => {
                if let Some(access) = self.token_access(token).await {
                    return Some(access);
                }
                if let Some(access) = self.sessions.check(token) {
                    // A session opened with an API token ends when the token
                    // is revoked or expires, not 24 hours later.
                    return match &access {
                        Access::Database { token: id, .. } => match &self.tokens {
                            Some(tokens) if tokens.still_valid(id).await => Some(access),
                            _ => None,
                        },
                        Access::Full => Some(access),
                    };
                }
                self.users.check(credentials).then_some(Access::Full)
            }
        }
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[test]
    fn an_address_is_turned_away_after_too_many_failures_and_others_are_not() {
        let guard = LoginGuard::new(3);
        let (bad, good): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..2 {
            guard.failed(Some(bad), "test", "u");
        }
        assert_eq!(guard.blocked(bad), None, "two failures of three allowed");
        guard.failed(Some(bad), "test", "u");
        assert!(guard.blocked(bad).is_some_and(|d| d <= LoginGuard::WINDOW));
        assert_eq!(guard.blocked(good), None);
        assert_eq!(LoginGuard::new(0).blocked(bad), None);
    }
}
