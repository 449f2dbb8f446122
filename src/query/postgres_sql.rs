//! SQL as Postgres clients send it and read it back: parsing through
//! datafusion-postgres' compatibility parser (which rewrites what psql,
//! Grafana, dbt and others send into SQL DataFusion plans), and the names
//! PostgreSQL gives result columns (`SELECT 1` is `?column?`, `avg(x)` is
//! `avg`), which clients key rows by.

use datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr, Function, ObjectName, Query, Select, SelectItem, SetExpr, Statement, TimezoneInfo,
    TrimWhereField,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use super::ddl::identifier;
use super::postgres_rewrites;

/// Grafana's "is this schema on the search path" subquery. datafusion-postgres
/// replaces it with `''` (so it matches nothing, and Grafana's column list for
/// a table named without its schema comes back empty); it is replaced here,
/// before that, with the search path's schemas as literals, which is what the
/// subquery computes in PostgreSQL.
const SEARCH_PATH_SUBQUERY: &str = r#"SELECT
        CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
    FROM
        generate_series(
            array_lower(string_to_array(current_setting('search_path'),','),1),
            array_upper(string_to_array(current_setting('search_path'),','),1)
        ) as i,
        string_to_array(current_setting('search_path'),',') s"#;

/// Parses SQL the way the Postgres front reads it.
#[derive(Debug)]
pub struct PostgresParser {
    compatibility: PostgresCompatibilityParser,
    search_path_subquery: Vec<Token>,
}

impl Default for PostgresParser {
    fn default() -> Self {
        PostgresParser::new()
    }
}

impl PostgresParser {
    /// A parser with datafusion-postgres' rewrites and ours.
    pub fn new() -> PostgresParser {
        let search_path_subquery = Tokenizer::new(&PostgreSqlDialect {}, SEARCH_PATH_SUBQUERY)
            .tokenize()
            .map(|tokens| tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect())
            .unwrap_or_default();
        PostgresParser { compatibility: PostgresCompatibilityParser::new(), search_path_subquery }
    }

    /// The statements of `sql`, rewritten for DataFusion. `user` is the
    /// session's user and `search_path` its search path (what
    /// `current_setting('search_path')` returns), for the rewrites that need
    /// them.
    pub fn parse(&self, sql: &str, user: &str, search_path: &str) -> Result<Vec<Statement>, ParserError> {
        let mut statements = match self.replace_search_path_subquery(sql, user, search_path) {
            Some(rewritten) => self.compatibility.parse(&rewritten),
            None => self.compatibility.parse(sql),
        }?;
        let visible = search_path_schemas(user, search_path);
        for statement in &mut statements {
            postgres_rewrites::rewrite(statement, &visible);
        }
        Ok(statements)
    }

    /// `sql` with Grafana's search-path subquery replaced by the schemas of
    /// `search_path` as a list of literals (`"$user"` standing for `user`);
    /// `None` when the subquery is not in it.
    fn replace_search_path_subquery(&self, sql: &str, user: &str, search_path: &str) -> Option<String> {
        let pattern = &self.search_path_subquery;
        if pattern.is_empty() || !sql.contains("search_path") {
            return None;
        }
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().ok()?;
        let tokens: Vec<_> = tokens.into_iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).collect();
        let schemas = search_path_schemas(user, search_path);
        let literals = if schemas.is_empty() {
            "NULL".to_owned()
        } else {
            postgres_rewrites::literal_list(schemas.iter().map(String::as_str))
        };
        let offsets = LineOffsets::new(sql);
        let mut out = String::with_capacity(sql.len());
        let mut copied = 0;
        let mut i = 0;
        while i + pattern.len() <= tokens.len() {
            let window = &tokens[i..i + pattern.len()];
            if window.iter().zip(pattern).all(|(t, p)| &t.token == p) {
                let start = offsets.byte(sql, window[0].span.start)?;
                let end = offsets.byte(sql, window[pattern.len() - 1].span.end)?;
                out.push_str(&sql[copied..start]);
                out.push_str(&literals);
                copied = end;
                i += pattern.len();
            } else {
                i += 1;
            }
        }
        if copied == 0 {
            return None;
        }
        out.push_str(&sql[copied..]);
        Some(out)
    }
}

/// The schemas of `search_path` (what `current_setting('search_path')`
/// returns), `"$user"` standing for `user`.
fn search_path_schemas(user: &str, search_path: &str) -> Vec<String> {
    search_path
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| if s == "\"$user\"" { user.to_owned() } else { s.to_owned() })
        .collect()
}

/// Byte offsets of the starts of a text's lines, to turn the tokenizer's
/// line and column (in characters, from 1) into byte offsets.
struct LineOffsets(Vec<usize>);

impl LineOffsets {
    fn new(text: &str) -> LineOffsets {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineOffsets(starts)
    }

    fn byte(&self, text: &str, location: Location) -> Option<usize> {
        let line_start = *self.0.get(usize::try_from(location.line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
        let line = &text[line_start..];
        match line.char_indices().nth(column) {
            Some((offset, _)) => Some(line_start + offset),
            None if line.chars().count() == column => Some(text.len()),
            None => None,
        }
    }
}

/// The names PostgreSQL gives the `count` result columns of `statement`:
/// `Some(name)` where PostgreSQL's name is known, `None` where the result's
/// own name stands (columns a `*` expands to, statements that are not
/// queries). An alias always wins; otherwise a column is named after its
/// column, function or type cast, and `?column?` when nothing names it.
pub fn column_names(statement: &Statement, count: usize) -> Vec<Option<String>> {
    let unnamed = vec![None; count];
    let Statement::Query(query) = statement else { return unnamed };
    let Some(select) = first_select(query) else { return unnamed };
    let mut names: Vec<Option<String>> = Vec::with_capacity(count);
    let wildcards = select
        .projection
        .iter()
        .filter(|item| matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)))
        .count();
    let named = select.projection.len() - wildcards;
    // A lone `*` spans what the other items leave; two or more cannot be
    // told apart without resolving them.
    if wildcards > 1 || named > count || (wildcards == 0 && named != count) {
        return unnamed;
    }
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(expr) => names.push(Some(expr_name(expr).unwrap_or_else(|| "?column?".into()))),
            SelectItem::ExprWithAlias { alias, .. } => names.push(Some(identifier(alias))),
            SelectItem::ExprWithAliases { .. } => names.push(None),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                names.extend(std::iter::repeat_n(None, count - named))
            }
        }
    }
    names
}

/// The SELECT whose items name a query's columns: the leftmost one.
fn first_select(query: &Query) -> Option<&Select> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(select) => return Some(select),
            SetExpr::Query(inner) => body = inner.body.as_ref(),
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            _ => return None,
        }
    }
}

/// The name PostgreSQL gives an unaliased expression, if any (its
/// `FigureColname`).
fn expr_name(expr: &Expr) -> Option<String> {
    Some(match expr {
        Expr::Identifier(ident) => identifier(ident),
        Expr::CompoundIdentifier(idents) => identifier(idents.last()?),
        Expr::CompoundFieldAccess { root, .. } => return expr_name(root),
        Expr::Function(function) => function_name(function)?,
        Expr::Cast { expr, data_type, .. } => return expr_name(expr).or_else(|| Some(type_name(data_type))),
        Expr::TypedString(typed) => type_name(&typed.data_type),
        Expr::Interval(_) => "interval".into(),
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => return expr_name(inner),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Subquery(query) => return subquery_name(query),
        Expr::Array(_) => "array".into(),
        Expr::Tuple(_) => "row".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Overlay { .. } => "overlay".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::AtTimeZone { .. } => "timezone".into(),
        Expr::Trim { trim_where, .. } => match trim_where {
            Some(TrimWhereField::Leading) => "ltrim",
            Some(TrimWhereField::Trailing) => "rtrim",
            _ => "btrim",
        }
        .into(),
        _ => return None,
    })
}

/// A function call's name: the last part of its name, as SQL means it.
fn function_name(function: &Function) -> Option<String> {
    last_part(&function.name)
}

fn last_part(name: &ObjectName) -> Option<String> {
    name.0.last().map(|part| part.as_ident().map_or_else(|| part.to_string().to_lowercase(), identifier))
}

/// `(SELECT x AS name ...)` is named `name`, as in PostgreSQL; other
/// subqueries are not named.
fn subquery_name(query: &Query) -> Option<String> {
    match first_select(query)?.projection.first()? {
        SelectItem::ExprWithAlias { alias, .. } => Some(identifier(alias)),
        _ => None,
    }
}

/// A type's name as PostgreSQL knows it internally (`integer` is `int4`),
/// which is what it names a cast of something nameless.
fn type_name(data_type: &SqlType) -> String {
    match data_type {
        SqlType::Int(_) | SqlType::Int4(_) | SqlType::Integer(_) | SqlType::Int32 => "int4".into(),
        SqlType::BigInt(_) | SqlType::Int8(_) | SqlType::Int64 => "int8".into(),
        SqlType::SmallInt(_) | SqlType::Int2(_) | SqlType::Int16 => "int2".into(),
        SqlType::Real | SqlType::Float4 | SqlType::Float32 => "float4".into(),
        SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 | SqlType::Float64 | SqlType::Float(_) => {
            "float8".into()
        }
        SqlType::Bool | SqlType::Boolean => "bool".into(),
        SqlType::Text | SqlType::String(_) => "text".into(),
        SqlType::Varchar(_) | SqlType::CharacterVarying(_) | SqlType::CharVarying(_) => "varchar".into(),
        SqlType::Char(_) | SqlType::Character(_) => "bpchar".into(),
        SqlType::Numeric(_) | SqlType::Decimal(_) | SqlType::Dec(_) => "numeric".into(),
        SqlType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz".into(),
        SqlType::Timestamp(..) => "timestamp".into(),
        SqlType::Time(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timetz".into(),
        SqlType::Time(..) => "time".into(),
        SqlType::Date => "date".into(),
        SqlType::Interval { .. } => "interval".into(),
        SqlType::JSON => "json".into(),
        SqlType::JSONB => "jsonb".into(),
        SqlType::Uuid => "uuid".into(),
        SqlType::Bytea => "bytea".into(),
        SqlType::Regclass => "regclass".into(),
        SqlType::Array(element) => match element {
            datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(inner, _)
            | datafusion::sql::sqlparser::ast::ArrayElemTypeDef::AngleBracket(inner)
            | datafusion::sql::sqlparser::ast::ArrayElemTypeDef::Parenthesis(inner) => type_name(inner),
            datafusion::sql::sqlparser::ast::ArrayElemTypeDef::None => "array".into(),
        },
        SqlType::Custom(name, _) => last_part(name).unwrap_or_else(|| "?column?".into()),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str, count: usize) -> Vec<Option<String>> {
        let statements = PostgresParser::new().parse(sql, "u", "public").unwrap();
        column_names(&statements[0], count)
    }

    fn some(names: &[&str]) -> Vec<Option<String>> {
        names.iter().map(|n| Some(n.to_string())).collect()
    }

    #[test]
    fn columns_are_named_as_postgresql_names_them() {
        assert_eq!(names("SELECT 1", 1), some(&["?column?"]));
        assert_eq!(names("SELECT avg(usage), count(*), COUNT(*) FROM cpu", 3), some(&["avg", "count", "count"]));
        assert_eq!(names("SELECT 1 AS Foo, 2 AS \"Bar\"", 2), some(&["foo", "Bar"]));
        assert_eq!(names("SELECT host, cpu.usage, \"Host\" FROM cpu", 3), some(&["host", "usage", "Host"]));
        assert_eq!(names("SELECT 1::int, '1'::text, usage::text FROM cpu", 3), some(&["int4", "text", "usage"]));
        assert_eq!(
            names("SELECT CASE WHEN true THEN 1 END, (1), -usage FROM cpu", 3),
            some(&["case", "?column?", "?column?"])
        );
        assert_eq!(names("SELECT now(), pg_catalog.version(), trim(' a ')", 3), some(&["now", "version", "btrim"]));
        assert_eq!(names("SELECT (SELECT 1 AS x), (SELECT 1)", 2), some(&["x", "?column?"]));
        assert_eq!(names("SELECT 1 UNION SELECT 2", 1), some(&["?column?"]));
        assert_eq!(names("SELECT *, usage AS u FROM cpu", 4), vec![None, None, None, Some("u".into())]);
        assert_eq!(names("SHOW TABLES", 1), vec![None]);
    }

    #[test]
    fn grafanas_search_path_subquery_becomes_the_search_path() {
        let parser = PostgresParser::new();
        let sql = format!("SELECT 1 WHERE 'public' IN ({SEARCH_PATH_SUBQUERY}) AND 'x' IN ( {SEARCH_PATH_SUBQUERY} )");
        let rewritten = parser.replace_search_path_subquery(&sql, "u", "\"$user\", public").unwrap();
        assert_eq!(rewritten, "SELECT 1 WHERE 'public' IN ('u', 'public') AND 'x' IN ( 'u', 'public' )");
        assert_eq!(parser.replace_search_path_subquery("SELECT current_setting('search_path')", "u", "public"), None);
    }
}
