//! The web UI (`GIGAPI_UI`, on by default): its files are embedded in the
//! binary at build time (`ui/` in the repository, vendored libraries
//! included), so it needs no internet access and no build step of its own.
//! The page and its scripts tell nothing of the data and are served to
//! anyone; everything they show comes from the API, which asks for
//! credentials (the page then shows its login form).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{json_error, HttpState};
use crate::access::Access;

/// The header the UI's requests carry: a refusal then has no
/// `WWW-Authenticate`, which would make the browser open its own login
/// dialog over the UI's form.
pub(super) const CLIENT_HEADER: &str = "x-hourglass-client";

/// One embedded file: its name under `/ui/`, its type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset { name: $name, content_type: $content_type, bytes: include_bytes!(concat!("../../../ui/", $name)) }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("vendor/codemirror-sql.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/codemirror.css", "text/css; charset=utf-8"),
    asset!("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/uPlot.min.css", "text/css; charset=utf-8"),
];

/// What the browser may load and run on the UI's pages: its own files and
/// the API of its own origin, nothing else; no page of another site may
/// frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                                       img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'";

/// Whether a path is the UI's: served without credentials.
pub(super) fn is_ui_path(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

fn serve(state: &HttpState, name: &str) -> Response {
    if !state.ui {
        return json_error(StatusCode::NOT_FOUND, "the web UI is off on this server (GIGAPI_UI=false)");
    }
    if state.engine.is_none() {
        return json_error(
            StatusCode::NOT_FOUND,
            format!("this server runs in {} mode and answers no queries: the web UI is on the readers", state.mode),
        );
    }
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return json_error(StatusCode::NOT_FOUND, format!("not found: /ui/{name}"));
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, asset.content_type),
            // Not fingerprinted: a new binary's files must replace the old at once.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        asset.bytes,
    )
        .into_response()
}

/// `GET /`: the UI's page.
pub(super) async fn index(State(state): State<HttpState>) -> Response {
    serve(&state, "index.html")
}

/// `GET /ui/{*file}`: its scripts and styles.
pub(super) async fn file(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    serve(&state, &name)
}

/// `GET /api/catalog`: the databases the caller may read, with their
/// measurements (columns, tag or field, and what the catalog knows of their
/// files) and the tables and views SQL made: the UI's table browser.
pub(super) async fn catalog(State(state): State<HttpState>, Extension(access): Extension<Access>) -> Response {
    let Some(engine) = &state.engine else {
        return json_error(
            StatusCode::FORBIDDEN,
            format!("this server runs in {} mode, which answers no queries (GIGAPI_MODE)", state.mode),
        );
    };
    let databases = engine.overview(&access).await;
    super::json_response(StatusCode::OK, serde_json::json!({ "databases": databases }))
}
