//! What a database holds, at a glance, for the web UI's table browser:
//! every measurement with its columns (tag, field or time, and the SQL type
//! a query sees) and what the catalog knows of its files, and the tables and
//! views SQL made. Read from memory only: no file is opened.

use serde::Serialize;

use super::QueryEngine;
use crate::access::Access;
use crate::catalog::{ColumnType, TableSummary};

/// One database.
#[derive(Debug, Serialize)]
pub struct DatabaseOverview {
    /// Its name.
    pub name: String,
    /// Its measurements, by name.
    pub tables: Vec<MeasurementOverview>,
    /// The tables and views SQL made in it (`CREATE TABLE ... AS`, `CREATE VIEW`).
    pub relations: Vec<RelationOverview>,
}

/// A measurement.
#[derive(Debug, Serialize)]
pub struct MeasurementOverview {
    /// Its name.
    pub name: String,
    /// Its columns, in the order a `SELECT *` gives them.
    pub columns: Vec<ColumnOverview>,
    /// Hour partitions with files.
    pub partitions: usize,
    /// Files.
    pub files: usize,
    /// Rows in those files (rows still in the write buffer are not counted).
    pub rows: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// The earliest time in the files (RFC 3339), if any.
    pub min_time: Option<String>,
    /// The latest time in the files (RFC 3339), if any.
    pub max_time: Option<String>,
}

/// A column of a measurement.
#[derive(Debug, Serialize)]
pub struct ColumnOverview {
    /// Its name.
    pub name: String,
    /// `tag`, `field` or `time`.
    pub kind: &'static str,
    /// The value type: `tag`, `float`, `integer`, `unsigned integer`,
    /// `boolean`, `string` or `timestamp`.
    #[serde(rename = "type")]
    pub value_type: String,
}

/// A table or view SQL made.
#[derive(Debug, Serialize)]
pub struct RelationOverview {
    /// Its name, schema-qualified outside `public`.
    pub name: String,
    /// `table` or `view`.
    pub kind: &'static str,
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl QueryEngine {
    /// Every database `access` sees, with what [`DatabaseOverview`] lists.
    pub async fn overview(&self, access: &Access) -> Vec<DatabaseOverview> {
        let mut databases = Vec::new();
        for name in self.databases(access) {
            let measurements = self.catalog.tables(&name);
            let mut tables = Vec::with_capacity(measurements.len());
            for table in &measurements {
                let Some(schema) = self.catalog.table_schema(&name, table) else { continue };
                let TableSummary { partitions, files, rows, bytes, min_time, max_time } =
                    self.catalog.table_summary(&name, table);
                let (min_time, max_time) = (min_time.map(rfc3339), max_time.map(rfc3339));
                let columns = schema
                    .columns()
                    .iter()
                    .map(|c| ColumnOverview {
                        name: c.name.to_string(),
                        kind: match c.column_type {
                            ColumnType::Tag => "tag",
                            ColumnType::Time => "time",
                            _ => "field",
                        },
                        value_type: c.column_type.to_string(),
                    })
                    .collect();
                tables.push(MeasurementOverview {
                    name: table.clone(),
                    columns,
                    partitions,
                    files,
                    rows,
                    bytes,
                    min_time,
                    max_time,
                });
            }
            // What SQL made: everything the information schema lists in the
            // user's schemas that is not a measurement.
            let relations = match self.relations(&name, access).await {
                Ok(listed) => listed
                    .into_iter()
                    .filter(|r| !matches!(r.schema.as_str(), "information_schema" | "pg_catalog"))
                    .filter(|r| !(r.schema == super::SCHEMA && measurements.contains(&r.name)))
                    .map(|r| RelationOverview {
                        name: if r.schema == super::SCHEMA { r.name } else { format!("{}.{}", r.schema, r.name) },
                        kind: match r.table_type {
                            datafusion::datasource::TableType::View => "view",
                            _ => "table",
                        },
                    })
                    .collect(),
                Err(error) => {
                    tracing::debug!(database = %name, %error, "could not list the relations SQL made");
                    Vec::new()
                }
            };
            databases.push(DatabaseOverview { name, tables, relations });
        }
        databases
    }
}
