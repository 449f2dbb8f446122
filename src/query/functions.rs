//! SQL functions beyond DataFusion's own, from TimescaleDB, GigAPI and DuckDB.
//!
//! - `time_bucket(interval, ts [, origin])`: TimescaleDB's bucketing. Buckets
//!   are aligned to 2000-01-03 (a Monday) or, for intervals of months, to
//!   2000-01-01, unless an origin is given. It is DataFusion's `date_bin` with
//!   those origins.
//! - `first(value, time)` and `last(value, time)`: TimescaleDB's aggregates, the
//!   value at the earliest or latest time. The optimizer turns them into
//!   `first_value(value ORDER BY time)` and `last_value(value ORDER BY time)`.
//! - `epoch_ns(ts)`, `epoch_us(ts)`, `epoch_ms(ts)` (BIGINT) and `epoch(ts)`
//!   (DOUBLE seconds), as in GigAPI's and DuckDB's examples.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

/// 2000-01-03T00:00:00Z, TimescaleDB's default origin (a Monday).
pub(crate) const TIMESCALE_ORIGIN_NS: i64 = 946_857_600_000_000_000;
/// 2000-01-01T00:00:00Z, TimescaleDB's origin for intervals of months.
const JANUARY_2000_NS: i64 = 946_684_800_000_000_000;

/// Every function this module adds, to register in a session.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    let mut functions = vec![
        Arc::new(ScalarUDF::from(TimeBucket::new())),
        // Replaces DataFusion's `date_trunc` (same name): see utc_date_trunc.rs.
        Arc::new(ScalarUDF::from(super::utc_date_trunc::UtcDateTrunc::new())),
    ];
    for unit in [EpochUnit::Nanoseconds, EpochUnit::Microseconds, EpochUnit::Milliseconds, EpochUnit::Seconds] {
        functions.push(Arc::new(ScalarUDF::from(Epoch::new(unit))));
    }
    functions
}

/// The aggregates this module adds.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::from(FirstLast::new(Extreme::First))),
        Arc::new(AggregateUDF::from(FirstLast::new(Extreme::Last))),
    ]
}

/// `time_bucket(interval, ts [, origin])`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TimeBucket {
    date_bin: Arc<ScalarUDF>,
    signature: Signature,
}

impl TimeBucket {
    fn new() -> Self {
        let date_bin = datafusion::functions::datetime::date_bin();
        let signature = date_bin.signature().clone();
        TimeBucket { date_bin, signature }
    }
}

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        "time_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.date_bin.return_type(arg_types)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() == 2 {
            let months = matches!(
                &args.args[0],
                ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(i))) if i.months != 0
            ) || matches!(&args.args[0], ColumnarValue::Scalar(ScalarValue::IntervalYearMonth(Some(m))) if *m != 0);
            let origin = if months { JANUARY_2000_NS } else { TIMESCALE_ORIGIN_NS };
            let zone = match args.args[1].data_type() {
                DataType::Timestamp(_, zone) => zone,
                other => return exec_err!("time_bucket takes a timestamp, got {other}"),
            };
            let origin = ScalarValue::TimestampNanosecond(Some(origin), zone.clone());
            args.arg_fields.push(Arc::new(Field::new("origin", origin.data_type(), false)));
            args.args.push(ColumnarValue::Scalar(origin));
        }
        self.date_bin.invoke_with_args(args)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EpochUnit {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

/// `epoch_ns(ts)` and its siblings.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Epoch {
    unit: EpochUnit,
    signature: Signature,
}

impl Epoch {
    fn new(unit: EpochUnit) -> Self {
        Epoch { unit, signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Epoch {
    fn name(&self) -> &str {
        match self.unit {
            EpochUnit::Nanoseconds => "epoch_ns",
            EpochUnit::Microseconds => "epoch_us",
            EpochUnit::Milliseconds => "epoch_ms",
            EpochUnit::Seconds => "epoch",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::Timestamp(_, zone)] => Ok(vec![DataType::Timestamp(TimeUnit::Nanosecond, zone.clone())]),
            [DataType::Date32
            | DataType::Date64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Null] => Ok(vec![DataType::Timestamp(TimeUnit::Nanosecond, None)]),
            [other] => plan_err!("{} takes a timestamp, got {other}", self.name()),
            _ => plan_err!("{} takes one argument", self.name()),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.unit {
            EpochUnit::Seconds => DataType::Float64,
            _ => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return exec_err!("{} takes one argument", self.name());
        };
        let scalar = matches!(value, ColumnarValue::Scalar(_));
        let array = value.to_array(args.number_rows)?;
        let nanos = cast(&array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
        let nanos = nanos
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .ok_or_else(|| datafusion::common::DataFusionError::Internal("timestamp cast".into()))?;
        let result: ArrayRef = match self.unit {
            EpochUnit::Nanoseconds => Arc::new(Int64Array::new(nanos.values().clone(), nanos.nulls().cloned())),
            EpochUnit::Microseconds => Arc::new(nanos.unary::<_, arrow::datatypes::Int64Type>(|v| v.div_euclid(1_000))),
            EpochUnit::Milliseconds => {
                Arc::new(nanos.unary::<_, arrow::datatypes::Int64Type>(|v| v.div_euclid(1_000_000)))
            }
            EpochUnit::Seconds => {
                Arc::new(nanos.unary::<_, arrow::datatypes::Float64Type>(|v| v as f64 / 1e9)) as Arc<Float64Array>
            }
        };
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Extreme {
    First,
    Last,
}

/// `first(value, time)` and `last(value, time)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FirstLast {
    extreme: Extreme,
    signature: Signature,
}

impl FirstLast {
    fn new(extreme: Extreme) -> Self {
        FirstLast { extreme, signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for FirstLast {
    fn name(&self) -> &str {
        match self.extreme {
            Extreme::First => "first",
            Extreme::Last => "last",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value, _] => Ok(value.clone()),
            _ => plan_err!("{} takes a value and a time", self.name()),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let value = args.input_fields.first().map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
        let time = args.input_fields.get(1).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
        Ok(vec![
            Arc::new(Field::new(format!("{}[value]", args.name), value, true)),
            Arc::new(Field::new(format!("{}[time]", args.name), time, true)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let value_type = args.return_field.data_type().clone();
        let time_type = args.expr_fields.get(1).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
        Ok(Box::new(FirstLastAccumulator {
            extreme: self.extreme,
            value: ScalarValue::try_from(&value_type)?,
            time: None,
            no_time: ScalarValue::try_from(&time_type)?,
        }))
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        let extreme = self.extreme;
        Some(Box::new(move |aggregate: AggregateFunction, _info| {
            let params = aggregate.params;
            let [value, time] = <[Expr; 2]>::try_from(params.args.clone()).map_err(|_| {
                datafusion::common::DataFusionError::Plan("first() and last() take a value and a time".into())
            })?;
            let target = match extreme {
                Extreme::First => datafusion::functions_aggregate::first_last::first_value_udaf(),
                Extreme::Last => datafusion::functions_aggregate::first_last::last_value_udaf(),
            };
            Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
                target,
                vec![value],
                params.distinct,
                params.filter,
                vec![time.sort(true, false)],
                None,
            )))
        }))
    }
}

/// The fallback accumulator, for plans the optimizer did not rewrite.
#[derive(Debug)]
struct FirstLastAccumulator {
    extreme: Extreme,
    value: ScalarValue,
    time: Option<ScalarValue>,
    /// A null of the time's type, for the state before any row.
    no_time: ScalarValue,
}

impl FirstLastAccumulator {
    fn offer(&mut self, value: ScalarValue, time: ScalarValue) {
        if time.is_null() {
            return;
        }
        let better = match &self.time {
            None => true,
            Some(current) => match self.extreme {
                Extreme::First => time < *current,
                Extreme::Last => time >= *current,
            },
        };
        if better {
            self.value = value;
            self.time = Some(time);
        }
    }
}

impl Accumulator for FirstLastAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [value, time] = values else {
            return exec_err!("first() and last() take a value and a time");
        };
        for row in 0..value.len() {
            self.offer(ScalarValue::try_from_array(value, row)?, ScalarValue::try_from_array(time, row)?);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let time = self.time.clone().unwrap_or_else(|| self.no_time.clone());
        Ok(vec![self.value.clone(), time])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size() + self.time.as_ref().map_or(0, |t| t.size())
    }
}

/// GigAPI stored `time` as integer nanoseconds and its users write
/// `time >= epoch_ns('2025-04-24T00:00:00'::TIMESTAMP)`. Here `time` is a
/// timestamp, so an integer compared with a timestamp is taken as nanoseconds
/// since the epoch, as it was in GigAPI.
#[derive(Debug)]
pub struct IntegerTimeComparisons;

impl datafusion::logical_expr::expr_rewriter::FunctionRewrite for IntegerTimeComparisons {
    fn name(&self) -> &str {
        "integer_time_comparisons"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &datafusion::common::DFSchema,
        config: &datafusion::config::ConfigOptions,
    ) -> Result<datafusion::common::tree_node::Transformed<Expr>> {
        use datafusion::common::tree_node::Transformed;
        use datafusion::logical_expr::{BinaryExpr, ExprSchemable, Operator};
        let is_time = |e: &Expr| matches!(e.get_type(schema), Ok(DataType::Timestamp(_, _)));
        let is_integer = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_integer());
        let as_time = |e: Expr| datafusion::functions::datetime::to_timestamp_nanos(config).call(vec![e]);
        Ok(match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(
                    op,
                    Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
                ) && ((is_time(&left) && is_integer(&right)) || (is_integer(&left) && is_time(&right))) =>
            {
                let (left, right) = if is_time(&left) { (*left, as_time(*right)) } else { (as_time(*left), *right) };
                Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right))))
            }
            Expr::Between(mut between)
                if is_time(&between.expr) && (is_integer(&between.low) || is_integer(&between.high)) =>
            {
                if is_integer(&between.low) {
                    between.low = Box::new(as_time(*between.low));
                }
                if is_integer(&between.high) {
                    between.high = Box::new(as_time(*between.high));
                }
                Transformed::yes(Expr::Between(between))
            }
            other => Transformed::no(other),
        })
    }
}
