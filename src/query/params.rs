//! Parameters: the values a client binds to a prepared statement's `$1, $2,
//! ...` (or InfluxDB 3's `$name`), checked against the statement and cast to
//! the types its plan expects. Every front binds through here, whatever the
//! values arrived as: Postgres wire values, an Arrow batch from FlightSQL,
//! JSON from InfluxDB 3's tickets.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;

use super::{QueryEngine, QueryError};

fn invalid(message: String) -> QueryError {
    QueryError::InvalidData { message, sqlstate: "22023" }
}

/// The plan with `values[i]` in place of `$i+1`, each cast to the type the
/// plan expects there. As many values as the plan has parameters.
pub fn bind(plan: LogicalPlan, values: Vec<ScalarValue>) -> Result<LogicalPlan, QueryError> {
    let types = QueryEngine::parameter_types(&plan)?;
    if values.len() != types.len() {
        return Err(QueryError::InvalidData {
            message: format!("the statement has {} parameter(s) but {} were bound", types.len(), values.len()),
            sqlstate: "08P01",
        });
    }
    if types.is_empty() {
        return Ok(plan);
    }
    let mut cast = Vec::with_capacity(values.len());
    for (i, (value, expected)) in values.into_iter().zip(&types).enumerate() {
        cast.push(match expected {
            Some(expected) if &value.data_type() != expected => value
                .cast_to(expected)
                .map_err(|e| invalid(format!("parameter ${}: {value} cannot be used as {expected}: {e}", i + 1)))?,
            _ => value,
        });
    }
    plan.replace_params_with_values(&ParamValues::from(cast)).map_err(|e| invalid(e.to_string()))
}

/// The plan with its `$name` parameters filled from `values` (InfluxDB 3's
/// named parameters); names without a value are the client's error.
pub fn bind_named(plan: LogicalPlan, values: HashMap<String, ScalarValue>) -> Result<LogicalPlan, QueryError> {
    plan.replace_params_with_values(&ParamValues::from(values)).map_err(|e| invalid(e.to_string()))
}

/// Row `row` of a batch of parameter values, column `i` for `$i+1`.
pub fn row_values(parameters: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>, QueryError> {
    if row >= parameters.num_rows() {
        return Err(invalid("the bound parameters have no rows: bind one row of values".into()));
    }
    parameters
        .columns()
        .iter()
        .map(|column| {
            ScalarValue::try_from_array(column.as_ref(), row)
                .map_err(|e| invalid(format!("a bound parameter cannot be read: {e}")))
        })
        .collect()
}

/// A JSON parameter value as SQL's: null, boolean, string, whole or
/// fractional number.
pub fn json_value(name: &str, value: serde_json::Value) -> Result<ScalarValue, QueryError> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(b)),
        Value::String(s) => ScalarValue::Utf8(Some(s)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ScalarValue::Int64(Some(i)),
            (None, Some(f)) => ScalarValue::Float64(Some(f)),
            _ => return Err(invalid(format!("parameter '{name}': {n} is out of range"))),
        },
        other => return Err(invalid(format!("parameter '{name}': {other} is not a number, string, boolean or null"))),
    })
}
