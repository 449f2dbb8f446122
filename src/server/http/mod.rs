//! The HTTP front: InfluxDB-compatible writes, health, ping and metrics.

mod query;
mod write;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::auth::{Credentials, Users};
use crate::compactor::Compactor;
use crate::config::Mode;
use crate::ingest::Ingester;
use crate::metrics::Metrics;
use crate::query::QueryEngine;

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The write path; `None` in modes that take no writes.
    pub ingester: Option<Arc<Ingester>>,
    /// The query engine; `None` in modes that answer no queries.
    pub engine: Option<Arc<QueryEngine>>,
    /// Who may connect.
    pub users: Arc<Users>,
    /// The process metrics.
    pub metrics: Arc<Metrics>,
    /// Largest request body, after decompression.
    pub max_body_bytes: usize,
    /// The server's mode.
    pub mode: Mode,
    /// The compactor; `None` in modes that do not compact.
    pub compactor: Option<Arc<Compactor>>,
}

/// A JSON error response: `{"error": message}`.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Query-string parameters, first value wins.
pub(crate) fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn require_auth(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let open = matches!(request.uri().path(), "/health" | "/ping") || request.method() == axum::http::Method::OPTIONS;
    if !state.users.enabled() || open {
        return next.run(request).await;
    }
    let from_header =
        request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(Users::parse_authorization);
    let from_query = || {
        let params = query_params(request.uri().query());
        let password = param(&params, "p")?.to_owned();
        let user = param(&params, "u").unwrap_or_default().to_owned();
        Some(Credentials::Password { user, password })
    };
    let authorized = match from_header.or_else(from_query) {
        Some(credentials) => state.users.check(&credentials),
        None => false,
    };
    if authorized {
        return next.run(request).await;
    }
    let mut response = json_error(StatusCode::UNAUTHORIZED, "unauthorized: missing or wrong credentials");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hourglassdb\""));
    response
}

async fn health(State(state): State<HttpState>) -> Response {
    let body = serde_json::json!({
        "checks": [],
        "commit": "",
        "message": format!("ready ({} mode)", state.mode),
        "name": "hourglassdb",
        "status": "pass",
        "version": env!("CARGO_PKG_VERSION"),
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn ping() -> Response {
    (StatusCode::NO_CONTENT, [("X-Hourglass-Version", env!("CARGO_PKG_VERSION"))]).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let buffered = state.ingester.as_ref().map_or(0, |i| i.buffer().bytes() as u64);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(buffered))
        .into_response()
}

/// `POST /admin/compact[?db=..[&table=..]]`: runs every merge level, the layer
/// TTLs and due deletions now, and answers with what was done.
async fn compact(State(state): State<HttpState>, request: Request) -> Response {
    let Some(compactor) = &state.compactor else {
        return json_error(
            StatusCode::FORBIDDEN,
            format!("this server runs in {} mode, which does not compact (GIGAPI_MODE)", state.mode),
        );
    };
    let params = query_params(request.uri().query());
    let database = param(&params, "db").map(str::to_owned);
    let table = param(&params, "table").map(str::to_owned);
    // A client that hangs up does not cut a run short: it finishes on its own task.
    let compactor = Arc::clone(compactor);
    let report = match tokio::spawn(async move { compactor.run_now(database, table).await }).await {
        Ok(report) => report,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("the compaction run failed: {e}")),
    };
    match serde_json::to_string(&report) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn not_found(request: Request) -> Response {
    json_error(StatusCode::NOT_FOUND, format!("not found: {} {}", request.method(), request.uri().path()))
}

/// The HTTP API's routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/write", post(write::write_v1))
        .route("/api/v2/write", post(write::write_v2))
        .route("/api/v3/write_lp", post(write::write_v3))
        .route("/gigapi/write", post(write::write_gigapi))
        .route("/gigapi/write/{db}", post(write::write_gigapi_db))
        .route("/gigapi/insert", post(write::write_gigapi))
        .route("/query", post(query::gigapi_query).options(query::preflight))
        .route("/api/v3/query_sql", get(query::influx_query).post(query::influx_query).options(query::preflight))
        .route("/health", get(health))
        .route("/ping", get(ping).head(ping))
        .route("/metrics", get(metrics))
        .route("/admin/compact", post(compact))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .with_state(state)
}
