//! How the errors of a distributed query are told apart: which ones mean a
//! worker was lost (retry), and which mean the readers do not share a
//! secret (no retry mends it). The signs are datafusion-distributed's and
//! tonic's, so they live here, with the rest of what knows the crate.

use datafusion::common::DataFusionError;

use super::security::NOT_OF_THE_CLUSTER;

/// Texts that mean a lost worker, wherever the error was met: the crate
/// passes on gRPC's `Unavailable` as text, says so in its own words when it
/// cannot connect, and a worker reading another relays the transport's
/// error as text.
const LOST_WORKER_SIGNS: &[&str] = &[
    "The service is currently unavailable",
    "Error connecting to Distributed DataFusion worker",
    "Error waiting for Distributed DataFusion channel",
    "tonic::transport::Error",
    "h2 protocol error",
];

/// Whether `error` says a worker of a distributed query could not be
/// reached, or went away while its task streamed (a broken pipe, a reset,
/// as tonic's or hyper's error). Storage errors (object_store, I/O) carry
/// none of these.
pub fn lost_a_worker(error: &DataFusionError) -> bool {
    let text = error.to_string();
    if LOST_WORKER_SIGNS.iter().any(|sign| text.contains(sign)) {
        return true;
    }
    let DataFusionError::External(root) = error.find_root() else { return false };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(root.as_ref());
    while let Some(e) = cause {
        if e.downcast_ref::<tonic::transport::Error>().is_some() {
            return true;
        }
        // A status the gRPC stack made itself (a worker's own errors come
        // back as DataFusion's): unavailable, or carrying the connection's
        // error (hyper's, h2's) as its source.
        if let Some(status) = e.downcast_ref::<tonic::Status>() {
            if status.code() == tonic::Code::Unavailable || std::error::Error::source(status).is_some() {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

/// Whether a worker refused this coordinator's secret: a cluster whose
/// readers do not share one, which no retry mends.
pub fn refused_our_secret(error: &DataFusionError) -> bool {
    error.to_string().contains(NOT_OF_THE_CLUSTER)
}
