//! Functions over a series of points in time order, for counters and gauges:
//!
//! - window functions, used with `OVER (PARTITION BY <tags> ORDER BY time)`:
//!   `derivative(value, time [, unit])`, `non_negative_derivative`,
//!   `difference(value)`, `non_negative_difference`, `moving_average(value, n)`;
//! - aggregates over a counter that may reset: `increase(value, time)` and
//!   `rate(value, time)` (per second).
//!
//! Each works from the rows in time order whatever file, hour partition or
//! write buffer they come from: the window sorts the whole partition and the
//! aggregates sort their group's points, so a step across an hour boundary
//! counts like any other. A row whose value is NULL gives NULL and is skipped
//! as a neighbour.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, ListArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{
    AccumulatorArgs, PartitionEvaluatorArgs, StateFieldsArgs, WindowUDFFieldArgs,
};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};
use datafusion::physical_expr::expressions::Literal;

/// One second in nanoseconds: the default unit of derivatives and rates.
const SECOND_NS: f64 = 1e9;

/// The window functions, to register in a session.
pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    [
        Step::Derivative { non_negative: false },
        Step::Derivative { non_negative: true },
        Step::Difference { non_negative: false },
        Step::Difference { non_negative: true },
        Step::MovingAverage,
    ]
    .into_iter()
    .map(|step| Arc::new(WindowUDF::from(SeriesWindow::new(step))))
    .collect()
}

/// The aggregates, to register in a session.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    [Counter::Increase, Counter::Rate]
        .into_iter()
        .map(|counter| Arc::new(AggregateUDF::from(CounterAggregate::new(counter))))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Step {
    Derivative { non_negative: bool },
    Difference { non_negative: bool },
    MovingAverage,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesWindow {
    step: Step,
    signature: Signature,
}

impl SeriesWindow {
    fn new(step: Step) -> Self {
        SeriesWindow { step, signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl WindowUDFImpl for SeriesWindow {
    fn name(&self) -> &str {
        match self.step {
            Step::Derivative { non_negative: false } => "derivative",
            Step::Derivative { non_negative: true } => "non_negative_derivative",
            Step::Difference { non_negative: false } => "difference",
            Step::Difference { non_negative: true } => "non_negative_difference",
            Step::MovingAverage => "moving_average",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        let value = match arg_types.first() {
            Some(t) if t.is_numeric() => DataType::Float64,
            Some(t) => return plan_err!("{name}() takes a number, not {t}"),
            None => return plan_err!("{name}() takes a value"),
        };
        match (self.step, &arg_types[1..]) {
            (Step::Derivative { .. }, [time @ DataType::Timestamp(..)]) => Ok(vec![value, time.clone()]),
            (Step::Derivative { .. }, [time @ DataType::Timestamp(..), unit]) => {
                let unit = match unit {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano)
                    }
                    other => other.clone(),
                };
                Ok(vec![value, time.clone(), unit])
            }
            (Step::Derivative { .. }, _) => plan_err!("{name}(value, time [, unit]) takes a time second"),
            (Step::Difference { .. }, []) => Ok(vec![value]),
            (Step::Difference { .. }, _) => plan_err!("{name}(value) takes one argument"),
            (Step::MovingAverage, [n]) if n.is_integer() => Ok(vec![value, DataType::Int64]),
            (Step::MovingAverage, _) => plan_err!("moving_average(value, n) takes a number of points"),
        }
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(field_args.name(), DataType::Float64, true)))
    }

    fn partition_evaluator(&self, args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        let constant = |index: usize| -> Option<ScalarValue> {
            let expr = args.input_exprs().get(index)?;
            expr.downcast_ref::<Literal>().map(|l| l.value().clone())
        };
        let name = self.name();
        let parameter = match self.step {
            Step::Derivative { .. } => match args.input_exprs().len() {
                2 => SECOND_NS,
                _ => match constant(2).map(|unit| interval_ns(&unit)) {
                    Some(Some(ns)) if ns > 0 => ns as f64,
                    _ => return plan_err!("{name}()'s unit is a constant positive interval, such as '1 minute'"),
                },
            },
            Step::MovingAverage => match constant(1) {
                Some(ScalarValue::Int64(Some(n))) if n > 0 && n <= 1_000_000 => n as f64,
                _ => return plan_err!("moving_average(value, n) takes a constant n from 1 to 1000000"),
            },
            Step::Difference { .. } => 0.0,
        };
        Ok(Box::new(SeriesEvaluator { step: self.step, parameter }))
    }
}

/// An interval of days or less as nanoseconds.
fn interval_ns(value: &ScalarValue) -> Option<i64> {
    const DAY_NS: i128 = 86_400_000_000_000;
    let ns = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i128::from(v.days) * DAY_NS + i128::from(v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => i128::from(v.days) * DAY_NS + i128::from(v.milliseconds) * 1_000_000,
        _ => return None,
    };
    i64::try_from(ns).ok()
}

#[derive(Debug)]
struct SeriesEvaluator {
    step: Step,
    /// The derivative's unit in nanoseconds, or the moving average's points.
    parameter: f64,
}

impl PartitionEvaluator for SeriesEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let Some(value) = values.first().and_then(|v| v.as_any().downcast_ref::<Float64Array>()) else {
            return exec_err!("series functions take a number");
        };
        let out: Float64Array = match self.step {
            Step::Derivative { non_negative } => {
                let Some(time) = values.get(1) else { return exec_err!("derivative() takes a time") };
                let time = nanoseconds(time)?;
                let mut previous: Option<(i64, f64)> = None;
                let mut out = Vec::with_capacity(num_rows);
                for row in 0..num_rows {
                    if value.is_null(row) || time.is_null(row) {
                        out.push(None);
                        continue;
                    }
                    let (t, v) = (time.value(row), value.value(row));
                    out.push(match previous {
                        Some((pt, _)) if t < pt => {
                            return exec_err!("derivative() needs its rows in time order: OVER (... ORDER BY time)")
                        }
                        Some((pt, pv)) if t > pt => {
                            let rate = (v - pv) / ((t - pt) as f64 / self.parameter);
                            (!non_negative || rate >= 0.0).then_some(rate)
                        }
                        _ => None,
                    });
                    previous = Some((t, v));
                }
                out.into()
            }
            Step::Difference { non_negative } => {
                let mut previous: Option<f64> = None;
                (0..num_rows)
                    .map(|row| {
                        if value.is_null(row) {
                            return None;
                        }
                        let v = value.value(row);
                        let difference = previous.map(|p| v - p).filter(|d| !non_negative || *d >= 0.0);
                        previous = Some(v);
                        difference
                    })
                    .collect()
            }
            Step::MovingAverage => {
                let n = self.parameter as usize;
                let mut window = std::collections::VecDeque::with_capacity(n);
                (0..num_rows)
                    .map(|row| {
                        if value.is_null(row) {
                            return None;
                        }
                        window.push_back(value.value(row));
                        if window.len() > n {
                            window.pop_front();
                        }
                        // Summed afresh: a running sum would carry an inf or a
                        // lost low digit forward.
                        (window.len() == n).then(|| window.iter().sum::<f64>() / n as f64)
                    })
                    .collect()
            }
        };
        Ok(Arc::new(out))
    }
}

/// A timestamp column as nanoseconds since the epoch (see the catalog's
/// tombstones, which read time the same way).
pub(crate) fn nanoseconds(time: &ArrayRef) -> Result<Int64Array> {
    Ok(crate::catalog::tombstones::nanoseconds(time)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Counter {
    Increase,
    Rate,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CounterAggregate {
    counter: Counter,
    signature: Signature,
}

impl CounterAggregate {
    fn new(counter: Counter) -> Self {
        CounterAggregate { counter, signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for CounterAggregate {
    fn name(&self) -> &str {
        match self.counter {
            Counter::Increase => "increase",
            Counter::Rate => "rate",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [value, time @ DataType::Timestamp(..)] if value.is_numeric() => Ok(vec![DataType::Float64, time.clone()]),
            _ => plan_err!("{}(counter, time) takes a number and a timestamp", self.name()),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: &str, item: DataType| {
            Arc::new(Field::new(
                format!("{}[{name}]", args.name),
                DataType::List(Arc::new(Field::new_list_field(item, true))),
                true,
            ))
        };
        Ok(vec![list("time", DataType::Int64), list("value", DataType::Float64)])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CounterAccumulator { counter: self.counter, points: Vec::new() }))
    }
}

/// A group's points, sorted when evaluated.
#[derive(Debug)]
struct CounterAccumulator {
    counter: Counter,
    points: Vec<(i64, f64)>,
}

impl CounterAccumulator {
    fn push(&mut self, time: &Int64Array, value: &Float64Array) {
        for row in 0..value.len() {
            if value.is_valid(row) && time.is_valid(row) {
                self.points.push((time.value(row), value.value(row)));
            }
        }
    }
}

impl Accumulator for CounterAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [value, time] = values else { return exec_err!("increase() and rate() take a counter and a time") };
        let Some(value) = value.as_any().downcast_ref::<Float64Array>() else {
            return exec_err!("increase() and rate() take a number");
        };
        self.push(&nanoseconds(time)?, value);
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [times, values] = states else { return exec_err!("increase() and rate(): two state columns") };
        let (Some(times), Some(values)) =
            (times.as_any().downcast_ref::<ListArray>(), values.as_any().downcast_ref::<ListArray>())
        else {
            return exec_err!("increase() and rate(): state is two lists");
        };
        for row in 0..times.len() {
            if times.is_null(row) || values.is_null(row) {
                continue;
            }
            let (time, value) = (times.value(row), values.value(row));
            let (Some(time), Some(value)) =
                (time.as_any().downcast_ref::<Int64Array>(), value.as_any().downcast_ref::<Float64Array>())
            else {
                return exec_err!("increase() and rate(): state lists of Int64 and Float64");
            };
            self.push(time, value);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let times: Vec<ScalarValue> = self.points.iter().map(|(t, _)| ScalarValue::Int64(Some(*t))).collect();
        let values: Vec<ScalarValue> = self.points.iter().map(|(_, v)| ScalarValue::Float64(Some(*v))).collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&times, &DataType::Int64)),
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Float64)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.points.sort_by_key(|(t, _)| *t);
        let (Some(first), Some(last)) = (self.points.first(), self.points.last()) else {
            return Ok(ScalarValue::Float64(None));
        };
        if self.points.len() < 2 {
            return Ok(ScalarValue::Float64(None));
        }
        // A drop is a reset: the counter started again from zero.
        let increase: f64 =
            self.points.windows(2).map(|w| if w[1].1 >= w[0].1 { w[1].1 - w[0].1 } else { w[1].1 }).sum();
        Ok(ScalarValue::Float64(match self.counter {
            Counter::Increase => Some(increase),
            Counter::Rate if last.0 > first.0 => Some(increase / ((last.0 - first.0) as f64 / SECOND_NS)),
            Counter::Rate => None,
        }))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.points.capacity() * std::mem::size_of::<(i64, f64)>()
    }
}
