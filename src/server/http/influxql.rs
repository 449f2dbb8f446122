//! InfluxDB 1.x's `/query` with `q=`: the InfluxQL a writer sends before it
//! writes (Telegraf's InfluxDB output sends `CREATE DATABASE "telegraf"`, in
//! the query string or a form body), answered as InfluxDB 1.x answers it.
//! Queries are SQL here: other InfluxQL is refused with a pointer to it.
//! GigAPI's `/query` (a JSON body with `query`) is told apart by the `q`.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::{json_error, json_response, param, query_params, HttpState};
use crate::access::{Access, Privilege};
use crate::catalog::names::{check_name, NameKind};

/// The InfluxQL of a `/query` request in InfluxDB 1.x's form, if it is one:
/// a `q` in the query string, or in a form-encoded body.
pub(super) fn statement(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let params = query_params(query);
    if let Some(q) = param(&params, "q") {
        return Some(q.to_owned());
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return None;
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    param(&fields, "q").map(str::to_owned)
}

/// What an InfluxQL statement asks that this server answers.
#[derive(Debug, PartialEq, Eq)]
enum Statement {
    /// `CREATE DATABASE <name> [WITH ...]`.
    CreateDatabase(String),
    /// `SHOW DATABASES`.
    ShowDatabases,
}

/// The statement, or why it is not one answered here.
fn parse(text: &str) -> Result<Statement, String> {
    let text = text.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = text.split_whitespace().collect();
    let upper: Vec<String> = words.iter().take(2).map(|w| w.to_ascii_uppercase()).collect();
    match upper.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["CREATE", "DATABASE"] => {
            // The name: double-quoted (with \" inside) or a bare word; a
            // retention policy after it (WITH ...) is accepted and ignored.
            let rest = text.splitn(3, char::is_whitespace).nth(2).unwrap_or_default().trim_start();
            let name = if let Some(quoted) = rest.strip_prefix('"') {
                let mut name = String::new();
                let mut chars = quoted.chars();
                loop {
                    match chars.next() {
                        Some('\\') => name.extend(chars.next()),
                        Some('"') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unterminated database name in: {text}")),
                    }
                }
                name
            } else {
                rest.split_whitespace().next().unwrap_or_default().to_owned()
            };
            Ok(Statement::CreateDatabase(name))
        }
        ["SHOW", "DATABASES"] if words.len() == 2 => Ok(Statement::ShowDatabases),
        _ => Err(format!(
            "InfluxQL is not supported here ({text}): /query takes InfluxDB 1.x's CREATE DATABASE and SHOW DATABASES; \
             query with SQL: POST /query with {{\"query\": \"SELECT ...\"}}, or /api/v3/query_sql"
        )),
    }
}

/// Answers an InfluxQL statement as InfluxDB 1.x does: `{"results": [...]}`.
pub(super) fn answer(state: &HttpState, access: &Access, text: &str) -> Response {
    let statement = match parse(text) {
        Ok(statement) => statement,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, message),
    };
    match statement {
        Statement::CreateDatabase(name) => {
            if let Err(e) = check_name(NameKind::Database, &name) {
                return json_error(StatusCode::BAD_REQUEST, e.to_string());
            }
            if let Err(denied) = access.require(&name, Privilege::Write) {
                return super::denied(denied);
            }
            if state.ingester.is_none() {
                return json_error(
                    StatusCode::FORBIDDEN,
                    format!("this server runs in {} mode, which takes no writes (GIGAPI_MODE)", state.mode),
                );
            }
            // A database is made by its first write, which comes next: as in
            // InfluxDB, creating one that exists is no error.
            json_response(StatusCode::OK, serde_json::json!({ "results": [{ "statement_id": 0 }] }))
        }
        Statement::ShowDatabases => {
            let mut names = state.catalog.databases();
            if let Some(engine) = &state.engine {
                names = engine.databases(access);
            }
            names.retain(|n| access.sees(n));
            let values: Vec<[&str; 1]> = names.iter().map(|n| [n.as_str()]).collect();
            json_response(
                StatusCode::OK,
                serde_json::json!({ "results": [{ "statement_id": 0, "series": [{
                    "name": "databases", "columns": ["name"], "values": values,
                }] }] }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn influxql_create_and_show_databases_are_read_and_the_rest_refused() {
        assert_eq!(parse(r#"CREATE DATABASE "telegraf""#), Ok(Statement::CreateDatabase("telegraf".into())));
        assert_eq!(parse("create database metrics;"), Ok(Statement::CreateDatabase("metrics".into())));
        assert_eq!(
            parse(r#"CREATE DATABASE "my \"db\"" WITH DURATION 30d"#),
            Ok(Statement::CreateDatabase(r#"my "db""#.into()))
        );
        assert_eq!(parse("SHOW DATABASES"), Ok(Statement::ShowDatabases));
        let refused = parse("SELECT mean(usage) FROM cpu GROUP BY time(1m)").unwrap_err();
        assert!(refused.contains("SQL"), "{refused}");
        assert!(parse(r#"CREATE DATABASE "open"#).is_err());
    }
}
