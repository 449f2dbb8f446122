//! Rules for database, table and column names.
//!
//! Database and table names become directory names under the data root, so these
//! rules are what keeps a client from reaching outside it.

use std::fmt;

/// The longest name accepted, in bytes; most file systems refuse longer file names.
pub const MAX_NAME_BYTES: usize = 255;

/// Directory names under the data root that belong to the server, not to a database.
pub const RESERVED_DATABASE_NAMES: &[&str] = &["_wal", "_tmp", "_catalog"];

/// What kind of name is being checked, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A database (line protocol `db`, v2 `bucket`).
    Database,
    /// A table (line protocol measurement).
    Table,
    /// A tag key.
    Tag,
    /// A field key.
    Field,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Database => "database",
            NameKind::Table => "measurement",
            NameKind::Tag => "tag key",
            NameKind::Field => "field key",
        })
    }
}

/// Why a name was refused; the message is what a client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{0} name is empty")]
    Empty(NameKind),
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("{0} name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong(NameKind),
    /// The name contains `/`, which would make it a path.
    #[error("{0} name {1:?} contains '/'")]
    Slash(NameKind, String),
    /// The name contains `..`, which could climb out of the data root.
    #[error("{0} name {1:?} contains '..'")]
    DotDot(NameKind, String),
    /// The name contains a control character (including NUL, tab and newline).
    #[error("{0} name {1:?} contains a control character")]
    Control(NameKind, String),
    /// `time` is the timestamp column and cannot be a tag or a field.
    #[error("{0} 'time' is reserved for the timestamp")]
    Time(NameKind),
    /// The name is `.` or belongs to the server.
    #[error("{0} name {1:?} is reserved")]
    Reserved(NameKind, String),
}

/// Checks a name of the given kind; see the module documentation for the rules.
pub fn check_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty(kind));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(kind));
    }
    if name.contains('/') {
        return Err(NameError::Slash(kind, name.to_owned()));
    }
    if name.contains("..") {
        return Err(NameError::DotDot(kind, name.to_owned()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control(kind, name.to_owned()));
    }
    match kind {
        NameKind::Tag | NameKind::Field if name == "time" => Err(NameError::Time(kind)),
        NameKind::Database | NameKind::Table if name == "." || name.starts_with('.') => {
            Err(NameError::Reserved(kind, name.to_owned()))
        }
        NameKind::Database if RESERVED_DATABASE_NAMES.contains(&name) => {
            Err(NameError::Reserved(kind, name.to_owned()))
        }
        _ => Ok(()),
    }
}
