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
    context.register_udf(ScalarUDF::new_from_impl(NoIndexDefinition::new()));
    context.register_udf(ScalarUDF::new_from_impl(CurrentSetting::new()));
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

/// `pg_get_indexdef(index [, column, pretty])`: NULL. Measurements have no
/// SQL index (their files are sorted by series and time), so no index of a
/// table here has a definition to give; SQLAlchemy (Superset) calls it when
/// it lists a table's indexes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NoIndexDefinition {
    signature: Signature,
}

impl NoIndexDefinition {
    fn new() -> Self {
        NoIndexDefinition {
            signature: Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(3)], Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for NoIndexDefinition {
    fn name(&self) -> &str {
        "pg_get_indexdef"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
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

/// The tables of `pg_catalog` that a Postgres export fills, loaded once.
pub(crate) fn static_tables() -> Result<Arc<datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables>> {
    Ok(Arc::new(datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables::try_new()?))
}

/// datafusion-pg-catalog's `pg_catalog` over the databases of `catalogs`:
/// built once per database, so that its object ids stay the same from one
/// query to the next (psql looks an id up, then asks about it).
pub(crate) fn pg_catalog_over(
    catalogs: Arc<dyn datafusion::catalog::CatalogProviderList>,
    static_tables: Arc<datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables>,
) -> Result<Arc<dyn datafusion::catalog::SchemaProvider>> {
    Ok(Arc::new(datafusion_pg_catalog::pg_catalog::PgCatalogSchemaProvider::try_new(
        catalogs,
        static_tables,
        datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )?))
}

/// `pg_catalog` as one database sees it, as in Postgres: `pg_namespace`,
/// `pg_class`, `pg_attribute` and the rest describe this database only (so
/// psql's `\dn` and `\dt` list its schemas and tables once); `pg_database`
/// lists every database; `pg_tables` and `pg_views` list this database's
/// tables and views apart (datafusion-pg-catalog lists views among the tables
/// and none in `pg_views`; dbt reads both to tell a view from a table).
#[derive(Debug, Clone)]
pub(crate) struct PgCatalogOfDatabase {
    catalog: Arc<dyn datafusion::catalog::CatalogProvider>,
    /// Over this database only.
    inner: Arc<dyn datafusion::catalog::SchemaProvider>,
    /// Over every database.
    global: Arc<dyn datafusion::catalog::SchemaProvider>,
    /// The databases `pg_database` shows: those that exist and the session
    /// sees (datafusion-pg-catalog lists a `postgres` one that may not exist).
    shown: Vec<String>,
}

impl PgCatalogOfDatabase {
    pub(crate) fn new(
        catalog: Arc<dyn datafusion::catalog::CatalogProvider>,
        inner: Arc<dyn datafusion::catalog::SchemaProvider>,
        global: Arc<dyn datafusion::catalog::SchemaProvider>,
        shown: Vec<String>,
    ) -> Self {
        PgCatalogOfDatabase { catalog, inner, global, shown }
    }

    /// `pg_database` with the databases this session sees that exist.
    async fn databases(&self) -> datafusion::common::Result<Option<Arc<dyn datafusion::datasource::TableProvider>>> {
        use datafusion::logical_expr::{col, lit, LogicalPlanBuilder};
        let Some(table) = self.global.table("pg_database").await? else { return Ok(None) };
        let source = datafusion::datasource::provider_as_source(table);
        let shown = self.shown.iter().map(|name| lit(name.as_str())).collect();
        let plan = LogicalPlanBuilder::scan("pg_database", source, None)?
            .filter(col("datname").in_list(shown, false))?
            .build()?;
        Ok(Some(Arc::new(datafusion::datasource::ViewTable::new(plan, None))))
    }

    async fn tables_and_views(
        &self,
    ) -> datafusion::common::Result<(arrow::array::RecordBatch, arrow::array::RecordBatch)> {
        use super::information_schema::database_relations;
        use datafusion::datasource::TableType;
        // pg_catalog's own tables are listed by name: opening them would open
        // these two again.
        let relations = database_relations(self.catalog.as_ref(), &["pg_catalog"]).await?;
        let (views, others): (Vec<_>, Vec<_>) =
            relations.iter().partition(|(_, _, table)| table.table_type() == TableType::View);
        let mut own = self.inner.table_names();
        own.sort();
        let tables: Vec<(&str, &str)> = others
            .iter()
            .map(|(schema, name, _)| (schema.as_str(), name.as_str()))
            .chain(own.iter().map(|name| ("pg_catalog", name.as_str())))
            .collect();
        let definitions: Vec<Option<String>> =
            views.iter().map(|(_, _, table)| table.get_table_definition().map(str::to_owned)).collect();
        let views: Vec<(&str, &str, Option<&str>)> = views
            .iter()
            .zip(&definitions)
            .map(|((schema, name, _), definition)| (schema.as_str(), name.as_str(), definition.as_deref()))
            .collect();
        Ok((pg_tables_batch(&tables)?, pg_views_batch(&views)?))
    }
}

/// `pg_tables` rows: schema and name of each table.
fn pg_tables_batch(tables: &[(&str, &str)]) -> datafusion::common::Result<arrow::array::RecordBatch> {
    use super::information_schema::{batch, text};
    use arrow::array::{ArrayRef, BooleanArray};
    use arrow::datatypes::{DataType, Field};
    let n = tables.len();
    let flag = |name: &str| {
        (Field::new(name, DataType::Boolean, false), Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef)
    };
    batch(vec![
        text("schemaname", tables.iter().map(|r| Some(r.0)).collect()),
        text("tablename", tables.iter().map(|r| Some(r.1)).collect()),
        text("tableowner", vec![Some("postgres"); n]),
        text("tablespace", vec![None; n]),
        flag("hasindex"),
        flag("hasrules"),
        flag("hastriggers"),
        flag("rowsecurity"),
    ])
}

/// `pg_views` rows: schema, name and definition of each view.
fn pg_views_batch(views: &[(&str, &str, Option<&str>)]) -> datafusion::common::Result<arrow::array::RecordBatch> {
    use super::information_schema::{batch, text};
    batch(vec![
        text("schemaname", views.iter().map(|r| Some(r.0)).collect()),
        text("viewname", views.iter().map(|r| Some(r.1)).collect()),
        text("viewowner", vec![Some("postgres"); views.len()]),
        text("definition", views.iter().map(|r| r.2).collect()),
    ])
}

#[async_trait::async_trait]
impl datafusion::catalog::SchemaProvider for PgCatalogOfDatabase {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(
        &self,
        name: &str,
    ) -> datafusion::common::Result<Option<Arc<dyn datafusion::datasource::TableProvider>>> {
        use super::information_schema::ComputedTable;
        use datafusion::datasource::TableType;
        // The schemas are known without listing; the rows, when scanned.
        let views = match name {
            "pg_tables" => false,
            "pg_views" => true,
            "pg_database" => return self.databases().await,
            other => return self.inner.table(other).await,
        };
        let schema = if views { pg_views_batch(&[])?.schema() } else { pg_tables_batch(&[])?.schema() };
        let this = self.clone();
        let table = ComputedTable::new(schema, TableType::View, move || {
            let this = this.clone();
            Box::pin(async move {
                let (tables, views_batch) = this.tables_and_views().await?;
                Ok(if views { views_batch } else { tables })
            })
        });
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}
