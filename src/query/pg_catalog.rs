//! `pg_catalog` as one database sees it: datafusion-pg-catalog's tables,
//! scoped to the database, with what PostgreSQL clients read that the
//! crate's tables lack or hold in another shape: `pg_tables` apart from
//! `pg_views`, `pg_settings` with every setting, `pg_constraint`'s key
//! columns as arrays, `pg_class`' access lists and options, `pg_policies`.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::{provider_as_source, TableProvider, TableType, ViewTable};
use datafusion::logical_expr::{cast, col, lit, Expr, LogicalPlanBuilder};
use datafusion_postgres::datafusion_pg_catalog;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;

use super::information_schema::{batch, database_relations, text, ComputedTable};

/// The tables of `pg_catalog` that a Postgres export fills, loaded once.
pub(crate) fn static_tables() -> Result<Arc<PgCatalogStaticTables>> {
    Ok(Arc::new(PgCatalogStaticTables::try_new()?))
}

/// datafusion-pg-catalog's `pg_catalog` over the databases of `catalogs`:
/// built once per database, so that its object ids stay the same from one
/// query to the next (psql looks an id up, then asks about it).
pub(crate) fn pg_catalog_over(
    catalogs: Arc<dyn CatalogProviderList>,
    static_tables: Arc<PgCatalogStaticTables>,
) -> Result<Arc<dyn SchemaProvider>> {
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
    catalog: Arc<dyn CatalogProvider>,
    /// Over this database only.
    inner: Arc<dyn SchemaProvider>,
    /// Over every database.
    global: Arc<dyn SchemaProvider>,
    /// The databases `pg_database` shows: those that exist and the session
    /// sees (datafusion-pg-catalog lists a `postgres` one that may not exist).
    shown: Vec<String>,
}

impl PgCatalogOfDatabase {
    /// `pg_catalog` of the database `catalog`, over datafusion-pg-catalog's
    /// schema of that database alone (`inner`) and of every database
    /// (`global`), showing the databases in `shown`.
    pub(crate) fn new(
        catalog: Arc<dyn CatalogProvider>,
        inner: Arc<dyn SchemaProvider>,
        global: Arc<dyn SchemaProvider>,
        shown: Vec<String>,
    ) -> Self {
        PgCatalogOfDatabase { catalog, inner, global, shown }
    }

    /// `pg_database` with the databases this session sees that exist.
    async fn databases(&self) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.global.table("pg_database").await? else { return Ok(None) };
        let source = provider_as_source(table);
        let shown = self.shown.iter().map(|name| lit(name.as_str())).collect();
        let plan = LogicalPlanBuilder::scan("pg_database", source, None)?
            .filter(col("datname").in_list(shown, false))?
            .build()?;
        Ok(Some(Arc::new(CatalogTable(Arc::new(ViewTable::new(plan, None))))))
    }

    async fn tables_and_views(&self) -> Result<(RecordBatch, RecordBatch)> {
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

/// The tables this schema has that datafusion-pg-catalog's lacks.
const OWN_TABLES: &[&str] = &["pg_policies"];

impl PgCatalogOfDatabase {
    /// datafusion-pg-catalog's table `name` seen through `columns`, which
    /// gives the expressions of its columns from its own.
    async fn reshaped(
        &self,
        name: &str,
        columns: fn(&arrow::datatypes::Schema) -> Result<Vec<Expr>>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else { return Ok(None) };
        let expressions = columns(&table.schema())?;
        let plan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?.project(expressions)?.build()?;
        Ok(Some(Arc::new(CatalogTable(Arc::new(ViewTable::new(plan, None))))))
    }
}

/// A column of a catalog table, by its exact name.
fn column(name: &str) -> Expr {
    Expr::Column(datafusion::common::Column::new_unqualified(name))
}

/// A typed NULL named `name`.
fn null_column(name: &str, data_type: &DataType) -> Result<Expr> {
    Ok(lit(ScalarValue::try_from(data_type)?).alias(name))
}

/// A text array's type, as PostgreSQL's `text[]` and `aclitem[]` read.
fn text_array() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

/// `pg_class` with the columns datafusion-pg-catalog's lacks, NULL as for a
/// table with default rights and options: `relacl` (JDBC's table
/// privileges, DBeaver's table properties) and `reloptions` (SQLAlchemy's
/// index reflection, DBeaver).
fn pg_class_columns(schema: &arrow::datatypes::Schema) -> Result<Vec<Expr>> {
    let mut columns: Vec<Expr> = schema.fields().iter().map(|f| column(f.name())).collect();
    for missing in ["relacl", "reloptions"] {
        if schema.field_with_name(missing).is_err() {
            columns.push(null_column(missing, &text_array())?);
        }
    }
    Ok(columns)
}

/// The text column `name`, numbers between `separator`s (and `brackets`
/// around them), as an array of `element`s.
fn numbers(name: &str, brackets: bool, separator: &str, element: DataType) -> Expr {
    let text = if brackets {
        datafusion::functions::string::btrim().call(vec![column(name), lit("[]")])
    } else {
        column(name)
    };
    let list = datafusion::functions_nested::string::string_to_array_udf().call(vec![text, lit(separator)]);
    cast(list, DataType::List(Arc::new(Field::new_list_field(element, true)))).alias(name)
}

/// `pg_constraint` with its column-number lists as PostgreSQL types them,
/// `smallint[]`: the export holds them as text (`"[1, 2]"`), and clients
/// subscript them (JDBC's foreign keys: `con.conkey[pos.n]`) or test
/// membership (Metabase: `attnum = ANY(c.conkey)`).
fn pg_constraint_columns(schema: &arrow::datatypes::Schema) -> Result<Vec<Expr>> {
    Ok(schema
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            name @ ("conkey" | "confkey" | "confdelsetcols") if field.data_type() == &DataType::Utf8 => {
                numbers(name, true, ", ", DataType::Int16)
            }
            name => column(name),
        })
        .collect())
}

/// `pg_index` with its vectors as arrays: the export holds them as text
/// (`"1 2"`), and clients expand them (JDBC's primary keys and indexes:
/// `information_schema._pg_expandarray(i.indkey)`; SQLAlchemy:
/// `unnest(indkey)`) or subscript them (JDBC: `indoption[n - 1]`). Arrays
/// here count from 1, where PostgreSQL's vectors count from 0; only the
/// rows of PostgreSQL's own catalog are here to be subscripted.
fn pg_index_columns(schema: &arrow::datatypes::Schema) -> Result<Vec<Expr>> {
    Ok(schema
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            name @ ("indkey" | "indoption") if field.data_type() == &DataType::Utf8 => {
                numbers(name, false, " ", DataType::Int16)
            }
            name @ ("indclass" | "indcollation") if field.data_type() == &DataType::Utf8 => {
                numbers(name, false, " ", DataType::Int32)
            }
            name => column(name),
        })
        .collect())
}

/// A view of fixed rows (`pg_settings` and `pg_policies` are views in
/// PostgreSQL, and `pg_class` lists them so).
fn table_of(rows: RecordBatch) -> Result<Arc<dyn TableProvider>> {
    Ok(Arc::new(ComputedTable::new(rows.schema(), TableType::View, move || {
        let rows = rows.clone();
        Box::pin(async move { Ok(rows) })
    })))
}

/// A catalog table this schema computes over datafusion-pg-catalog's (a
/// view in DataFusion's terms) that `pg_class` must list as the table it
/// is in PostgreSQL (`relkind` `r`, not `v`).
#[derive(Debug)]
struct CatalogTable(Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.0.schema()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }
    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

/// `pg_settings`: every run-time setting (datafusion-pg-catalog's has only
/// `standard_conforming_strings`). JDBC reads `max_index_keys` from it
/// before it lists foreign keys. None can be changed: HourglassDB's
/// settings are the server's.
fn pg_settings_batch() -> Result<RecordBatch> {
    let settings = super::postgres::settings();
    let n = settings.len();
    let vartype = |value: &str| match value {
        "on" | "off" => "bool",
        v if v.parse::<i64>().is_ok() => "integer",
        _ => "string",
    };
    batch(vec![
        text("name", settings.iter().map(|s| Some(s.0)).collect()),
        text("setting", settings.iter().map(|s| Some(s.1.as_str())).collect()),
        text("unit", vec![None; n]),
        text("category", vec![None; n]),
        text("short_desc", vec![None; n]),
        text("extra_desc", vec![None; n]),
        text("context", vec![Some("internal"); n]),
        text("vartype", settings.iter().map(|s| Some(vartype(&s.1))).collect()),
        text("source", vec![Some("default"); n]),
        text("min_val", vec![None; n]),
        text("max_val", vec![None; n]),
        text("enumvals", vec![None; n]),
        text("boot_val", settings.iter().map(|s| Some(s.1.as_str())).collect()),
        text("reset_val", settings.iter().map(|s| Some(s.1.as_str())).collect()),
        text("sourcefile", vec![None; n]),
        (Field::new("sourceline", DataType::Int32, true), Arc::new(arrow::array::Int32Array::new_null(n)) as ArrayRef),
        (
            Field::new("pending_restart", DataType::Boolean, true),
            Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef,
        ),
    ])
}

/// `pg_policies`, empty: no table has row security. DBeaver lists a
/// table's policies from it.
fn pg_policies_batch() -> Result<RecordBatch> {
    let roles = arrow::array::new_empty_array(&text_array());
    batch(vec![
        text("schemaname", vec![]),
        text("tablename", vec![]),
        text("policyname", vec![]),
        text("permissive", vec![]),
        (Field::new("roles", text_array(), true), roles),
        text("cmd", vec![]),
        text("qual", vec![]),
        text("with_check", vec![]),
    ])
}

/// `pg_tables` rows: schema and name of each table.
fn pg_tables_batch(tables: &[(&str, &str)]) -> Result<RecordBatch> {
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
fn pg_views_batch(views: &[(&str, &str, Option<&str>)]) -> Result<RecordBatch> {
    batch(vec![
        text("schemaname", views.iter().map(|r| Some(r.0)).collect()),
        text("viewname", views.iter().map(|r| Some(r.1)).collect()),
        text("viewowner", vec![Some("postgres"); views.len()]),
        text("definition", views.iter().map(|r| r.2).collect()),
    ])
}

#[async_trait]
impl SchemaProvider for PgCatalogOfDatabase {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for own in OWN_TABLES {
            if !names.iter().any(|name| name == own) {
                names.push((*own).to_owned());
            }
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        // The schemas are known without listing; the rows, when scanned.
        let views = match name {
            "pg_tables" => false,
            "pg_views" => true,
            "pg_database" => return self.databases().await,
            "pg_settings" => return Ok(Some(table_of(pg_settings_batch()?)?)),
            "pg_policies" => return Ok(Some(table_of(pg_policies_batch()?)?)),
            "pg_class" => return self.reshaped(name, pg_class_columns).await,
            "pg_constraint" => return self.reshaped(name, pg_constraint_columns).await,
            "pg_index" => return self.reshaped(name, pg_index_columns).await,
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
        OWN_TABLES.contains(&name) || self.inner.table_exist(name)
    }
}
