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

    /// Parses an `Authorization` header value: `Basic`, `Token` or `Bearer`.
    pub fn parse_authorization(value: &str) -> Option<Credentials> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let rest = rest.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
                let decoded = String::from_utf8(decoded).ok()?;
                let (user, password) = decoded.split_once(':')?;
                Some(Credentials::Password { user: user.to_owned(), password: password.to_owned() })
            }
            "token" | "bearer" => Some(Credentials::Token(rest.to_owned())),
            _ => None,
        }
    }
}
