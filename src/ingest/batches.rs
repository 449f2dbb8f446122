//! Arrow record batches as table writes: what SQL `INSERT`, Postgres `COPY`
//! and FlightSQL ingest hand the write path.
//!
//! Line protocol says which columns are tags and which are fields; a batch says
//! it with Arrow types (a dictionary of strings is a tag). Columns the table
//! already has are cast to their type, so `'2024-01-01T00:00:00Z'` fills `time`
//! and `'a'` a tag; new columns take their kind from their Arrow type. The rules
//! that line protocol writes obey hold here too: a point has a time and at least
//! one field, a field never changes type, names are checked.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{Field, Schema};
use arrow::util::display::FormatOptions;

use super::line_protocol::TableWrite;
use super::IngestError;
use crate::catalog::names::{check_name, NameKind};
use crate::catalog::{Column, ColumnType, TableSchema, TIME_COLUMN};

/// Casts a column to the type of its kind; a value that does not convert is an
/// error naming the row, the column and the value, not a silent NULL.
fn cast_column(name: &str, column: &ArrayRef, kind: ColumnType) -> Result<ArrayRef, IngestError> {
    let target = kind.data_type();
    if column.data_type() == &target {
        return Ok(Arc::clone(column));
    }
    let strict = CastOptions { safe: false, format_options: FormatOptions::default() };
    cast_with_options(column, &target, &strict).map_err(|error| {
        // Casting again, turning failures into NULLs, finds the first bad row.
        let lenient = CastOptions { safe: true, format_options: FormatOptions::default() };
        let row = cast_with_options(column, &target, &lenient)
            .ok()
            .and_then(|cast| (0..column.len()).find(|&i| column.is_valid(i) && cast.is_null(i)))
            .unwrap_or(0);
        let value = arrow::util::display::array_value_to_string(column, row).unwrap_or_default();
        IngestError::BadValue {
            row: row + 1,
            message: format!("column '{name}' cannot hold {value:?} as {kind} ({error})"),
        }
    })
}

/// The field metadata that marks a column's kind, as InfluxDB 3 writes it in
/// its Arrow schemas. Flight clients send dictionaries as plain strings, so a
/// string column with this set to [`IOX_TAG`] is how they say "tag".
pub const IOX_COLUMN_TYPE: &str = "iox::column::type";
/// The value of [`IOX_COLUMN_TYPE`] for a tag.
pub const IOX_TAG: &str = "iox::column_type::tag";

/// The kind a new column takes: a tag for a dictionary of strings or a string
/// column marked as one, otherwise by its Arrow type.
fn column_kind(field: &Field) -> Option<ColumnType> {
    let kind = ColumnType::from_data_type(field.data_type())?;
    let marked_tag = field.metadata().get(IOX_COLUMN_TYPE).is_some_and(|v| v == IOX_TAG);
    Some(if marked_tag && kind == ColumnType::String { ColumnType::Tag } else { kind })
}

/// Turns a batch for `table` into a table write against the table's current
/// schema (`None` for a new table). With `allow_new_columns` off, a column the
/// table lacks is an error (SQL `INSERT` and `COPY` name existing columns).
pub fn table_write(
    table: &str,
    current: Option<&TableSchema>,
    batch: &RecordBatch,
    allow_new_columns: bool,
) -> Result<TableWrite, IngestError> {
    check_name(NameKind::Table, table).map_err(|e| IngestError::Schema(e.to_string()))?;
    let empty = TableSchema::default();
    let current = current.unwrap_or(&empty);
    let mut time: Option<ArrayRef> = None;
    let mut columns: Vec<(Column, ArrayRef)> = Vec::new();
    let mut new_columns: Vec<Column> = Vec::new();
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name().as_str();
        if name == TIME_COLUMN {
            time = Some(cast_column(name, array, ColumnType::Time)?);
            continue;
        }
        if columns.iter().any(|(c, _)| c.name.as_ref() == name) {
            return Err(IngestError::Schema(format!("column '{name}' is given twice")));
        }
        let kind = match current.column_type(name) {
            Some(kind) => kind,
            None if !allow_new_columns => {
                return Err(IngestError::UnknownColumn(format!("column '{name}' of relation '{table}' does not exist")))
            }
            None => match column_kind(field) {
                Some(ColumnType::Time) | None => {
                    return Err(IngestError::Schema(format!(
                        "column '{name}' has type {}, which a measurement cannot hold: tags are dictionary-encoded \
                         strings; fields are float64, int64, uint64, bool or utf8",
                        field.data_type()
                    )))
                }
                Some(kind) => {
                    let node = if kind == ColumnType::Tag { NameKind::Tag } else { NameKind::Field };
                    check_name(node, name).map_err(|e| IngestError::Schema(e.to_string()))?;
                    new_columns.push(Column { name: name.into(), column_type: kind });
                    kind
                }
            },
        };
        // A column with no values adds nothing, and no column to the schema.
        if array.null_count() == array.len() {
            new_columns.retain(|c| c.name.as_ref() != name);
            continue;
        }
        columns.push((Column { name: name.into(), column_type: kind }, cast_column(name, array, kind)?));
    }
    let time =
        time.ok_or_else(|| IngestError::IncompletePoint { row: 1, message: "the write has no 'time' column".into() })?;
    if let Some(row) = first_null(time.nulls()) {
        return Err(IngestError::IncompletePoint { row: row + 1, message: "the time is NULL".into() });
    }
    let field_validity = columns
        .iter()
        .filter(|(c, _)| c.column_type.is_field())
        .map(|(_, a)| a.logical_nulls())
        .try_fold(None::<NullBuffer>, |acc, nulls| match (acc, nulls) {
            // A field column without nulls gives every row a field.
            (_, None) => None,
            (None, Some(n)) => Some(Some(n)),
            (Some(a), Some(n)) => Some(Some(NullBuffer::new(a.inner() | n.inner()))),
        });
    let no_field_row = match field_validity {
        None => None,
        Some(None) if batch.num_rows() > 0 => Some(0),
        Some(None) => None,
        Some(Some(valid)) => first_null(Some(&valid)),
    };
    if let Some(row) = no_field_row {
        return Err(IngestError::IncompletePoint {
            row: row + 1,
            message: "no field has a value; every point needs at least one field".into(),
        });
    }
    // Columns in the order of the schema they make (tags, then fields, then time).
    let schema = match current.merged_with(table, &new_columns, usize::MAX) {
        Ok(merged) => merged.unwrap_or_else(|| current.clone()),
        Err(conflict) => return Err(IngestError::Schema(conflict.to_string())),
    };
    columns.sort_by_key(|(c, _)| schema.columns().iter().position(|s| s.name == c.name));
    let mut fields: Vec<Field> = Vec::with_capacity(columns.len() + 1);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len() + 1);
    for (column, array) in columns {
        fields.push(Field::new(column.name.as_ref(), column.column_type.data_type(), true));
        arrays.push(array);
    }
    fields.push(Field::new(TIME_COLUMN, ColumnType::Time.data_type(), false));
    arrays.push(time);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| IngestError::Internal(format!("building the write: {e}")))?;
    Ok(TableWrite { table: table.into(), new_columns, batch })
}

fn first_null(nulls: Option<&NullBuffer>) -> Option<usize> {
    nulls.and_then(|n| n.inner().iter().position(|valid| !valid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, TimestampNanosecondArray};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).expect("batch")
    }

    fn cpu() -> TableSchema {
        TableSchema::new(vec![
            Column { name: "host".into(), column_type: ColumnType::Tag },
            Column { name: "usage".into(), column_type: ColumnType::Float },
        ])
    }

    #[test]
    fn casts_to_the_schema_and_orders_columns() {
        let b = batch(vec![
            ("time", Arc::new(StringArray::from(vec!["2024-01-01T00:00:00Z"])) as ArrayRef),
            ("usage", Arc::new(StringArray::from(vec!["1.5"])) as ArrayRef),
            ("host", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ]);
        let write = table_write("cpu", Some(&cpu()), &b, false).expect("write");
        let names: Vec<_> = write.batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["host", "usage", "time"]);
        assert_eq!(write.batch.column(0).data_type(), &ColumnType::Tag.data_type());
        let time = write.batch.column(2).as_any().downcast_ref::<TimestampNanosecondArray>().expect("time");
        assert_eq!(time.value(0), 1_704_067_200_000_000_000);
        assert!(write.new_columns.is_empty());
    }

    #[test]
    fn refuses_what_line_protocol_refuses() {
        let time = || Arc::new(TimestampNanosecondArray::from(vec![1, 2])) as ArrayRef;
        let no_field = batch(vec![
            ("host", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
            ("usage", Arc::new(Float64Array::from(vec![Some(1.0), None])) as ArrayRef),
            ("time", time()),
        ]);
        let error = table_write("cpu", Some(&cpu()), &no_field, false).expect_err("row 2 has no field");
        assert!(error.to_string().contains("row 2: no field has a value"), "{error}");

        let unknown = batch(vec![("load", Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef), ("time", time())]);
        assert!(matches!(table_write("cpu", Some(&cpu()), &unknown, false), Err(IngestError::UnknownColumn(_))));
        let added = table_write("cpu", Some(&cpu()), &unknown, true).expect("new field");
        assert_eq!(added.new_columns, vec![Column { name: "load".into(), column_type: ColumnType::Float }]);

        let bad_value =
            batch(vec![("usage", Arc::new(StringArray::from(vec!["x", "1"])) as ArrayRef), ("time", time())]);
        let error = table_write("cpu", Some(&cpu()), &bad_value, false).expect_err("not a float");
        assert!(error.to_string().contains("row 1: column 'usage' cannot hold \"x\""), "{error}");

        let no_time = batch(vec![("usage", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef)]);
        assert!(matches!(table_write("cpu", Some(&cpu()), &no_time, false), Err(IngestError::IncompletePoint { .. })));
    }
}
