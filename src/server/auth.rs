//! The users every front checks credentials against.

use base64::Engine;

/// The configured users. With none, every front is open.
#[derive(Debug, Clone, Default)]
pub struct Users {
    user: Option<(String, String)>,
}

/// Credentials a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
            Credentials::Password { user: u, password: p } => {
                constant_time_eq(u.as_bytes(), user.as_bytes()) & constant_time_eq(p.as_bytes(), password.as_bytes())
            }
            Credentials::Token(token) => match token.split_once(':') {
                Some((u, p)) => {
                    constant_time_eq(u.as_bytes(), user.as_bytes())
                        & constant_time_eq(p.as_bytes(), password.as_bytes())
                }
                None => constant_time_eq(token.as_bytes(), password.as_bytes()),
            },
        }
    }

    /// Whether a request may go on: no users are configured, or it carries
    /// a user's credentials (a password, or `user:password` as a token), or
    /// a token a login on this server handed out (`tokens`). Every front
    /// admits requests through here.
    pub fn admits(&self, credentials: Option<&Credentials>, tokens: Option<&SessionTokens>) -> bool {
        if !self.enabled() {
            return true;
        }
        match credentials {
            Some(Credentials::Token(token)) if tokens.is_some_and(|tokens| tokens.check(token)) => true,
            Some(credentials) => self.check(credentials),
            None => false,
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
/// call instead of the password. Tokens live in memory: they end with the
/// process or after [`SessionTokens::LIFETIME`], and at most
/// [`SessionTokens::MAX`] are kept (the oldest go first).
#[derive(Debug, Default)]
pub struct SessionTokens {
    tokens: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl SessionTokens {
    /// How long a token stays valid after the login that made it.
    pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    /// The most tokens kept at once.
    pub const MAX: usize = 10_000;

    /// A new token for a user who just presented valid credentials.
    pub fn issue(&self) -> String {
        // Two version-4 UUIDs: 244 bits from the operating system's random source.
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let now = std::time::Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.retain(|_, issued| now.duration_since(*issued) < Self::LIFETIME);
        if tokens.len() >= Self::MAX {
            if let Some(oldest) = tokens.iter().min_by_key(|(_, issued)| **issued).map(|(t, _)| t.clone()) {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(token.clone(), now);
        token
    }

    /// Whether `token` was issued here and has not expired.
    pub fn check(&self, token: &str) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.get(token).is_some_and(|issued| issued.elapsed() < Self::LIFETIME)
    }
}
