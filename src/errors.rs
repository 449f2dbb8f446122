//! What a client should do about a failure, decided once next to the error
//! types and read by every front.
//!
//! Each error type of the engine and the write path says which [`ErrorKind`]
//! it is (and its Postgres SQLSTATE, the most detailed code there is). The
//! fronts turn the kind into their protocol's answer with one table each
//! (`server::status`), so the same failure gets the matching answer on HTTP,
//! FlightSQL and the Postgres wire: a storage outage is 503 / `Unavailable` /
//! 58030 everywhere, a bad query 400 / `InvalidArgument` / 42xxx.

use std::fmt;

/// Whose fault a failure is, which decides whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong: fix it; sending it again fails again.
    Client,
    /// The server cannot do it now (busy, a dependency down): retry later.
    Retry,
    /// The server failed: an operator has to look.
    Server,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Client => "client",
            ErrorClass::Retry => "retry",
            ErrorClass::Server => "server",
        })
    }
}

/// What went wrong, in the few kinds the fronts answer differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something the wrong way (HTTP 400).
    Invalid,
    /// A database the request names does not exist (HTTP 404).
    NotFound,
    /// A table or column the request names does not exist (HTTP 400; gRPC
    /// `NotFound`).
    Missing,
    /// The request is refused on principle: file access from SQL, a write to
    /// a read-only server (HTTP 403).
    Forbidden,
    /// Valid, but this server does not do it (HTTP 400; gRPC `Unimplemented`).
    Unsupported,
    /// The request is larger than a limit allows (HTTP 413).
    TooLarge,
    /// Too many queries or connections at once: retry shortly (HTTP 429).
    Busy,
    /// The query needs more memory than the server lets it use (HTTP 429).
    OutOfMemory,
    /// Something the server needs is not available now: the object store,
    /// room in the write buffer, a server that is shutting down (HTTP 503).
    Unavailable,
    /// The disk is full: the write was refused whole and may be sent again
    /// once space is freed (HTTP 507).
    StorageFull,
    /// The query ran past its time limit (HTTP 504).
    Timeout,
    /// The client cancelled the query (HTTP 499).
    Cancelled,
    /// The server failed (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// Whose fault it is.
    pub fn class(self) -> ErrorClass {
        match self {
            ErrorKind::Invalid
            | ErrorKind::NotFound
            | ErrorKind::Missing
            | ErrorKind::Forbidden
            | ErrorKind::Unsupported
            | ErrorKind::TooLarge
            | ErrorKind::Cancelled => ErrorClass::Client,
            ErrorKind::Busy
            | ErrorKind::OutOfMemory
            | ErrorKind::Unavailable
            | ErrorKind::StorageFull
            | ErrorKind::Timeout => ErrorClass::Retry,
            ErrorKind::Internal => ErrorClass::Server,
        }
    }
}

/// An error every front can answer: its kind and its SQLSTATE.
pub trait Classified: std::error::Error {
    /// What kind of failure it is.
    fn kind(&self) -> ErrorKind;

    /// The Postgres SQLSTATE: how Postgres clients tell a user's mistake
    /// (classes 22, 23, 42) from a retry (53, 57, 58) and a server fault (XX).
    fn sqlstate(&self) -> &'static str;

    /// Whose fault it is.
    fn class(&self) -> ErrorClass {
        self.kind().class()
    }

    /// For a write refused because of one of its rows: that row (from 1,
    /// within the write) and what is wrong with it, so that a front can
    /// point at the line of the client's input instead.
    fn bad_row(&self) -> Option<(usize, String)> {
        None
    }
}

/// Whether an error, or any error it was caused by, is a storage failure
/// (the object store or the local disk): what makes a query fail with
/// "retry later" rather than blame the query.
///
/// Errors that keep their cause are recognised by type. Some do not: the
/// Parquet reader turns a failed fetch into text ("Failed to fetch metadata
/// for file ...: Object Store error: ..."), so the text is read too, for the
/// prefixes DataFusion gives object store and I/O errors.
pub fn caused_by_storage(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    // Bounded: a cyclic chain would otherwise never end.
    for _ in 0..32 {
        let Some(error) = current else { break };
        if error.is::<object_store::Error>() || error.is::<std::io::Error>() {
            return true;
        }
        current = error.source();
    }
    let text = error.to_string();
    ["Object Store error: ", "IO error: "].iter().any(|prefix| text.contains(prefix))
}
