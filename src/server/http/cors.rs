//! Requests from web pages: a page of another origin may not write or run
//! SQL (`--cors-allow-origins` names those that may).
//!
//! A browser sends `Origin` with every cross-origin request, and a POST with a
//! `text/plain` body needs no CORS preflight, so without this check any page
//! a user opens could write line protocol or run `DROP VIEW` on a server the
//! browser can reach. curl and client libraries send no `Origin` and are not
//! affected.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{is_open, json_error, HttpState};

/// The origins whose pages may call the API, besides the server's own.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    any: bool,
    origins: Vec<String>,
}

impl AllowedOrigins {
    /// From `--cors-allow-origins`: `scheme://host[:port]` each, or `*`.
    pub fn new(origins: &[String]) -> AllowedOrigins {
        let origins: Vec<String> = origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        AllowedOrigins { any: origins.iter().any(|o| o == "*"), origins }
    }

    /// Whether a request that carries `origin` may go on: the origin is
    /// allowed, or it is the server's own (its host is the request's `Host`).
    fn allows(&self, origin: &str, headers: &HeaderMap) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.any || self.origins.contains(&origin) {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
        let origin_host = origin.split_once("://").map(|(_, host)| host);
        matches!((origin_host, host), (Some(origin_host), Some(host)) if origin_host == host)
    }
}

/// Refuses requests from pages of origins that are not allowed (403), and
/// marks the answers to allowed ones so the page may read them.
pub(super) async fn check_origin(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let allowed = origin.to_str().is_ok_and(|o| state.origins.allows(o, request.headers()));
    if !allowed {
        if is_open(request.uri().path()) {
            // Nothing to protect; without CORS headers the page cannot read the answer.
            return next.run(request).await;
        }
        return json_error(
            StatusCode::FORBIDDEN,
            format!(
                "requests from pages of {} are refused: allow the origin with --cors-allow-origins \
                 (HOURGLASS_CORS_ALLOW_ORIGINS)",
                origin.to_str().unwrap_or("another origin")
            ),
        );
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// CORS preflight for browser clients of an allowed origin (the check above
/// has refused the others).
pub(super) async fn preflight() -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Authorization"));
    response
}
