//! Why a query failed, classified by what the client should do about it.

use std::time::Duration;

use datafusion::common::DataFusionError;

use crate::errors::{caused_by_storage, Classified, ErrorKind};

/// Why a query failed, by what the client should do about it.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The database does not exist.
    #[error("database '{0}' not found")]
    UnknownDatabase(String),
    /// The statement would touch the file system or the network.
    #[error("{0}")]
    Forbidden(String),
    /// The statement is valid SQL that this engine does not run.
    #[error("{0}")]
    Unsupported(String),
    /// The SQL does not parse.
    #[error("{0}")]
    Syntax(String),
    /// A table the SQL names does not exist.
    #[error("{0}")]
    UnknownTable(String),
    /// A column the SQL names does not exist.
    #[error("{0}")]
    UnknownColumn(String),
    /// The SQL is wrong in another way: a type error, a bad argument.
    #[error("{0}")]
    Plan(String),
    /// A value cannot be converted or computed: a bad cast, division by zero.
    #[error("{message}")]
    InvalidData {
        /// What went wrong.
        message: String,
        /// The SQLSTATE of the problem (class 22).
        sqlstate: &'static str,
    },
    /// A write (`INSERT`, `COPY`) or a catalog change was refused: a schema
    /// conflict, a bad row, a full buffer. Kind and SQLSTATE come from the
    /// component that refused it.
    #[error("{message}")]
    Write {
        /// What went wrong.
        message: String,
        /// The SQLSTATE of the problem.
        sqlstate: &'static str,
        /// What kind of failure it is.
        kind: ErrorKind,
        /// The row of the write it is about (from 1) and what is wrong with
        /// it, when one row is to blame.
        bad_row: Option<(usize, String)>,
    },
    /// More queries are running and waiting than the server admits.
    #[error(
        "too many queries: {running} running and {queued} waiting (HOURGLASS_MAX_CONCURRENT_QUERIES, \
         HOURGLASS_MAX_QUEUED_QUERIES); retry shortly"
    )]
    Busy {
        /// Queries running.
        running: usize,
        /// Queries waiting for a slot.
        queued: usize,
    },
    /// A query waited in the admission queue longer than it may.
    #[error(
        "too many queries: waited {waited_s} s for one of {running} query slots \
         (HOURGLASS_MAX_CONCURRENT_QUERIES, HOURGLASS_QUERY_QUEUE_TIMEOUT_S); retry shortly"
    )]
    QueuedTooLong {
        /// Queries running.
        running: usize,
        /// Seconds it waited.
        waited_s: f64,
    },
    /// The query needed more memory than it may use.
    #[error("the query needs more memory than HOURGLASS_QUERY_MEMORY_BYTES allows: {0}")]
    ResourcesExhausted(String),
    /// Reading the data failed: the object store or the disk is not
    /// available now.
    #[error("reading the data failed, retry later: {0}")]
    Storage(String),
    /// A reader a distributed query was spread over could not be reached or
    /// went away while it ran: the query can be retried (a reader that is
    /// gone stops being sent work within seconds).
    #[error("a reader this query was spread over could not be reached; retry: {0}")]
    WorkerLost(String),
    /// The query ran past its time limit.
    #[error("the query ran longer than {0:?} (HOURGLASS_QUERY_TIMEOUT_S) and was cancelled")]
    Timeout(Duration),
    /// The client cancelled the query (Postgres CancelRequest).
    #[error("canceling statement due to user request")]
    Cancelled,
    /// The query failed while running, because of its data or arguments.
    #[error("{0}")]
    Execution(String),
    /// The engine failed: a fault of the server, not of the query.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The marker error a timed-out stream ends with.
#[derive(Debug, thiserror::Error)]
#[error("the query ran longer than {0:?} (HOURGLASS_QUERY_TIMEOUT_S) and was cancelled")]
pub(super) struct QueryTimeout(pub(super) Duration);

/// The marker error a cancelled stream ends with.
#[derive(Debug, thiserror::Error)]
#[error("canceling statement due to user request")]
pub(super) struct QueryCancelled;

impl QueryError {
    /// Classifies an error from DataFusion.
    pub fn from_datafusion(error: DataFusionError, planning: bool) -> QueryError {
        use arrow::error::ArrowError;
        use datafusion::common::SchemaError;
        let root = error.find_root();
        let data = |sqlstate| QueryError::InvalidData { message: strip_prefix(&root.to_string()), sqlstate };
        match root {
            DataFusionError::ResourcesExhausted(message) => QueryError::ResourcesExhausted(message.clone()),
            DataFusionError::External(e) if e.downcast_ref::<QueryTimeout>().is_some() => {
                QueryError::Timeout(e.downcast_ref::<QueryTimeout>().map(|t| t.0).unwrap_or_default())
            }
            DataFusionError::External(e) if e.downcast_ref::<QueryCancelled>().is_some() => QueryError::Cancelled,
            // The table writer's own errors, passed through DataFusion's sink.
            DataFusionError::External(e) if e.downcast_ref::<QueryError>().is_some() => {
                match e.downcast_ref::<QueryError>() {
                    Some(inner) => QueryError::refused(inner),
                    None => QueryError::Internal(root.to_string()),
                }
            }
            _ if refused_our_secret(&error) => QueryError::Internal(
                "another reader's worker refused this reader's worker secret: the readers do not share one \
                 (<prefix>:worker_secret changed while some ran); restart all the readers together"
                    .into(),
            ),
            _ if lost_a_worker(&error) => QueryError::WorkerLost(strip_prefix(&root.to_string())),
            _ if caused_by_storage(&error) => QueryError::Storage(strip_prefix(&root.to_string())),
            DataFusionError::SQL(..) => QueryError::Syntax(strip_prefix(&root.to_string())),
            DataFusionError::SchemaError(e, _) if matches!(**e, SchemaError::FieldNotFound { .. }) => {
                QueryError::UnknownColumn(strip_prefix(&root.to_string()))
            }
            // DataFusion has no typed error for a missing table; its message is stable.
            DataFusionError::Plan(message) if message.starts_with("table '") && message.ends_with("' not found") => {
                QueryError::UnknownTable(message.clone())
            }
            DataFusionError::ArrowError(e, _) => match **e {
                ArrowError::CastError(_) | ArrowError::ParseError(_) => data("22P02"),
                ArrowError::DivideByZero => data("22012"),
                ArrowError::ArithmeticOverflow(_) => data("22003"),
                _ if planning => QueryError::Plan(strip_prefix(&error.to_string())),
                _ => QueryError::Execution(strip_prefix(&error.to_string())),
            },
            DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
                QueryError::Plan(strip_prefix(&root.to_string()))
            }
            DataFusionError::NotImplemented(message) => QueryError::Unsupported(message.clone()),
            DataFusionError::Internal(message) => QueryError::Internal(message.clone()),
            _ if planning => QueryError::Plan(strip_prefix(&error.to_string())),
            _ => QueryError::Execution(strip_prefix(&error.to_string())),
        }
    }

    /// A refused write or catalog change, as the component that refused it
    /// classified it.
    pub fn refused(error: &dyn Classified) -> QueryError {
        QueryError::Write {
            message: error.to_string(),
            sqlstate: error.sqlstate(),
            kind: error.kind(),
            bad_row: error.bad_row(),
        }
    }

    /// A write refused because this server's mode takes none.
    pub(crate) fn read_only(what: &str) -> QueryError {
        QueryError::Unsupported(format!(
            "{what} is not available: this server does not take writes (GIGAPI_MODE); send it to a writeonly or aio \
             process"
        ))
    }
}

impl Classified for QueryError {
    fn kind(&self) -> ErrorKind {
        match self {
            QueryError::UnknownDatabase(_) => ErrorKind::NotFound,
            QueryError::Forbidden(_) => ErrorKind::Forbidden,
            QueryError::Unsupported(_) => ErrorKind::Unsupported,
            QueryError::UnknownTable(_) | QueryError::UnknownColumn(_) => ErrorKind::Missing,
            QueryError::Syntax(_) | QueryError::Plan(_) | QueryError::InvalidData { .. } | QueryError::Execution(_) => {
                ErrorKind::Invalid
            }
            QueryError::Write { kind, .. } => *kind,
            QueryError::Busy { .. } | QueryError::QueuedTooLong { .. } => ErrorKind::Busy,
            QueryError::ResourcesExhausted(_) => ErrorKind::OutOfMemory,
            QueryError::Storage(_) | QueryError::WorkerLost(_) => ErrorKind::Unavailable,
            QueryError::Timeout(_) => ErrorKind::Timeout,
            QueryError::Cancelled => ErrorKind::Cancelled,
            QueryError::Internal(_) => ErrorKind::Internal,
        }
    }

    fn bad_row(&self) -> Option<(usize, String)> {
        match self {
            QueryError::Write { bad_row, .. } => bad_row.clone(),
            _ => None,
        }
    }

    fn sqlstate(&self) -> &'static str {
        match self {
            QueryError::UnknownDatabase(_) => "3D000",
            QueryError::Forbidden(_) => "42501",
            QueryError::Unsupported(_) => "0A000",
            QueryError::Syntax(_) => "42601",
            QueryError::UnknownTable(_) => "42P01",
            QueryError::UnknownColumn(_) => "42703",
            QueryError::Plan(_) => "42000",
            QueryError::InvalidData { sqlstate, .. } | QueryError::Write { sqlstate, .. } => sqlstate,
            QueryError::Busy { .. } | QueryError::QueuedTooLong { .. } => "53300",
            QueryError::ResourcesExhausted(_) => "53200",
            QueryError::Storage(_) => "58030",
            // connection_failure: the query's connection to a worker.
            QueryError::WorkerLost(_) => "08006",
            QueryError::Timeout(_) | QueryError::Cancelled => "57014",
            QueryError::Execution(_) => "22000",
            QueryError::Internal(_) => "XX000",
        }
    }
}

/// Whether `error` says a worker of a distributed query was lost (see
/// [`super::distributed::errors::lost_a_worker`]).
fn lost_a_worker(error: &DataFusionError) -> bool {
    #[cfg(feature = "distributed")]
    return super::distributed::errors::lost_a_worker(error);
    #[cfg(not(feature = "distributed"))]
    return {
        let _ = error;
        false
    };
}

/// Whether a worker refused this coordinator's secret (see
/// [`super::distributed::errors::refused_our_secret`]).
fn refused_our_secret(error: &DataFusionError) -> bool {
    #[cfg(feature = "distributed")]
    return super::distributed::errors::refused_our_secret(error);
    #[cfg(not(feature = "distributed"))]
    return {
        let _ = error;
        false
    };
}

/// DataFusion prefixes messages with the error kind ("Error during planning: ");
/// clients want the problem.
pub(super) fn strip_prefix(message: &str) -> String {
    for prefix in ["Error during planning: ", "SQL error: ", "Schema error: ", "Execution error: ", "Arrow error: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
    message.to_owned()
}

impl From<crate::access::Denied> for QueryError {
    fn from(denied: crate::access::Denied) -> Self {
        QueryError::Forbidden(denied.0)
    }
}

#[cfg(all(test, feature = "distributed"))]
mod tests {
    use super::*;

    fn classified(error: DataFusionError) -> QueryError {
        QueryError::from_datafusion(error, false)
    }

    fn external(status: tonic::Status) -> DataFusionError {
        DataFusionError::External(Box::new(status))
    }

    /// Every way a worker's loss reached a coordinator in the scale-out
    /// test, and what must not pass for one.
    #[test]
    fn a_lost_worker_is_told_from_other_errors() {
        let broken = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stream closed because of a broken pipe");
        let lost = [
            external(tonic::Status::unavailable("tcp connect error")),
            // A status the stack made from the connection's error.
            external(tonic::Status::from_error(Box::new(broken))),
            // Relayed as text by a worker that read another.
            DataFusionError::Execution("h2 protocol error: error reading a body from connection".into()),
            DataFusionError::Context(
                "connecting".into(),
                Box::new(DataFusionError::Execution(
                    "Error connecting to Distributed DataFusion worker on 'http://127.0.0.1:1/': transport error"
                        .into(),
                )),
            ),
        ];
        for error in lost {
            let shown = error.to_string();
            assert!(matches!(classified(error), QueryError::WorkerLost(_)), "{shown}");
        }
        let not_lost = [
            external(tonic::Status::invalid_argument("bad plan")),
            DataFusionError::Execution("Divide by zero error".into()),
        ];
        for error in not_lost {
            let shown = error.to_string();
            assert!(!matches!(classified(error), QueryError::WorkerLost(_)), "{shown}");
        }
        // A secret the worker does not share: the cluster's fault, no retry mends it.
        let refused = external(tonic::Status::unauthenticated(crate::query::distributed::security::NOT_OF_THE_CLUSTER));
        let QueryError::Internal(message) = classified(refused) else { panic!("not an internal error") };
        assert!(message.contains("restart all the readers together"), "{message}");
    }
}
