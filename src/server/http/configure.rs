//! InfluxDB 3's `DELETE /api/v3/configure/database?db=...` and
//! `DELETE /api/v3/configure/table?db=...&table=...` (what `influxdb3 delete
//! database` and `influxdb3 delete table` send): `DROP DATABASE` and `DROP
//! TABLE`, run as SQL so that the access rules and the drop are the engine's.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::StreamExt;

use super::{classified_error, json_error, param, query_params, HttpState};
use crate::access::Access;
use crate::query::{quote_identifier, QueryError};

/// `DELETE /api/v3/configure/database?db=<name>`.
pub(super) async fn delete_database(
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = query_params(query.as_deref());
    let Some(database) = param(&params, "db").filter(|d| !d.is_empty()) else {
        return json_error(StatusCode::BAD_REQUEST, "name the database to delete: ?db=<name>");
    };
    run(&state, &access, database, &format!("DROP DATABASE {}", quote_identifier(database))).await
}

/// `DELETE /api/v3/configure/table?db=<name>&table=<name>`.
pub(super) async fn delete_table(
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = query_params(query.as_deref());
    let (Some(database), Some(table)) =
        (param(&params, "db").filter(|d| !d.is_empty()), param(&params, "table").filter(|t| !t.is_empty()))
    else {
        return json_error(StatusCode::BAD_REQUEST, "name the table to delete: ?db=<database>&table=<name>");
    };
    run(&state, &access, database, &format!("DROP TABLE public.{}", quote_identifier(table))).await
}

/// Runs a statement to its end; `200` with no body once done.
async fn run(state: &HttpState, access: &Access, database: &str, sql: &str) -> Response {
    let Some(engine) = state.engine.as_ref() else {
        return json_error(
            StatusCode::FORBIDDEN,
            format!("this server runs in {} mode and changes no databases (GIGAPI_MODE)", state.mode),
        );
    };
    let mut output = match engine.sql(database, sql, access).await {
        Ok(output) => output,
        Err(error) => return classified_error(&error),
    };
    while let Some(batch) = output.stream.next().await {
        if let Err(error) = batch {
            return classified_error(&QueryError::from_datafusion(error, false));
        }
    }
    StatusCode::OK.into_response()
}
