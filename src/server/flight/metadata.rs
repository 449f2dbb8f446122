//! FlightSQL's metadata commands: databases as catalogs, their schemas and
//! tables, the table types, what the server supports (GetSqlInfo) and its
//! types (GetXdbcTypeInfo). Keys are answered empty: measurements have none.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData,
    XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, Nullable,
    ProstMessageExt, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransaction,
    XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::datasource::TableType;
use prost::Message;
use tonic::Status;

use super::status::{arrow_status, query_status};
use crate::access::Access;
use crate::query::QueryEngine;

/// The table types GetTables reports and GetTableTypes lists.
const BASE_TABLE: &str = "BASE TABLE";
const VIEW: &str = "VIEW";
const SYSTEM_TABLE: &str = "SYSTEM TABLE";

/// Schemas whose tables describe the database rather than hold its data.
const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "pg_catalog"];

/// A metadata command, answered the same way at GetFlightInfo (its schema)
/// and at DoGet (its rows).
pub(crate) enum MetadataCommand {
    Catalogs(CommandGetCatalogs),
    Schemas(CommandGetDbSchemas),
    Tables(CommandGetTables),
    TableTypes(CommandGetTableTypes),
    SqlInfo(CommandGetSqlInfo),
    XdbcTypeInfo(CommandGetXdbcTypeInfo),
    PrimaryKeys(CommandGetPrimaryKeys),
    ExportedKeys(CommandGetExportedKeys),
    ImportedKeys(CommandGetImportedKeys),
    CrossReference(CommandGetCrossReference),
}

impl MetadataCommand {
    /// The command as a ticket: DoGet answers it again.
    pub(crate) fn ticket(&self) -> Vec<u8> {
        match self {
            MetadataCommand::Catalogs(c) => c.as_any().encode_to_vec(),
            MetadataCommand::Schemas(c) => c.as_any().encode_to_vec(),
            MetadataCommand::Tables(c) => c.as_any().encode_to_vec(),
            MetadataCommand::TableTypes(c) => c.as_any().encode_to_vec(),
            MetadataCommand::SqlInfo(c) => c.as_any().encode_to_vec(),
            MetadataCommand::XdbcTypeInfo(c) => c.as_any().encode_to_vec(),
            MetadataCommand::PrimaryKeys(c) => c.as_any().encode_to_vec(),
            MetadataCommand::ExportedKeys(c) => c.as_any().encode_to_vec(),
            MetadataCommand::ImportedKeys(c) => c.as_any().encode_to_vec(),
            MetadataCommand::CrossReference(c) => c.as_any().encode_to_vec(),
        }
    }

    /// The schema of the command's rows.
    pub(crate) fn schema(&self, sql_info: &SqlInfoData, type_info: &XdbcTypeInfoData) -> SchemaRef {
        match self {
            MetadataCommand::Catalogs(c) => (*c).into_builder().schema(),
            MetadataCommand::Schemas(c) => c.clone().into_builder().schema(),
            MetadataCommand::Tables(c) => c.clone().into_builder().schema(),
            MetadataCommand::TableTypes(c) => (*c).into_builder().schema(),
            MetadataCommand::SqlInfo(c) => c.clone().into_builder(sql_info).schema(),
            MetadataCommand::XdbcTypeInfo(c) => (*c).into_builder(type_info).schema(),
            MetadataCommand::PrimaryKeys(_) => primary_keys_schema(),
            MetadataCommand::ExportedKeys(_)
            | MetadataCommand::ImportedKeys(_)
            | MetadataCommand::CrossReference(_) => foreign_keys_schema(),
        }
    }

    /// The command's rows.
    pub(crate) async fn rows(
        self,
        engine: &QueryEngine,
        sql_info: &SqlInfoData,
        type_info: &XdbcTypeInfoData,
        access: &Access,
    ) -> Result<RecordBatch, Status> {
        match self {
            MetadataCommand::Catalogs(c) => {
                let mut builder = c.into_builder();
                for database in engine.databases(access) {
                    builder.append(database);
                }
                builder.build().map_err(arrow_status)
            }
            MetadataCommand::Schemas(c) => {
                let databases = databases(engine, c.catalog.as_deref(), access);
                let mut builder: GetDbSchemasBuilder = c.into_builder();
                for database in databases {
                    for schema in engine.schemas(&database, access).map_err(query_status)? {
                        builder.append(&database, schema);
                    }
                }
                builder.build().map_err(arrow_status)
            }
            MetadataCommand::Tables(c) => {
                let databases = databases(engine, c.catalog.as_deref(), access);
                let mut builder: GetTablesBuilder = c.into_builder();
                for database in databases {
                    for relation in engine.relations(&database, access).await.map_err(query_status)? {
                        let kind = if SYSTEM_SCHEMAS.contains(&relation.schema.as_str()) {
                            SYSTEM_TABLE
                        } else if relation.table_type == TableType::View {
                            VIEW
                        } else {
                            BASE_TABLE
                        };
                        let columns = super::statements::wire_schema(&relation.columns);
                        builder
                            .append(&database, &relation.schema, &relation.name, kind, &columns)
                            .map_err(arrow_status)?;
                    }
                }
                builder.build().map_err(arrow_status)
            }
            MetadataCommand::TableTypes(c) => {
                let mut builder = c.into_builder();
                for kind in [BASE_TABLE, SYSTEM_TABLE, VIEW] {
                    builder.append(kind);
                }
                builder.build().map_err(arrow_status)
            }
            MetadataCommand::SqlInfo(c) => c.into_builder(sql_info).build().map_err(arrow_status),
            MetadataCommand::XdbcTypeInfo(c) => c.into_builder(type_info).build().map_err(arrow_status),
            MetadataCommand::PrimaryKeys(_) => Ok(RecordBatch::new_empty(primary_keys_schema())),
            MetadataCommand::ExportedKeys(_)
            | MetadataCommand::ImportedKeys(_)
            | MetadataCommand::CrossReference(_) => Ok(RecordBatch::new_empty(foreign_keys_schema())),
        }
    }
}

/// The databases a command asks about: the one it names, or every one (the
/// common case: ADBC's `adbc_get_objects` and Grafana name none).
fn databases(engine: &QueryEngine, catalog: Option<&str>, access: &Access) -> Vec<String> {
    let mut all = engine.databases(access);
    all.sort();
    match catalog {
        Some(name) => all.into_iter().filter(|d| d == name).collect(),
        None => all,
    }
}

/// GetPrimaryKeys' columns, from the FlightSQL specification.
fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// GetExportedKeys', GetImportedKeys' and GetCrossReference's columns.
fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// What the server is and supports, for GetSqlInfo: the JDBC driver reads these
/// for `DatabaseMetaData`, ADBC for `adbc_get_info`, Grafana for its info page.
pub(crate) fn sql_info(read_only: bool) -> Result<SqlInfoData, FlightError> {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "HourglassDB");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    info.append(SqlInfo::FlightSqlServerReadOnly, read_only);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
    info.append(SqlInfo::FlightSqlServerCancel, true);
    info.append(SqlInfo::FlightSqlServerBulkIngestion, !read_only);
    info.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    // In FlightSQL this is how long a prepared statement's handle stays valid:
    // handles carry their statement and never expire.
    info.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    info.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, !read_only);
    info.append(SqlInfo::SqlDdlTable, !read_only);
    info.append(SqlInfo::SqlIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    info.append(SqlInfo::SqlAllTablesAreSelectable, true);
    info.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedHigh as i32);
    info.append(SqlInfo::SqlKeywords, &KEYWORDS[..]);
    info.append(SqlInfo::SqlNumericFunctions, &NUMERIC_FUNCTIONS[..]);
    info.append(SqlInfo::SqlStringFunctions, &STRING_FUNCTIONS[..]);
    info.append(SqlInfo::SqlSystemFunctions, &["current_database", "current_schema", "version"][..]);
    info.append(SqlInfo::SqlDatetimeFunctions, &DATETIME_FUNCTIONS[..]);
    info.append(SqlInfo::SqlSearchStringEscape, "\\");
    info.append(SqlInfo::SqlExtraNameCharacters, "");
    info.append(SqlInfo::SqlSupportsColumnAliasing, true);
    info.append(SqlInfo::SqlNullPlusNullIsNull, true);
    info.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    info.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    info.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    info.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    info.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    info.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    info.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    info.append(SqlInfo::SqlSchemaTerm, "schema");
    info.append(SqlInfo::SqlProcedureTerm, "procedure");
    info.append(SqlInfo::SqlCatalogTerm, "database");
    info.append(SqlInfo::SqlCatalogAtStart, true);
    info.append(SqlInfo::SqlSelectForUpdateSupported, false);
    info.append(SqlInfo::SqlStoredProceduresSupported, false);
    info.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    info.append(SqlInfo::SqlMaxColumnNameLength, 255i64);
    info.append(SqlInfo::SqlMaxTableNameLength, 255i64);
    info.append(SqlInfo::SqlDbSchemaNameLength, 255i64);
    info.append(SqlInfo::SqlMaxCatalogNameLength, 255i64);
    info.append(SqlInfo::SqlTransactionsSupported, false);
    info.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    info.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    info.append(SqlInfo::SqlBatchUpdatesSupported, false);
    info.append(SqlInfo::SqlSavepointsSupported, false);
    info.append(SqlInfo::SqlNamedParametersSupported, false);
    info.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    info.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    info.build()
}

const KEYWORDS: [&str; 24] = [
    "ANALYZE",
    "ASOF",
    "COPY",
    "DATABASES",
    "DATE_BIN",
    "DESCRIBE",
    "EXPLAIN",
    "FORMAT",
    "ILIKE",
    "INTERVAL",
    "LIMIT",
    "NULLS",
    "OFFSET",
    "OVER",
    "PARTITION",
    "QUALIFY",
    "RANGE",
    "ROWS",
    "SHOW",
    "TABLES",
    "TIME_BUCKET",
    "TIMESTAMPTZ",
    "UNNEST",
    "WINDOW",
];
const NUMERIC_FUNCTIONS: [&str; 20] = [
    "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "degrees", "exp", "floor", "ln", "log", "log10", "pi",
    "power", "radians", "round", "sin", "sqrt", "trunc",
];
const STRING_FUNCTIONS: [&str; 16] = [
    "ascii",
    "btrim",
    "concat",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "regexp_replace",
    "replace",
    "right",
    "rpad",
    "rtrim",
    "substr",
    "upper",
];
const DATETIME_FUNCTIONS: [&str; 10] = [
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "extract",
    "now",
    "time_bucket",
    "to_timestamp",
    "to_char",
];

/// The SQL types the engine stores and computes, for GetXdbcTypeInfo.
pub(crate) fn xdbc_type_info() -> Result<XdbcTypeInfoData, FlightError> {
    let entry = |name: &str, data_type: XdbcDataType, size: Option<i32>, prefix: Option<&str>| XdbcTypeInfo {
        type_name: name.to_owned(),
        data_type,
        column_size: size,
        literal_prefix: prefix.map(str::to_owned),
        literal_suffix: prefix.map(str::to_owned),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: prefix.is_some(),
        searchable: Searchable::Full,
        unsigned_attribute: None,
        fixed_prec_scale: false,
        auto_increment: None,
        local_type_name: Some(name.to_owned()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    };
    let number = |name: &str, data_type: XdbcDataType, size: i32, unsigned: bool, radix: i32| XdbcTypeInfo {
        unsigned_attribute: Some(unsigned),
        auto_increment: Some(false),
        num_prec_radix: Some(radix),
        ..entry(name, data_type, Some(size), None)
    };
    let mut builder = XdbcTypeInfoDataBuilder::new();
    builder.append(entry("varchar", XdbcDataType::XdbcVarchar, Some(i32::MAX), Some("'")));
    builder.append(entry("boolean", XdbcDataType::XdbcBit, Some(1), None));
    builder.append(number("smallint", XdbcDataType::XdbcSmallint, 5, false, 10));
    builder.append(number("integer", XdbcDataType::XdbcInteger, 10, false, 10));
    builder.append(number("bigint", XdbcDataType::XdbcBigint, 19, false, 10));
    builder.append(number("bigint unsigned", XdbcDataType::XdbcBigint, 20, true, 10));
    builder.append(number("real", XdbcDataType::XdbcFloat, 24, false, 2));
    builder.append(number("double precision", XdbcDataType::XdbcDouble, 53, false, 2));
    builder.append(XdbcTypeInfo {
        // ODBC's SQL_CODE_DATE is 1, which the protocol names YEAR.
        datetime_subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
        sql_data_type: XdbcDataType::XdbcDatetime,
        ..entry("date", XdbcDataType::XdbcDate, Some(10), Some("'"))
    });
    builder.append(XdbcTypeInfo {
        datetime_subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeTimestampWithTimezone),
        sql_data_type: XdbcDataType::XdbcDatetime,
        ..entry("timestamp with time zone", XdbcDataType::XdbcTimestamp, Some(35), Some("'"))
    });
    builder.append(XdbcTypeInfo {
        datetime_subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        sql_data_type: XdbcDataType::XdbcDatetime,
        ..entry("timestamp", XdbcDataType::XdbcTimestamp, Some(29), Some("'"))
    });
    builder.append(entry("interval", XdbcDataType::XdbcInterval, None, Some("'")));
    builder.append(entry("bytea", XdbcDataType::XdbcVarbinary, Some(i32::MAX), None));
    builder.build()
}
