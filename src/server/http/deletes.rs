//! InfluxDB v2's `POST /api/v2/delete?bucket=...`: a JSON body with `start`,
//! `stop` (RFC 3339, both inclusive) and a `predicate` in InfluxDB's delete
//! predicate syntax (`_measurement="cpu" AND host="a"`). The delete itself is
//! the write path's, as SQL `DELETE` is.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

use super::{classified_error, param, query_params, HttpState};
use crate::access::{Access, Privilege};
use crate::catalog::{DeletePredicate, TagCondition};
use crate::errors::Classified;
use crate::server::database::DatabaseChoice;

/// The request body, as InfluxDB's client libraries and `influx delete` send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    start: String,
    stop: String,
    #[serde(default)]
    predicate: String,
}

/// A parsed delete predicate: the measurement it names, if any, and its
/// conditions on tags.
#[derive(Debug, Default, PartialEq, Eq)]
struct SeriesPredicate {
    measurement: Option<String>,
    tags: Vec<TagCondition>,
}

/// Columns InfluxDB's predicate names that a delete by series cannot select by.
const NOT_SELECTABLE: &[&str] = &["_field", "_value", "_time", "time"];

/// A delete body is a few hundred bytes; this bounds what is read of one.
const MAX_DELETE_BODY_BYTES: usize = 64 * 1024;

/// `POST /api/v2/delete`.
pub(super) async fn delete_v2(
    State(state): State<HttpState>,
    Extension(access): Extension<Access>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let Some(ingester) = state.ingester.clone() else {
        return json_response_v2(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this server runs in {} mode and takes no writes or deletes (GIGAPI_MODE)", state.mode),
        );
    };
    let params = query_params(query.as_deref());
    if param(&params, "bucketID").is_some() && param(&params, "bucket").is_none() {
        return invalid("name the bucket with bucket=<database>: buckets have no IDs here");
    }
    let database =
        match DatabaseChoice::for_access(&access).named("the bucket parameter", param(&params, "bucket")).first() {
            Ok(database) => database,
            Err(e) => return invalid(e.to_string()),
        };
    if let Err(refused) = access.require(&database, Privilege::Write) {
        return v2_error(&refused);
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_DELETE_BODY_BYTES).await else {
        return json_response_v2(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request too large",
            format!("a delete's body is at most {MAX_DELETE_BODY_BYTES} bytes of JSON (start, stop, predicate)"),
        );
    };
    let request: DeleteRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return invalid(format!("the body is not a delete request ({{\"start\", \"stop\", \"predicate\"}}): {e}"))
        }
    };
    let (min_time, max_time) = match (instant("start", &request.start), instant("stop", &request.stop)) {
        (Ok(start), Ok(stop)) if start <= stop => (start, stop),
        (Ok(_), Ok(_)) => return invalid(format!("start {} is after stop {}", request.start, request.stop)),
        (Err(e), _) | (_, Err(e)) => return invalid(e),
    };
    let series = match parse_predicate(&request.predicate) {
        Ok(series) => series,
        Err(e) => return invalid(format!("predicate {:?}: {e}", request.predicate)),
    };
    if !state.catalog.databases().contains(&database) {
        return json_response_v2(StatusCode::NOT_FOUND, "not found", format!("bucket \"{database}\" not found"));
    }
    let predicate = DeletePredicate { min_time, max_time, tags: series.tags };
    match ingester.delete_series(&database, series.measurement.as_deref(), predicate).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => v2_error(&error),
    }
}

/// A failure in InfluxDB v2's shape: the status every front gives its kind,
/// with v2's `code` beside `message`, so v2 clients show the reason.
fn v2_error(error: &dyn Classified) -> Response {
    let mut response = classified_error(error);
    let code = match response.status() {
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::NOT_FOUND => "not found",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE => {
            "unavailable"
        }
        _ => "internal error",
    };
    let body = json_response_v2(response.status(), code, error.to_string());
    *response.body_mut() = body.into_body();
    response
}

fn invalid(message: impl Into<String>) -> Response {
    json_response_v2(StatusCode::BAD_REQUEST, "invalid", message.into())
}

/// An error as InfluxDB v2 answers it (`code` and `message`), with the
/// `error` every endpoint of ours has.
fn json_response_v2(status: StatusCode, code: &str, message: String) -> Response {
    super::json_response(status, serde_json::json!({ "code": code, "message": message, "error": message }))
}

/// An RFC 3339 time as nanoseconds since the epoch.
fn instant(name: &str, text: &str) -> Result<i64, String> {
    let time = chrono::DateTime::parse_from_rfc3339(text.trim())
        .map_err(|e| format!("{name} {text:?} is not an RFC 3339 time (2024-01-01T00:00:00Z): {e}"))?;
    time.timestamp_nanos_opt().ok_or_else(|| format!("{name} {text:?} is outside the years 1677 to 2262"))
}

/// Parses InfluxDB's delete predicate: `key=value` and `key!=value` joined
/// by `AND`. Keys and values are bare words or double-quoted (`\"` inside);
/// values may also be single-quoted. `_measurement` names the measurement.
fn parse_predicate(text: &str) -> Result<SeriesPredicate, String> {
    let tokens = tokenize(text)?;
    let mut series = SeriesPredicate::default();
    let mut rest = tokens.as_slice();
    while !rest.is_empty() {
        let [Token::Word(key), Token::Op(negated), Token::Word(value), tail @ ..] = rest else {
            return Err(format!(
                "expected key=\"value\" or key!=\"value\" at {}",
                rest.first().map(Token::describe).unwrap_or_default()
            ));
        };
        if NOT_SELECTABLE.contains(&key.as_str()) {
            return Err(format!(
                "a delete selects rows by measurement, tags and the start and stop times, not by {key}"
            ));
        }
        if key == "_measurement" {
            if *negated {
                return Err("_measurement!= is not supported: name the measurement to delete from".into());
            }
            if series.measurement.as_ref().is_some_and(|m| m != value) {
                return Err("it names two measurements: a row is in one".into());
            }
            series.measurement = Some(value.clone());
        } else {
            series.tags.push(TagCondition { tag: key.clone(), values: vec![value.clone()], negated: *negated });
        }
        rest = match tail {
            [] => tail,
            [Token::And] => return Err("nothing follows the last AND".into()),
            [Token::And, after @ ..] => after,
            [Token::Or, ..] => {
                return Err("OR is not supported: InfluxDB's delete predicate joins conditions with AND".into())
            }
            [other, ..] => return Err(format!("expected AND at {}", other.describe())),
        };
    }
    Ok(series)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    /// `=` (false) or `!=` (true).
    Op(bool),
    And,
    Or,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Op(false) => "'='".into(),
            Token::Op(true) => "'!='".into(),
            Token::And => "AND".into(),
            Token::Or => "OR".into(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                tokens.push(Token::Op(false));
            }
            '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err("'!' must be followed by '='".into());
                }
                tokens.push(Token::Op(true));
            }
            '"' | '\'' => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("a quoted name or value is not closed: {c}{word}")),
                        Some('\\') => match chars.next() {
                            Some(escaped) => word.push(escaped),
                            None => return Err(format!("a quoted name or value is not closed: {c}{word}")),
                        },
                        Some(q) if q == c => break,
                        Some(other) => word.push(other),
                    }
                }
                tokens.push(Token::Word(word));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek().filter(|c| c.is_alphanumeric() || **c == '_') {
                    word.push(c);
                    chars.next();
                }
                let keyword = word.to_ascii_uppercase();
                // A keyword is one where an operator may follow a condition.
                let after_condition = matches!(tokens.last(), Some(Token::Word(_)))
                    && matches!(tokens.iter().rev().nth(1), Some(Token::Op(_)));
                tokens.push(match keyword.as_str() {
                    "AND" if after_condition => Token::And,
                    "OR" if after_condition => Token::Or,
                    _ => Token::Word(word),
                });
            }
            '(' | ')' => return Err("parentheses are not supported: join the conditions with AND".into()),
            other => {
                return Err(format!(
                    "unexpected {other:?}: quote names and values that hold anything but letters, digits and _ \
                     (host=\"web-1\")"
                ))
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str, negated: bool) -> TagCondition {
        TagCondition { tag: key.into(), values: vec![value.into()], negated }
    }

    #[test]
    fn influxdb_predicates_parse_into_a_measurement_and_tag_conditions() {
        let parsed = parse_predicate(r#"_measurement="cpu" AND host="web-1" and region != 'us east'"#).expect("parses");
        assert_eq!(
            parsed,
            SeriesPredicate {
                measurement: Some("cpu".into()),
                tags: vec![tag("host", "web-1", false), tag("region", "us east", true)],
            }
        );
        let parsed = parse_predicate(r#"_measurement=example and "Name"=predicate"#).expect("bare words parse");
        assert_eq!(parsed.measurement.as_deref(), Some("example"));
        assert_eq!(parsed.tags, vec![tag("Name", "predicate", false)]);
        let parsed = parse_predicate(r#"host="a \"quoted\" \\ value""#).expect("escapes parse");
        assert_eq!(parsed.tags, vec![tag("host", r#"a "quoted" \ value"#, false)]);
        assert_eq!(parse_predicate("  ").expect("empty is everything"), SeriesPredicate::default());
        // A tag may be called `and`.
        let parsed = parse_predicate(r#"and="x" AND or="y""#).expect("keywords as keys");
        assert_eq!(parsed.tags, vec![tag("and", "x", false), tag("or", "y", false)]);
    }

    #[test]
    fn what_the_predicate_cannot_say_is_refused_with_the_reason() {
        for (predicate, reason) in [
            (r#"host="a" OR host="b""#, "OR is not supported"),
            (r#"_field="usage""#, "not by _field"),
            (r#"(host="a")"#, "parentheses"),
            (r#"host=~/a/"#, "unexpected '~'"),
            (r#"host="a" host="b""#, "expected AND"),
            (r#"host="a" AND"#, "nothing follows"),
            (r#"host="a"#, "not closed"),
            (r#"host=web-1"#, "quote names and values"),
            (r#"_measurement="a" AND _measurement="b""#, "two measurements"),
            (r#"_measurement!="a""#, "_measurement!="),
            ("host", "expected key="),
        ] {
            let error = parse_predicate(predicate).expect_err(predicate);
            assert!(error.contains(reason), "{predicate}: {error}");
        }
    }

    #[test]
    fn start_and_stop_are_rfc3339_instants() {
        assert_eq!(instant("start", "1970-01-01T00:00:01.5Z"), Ok(1_500_000_000));
        assert_eq!(instant("start", "2024-01-01T01:00:00+01:00"), instant("start", "2024-01-01T00:00:00Z"));
        assert!(instant("stop", "yesterday").expect_err("refused").contains("RFC 3339"));
        assert!(instant("stop", "2300-01-01T00:00:00Z").expect_err("refused").contains("1677"));
    }
}
