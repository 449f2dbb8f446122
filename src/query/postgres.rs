//! What the engine knows of PostgreSQL: `pg_catalog`, the functions Postgres
//! clients call on connect (`current_database()`, `current_setting()`,
//! `version()`, ...) and the server version they see.
//!
//! They live in the engine, not in the Postgres front, because the same SQL can
//! arrive through any front (a BI tool on FlightSQL asks `pg_catalog` too) and
//! because the values the front announces at start-up must be the ones SQL
//! returns.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog;

/// The PostgreSQL version HourglassDB speaks as. psql chooses its catalog
/// queries by this number, and the ones of 15 are the ones tested.
pub const SERVER_VERSION: &str = "15.0";
/// `server_version_num` for [`SERVER_VERSION`].
pub const SERVER_VERSION_NUM: &str = "150000";

/// `server_version` as announced at start-up and returned by `SHOW
/// server_version`: the Postgres version, then who answers (the shape of
/// Debian's `15.18 (Debian 15.18-0+deb12u1)`, which every driver parses).
pub fn server_version() -> String {
    format!("{SERVER_VERSION} (HourglassDB {})", env!("CARGO_PKG_VERSION"))
}

/// What `version()` returns.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (HourglassDB {}) on {}-linux, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// The run-time settings that clients read with `current_setting()` and `SHOW`,
/// and that the Postgres front announces at start-up (those marked so).
pub fn settings() -> Vec<(&'static str, String, bool)> {
    vec![
        ("server_version", server_version(), true),
        ("server_version_num", SERVER_VERSION_NUM.to_owned(), false),
        ("server_encoding", "UTF8".to_owned(), true),
        ("client_encoding", "UTF8".to_owned(), true),
        ("DateStyle", "ISO, MDY".to_owned(), true),
        ("IntervalStyle", "postgres".to_owned(), true),
        ("TimeZone", "UTC".to_owned(), true),
        ("integer_datetimes", "on".to_owned(), true),
        ("standard_conforming_strings", "on".to_owned(), true),
        ("is_superuser", "on".to_owned(), true),
        ("default_transaction_read_only", "off".to_owned(), true),
        ("in_hot_standby", "off".to_owned(), true),
        ("search_path", "public".to_owned(), false),
        ("max_identifier_length", "63".to_owned(), false),
        ("transaction_isolation", "read committed".to_owned(), false),
        ("default_transaction_isolation", "read committed".to_owned(), false),
        ("statement_timeout", "0".to_owned(), false),
        ("lc_collate", "C".to_owned(), false),
        ("lc_ctype", "C".to_owned(), false),
        // Limits clients read to size their catalog queries (JDBC's key
        // metadata joins a series of `max_index_keys` positions).
        ("max_index_keys", "32".to_owned(), false),
        ("max_function_args", "100".to_owned(), false),
        ("block_size", "8192".to_owned(), false),
    ]
}

/// Adds `pg_catalog` to the catalog named `default` (whose provider shares it
/// with every database) and the Postgres functions to the session.
pub(crate) fn install(context: &SessionContext, database: &str) -> Result<()> {
    datafusion_pg_catalog::setup_pg_catalog(
        context,
        database,
        datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(|e| *e)?;
    // Every type is visible: there is one search path and no user type.
    // SQLAlchemy (Superset) reads columns' domains through it.
    context.register_udf(
        datafusion_pg_catalog::pg_catalog::create_pg_table_is_visible().with_aliases(["pg_type_is_visible"]),
    );
    for function in Unknown::all() {
        context.register_udf(function);
    }
    context.register_udf(ScalarUDF::new_from_impl(CurrentSetting::new()));
    context.register_udf(super::pg_format::format_udf());
    context.register_udf(ScalarUDF::new_from_impl(Constant::new("version", version_string())));
    Ok(())
}

/// `current_database()` for a session in `database`.
pub(crate) fn current_database(database: &str) -> ScalarUDF {
    datafusion_pg_catalog::pg_catalog::create_current_database_udf(database)
}

/// A function without arguments that returns a fixed string.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    value: String,
    signature: Signature,
}

impl Constant {
    fn new(name: &'static str, value: String) -> Self {
        Constant { name, value, signature: Signature::exact(vec![], Volatility::Stable) }
    }
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(self.value.clone()))))
    }
}

/// A catalog function whose answer HourglassDB does not have: NULL, as
/// PostgreSQL answers for an object it does not know. Clients call these
/// while they list tables and keep going on NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Unknown {
    name: &'static str,
    returns: DataType,
    signature: Signature,
}

impl Unknown {
    fn function(name: &'static str, arities: &[usize], returns: DataType) -> ScalarUDF {
        let arities = arities.iter().map(|n| TypeSignature::Any(*n)).collect();
        ScalarUDF::new_from_impl(Unknown { name, returns, signature: Signature::one_of(arities, Volatility::Stable) })
    }

    /// The functions answered so:
    /// - `pg_get_indexdef(index [, column, pretty])`: measurements have no
    ///   SQL index (their files are sorted by series and time); SQLAlchemy
    ///   (Superset) and JDBC's index metadata call it;
    /// - `pg_relation_size`, `pg_total_relation_size`, `pg_table_size`,
    ///   `pg_indexes_size` of a table (datafusion-pg-catalog's take only a
    ///   32-bit oid, and DBeaver passes a 64-bit one): a table's bytes are in
    ///   `/api/catalog` and `/metrics`, not known here by oid;
    /// - `pg_tablespace_location`: there are no tablespaces;
    /// - `obj_description`, `col_description`, `shobj_description`: no
    ///   object has a comment (Metabase reads columns' comments, JDBC
    ///   types' and functions');
    /// - `pg_get_ruledef`: no table has a rule (DBeaver lists a table's).
    fn all() -> Vec<ScalarUDF> {
        let mut functions = vec![
            Unknown::function("pg_get_indexdef", &[1, 3], DataType::Utf8),
            Unknown::function("pg_tablespace_location", &[1], DataType::Utf8),
            Unknown::function("obj_description", &[1, 2], DataType::Utf8),
            Unknown::function("col_description", &[2], DataType::Utf8),
            Unknown::function("shobj_description", &[2], DataType::Utf8),
            Unknown::function("pg_get_ruledef", &[1, 2], DataType::Utf8),
        ];
        for size in ["pg_relation_size", "pg_total_relation_size", "pg_table_size", "pg_indexes_size"] {
            functions.push(Unknown::function(size, &[1, 2], DataType::Int64));
        }
        functions
    }
}

impl ScalarUDFImpl for Unknown {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from(&self.returns)?))
    }
}

/// `current_setting(name [, missing_ok])`, over [`settings`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> Self {
        CurrentSetting {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }
}

/// The value of a run-time setting, as `current_setting(name)` returns it.
pub fn setting(name: &str) -> Option<String> {
    settings().into_iter().find(|(key, _, _)| key.eq_ignore_ascii_case(name)).map(|(_, value, _)| value)
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let missing_ok = matches!(args.args.get(1), Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))));
        let value = |name: Option<&str>| -> Result<Option<String>> {
            let Some(name) = name else { return Ok(None) };
            match setting(name) {
                Some(value) => Ok(Some(value)),
                None if missing_ok => Ok(None),
                None => plan_err!("unrecognized configuration parameter \"{name}\""),
            }
        };
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(name)) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value(name.as_deref())?)))
            }
            ColumnarValue::Array(array) => {
                let names = array
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| DataFusionError::Internal("current_setting: names are not Utf8".into()))?;
                let values: Result<StringArray> = names.iter().map(value).collect();
                Ok(ColumnarValue::Array(Arc::new(values?) as ArrayRef))
            }
            other => plan_err!("current_setting: unexpected argument {other:?}"),
        }
    }
}
