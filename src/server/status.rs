//! The answer every front gives each kind of failure: one table for HTTP
//! status codes and one for gRPC codes, so the same failure gets the
//! matching answer on every front (the Postgres front sends the error's own
//! SQLSTATE). See [`crate::errors`].

use axum::http::StatusCode;

use crate::errors::ErrorKind;

/// The HTTP status of a failure.
pub(crate) fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid | ErrorKind::Missing | ErrorKind::Unsupported => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Busy | ErrorKind::OutOfMemory => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        // nginx's "client closed request": no standard code says "you cancelled it".
        ErrorKind::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Seconds a client should wait before it retries, for failures worth
/// retrying soon (HTTP `Retry-After`).
pub(crate) fn retry_after_s(kind: ErrorKind) -> Option<u32> {
    match kind {
        ErrorKind::Busy | ErrorKind::OutOfMemory | ErrorKind::Unavailable => Some(1),
        // Space is freed by an operator or by the persister and compactor, not in a moment.
        ErrorKind::StorageFull => Some(10),
        _ => None,
    }
}

/// The gRPC code of a failure.
pub(crate) fn grpc_code(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::Invalid => tonic::Code::InvalidArgument,
        ErrorKind::NotFound | ErrorKind::Missing => tonic::Code::NotFound,
        ErrorKind::Forbidden => tonic::Code::PermissionDenied,
        ErrorKind::Unsupported => tonic::Code::Unimplemented,
        ErrorKind::TooLarge | ErrorKind::Busy | ErrorKind::OutOfMemory | ErrorKind::StorageFull => {
            tonic::Code::ResourceExhausted
        }
        ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::Timeout => tonic::Code::DeadlineExceeded,
        ErrorKind::Cancelled => tonic::Code::Cancelled,
        ErrorKind::Internal => tonic::Code::Internal,
    }
}
