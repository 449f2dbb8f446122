//! Rewrites of the SQL Postgres clients send to read the catalog (JDBC's
//! `DatabaseMetaData`, so DBeaver and Metabase; SQLAlchemy, so Superset) into
//! SQL DataFusion plans over datafusion-pg-catalog's tables. Each stands for
//! a PostgreSQL feature such a query needs that DataFusion or the catalog
//! export lacks:
//! - `generate_subscripts(a, 1)`, which DataFusion lacks, as a range;
//! - `information_schema._pg_expandarray(a)`, the rows `(x, n)` of an
//!   array's elements and subscripts, as a struct of two `unnest`s (two
//!   `unnest` in one select list go row by row together, as set-returning
//!   functions do in PostgreSQL);
//! - `(composite).field`, which DataFusion refuses, as `get_field`;
//! - `obj_description`, `col_description` and `shobj_description` as NULL
//!   without their arguments: no object has a comment, and Metabase's
//!   argument (`format('%I.%I', schema, table)::regclass`) casts a computed
//!   name, which DataFusion cannot resolve to an oid;
//! - casts to `name`, PostgreSQL's type of catalog names, as casts to text;
//! - `pg_table_is_visible(c.oid)` as a test of `c`'s schema against the
//!   search path and `pg_catalog` (datafusion-pg-catalog's is always true,
//!   so SQLAlchemy listed `information_schema`'s views among `public`'s).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, AccessExpr, DataType as SqlType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::ddl::identifier;

/// Rewrites `statement` in place (see the module's documentation);
/// `search_path` is the schemas of the search path (the server's: a
/// session's `SET search_path` is accepted and not kept), whose tables are
/// visible besides `pg_catalog`'s.
/// Inserts are left alone: they are the hot path, and read no catalog.
pub(super) fn rewrite(statement: &mut Statement, search_path: &[String]) {
    if matches!(statement, Statement::Insert(_)) {
        return;
    }
    let visible = std::iter::once("pg_catalog").chain(search_path.iter().map(String::as_str));
    let visible = literal_list(visible);
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some(replacement) = replacement(expr, &visible) {
            *expr = replacement;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// What stands for `expr`, if it is one of the forms this module rewrites;
/// `visible` lists the schemas whose tables are visible, as SQL literals.
/// Expressions are visited innermost first, so an outer form sees its inner
/// ones rewritten.
fn replacement(expr: &mut Expr, visible: &str) -> Option<Expr> {
    match expr {
        Expr::Function(function) => {
            let name = function.name.0.last()?.as_ident().map(identifier)?;
            let FunctionArguments::List(list) = &function.args else { return None };
            let arguments: Vec<&Expr> = list
                .args
                .iter()
                .map(|arg| match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            let sql = match (name.as_str(), arguments.as_slice()) {
                ("generate_subscripts", [array, dimension]) if dimension.to_string() == "1" => {
                    format!("unnest({})", subscripts(&array.to_string()))
                }
                ("obj_description" | "col_description" | "shobj_description", _) => "CAST(NULL AS TEXT)".to_owned(),
                ("pg_table_is_visible", [argument]) => {
                    let parts = match argument {
                        Expr::CompoundIdentifier(parts) => parts.as_slice(),
                        Expr::Identifier(oid) => std::slice::from_ref(oid),
                        _ => return None,
                    };
                    let [qualifier @ .., oid] = parts else { return None };
                    if identifier(oid) != "oid" {
                        return None;
                    }
                    let relation: String = qualifier.iter().map(|part| format!("{part}.")).collect();
                    // A scalar subquery, which DataFusion plans anywhere (an
                    // IN subquery only in a filter).
                    format!(
                        "array_has((SELECT array_agg(oid) FROM pg_catalog.pg_namespace WHERE nspname IN ({visible})), \
                         {relation}relnamespace)"
                    )
                }
                ("_pg_expandarray", [array]) => {
                    format!("named_struct('x', unnest({array}), 'n', unnest({}))", subscripts(&array.to_string()))
                }
                _ => return None,
            };
            parse_expr(&sql)
        }
        Expr::CompoundFieldAccess { root, access_chain } => {
            let Expr::Nested(composite) = root.as_ref() else { return None };
            // Every leading `.field` becomes a `get_field` around the last.
            let fields = access_chain.iter().take_while(|a| matches!(a, AccessExpr::Dot(Expr::Identifier(_)))).count();
            if fields == 0 {
                return None;
            }
            let mut sql = composite.to_string();
            for access in access_chain.drain(..fields) {
                if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                    sql = format!("get_field({sql}, '{}')", identifier(&field).replace('\'', "''"));
                }
            }
            let get = parse_expr(&sql)?;
            let rest = std::mem::take(access_chain);
            Some(if rest.is_empty() {
                get
            } else {
                Expr::CompoundFieldAccess { root: Box::new(get), access_chain: rest }
            })
        }
        Expr::Cast { data_type, .. } if is_name_type(data_type) => {
            *data_type = SqlType::Text;
            None
        }
        _ => None,
    }
}

/// Whether `data_type` is PostgreSQL's `name` (or `pg_catalog.name`).
fn is_name_type(data_type: &SqlType) -> bool {
    let SqlType::Custom(name, modifiers) = data_type else { return false };
    modifiers.is_empty() && name.0.last().and_then(|part| part.as_ident()).is_some_and(|i| identifier(i) == "name")
}

/// The SQL of `array`'s subscripts, from 1, as an array.
fn subscripts(array: &str) -> String {
    format!("range(1, CAST(coalesce(array_length({array}, 1), 0) AS BIGINT) + 1)")
}

/// The expression `sql` (which this module wrote); `None`, and the
/// original left in place, if it does not parse.
fn parse_expr(sql: &str) -> Option<Expr> {
    match Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).and_then(|mut parser| parser.parse_expr()) {
        Ok(expr) => Some(expr),
        Err(error) => {
            tracing::debug!(%sql, %error, "a catalog rewrite did not parse; the original is kept");
            None
        }
    }
}

/// `values` as a list of SQL string literals: `'a', 'b'`.
pub(super) fn literal_list<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values.into_iter().map(|v| format!("'{}'", v.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::postgres_sql::PostgresParser;

    fn parsed(sql: &str) -> String {
        PostgresParser::new().parse(sql, "u", "\"$user\", public").unwrap()[0].to_string()
    }

    #[test]
    fn generate_subscripts_becomes_a_range() {
        let subscripts =
            parsed("SELECT unnest(i.indkey) AS a, generate_subscripts(i.indkey, 1) AS o FROM pg_index AS i");
        assert!(subscripts.contains("unnest(i.indkey)"), "{subscripts}");
        assert!(
            subscripts.contains("unnest(range(1, CAST(coalesce(array_length(i.indkey, 1), 0) AS BIGINT) + 1))"),
            "{subscripts}"
        );
    }

    #[test]
    fn expanded_arrays_field_access_and_name_casts_are_rewritten() {
        let keys = parsed(
            "SELECT (information_schema._pg_expandarray(con.conkey)).n AS key_seq, \
             information_schema._pg_expandarray(con.conkey) AS keys FROM pg_constraint con",
        );
        assert!(keys.contains("get_field(named_struct('x', unnest(con.conkey), 'n', unnest(range(1"), "{keys}");
        let index = parsed("SELECT (INFORMATION_SCHEMA._PG_EXPANDARRAY(\"i\".\"indkey\")).\"n\" FROM pg_index i");
        assert!(index.contains("get_field(named_struct('x', unnest(\"i\".\"indkey\")"), "{index}");
        let outer = parsed("SELECT * FROM r WHERE r.a = (r.keys).x");
        assert!(outer.contains("get_field(r.keys, 'x')"), "{outer}");
        let comment = parsed("SELECT col_description(CAST(CAST(format('%I.%I', s, t) AS REGCLASS) AS OID), 1) FROM c");
        assert!(comment.starts_with("SELECT CAST(NULL AS TEXT) FROM"), "{comment}");
        let name = parsed("SELECT 1 WHERE r.rulename <> '_RETURN'::name");
        assert!(name.contains("CAST('_RETURN' AS TEXT)") || name.contains("'_RETURN'::TEXT"), "{name}");
        let visible = parsed("SELECT relname FROM pg_catalog.pg_class c WHERE pg_catalog.pg_table_is_visible(c.oid)");
        assert!(
            visible.contains(
                "array_has((SELECT array_agg(oid) FROM pg_catalog.pg_namespace WHERE nspname IN ('pg_catalog', 'u', 'public')), \
                 c.relnamespace)"
            ),
            "{visible}"
        );
        let bare = parsed("SELECT relname FROM pg_class WHERE pg_table_is_visible(oid)");
        assert!(bare.contains("'public')), relnamespace)"), "{bare}");
        let chain = parsed("SELECT (r.k).a.b, (r.k).a[1] FROM r");
        assert!(chain.contains("get_field(get_field(r.k, 'a'), 'b')"), "{chain}");
        assert!(chain.contains("get_field(r.k, 'a')[1]"), "{chain}");
        // A subscript or a plain column is not a field access.
        let subscript = parsed("SELECT (a)[1], b.c FROM t");
        assert!(!subscript.contains("get_field"), "{subscript}");
    }
}
