//! `date_trunc` on timestamps in UTC at the speed of integer arithmetic.
//!
//! Every `time` column is `Timestamp(Nanosecond, "UTC")`. DataFusion 55's
//! `date_trunc` truncates hours and days with arithmetic only for timestamps
//! without a time zone; with one, even UTC, it converts every value through
//! chrono-tz, which was about 30% of the time of TSBS's double-groupby
//! queries (`date_trunc('hour', time)` over millions of rows). In UTC local
//! time is the time itself, so this function drops the zone, lets
//! DataFusion's own `date_trunc` take its zone-less path, and puts the zone
//! back: same results, same types, same ordering properties. Other zones go
//! to DataFusion's function unchanged.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// DataFusion's `date_trunc`, with a fast path for UTC.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    pub(crate) fn new() -> Self {
        UtcDateTrunc { inner: datafusion::functions::datetime::date_trunc() }
    }
}

/// Whether `zone` names UTC, as a time zone or as an offset Arrow accepts.
fn is_utc(zone: &str) -> bool {
    matches!(zone, "UTC" | "+00:00" | "+00" | "+0000" | "Etc/UTC" | "GMT" | "Etc/GMT" | "UCT" | "Zulu")
}

/// Nanosecond timestamps this close to the smallest one are left to
/// DataFusion's own path, which reports them out of range where truncating
/// by arithmetic (down to a week) would overflow.
const NEAR_MIN_NS: i64 = i64::MIN + 8 * 86_400_000_000_000;

/// Whether the timestamps hold a nanosecond value too close to the smallest.
fn near_the_minimum(value: &ColumnarValue) -> bool {
    match value {
        ColumnarValue::Array(array) => array
            .as_any()
            .downcast_ref::<arrow::array::TimestampNanosecondArray>()
            .and_then(arrow::compute::min)
            .is_some_and(|min| min < NEAR_MIN_NS),
        ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(Some(v), _)) => *v < NEAR_MIN_NS,
        ColumnarValue::Scalar(_) => false,
    }
}

/// `array` (a timestamp array) with its time zone replaced by `zone`: the
/// values are instants either way, so nothing is converted or copied.
fn with_zone(array: &ArrayRef, zone: Option<Arc<str>>) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, _) = array.data_type() else { return Ok(Arc::clone(array)) };
    let data = array.to_data().into_builder().data_type(DataType::Timestamp(*unit, zone)).build()?;
    Ok(arrow::array::make_array(data))
}

/// A timestamp scalar with its time zone replaced by `zone`.
fn scalar_with_zone(value: &ScalarValue, zone: Option<Arc<str>>) -> ScalarValue {
    match value {
        ScalarValue::TimestampNanosecond(v, _) => ScalarValue::TimestampNanosecond(*v, zone),
        ScalarValue::TimestampMicrosecond(v, _) => ScalarValue::TimestampMicrosecond(*v, zone),
        ScalarValue::TimestampMillisecond(v, _) => ScalarValue::TimestampMillisecond(*v, zone),
        ScalarValue::TimestampSecond(v, _) => ScalarValue::TimestampSecond(*v, zone),
        other => other.clone(),
    }
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = match args.args.get(1).map(ColumnarValue::data_type) {
            Some(DataType::Timestamp(_, Some(zone))) if is_utc(&zone) && !near_the_minimum(&args.args[1]) => zone,
            _ => return self.inner.invoke_with_args(args),
        };
        args.args[1] = match &args.args[1] {
            ColumnarValue::Array(array) => ColumnarValue::Array(with_zone(array, None)?),
            ColumnarValue::Scalar(value) => ColumnarValue::Scalar(scalar_with_zone(value, None)),
        };
        // What DataFusion's function is told it takes and returns, zone-less too.
        let zone_less = |field: &FieldRef| match field.data_type() {
            DataType::Timestamp(unit, _) => {
                Arc::new(field.as_ref().clone().with_data_type(DataType::Timestamp(*unit, None)))
            }
            _ => Arc::clone(field),
        };
        if let Some(field) = args.arg_fields.get_mut(1) {
            *field = zone_less(field);
        }
        args.return_field = zone_less(&args.return_field);
        Ok(match self.inner.invoke_with_args(args)? {
            ColumnarValue::Array(array) => ColumnarValue::Array(with_zone(&array, Some(zone))?),
            ColumnarValue::Scalar(value) => ColumnarValue::Scalar(scalar_with_zone(&value, Some(zone))),
        })
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampNanosecondArray;
    use arrow::datatypes::Field;

    fn truncate(function: &ScalarUDF, unit: &str, values: &ArrayRef) -> ArrayRef {
        let args =
            vec![ColumnarValue::Scalar(ScalarValue::Utf8(Some(unit.into()))), ColumnarValue::Array(Arc::clone(values))];
        let arg_fields = vec![
            Arc::new(Field::new("unit", DataType::Utf8, false)),
            Arc::new(Field::new("time", values.data_type().clone(), true)),
        ];
        let return_field = Arc::new(Field::new("out", values.data_type().clone(), true));
        let result = function
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields,
                number_rows: values.len(),
                return_field,
                config_options: Arc::new(Default::default()),
            })
            .expect("date_trunc");
        match result {
            ColumnarValue::Array(array) => array,
            ColumnarValue::Scalar(_) => panic!("an array in, an array out"),
        }
    }

    /// The same answers as DataFusion's own function, on every unit, for
    /// UTC and for another zone, with nulls and times before 1970.
    #[test]
    fn answers_as_datafusion_does() {
        let ours = ScalarUDF::new_from_impl(UtcDateTrunc::new());
        let theirs = datafusion::functions::datetime::date_trunc();
        let times: Vec<Option<i64>> = [
            Some(1_700_000_123_456_789_012),
            Some(-86_400_000_000_001),
            None,
            Some(0),
            Some(1_451_606_399_999_999_999),
            Some(951_782_400_000_000_000),
        ]
        .to_vec();
        // Near the smallest timestamp DataFusion reports "out of range" for
        // the coarse units: so must this function, not wrap around.
        let edge: ArrayRef =
            Arc::new(TimestampNanosecondArray::from(vec![Some(i64::MIN + 1_000), Some(0)]).with_timezone("UTC"));
        for unit in ["hour", "day", "week"] {
            let call = |function: &ScalarUDF| {
                let args = vec![
                    ColumnarValue::Scalar(ScalarValue::Utf8(Some(unit.into()))),
                    ColumnarValue::Array(Arc::clone(&edge)),
                ];
                function
                    .invoke_with_args(ScalarFunctionArgs {
                        args,
                        arg_fields: vec![
                            Arc::new(Field::new("unit", DataType::Utf8, false)),
                            Arc::new(Field::new("time", edge.data_type().clone(), true)),
                        ],
                        number_rows: 2,
                        return_field: Arc::new(Field::new("out", edge.data_type().clone(), true)),
                        config_options: Arc::new(Default::default()),
                    })
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            assert_eq!(call(&ours), call(&theirs), "{unit} at the smallest timestamp");
        }
        for zone in ["UTC", "+00:00", "Europe/Oslo"] {
            let values: ArrayRef = Arc::new(TimestampNanosecondArray::from(times.clone()).with_timezone(zone));
            for unit in
                ["microsecond", "millisecond", "second", "minute", "hour", "day", "week", "month", "quarter", "year"]
            {
                let (a, b) = (truncate(&ours, unit, &values), truncate(&theirs, unit, &values));
                assert_eq!(a.data_type(), b.data_type(), "{zone} {unit}");
                assert_eq!(a.to_data(), b.to_data(), "{zone} {unit}");
            }
        }
    }
}
