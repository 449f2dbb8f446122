//! `information_schema` as Postgres clients read it.
//!
//! DataFusion's own lists every catalog, names types the Arrow way (`Int64`,
//! `Timestamp(ns, "UTC")`) and numbers columns from 0; Grafana's query builder,
//! dbt and Metabase classify columns by Postgres type names (`bigint`,
//! `timestamp with time zone`) and `udt_name`, and order them by a 1-based
//! `ordinal_position`. This schema answers `tables`, `columns` and `schemata`
//! for one database the way Postgres does, with the same types the wire
//! announces; its other tables (`views`, `df_settings`, `routines`,
//! `parameters`) are DataFusion's.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::{MemTable, TableProvider, TableType};

/// The name of the schema.
pub(crate) const INFORMATION_SCHEMA: &str = "information_schema";

/// The tables this schema answers itself.
const OWN_TABLES: &[&str] =
    &["tables", "columns", "schemata", "table_constraints", "key_column_usage", "referential_constraints"];

/// `information_schema` of one database.
#[derive(Debug, Clone)]
pub(crate) struct PgInformationSchema {
    database: String,
    catalog: Arc<dyn CatalogProvider>,
    datafusion: Arc<InformationSchemaProvider>,
}

impl PgInformationSchema {
    pub(crate) fn new(
        database: &str,
        catalog: Arc<dyn CatalogProvider>,
        catalog_list: Arc<dyn CatalogProviderList>,
    ) -> Self {
        PgInformationSchema {
            database: database.to_owned(),
            catalog,
            datafusion: Arc::new(InformationSchemaProvider::new(catalog_list)),
        }
    }

    /// Every table of the database, with its schema name, type and columns;
    /// this schema's own tables are listed as views, as Postgres lists them.
    pub(crate) async fn relations(&self) -> Result<Vec<Relation>> {
        let mut relations: Vec<Relation> = database_relations(self.catalog.as_ref(), &[])
            .await?
            .into_iter()
            .map(|(schema, name, table)| (schema, name, table.table_type(), table.schema()))
            .collect();
        let mut own = self.table_names();
        own.sort();
        for name in own {
            let schema = match name.as_str() {
                "tables" => tables_batch(&self.database, &[])?.schema(),
                "columns" => columns_batch(&self.database, &[])?.schema(),
                "schemata" => schemata_batch(&self.database, Vec::new())?.schema(),
                other => match constraints_batch(other) {
                    Some(rows) => rows?.schema(),
                    None => match self.datafusion.table(other).await? {
                        Some(table) => table.schema(),
                        None => continue,
                    },
                },
            };
            relations.push((INFORMATION_SCHEMA.to_owned(), name, TableType::View, schema));
        }
        Ok(relations)
    }

    fn schemata(&self) -> Result<RecordBatch> {
        let mut names = self.catalog.schema_names();
        if !names.iter().any(|n| n == INFORMATION_SCHEMA) {
            names.push(INFORMATION_SCHEMA.to_owned());
        }
        names.sort();
        schemata_batch(&self.database, names)
    }
}

/// A table's schema name, name, type and columns.
pub(crate) type Relation = (String, String, TableType, SchemaRef);

/// Every table and view of a database but those of `information_schema` and
/// of the schemas in `skip`, by schema and name.
pub(crate) async fn database_relations(
    catalog: &dyn CatalogProvider,
    skip: &[&str],
) -> Result<Vec<(String, String, Arc<dyn TableProvider>)>> {
    let mut relations = Vec::new();
    let mut schemas = catalog.schema_names();
    schemas.sort();
    for schema_name in schemas {
        if schema_name == INFORMATION_SCHEMA || skip.contains(&schema_name.as_str()) {
            continue;
        }
        let Some(provider) = catalog.schema(&schema_name) else { continue };
        let mut names = provider.table_names();
        names.sort();
        for name in names {
            if let Some(table) = provider.table(&name).await? {
                relations.push((schema_name.clone(), name, table));
            }
        }
    }
    Ok(relations)
}

fn tables_batch(database: &str, relations: &[Relation]) -> Result<RecordBatch> {
    let kind = |t: &TableType| match t {
        TableType::Base => "BASE TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    };
    let n = relations.len();
    batch(vec![
        text("table_catalog", vec![Some(database); n]),
        text("table_schema", relations.iter().map(|r| Some(r.0.as_str())).collect()),
        text("table_name", relations.iter().map(|r| Some(r.1.as_str())).collect()),
        text("table_type", relations.iter().map(|r| Some(kind(&r.2))).collect()),
        text("self_referencing_column_name", vec![None; n]),
        text("reference_generation", vec![None; n]),
        text("user_defined_type_catalog", vec![None; n]),
        text("user_defined_type_schema", vec![None; n]),
        text("user_defined_type_name", vec![None; n]),
        text(
            "is_insertable_into",
            relations.iter().map(|r| Some(if r.2 == TableType::Base { "YES" } else { "NO" })).collect(),
        ),
        text("is_typed", vec![Some("NO"); n]),
        text("commit_action", vec![None; n]),
    ])
}

fn columns_batch(database: &str, relations: &[Relation]) -> Result<RecordBatch> {
    let mut rows: Vec<(&str, &str, usize, &Field, PgType)> = Vec::new();
    for (schema, table, _, columns) in relations {
        for (i, field) in columns.fields().iter().enumerate() {
            rows.push((schema, table, i + 1, field, PgType::of(field.data_type())));
        }
    }
    let n = rows.len();
    let int = |name: &str, values: Vec<Option<i32>>| {
        (Field::new(name, DataType::Int32, true), Arc::new(Int32Array::from(values)) as ArrayRef)
    };
    batch(vec![
        text("table_catalog", vec![Some(database); n]),
        text("table_schema", rows.iter().map(|r| Some(r.0)).collect()),
        text("table_name", rows.iter().map(|r| Some(r.1)).collect()),
        text("column_name", rows.iter().map(|r| Some(r.3.name().as_str())).collect()),
        int("ordinal_position", rows.iter().map(|r| i32::try_from(r.2).ok()).collect()),
        text("column_default", vec![None; n]),
        text("is_nullable", rows.iter().map(|r| Some(if r.3.is_nullable() { "YES" } else { "NO" })).collect()),
        text("data_type", rows.iter().map(|r| Some(r.4.name)).collect()),
        int("character_maximum_length", vec![None; n]),
        int("character_octet_length", rows.iter().map(|r| r.4.text.then_some(1_073_741_824)).collect()),
        int("numeric_precision", rows.iter().map(|r| r.4.precision).collect()),
        int("numeric_precision_radix", rows.iter().map(|r| r.4.radix).collect()),
        int("numeric_scale", rows.iter().map(|r| r.4.scale).collect()),
        int("datetime_precision", rows.iter().map(|r| r.4.datetime_precision).collect()),
        text("interval_type", vec![None; n]),
        text("character_set_name", vec![None; n]),
        text("collation_name", vec![None; n]),
        text("domain_name", vec![None; n]),
        text("udt_catalog", vec![Some(database); n]),
        text("udt_schema", vec![Some("pg_catalog"); n]),
        text("udt_name", rows.iter().map(|r| Some(r.4.udt)).collect()),
        text("is_identity", vec![Some("NO"); n]),
        text("is_generated", vec![Some("NEVER"); n]),
        text("is_updatable", rows.iter().map(|_| Some("YES")).collect()),
    ])
}

fn schemata_batch(database: &str, names: Vec<String>) -> Result<RecordBatch> {
    let n = names.len();
    batch(vec![
        text("catalog_name", vec![Some(database); n]),
        text("schema_name", names.iter().map(|s| Some(s.as_str())).collect()),
        text("schema_owner", vec![Some("hourglass"); n]),
        text("default_character_set_catalog", vec![None; n]),
        text("default_character_set_schema", vec![None; n]),
        text("default_character_set_name", vec![None; n]),
        text("sql_path", vec![None; n]),
    ])
}

/// The constraint tables, empty: measurements have no primary, unique or
/// foreign key (rows are told apart by series and time, not by a
/// constraint). Metabase reads primary keys from `table_constraints` and
/// `key_column_usage` when it lists columns. `None` for another name.
fn constraints_batch(name: &str) -> Option<Result<RecordBatch>> {
    // Both name a constraint, then the table it constrains.
    let constraint_and_table =
        ["constraint_catalog", "constraint_schema", "constraint_name", "table_catalog", "table_schema", "table_name"];
    let names: Vec<&str> = match name {
        "table_constraints" => constraint_and_table
            .into_iter()
            .chain(["constraint_type", "is_deferrable", "initially_deferred", "enforced", "nulls_distinct"])
            .collect(),
        "key_column_usage" => constraint_and_table
            .into_iter()
            .chain(["column_name", "ordinal_position", "position_in_unique_constraint"])
            .collect(),
        "referential_constraints" => vec![
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "unique_constraint_catalog",
            "unique_constraint_schema",
            "unique_constraint_name",
            "match_option",
            "update_rule",
            "delete_rule",
        ],
        _ => return None,
    };
    let columns = names
        .into_iter()
        .map(|name| match name {
            "ordinal_position" | "position_in_unique_constraint" => {
                (Field::new(name, DataType::Int32, true), Arc::new(Int32Array::from(Vec::<i32>::new())) as ArrayRef)
            }
            _ => text(name, vec![]),
        })
        .collect();
    Some(batch(columns))
}

/// How a [`ComputedTable`] makes its rows.
type Compute = Box<dyn Fn() -> futures::future::BoxFuture<'static, Result<RecordBatch>> + Send + Sync>;

/// A catalog table whose rows are computed when it is scanned, not when it is
/// opened: listing the catalog opens every table (datafusion-pg-catalog's
/// `pg_class` does, and so does `information_schema` itself), and must not
/// list the catalog again for each one.
pub(crate) struct ComputedTable {
    schema: SchemaRef,
    kind: TableType,
    compute: Compute,
}

impl ComputedTable {
    pub(crate) fn new(
        schema: SchemaRef,
        kind: TableType,
        compute: impl Fn() -> futures::future::BoxFuture<'static, Result<RecordBatch>> + Send + Sync + 'static,
    ) -> Self {
        ComputedTable { schema, kind, compute: Box::new(compute) }
    }
}

impl std::fmt::Debug for ComputedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputedTable").field("schema", &self.schema).finish()
    }
}

#[async_trait]
impl TableProvider for ComputedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.kind
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::prelude::Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let batch = (self.compute)().await?;
        MemTable::try_new(Arc::clone(&self.schema), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}

pub(crate) fn text(name: &str, values: Vec<Option<&str>>) -> (Field, ArrayRef) {
    (Field::new(name, DataType::Utf8, true), Arc::new(StringArray::from(values)) as ArrayRef)
}

pub(crate) fn batch(columns: Vec<(Field, ArrayRef)>) -> Result<RecordBatch> {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// How Postgres names and sizes a column type.
struct PgType {
    /// `data_type`: `bigint`, `timestamp with time zone`.
    name: &'static str,
    /// `udt_name`: `int8`, `timestamptz`.
    udt: &'static str,
    precision: Option<i32>,
    radix: Option<i32>,
    scale: Option<i32>,
    datetime_precision: Option<i32>,
    text: bool,
}

impl PgType {
    /// The Postgres type of an Arrow type, as the wire announces it
    /// (datafusion-postgres' `into_pg_type`): tags and strings are `text`,
    /// `UInt64` is `numeric`.
    fn of(data_type: &DataType) -> PgType {
        let plain = |name, udt| PgType {
            name,
            udt,
            precision: None,
            radix: None,
            scale: None,
            datetime_precision: None,
            text: false,
        };
        let number = |name, udt, precision, radix, scale| PgType {
            precision: Some(precision),
            radix: Some(radix),
            scale,
            ..plain(name, udt)
        };
        match data_type {
            DataType::Dictionary(_, value) => PgType::of(value),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PgType { text: true, ..plain("text", "text") },
            DataType::Boolean => plain("boolean", "bool"),
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => number("smallint", "int2", 16, 2, Some(0)),
            DataType::Int32 | DataType::UInt16 => number("integer", "int4", 32, 2, Some(0)),
            DataType::Int64 | DataType::UInt32 => number("bigint", "int8", 64, 2, Some(0)),
            DataType::UInt64 => plain("numeric", "numeric"),
            DataType::Float16 | DataType::Float32 => number("real", "float4", 24, 2, None),
            DataType::Float64 => number("double precision", "float8", 53, 2, None),
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                number("numeric", "numeric", i32::from(*p), 10, Some(i32::from(*s)))
            }
            DataType::Timestamp(unit, zone) => PgType {
                datetime_precision: Some(if *unit == TimeUnit::Second { 0 } else { 6 }),
                ..if zone.is_some() {
                    plain("timestamp with time zone", "timestamptz")
                } else {
                    plain("timestamp without time zone", "timestamp")
                }
            },
            DataType::Date32 | DataType::Date64 => PgType { datetime_precision: Some(0), ..plain("date", "date") },
            DataType::Time32(_) | DataType::Time64(_) => {
                PgType { datetime_precision: Some(6), ..plain("time without time zone", "time") }
            }
            DataType::Interval(_) | DataType::Duration(_) => plain("interval", "interval"),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
                plain("bytea", "bytea")
            }
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => plain("ARRAY", "_text"),
            DataType::Struct(_) | DataType::Map(..) => plain("json", "json"),
            _ => PgType { text: true, ..plain("text", "text") },
        }
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.datafusion.table_names();
        for own in OWN_TABLES {
            if !names.iter().any(|n| n == own) {
                names.push((*own).to_owned());
            }
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let this = self.clone();
        let table: ComputedTable = match name.to_ascii_lowercase().as_str() {
            "tables" => ComputedTable::new(tables_batch(&self.database, &[])?.schema(), TableType::View, move || {
                let this = this.clone();
                Box::pin(async move { tables_batch(&this.database, &this.relations().await?) })
            }),
            "columns" => ComputedTable::new(columns_batch(&self.database, &[])?.schema(), TableType::View, move || {
                let this = this.clone();
                Box::pin(async move { columns_batch(&this.database, &this.relations().await?) })
            }),
            "schemata" => {
                ComputedTable::new(schemata_batch(&self.database, Vec::new())?.schema(), TableType::View, move || {
                    let this = this.clone();
                    Box::pin(async move { this.schemata() })
                })
            }
            other => match constraints_batch(other) {
                Some(rows) => {
                    let rows = rows?;
                    // Views, as in PostgreSQL (and so not listed as tables).
                    ComputedTable::new(rows.schema(), TableType::View, move || {
                        let rows = rows.clone();
                        Box::pin(async move { Ok(rows) })
                    })
                }
                None => return self.datafusion.table(other).await,
            },
        };
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        OWN_TABLES.contains(&name.to_ascii_lowercase().as_str()) || self.datafusion.table_exist(name)
    }
}
