//! Which database a request works in, from the places a client may name it
//! (a path, a query parameter, a body field, a gRPC header, a ticket, an
//! ingest command), decided the same way on every front.

use crate::catalog::names::{check_name, NameKind};
use crate::catalog::DEFAULT_DATABASE;

/// The database names a request carries, with where each came from.
#[derive(Debug, Default, Clone)]
pub(crate) struct DatabaseChoice {
    names: Vec<(String, String)>,
    /// The database when none is named: `default`, or a token's own.
    fallback: Option<String>,
}

/// Why a request's database cannot be used: the client's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DatabaseError(String);

impl DatabaseChoice {
    /// No name yet.
    pub(crate) fn new() -> DatabaseChoice {
        DatabaseChoice::default()
    }

    /// No name yet; a client limited to one database (a token) that names
    /// none works in its own rather than in `default`.
    pub(crate) fn for_access(access: &crate::access::Access) -> DatabaseChoice {
        DatabaseChoice { names: Vec::new(), fallback: access.only_database().map(str::to_owned) }
    }

    /// Adds the name given at `place` (a value that is missing or blank
    /// names nothing).
    pub(crate) fn named(mut self, place: impl Into<String>, value: Option<&str>) -> DatabaseChoice {
        if let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) {
            self.names.push((value.to_owned(), place.into()));
        }
        self
    }

    /// Whether any place named a database.
    pub(crate) fn is_named(&self) -> bool {
        !self.names.is_empty()
    }

    /// The first place's name wins (`default` when none), checked.
    pub(crate) fn first(self) -> Result<String, DatabaseError> {
        let fallback = self.fallback;
        checked(self.names.into_iter().next().map(|(name, _)| name).or(fallback))
    }

    /// The one name the request gives (`default` when none), checked; two
    /// places naming different databases are an error.
    pub(crate) fn only(self) -> Result<String, DatabaseError> {
        let fallback = self.fallback;
        let mut names = self.names.into_iter();
        let first = names.next();
        if let Some((first, first_place)) = &first {
            if let Some((other, place)) = names.find(|(name, _)| name != first) {
                return Err(DatabaseError(format!(
                    "the call names two databases: '{first}' ({first_place}) and '{other}' ({place})"
                )));
            }
        }
        checked(first.map(|(name, _)| name).or(fallback))
    }
}

fn checked(name: Option<String>) -> Result<String, DatabaseError> {
    let name = name.unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    check_name(NameKind::Database, &name).map_err(|e| DatabaseError(e.to_string()))?;
    Ok(name)
}
