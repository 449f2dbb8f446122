//! The schema of a table: tag columns, typed field columns and the `time` column.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// The name of the event-time column every table has.
pub const TIME_COLUMN: &str = "time";

/// The time zone of the `time` column: event times are UTC instants.
pub const TIME_ZONE: &str = "UTC";

/// What a column holds. Fields are typed by their first write and never change type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// A tag: a dictionary-encoded string that is part of the series key.
    Tag,
    /// A 64-bit float field.
    Float,
    /// A signed 64-bit integer field (`i` suffix in line protocol).
    Integer,
    /// An unsigned 64-bit integer field (`u` suffix).
    UInteger,
    /// A boolean field.
    Boolean,
    /// A string field.
    String,
    /// The event time, nanoseconds since the epoch in UTC.
    Time,
}

impl ColumnType {
    /// The Arrow type a column of this kind has in batches and Parquet files.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Tag => tag_data_type(),
            ColumnType::Float => DataType::Float64,
            ColumnType::Integer => DataType::Int64,
            ColumnType::UInteger => DataType::UInt64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::String => DataType::Utf8,
            ColumnType::Time => time_data_type(),
        }
    }

    /// The column kind an Arrow type is stored as, for batches from clients
    /// (SQL, FlightSQL ingest) and from the WAL: narrower types widen (`Int32`
    /// is an integer field, `Float32` a float field, `Utf8View` a string, any
    /// timestamp the time); a dictionary of strings is a tag.
    pub fn from_data_type(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Dictionary(key, value) if key.is_integer() && value.as_ref() == &DataType::Utf8 => {
                ColumnType::Tag
            }
            DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnType::Integer,
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => ColumnType::UInteger,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::String,
            DataType::Timestamp(..) => ColumnType::Time,
            _ => return None,
        })
    }

    /// True for the field types (everything but tags and time).
    pub fn is_field(self) -> bool {
        !matches!(self, ColumnType::Tag | ColumnType::Time)
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Tag => "tag",
            ColumnType::Float => "float",
            ColumnType::Integer => "integer",
            ColumnType::UInteger => "unsigned integer",
            ColumnType::Boolean => "boolean",
            ColumnType::String => "string",
            ColumnType::Time => "timestamp",
        })
    }
}

/// The Arrow type of tag columns.
pub fn tag_data_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The Arrow type of the `time` column.
pub fn time_data_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(TIME_ZONE.into()))
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column name, as written by clients.
    pub name: Arc<str>,
    /// What the column holds.
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

/// A conflict between a column's type in the schema and a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaConflict {
    /// A field arrived with a different type than the schema holds.
    #[error("invalid column type for column '{column}', expected {expected}, got {got}")]
    Type {
        /// The column.
        column: String,
        /// What the schema holds.
        expected: ColumnType,
        /// What the write carried.
        got: ColumnType,
    },
    /// The table has reached its column limit.
    #[error("table '{table}' would exceed the limit of {limit} columns (HOURGLASS_MAX_COLUMNS_PER_TABLE)")]
    TooManyColumns {
        /// The table.
        table: String,
        /// The limit.
        limit: usize,
    },
}

/// The schema of one table. Column order: tags in order of first appearance, then
/// fields in order of first appearance, then `time`. Columns are only ever added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    columns: Vec<Column>,
    index: HashMap<Arc<str>, usize>,
}

impl Default for TableSchema {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl TableSchema {
    /// Builds a schema from its tags and fields; `time` is added at the end.
    pub fn new(columns: impl IntoIterator<Item = Column>) -> Self {
        let mut schema = TableSchema { columns: Vec::new(), index: HashMap::new() };
        for column in columns {
            if column.column_type != ColumnType::Time && !schema.index.contains_key(&column.name) {
                schema.insert(column);
            }
        }
        schema.columns.push(Column { name: TIME_COLUMN.into(), column_type: ColumnType::Time });
        schema.reindex();
        schema
    }

    fn insert(&mut self, column: Column) {
        let position = match column.column_type {
            ColumnType::Tag => self.columns.iter().take_while(|c| c.column_type == ColumnType::Tag).count(),
            _ => self.columns.iter().take_while(|c| c.column_type != ColumnType::Time).count(),
        };
        self.columns.insert(position, column);
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index = self.columns.iter().enumerate().map(|(i, c)| (Arc::clone(&c.name), i)).collect();
    }

    /// Every column, `time` last.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The type of a column, if the table has it.
    pub fn column_type(&self, name: &str) -> Option<ColumnType> {
        self.index.get(name).map(|&i| self.columns[i].column_type)
    }

    /// The tag columns, in schema order; this is the series key and the sort order.
    pub fn tags(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.column_type == ColumnType::Tag)
    }

    /// The number of columns, `time` included.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// True when the table has no tags or fields yet.
    pub fn is_empty(&self) -> bool {
        self.columns.len() <= 1
    }

    /// The Arrow schema of the table's batches and files.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name.as_ref(), c.column_type.data_type(), c.column_type != ColumnType::Time))
                .collect::<Vec<_>>(),
        ))
    }

    /// The storage row order of this table: sorted by every tag, then time.
    pub fn row_order(&self) -> crate::storage::RowOrder {
        let mut sort_key: Vec<usize> =
            self.columns.iter().enumerate().filter(|(_, c)| c.column_type == ColumnType::Tag).map(|(i, _)| i).collect();
        let time = self.columns.len() - 1;
        sort_key.push(time);
        crate::storage::RowOrder { schema: self.arrow_schema(), sort_key, time }
    }

    /// Returns this schema extended with `columns`, or the first conflict. Columns
    /// already present with the same type are ignored. `None` means nothing changed.
    pub fn merged_with(
        &self,
        table: &str,
        columns: &[Column],
        max_columns: usize,
    ) -> Result<Option<TableSchema>, SchemaConflict> {
        let mut merged: Option<TableSchema> = None;
        for column in columns {
            let current = merged.as_ref().unwrap_or(self);
            match current.column_type(&column.name) {
                Some(existing) if existing == column.column_type => {}
                Some(existing) => {
                    return Err(SchemaConflict::Type {
                        column: column.name.to_string(),
                        expected: existing,
                        got: column.column_type,
                    })
                }
                None => {
                    if current.len() >= max_columns {
                        return Err(SchemaConflict::TooManyColumns { table: table.to_owned(), limit: max_columns });
                    }
                    merged.get_or_insert_with(|| self.clone()).insert(column.clone());
                }
            }
        }
        Ok(merged)
    }
}

/// The on-disk form of a table schema (`<root>/<db>/<table>/schema.json`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SchemaFile {
    pub(crate) table: String,
    pub(crate) columns: Vec<Column>,
}

impl SchemaFile {
    pub(crate) fn from_schema(table: &str, schema: &TableSchema) -> Self {
        SchemaFile { table: table.to_owned(), columns: schema.columns().to_vec() }
    }

    pub(crate) fn into_schema(self) -> TableSchema {
        TableSchema::new(self.columns)
    }
}
