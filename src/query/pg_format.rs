//! PostgreSQL's `format(formatstr, args...)`: `%s` (the argument as text,
//! NULL as nothing), `%I` (an identifier, quoted where it must be), `%L` (a
//! literal, quoted; NULL as `NULL`), `%%`, each optionally with a position
//! (`%2$s`). Metabase names columns' types and tables with it when it syncs
//! a database (`format('%I.%I', schema, table)`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// The `format` function.
pub(crate) fn format_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(Format { signature: Signature::variadic_any(Volatility::Immutable) })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalars = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        // Scalars make one row, whatever the batch's size (which may be 0).
        let rows = if scalars { 1 } else { args.number_rows };
        let texts: Vec<StringArray> =
            args.args.iter().map(|arg| as_text(&arg.to_array(rows)?)).collect::<Result<_>>()?;
        let Some((template, values)) = texts.split_first() else {
            return exec_err!("format needs a format string");
        };
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if template.is_null(row) {
                out.push(None);
                continue;
            }
            let arguments: Vec<Option<&str>> = values.iter().map(|v| (!v.is_null(row)).then(|| v.value(row))).collect();
            out.push(Some(format_row(template.value(row), &arguments)?));
        }
        let result: ArrayRef = Arc::new(StringArray::from(out));
        Ok(if scalars {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&result, 0)?)
        } else {
            ColumnarValue::Array(result)
        })
    }
}

/// An argument as PostgreSQL writes it as text: booleans as `t` and `f`;
/// other types as Arrow casts them to text (numbers and times may differ
/// from PostgreSQL's text: `1.0` where PostgreSQL writes `1`).
fn as_text(array: &ArrayRef) -> Result<StringArray> {
    if let Some(booleans) = array.as_any().downcast_ref::<BooleanArray>() {
        return Ok(booleans.iter().map(|b| b.map(|b| if b { "t" } else { "f" })).collect());
    }
    let text = cast(array, &DataType::Utf8)?;
    match text.as_any().downcast_ref::<StringArray>() {
        Some(strings) => Ok(strings.clone()),
        None => exec_err!("format: cannot write a {} as text", array.data_type()),
    }
}

/// One row's `format`.
fn format_row(template: &str, arguments: &[Option<&str>]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // An optional position: digits then `$`.
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let index = if digits.is_empty() {
            next
        } else if chars.next() == Some('$') {
            match digits.parse::<usize>() {
                Ok(position) if position >= 1 => position - 1,
                _ => return exec_err!("format: argument positions start at 1"),
            }
        } else {
            return exec_err!("format: unsupported width in \"{template}\"");
        };
        next = index + 1;
        let Some(argument) = arguments.get(index) else {
            return exec_err!("format: too few arguments for \"{template}\"");
        };
        match chars.next() {
            Some('s') => out.push_str(argument.unwrap_or("")),
            Some('I') => match argument {
                Some(name) => out.push_str(&quote_ident(name)),
                None => return exec_err!("format: a NULL cannot be an identifier (%I)"),
            },
            Some('L') => match argument {
                Some(text) => out.push_str(&format!("'{}'", text.replace('\'', "''"))),
                None => out.push_str("NULL"),
            },
            other => {
                return exec_err!("format: unknown conversion \"%{}\"", other.map(String::from).unwrap_or_default())
            }
        }
    }
    Ok(out)
}

/// `name` as an identifier: bare when it reads the same folded to lower
/// case and is no reserved word, double-quoted otherwise. PostgreSQL also
/// quotes its column-name keywords (`time`, `int`), which read the same bare
/// in most places.
fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && RESERVED.binary_search(&name).is_err();
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// PostgreSQL's reserved words, and the type and function names it reserves
/// (its `RESERVED_KEYWORD` and `TYPE_FUNC_NAME_KEYWORD`), sorted.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BooleanArray, Float64Array};
    use arrow::datatypes::{DataType, Field};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};

    use super::{format_row, format_udf};

    #[test]
    fn formats_columns_row_by_row_and_scalars_in_an_empty_batch() {
        let udf = format_udf();
        let call = |args: Vec<ColumnarValue>, rows: usize| {
            let arg_fields = args.iter().map(|a| Arc::new(Field::new("a", a.data_type(), true))).collect();
            udf.invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields,
                number_rows: rows,
                return_field: Arc::new(Field::new("f", DataType::Utf8, true)),
                config_options: Arc::default(),
            })
        };
        let template = ColumnarValue::Scalar(ScalarValue::Utf8(Some("%s|%s".into())));
        let flags = ColumnarValue::Array(Arc::new(BooleanArray::from(vec![Some(true), None])) as ArrayRef);
        let numbers = ColumnarValue::Array(Arc::new(Float64Array::from(vec![1.5, 2.5])) as ArrayRef);
        let ColumnarValue::Array(out) = call(vec![template.clone(), flags, numbers], 2).unwrap() else { panic!() };
        let out = out.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        assert_eq!((out.value(0), out.value(1)), ("t|1.5", "|2.5"));
        let literal = ColumnarValue::Scalar(ScalarValue::Utf8(Some("x".into())));
        let scalar = call(vec![template, literal.clone(), literal], 0).unwrap();
        assert!(matches!(scalar, ColumnarValue::Scalar(ScalarValue::Utf8(Some(s))) if s == "x|x"));
    }

    #[test]
    fn formats_as_postgresql_does() {
        assert_eq!(format_row("%s", &[Some("float8")]).unwrap(), "float8");
        assert_eq!(format_row("\"%s\".\"%s\"", &[Some("s"), Some("t")]).unwrap(), "\"s\".\"t\"");
        assert_eq!(format_row("%I.%I", &[Some("public"), Some("Cpu Load")]).unwrap(), "public.\"Cpu Load\"");
        assert_eq!(
            format_row("%I.%I.%I", &[Some("public"), Some("user"), Some("a$b")]).unwrap(),
            "public.\"user\".\"a$b\""
        );
        assert_eq!(format_row("%L, %s, %%", &[Some("it's"), None]).unwrap(), "'it''s', , %");
        assert_eq!(format_row("%2$s %1$s", &[Some("a"), Some("b")]).unwrap(), "b a");
        assert!(format_row("%s %s", &[Some("a")]).is_err());
        assert!(format_row("%I", &[None]).is_err());
    }
}
