//! The HTTP front: InfluxDB-compatible writes, SQL queries, health,
//! readiness, ping and metrics.

mod configure;
mod cors;
mod deletes;
mod influxql;
mod listener;
mod query;
pub(crate) mod query_request;
mod text;
mod ui;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

use super::auth::{Authenticator, Credentials, Refusal, Users};
use super::status;
use crate::catalog::Catalog;
use crate::compactor::Compactor;
use crate::config::Mode;
use crate::errors::Classified;
use crate::ingest::Ingester;
use crate::metrics::{Gauges, Metrics};
use crate::query::QueryEngine;
use crate::storage::Storage;
pub use cors::AllowedOrigins;
pub use listener::{ClientAddress, PlainListener, TlsListener};

/// How far behind the shared catalog a process's view may be before `/ready`
/// says not ready: a reader that cannot follow Redis answers from an old view.
const CATALOG_LAG_UNREADY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long `/ready` waits for a storage layer to answer.
const LAYER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The write path; `None` in modes that take no writes.
    pub ingester: Option<Arc<Ingester>>,
    /// The query engine; `None` in modes that answer no queries.
    pub engine: Option<Arc<QueryEngine>>,
    /// The catalog, whose state `/health` and `/ready` report.
    pub catalog: Arc<dyn Catalog>,
    /// The storage layers, which `/ready` checks.
    pub storage: Arc<Storage>,
    /// Who may connect, and what each may do.
    pub users: Arc<Authenticator>,
    /// The process metrics.
    pub metrics: Arc<Metrics>,
    /// The last-value cache, whose size and hits `/metrics` reports.
    pub last_values: Option<Arc<crate::last_values::LastValueCache>>,
    /// Largest write body, after decompression.
    pub max_body_bytes: usize,
    /// How long an admitted write may take to send its body.
    pub write_body_timeout: Duration,
    /// Largest query body.
    pub max_query_bytes: usize,
    /// The web origins whose pages may write and run SQL.
    pub origins: Arc<AllowedOrigins>,
    /// The server's mode.
    pub mode: Mode,
    /// The compactor; `None` in modes that do not compact.
    pub compactor: Option<Arc<Compactor>>,
    /// Whether `/` serves the web UI (`GIGAPI_UI`).
    pub ui: bool,
}

/// A JSON error response: `{"error": message}`.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, serde_json::json!({ "error": message.into() }))
}

/// A failure as the JSON error response every HTTP endpoint gives: the
/// status of its kind (one table for every front, `server::status`), and
/// `Retry-After` when retrying soon may work.
pub(crate) fn classified_error(error: &dyn Classified) -> Response {
    let kind = error.kind();
    let mut response = json_error(status::http_status(kind), error.to_string());
    if let Some(seconds) = status::retry_after_s(kind) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Query-string parameters, first value wins.
pub(crate) fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Endpoints anyone may call: they change nothing and tell nothing of the
/// data (the UI's page and scripts ask for credentials themselves).
fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/ping") || ui::is_ui_path(path)
}

/// Lets a request in if its credentials (a `Authorization` header, or
/// InfluxDB v1's `u`/`p` parameters) name the configured user or a token,
/// and hands the handlers what it may do as an [`Access`] extension.
async fn require_auth(State(state): State<HttpState>, mut request: Request, next: Next) -> Response {
    if is_open(request.uri().path()) || request.method() == axum::http::Method::OPTIONS {
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
    let credentials = from_header.or_else(from_query);
    // The web UI asks for credentials with its own form: a browser shown
    // `WWW-Authenticate` would open its own dialog over the page.
    let from_ui = request.headers().get(ui::CLIENT_HEADER).is_some();
    let client = request.extensions().get::<ConnectInfo<ClientAddress>>().map(|info| info.0 .0.ip());
    match state.users.authenticate(credentials.as_ref(), client, "http").await {
        Ok(access) => {
            if let Some(what) = server_wide(request.uri().path()) {
                if let Err(refused) = access.require_full(what) {
                    return denied(refused);
                }
            }
            // Handlers take it as an `Extension`: a route outside this
            // middleware fails (500) rather than run without an access.
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        Err(refusal @ Refusal::Blocked(after)) => {
            let mut response = json_error(StatusCode::TOO_MANY_REQUESTS, refusal.message());
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
            response
        }
        Err(refusal) => {
            let mut response = json_error(StatusCode::UNAUTHORIZED, refusal.message());
            if !from_ui {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hourglassdb\""));
            }
            response
        }
    }
}

/// Endpoints about the whole server rather than one database: only the
/// configured user may call them, not a token.
fn server_wide(path: &str) -> Option<&'static str> {
    if path == "/metrics" {
        Some("/metrics")
    } else if path.starts_with("/admin/") {
        Some("an /admin endpoint")
    } else {
        None
    }
}

/// A refusal of [`Access`] as the JSON error every endpoint gives (403).
pub(crate) fn denied(denied: crate::access::Denied) -> Response {
    classified_error(&denied)
}

/// What stopped a component that cannot go on until the server restarts:
/// the WAL after an I/O error, the catalog after a write whose outcome is
/// unknown.
fn stopped_components(state: &HttpState) -> Vec<serde_json::Value> {
    let mut checks = Vec::new();
    if let Some(reason) = state.ingester.as_ref().and_then(|i| i.failure()) {
        checks.push(serde_json::json!({"name": "wal", "status": "fail", "message": reason}));
    }
    if let Some(reason) = state.catalog.stopped() {
        checks.push(serde_json::json!({"name": "catalog", "status": "fail", "message": reason}));
    }
    if let Some(reason) = state.engine.as_ref().and_then(|e| e.relations_stopped()) {
        checks.push(serde_json::json!({"name": "relations", "status": "fail", "message": reason}));
    }
    checks
}

/// A JSON body with `status`.
pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// `GET /health`: the liveness check. 200 while the process can do its
/// work; 503 when a component has stopped after an I/O error and only a
/// restart brings it back (the checks say which, and why).
async fn health(State(state): State<HttpState>) -> Response {
    let checks = stopped_components(&state);
    let failing = !checks.is_empty();
    let body = serde_json::json!({
        "checks": checks,
        "commit": "",
        "message": if failing {
            "a component stopped after an I/O error: restart the server".to_owned()
        } else {
            format!("ready ({} mode)", state.mode)
        },
        "name": "hourglassdb",
        "status": if failing { "fail" } else { "pass" },
        "version": env!("CARGO_PKG_VERSION"),
    });
    json_response(if failing { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }, body)
}

/// `GET /ready`: whether to send this server traffic. 200 when the WAL takes
/// writes (in modes that write), the catalog takes changes (and a shared one
/// was read within the last 10 s) and every storage layer answers; else 503
/// with the reasons.
async fn ready(State(state): State<HttpState>) -> Response {
    let mut checks = stopped_components(&state);
    let probes = state
        .storage
        .layers()
        .iter()
        .map(|layer| async move { (layer.name(), layer.probe(LAYER_PROBE_TIMEOUT).await) });
    for (name, probed) in futures::future::join_all(probes).await {
        if let Err(reason) = probed {
            checks.push(serde_json::json!({
                "name": format!("layer {name}"),
                "status": "fail",
                "message": format!("storage layer '{name}' does not answer: {reason}"),
            }));
        }
    }
    if let Some(lag) = state.catalog.lag().filter(|lag| *lag > CATALOG_LAG_UNREADY) {
        checks.push(serde_json::json!({
            "name": "catalog",
            "status": "fail",
            "message": format!(
                "this process's view of the Redis catalog is {:.1} s old: it cannot reach Redis (GIGAPI_METADATA_URL)",
                lag.as_secs_f64()
            ),
        }));
    }
    let ready = checks.is_empty();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": checks,
        "mode": state.mode.to_string(),
    });
    json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
}

async fn ping() -> Response {
    (StatusCode::NO_CONTENT, [("X-Hourglass-Version", env!("CARGO_PKG_VERSION"))]).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let gauges = Gauges {
        buffered_bytes: state.ingester.as_ref().map_or(0, |i| i.buffer().bytes() as u64),
        write_held_bytes: state.ingester.as_ref().map_or(0, |i| i.buffer().held_bytes() as u64),
        queries_running: state.engine.as_ref().map_or(0, |e| e.queries_running() as u64),
        queries_spread: state.engine.as_ref().map_or(0, |e| e.queries_spread()),
        queries_queued: state.engine.as_ref().map_or(0, |e| e.queries_queued() as u64),
        catalog_lag_ms: state.catalog.lag().map_or(0, |lag| u64::try_from(lag.as_millis()).unwrap_or(u64::MAX)),
        last_value_cache_bytes: state.last_values.as_ref().map_or(0, |c| c.bytes() as u64),
        last_value_cache_hits: state.last_values.as_ref().map_or(0, |c| c.hits()),
        last_value_cache_builds: state.last_values.as_ref().map_or(0, |c| c.builds()),
        files_by_level: state.catalog.files_by_level(),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render(gauges))
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

/// `PUT /admin/failpoints/{point}` with the actions as the body: arms a
/// fault injection point (a test build's only; see `crate::faults`).
#[cfg(feature = "fault-injection")]
async fn arm_failpoint(axum::extract::Path(point): axum::extract::Path<String>, actions: String) -> Response {
    match crate::faults::arm(&point, actions.trim()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => json_error(StatusCode::BAD_REQUEST, e),
    }
}

/// The HTTP API's routes.
pub fn router(state: HttpState) -> Router {
    let router = Router::new();
    #[cfg(feature = "fault-injection")]
    let router = router.route("/admin/failpoints/{point}", axum::routing::put(arm_failpoint));
    router
        .route("/write", post(write::write_v1).options(cors::preflight))
        .route("/api/v2/write", post(write::write_v2).options(cors::preflight))
        .route("/api/v3/write_lp", post(write::write_v3).options(cors::preflight))
        .route("/api/v2/delete", post(deletes::delete_v2).options(cors::preflight))
        .route("/api/v3/configure/database", delete(configure::delete_database).options(cors::preflight))
        .route("/api/v3/configure/table", delete(configure::delete_table).options(cors::preflight))
        .route("/gigapi/write", post(write::write_gigapi).options(cors::preflight))
        .route("/gigapi/write/{db}", post(write::write_gigapi_db).options(cors::preflight))
        .route("/gigapi/insert", post(write::write_gigapi).options(cors::preflight))
        .route("/query", post(query::gigapi_query).options(cors::preflight))
        .route("/api/v3/query_sql", get(query::influx_query).post(query::influx_query).options(cors::preflight))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/ping", get(ping).head(ping))
        .route("/metrics", get(metrics))
        .route("/admin/compact", post(compact))
        .route("/", get(ui::index))
        .route("/ui/{*file}", get(ui::file))
        .route("/api/catalog", get(ui::catalog))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_auth))
        // Outermost: a page of another origin is refused before anything else.
        .layer(middleware::from_fn_with_state(state.clone(), cors::check_origin))
        .with_state(state)
}
