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

/// The parameters InfluxDB 1.x's `/query` takes: a form body of only these
/// is InfluxDB 1.x's (curl `-d` sends SQL or JSON with the same type).
const V1_PARAMETERS: &[&str] = &["q", "db", "rp", "u", "p", "epoch", "precision", "chunked", "chunk_size", "pretty"];

/// The InfluxQL of a `/query` request in InfluxDB 1.x's form, if it is one:
/// a form-encoded body of InfluxDB 1.x's parameters with a `q`, or a `q` in
/// the query string with no body (or such a form). A JSON body is GigAPI's,
/// whatever the query string says.
pub(super) fn statement(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let fields: Vec<(String, String)> = if form && serde_json::from_slice::<serde_json::Value>(body).is_err() {
        form_urlencoded::parse(body).into_owned().collect()
    } else {
        Vec::new()
    };
    let v1_form = !fields.is_empty() && fields.iter().all(|(key, _)| V1_PARAMETERS.contains(&key.as_str()));
    if v1_form {
        if let Some(q) = param(&fields, "q") {
            return Some(q.to_owned());
        }
    }
    let params = query_params(query);
    match param(&params, "q") {
        Some(q) if body.is_empty() || v1_form => Some(q.to_owned()),
        _ => None,
    }
}

/// What an InfluxQL statement asks that this server answers.
#[derive(Debug, PartialEq, Eq)]
enum Statement {
    /// `CREATE DATABASE <name> [WITH ...]`.
    CreateDatabase(String),
    /// `SHOW DATABASES`.
    ShowDatabases,
}

/// The text after a leading keyword (any case), or None.
fn after_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let text = text.trim_start();
    let head = text.get(..keyword.len())?;
    let rest = &text[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// The statement, or why it is not one answered here. One statement: a
/// `;` may only end it.
fn parse(text: &str) -> Result<Statement, String> {
    let text = text.trim();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    if let Some(rest) = after_keyword(text, "CREATE").and_then(|rest| after_keyword(rest, "DATABASE")) {
        // The name: double-quoted (with \" inside) or a bare word; only a
        // retention policy (WITH ...) may follow, and is ignored.
        let rest = rest.trim_start();
        let (name, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let mut name = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => name.extend(chars.next().map(|(_, c)| c)),
                    Some((i, '"')) => break i + 1,
                    Some((_, c)) => name.push(c),
                    None => return Err(format!("unterminated database name in: {text}")),
                }
            };
            (name, &quoted[end..])
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        };
        let after = after.trim();
        if name.contains(';') || !(after.is_empty() || after_keyword(&format!("{after} "), "WITH").is_some()) {
            return Err(format!("not one CREATE DATABASE statement: {text}"));
        }
        return Ok(Statement::CreateDatabase(name));
    }
    if after_keyword(&format!("{text} "), "SHOW").is_some_and(|rest| rest.trim().eq_ignore_ascii_case("DATABASES")) {
        return Ok(Statement::ShowDatabases);
    }
    {
        Err(format!(
            "InfluxQL is not supported here ({text}): /query takes InfluxDB 1.x's CREATE DATABASE and SHOW DATABASES; \
             query with SQL: POST /query with {{\"query\": \"SELECT ...\"}}, or /api/v3/query_sql"
        ))
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
            // The engine's list has the databases SQL made too, filtered
            // for the caller; a writer has only the catalog's.
            let names = match &state.engine {
                Some(engine) => engine.databases(access),
                None => state.catalog.databases().into_iter().filter(|n| access.sees(n)).collect(),
            };
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
        assert_eq!(parse("CREATE  DATABASE\tspaced"), Ok(Statement::CreateDatabase("spaced".into())));
        for bad in [r#"CREATE DATABASE "a" junk"#, "CREATE DATABASE a; DROP DATABASE b", "CREATE DATABASE"] {
            assert!(parse(bad).map_or(true, |s| s == Statement::CreateDatabase(String::new())), "{bad}");
        }
    }

    #[test]
    fn only_influxdb_1x_forms_are_influxql() {
        let form = {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().expect("header"));
            headers
        };
        let q = |query: Option<&str>, headers: &HeaderMap, body: &str| statement(query, headers, body.as_bytes());
        assert_eq!(q(None, &form, "q=SHOW+DATABASES&db=x").as_deref(), Some("SHOW DATABASES"));
        assert_eq!(q(Some("q=SHOW%20DATABASES"), &HeaderMap::new(), "").as_deref(), Some("SHOW DATABASES"));
        // curl -d sends GigAPI's JSON and bare SQL as a form: they stay SQL.
        assert_eq!(q(None, &form, r#"{"query": "SELECT 1 WHERE 'a&q=b' = ''"}"#), None);
        assert_eq!(q(None, &form, "SELECT * FROM t WHERE url = 'x&q=y'"), None);
        assert_eq!(q(Some("q=SHOW%20DATABASES"), &form, r#"{"query": "SELECT 1"}"#), None);
    }
}
