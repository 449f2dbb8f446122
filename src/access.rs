//! What a client may do once it is known: everything (the configured user,
//! or a server without users), or one database at one privilege (a token).
//!
//! Every front resolves credentials to an [`Access`] and hands it down; the
//! checks live here and in the engine, once, so that a read token is refused
//! the same way over HTTP, Postgres and FlightSQL.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::errors::{Classified, ErrorKind};

/// How much a token may do in its database. Each privilege includes the
/// ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Privilege {
    /// Queries: SELECT, SHOW, DESCRIBE, EXPLAIN, metadata calls.
    Read,
    /// Also writes: line protocol, INSERT, COPY FROM STDIN, FlightSQL ingest.
    Write,
    /// Also statements that change the catalog: CREATE, ALTER, DROP.
    Admin,
}

impl Privilege {
    /// The privilege's name as the command line and the docs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Privilege::Read => "read",
            Privilege::Write => "write",
            Privilege::Admin => "admin",
        }
    }

    /// What a statement or request needing this privilege is called in errors.
    fn doing(self) -> &'static str {
        match self {
            Privilege::Read => "read",
            Privilege::Write => "write",
            Privilege::Admin => "change the catalog (CREATE, ALTER, DROP)",
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one request or connection may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Everything, on every database: the configured user, or every client
    /// of a server with no users.
    Full,
    /// One database, up to one privilege: a token.
    Database {
        /// The database it sees; it sees no other.
        name: String,
        /// What it may do there.
        privilege: Privilege,
        /// The token's id, for logs and errors.
        token: String,
    },
}

/// A request the access does not allow: 403, SQLSTATE 42501, gRPC
/// PERMISSION_DENIED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Classified for Denied {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Forbidden
    }

    fn sqlstate(&self) -> &'static str {
        "42501"
    }
}

impl Access {
    /// Whether `database` exists for this access: listings show it, and
    /// names in queries resolve in it.
    pub fn sees(&self, database: &str) -> bool {
        match self {
            Access::Full => true,
            Access::Database { name, .. } => name == database,
        }
    }

    /// The one database this access sees, if it is limited to one.
    pub fn only_database(&self) -> Option<&str> {
        match self {
            Access::Full => None,
            Access::Database { name, .. } => Some(name),
        }
    }

    /// Whether this access may do what needs `privilege` in `database`.
    pub fn require(&self, database: &str, privilege: Privilege) -> Result<(), Denied> {
        match self {
            Access::Full => Ok(()),
            Access::Database { name, token, .. } if name != database => Err(Denied(format!(
                "permission denied for database \"{database}\": token {token} is for database \"{name}\" only"
            ))),
            Access::Database { privilege: held, token, .. } if *held < privilege => Err(Denied(format!(
                "permission denied: token {token} may {} in \"{database}\" and cannot {}",
                held.doing(),
                privilege.doing()
            ))),
            Access::Database { .. } => Ok(()),
        }
    }

    /// Whether this access may do anything beyond one database: the
    /// server's own endpoints (compaction, fault points) need this.
    pub fn require_full(&self, what: &str) -> Result<(), Denied> {
        match self {
            Access::Full => Ok(()),
            Access::Database { token, .. } => {
                Err(Denied(format!("permission denied: {what} needs the configured user, not token {token}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(privilege: Privilege) -> Access {
        Access::Database { name: "db".into(), privilege, token: "t1".into() }
    }

    #[test]
    fn a_token_holds_its_privilege_and_those_below_in_its_database_only() {
        assert!(token(Privilege::Read).require("db", Privilege::Read).is_ok());
        assert!(token(Privilege::Read).require("db", Privilege::Write).is_err());
        assert!(token(Privilege::Write).require("db", Privilege::Write).is_ok());
        assert!(token(Privilege::Write).require("db", Privilege::Admin).is_err());
        assert!(token(Privilege::Admin).require("db", Privilege::Admin).is_ok());
        assert!(token(Privilege::Admin).require("other", Privilege::Read).is_err());
        assert!(token(Privilege::Admin).require_full("compaction").is_err());
        assert!(Access::Full.require("any", Privilege::Admin).is_ok());
        assert!(!token(Privilege::Admin).sees("other"));
    }
}
