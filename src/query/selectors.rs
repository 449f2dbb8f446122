//! InfluxDB 3's selector aggregates: `selector_first(value, time)`,
//! `selector_last`, `selector_min` and `selector_max`. Each returns the
//! chosen row's value and time together, as a struct `{value, time}`, so a
//! query reads both from one row (`selector_max(usage, time)['time']`):
//! Grafana's InfluxDB SQL data source writes them.
//!
//! Rows whose value or time is NULL are not candidates. `selector_first` and
//! `selector_last` take the earliest or latest time; `selector_min` and
//! `selector_max` the least or greatest value, and of equal values the
//! earliest. NULL when the group has no candidate.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{make_comparator, Array, ArrayRef, StructArray};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

/// The four selectors, to register in a session.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    [Select::First, Select::Last, Select::Min, Select::Max]
        .into_iter()
        .map(|select| Arc::new(AggregateUDF::from(Selector::new(select))))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Select {
    First,
    Last,
    Min,
    Max,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Selector {
    select: Select,
    signature: Signature,
}

impl Selector {
    fn new(select: Select) -> Self {
        Selector { select, signature: Signature::any(2, Volatility::Immutable) }
    }
}

/// The struct a selector returns.
fn struct_fields(value: &DataType, time: &DataType) -> Fields {
    Fields::from(vec![Field::new("value", value.clone(), true), Field::new("time", time.clone(), true)])
}

impl AggregateUDFImpl for Selector {
    fn name(&self) -> &str {
        match self.select {
            Select::First => "selector_first",
            Select::Last => "selector_last",
            Select::Min => "selector_min",
            Select::Max => "selector_max",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value, time @ DataType::Timestamp(..)] => Ok(DataType::Struct(struct_fields(value, time))),
            [_, other] => plan_err!("{}(value, time) takes a timestamp second, not {other}", self.name()),
            _ => plan_err!("{}(value, time) takes two arguments", self.name()),
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
        let (value_type, time_type) = match args.expr_fields {
            [value, time] => (value.data_type().clone(), time.data_type().clone()),
            _ => return exec_err!("{}(value, time) takes two arguments", self.name()),
        };
        Ok(Box::new(SelectorAccumulator { select: self.select, value_type, time_type, best: None }))
    }
}

#[derive(Debug)]
struct SelectorAccumulator {
    select: Select,
    value_type: DataType,
    time_type: DataType,
    /// The chosen value and its time (nanoseconds).
    best: Option<(ScalarValue, i64)>,
}

impl SelectorAccumulator {
    /// The best candidate row of `value` and `time`, if any.
    fn best_row(&self, value: &ArrayRef, time: &ArrayRef) -> Result<Option<(usize, i64)>> {
        let times = super::series::nanoseconds(time)?;
        let compare_values = match self.select {
            Select::Min | Select::Max => Some(make_comparator(value.as_ref(), value.as_ref(), SortOptions::default())?),
            _ => None,
        };
        let mut best: Option<(usize, i64)> = None;
        for row in 0..value.len() {
            if value.is_null(row) || times.is_null(row) {
                continue;
            }
            let t = times.value(row);
            let better = match best {
                None => true,
                Some((b, bt)) => match (self.select, &compare_values) {
                    (Select::First, _) => t < bt,
                    (Select::Last, _) => t >= bt,
                    (Select::Min, Some(cmp)) => cmp(row, b).then(t.cmp(&bt)) == Ordering::Less,
                    (Select::Max, Some(cmp)) => cmp(row, b).then(bt.cmp(&t)) == Ordering::Greater,
                    _ => false,
                },
            };
            if better {
                best = Some((row, t));
            }
        }
        Ok(best)
    }

    fn offer(&mut self, value: ScalarValue, time: i64) -> Result<()> {
        let better = match &self.best {
            None => true,
            Some((best, best_time)) => {
                let by_value = || -> Result<Ordering> {
                    match value.partial_cmp(best) {
                        Some(order) => Ok(order),
                        None => exec_err!("selector: {value} and {best} do not compare"),
                    }
                };
                match self.select {
                    Select::First => time < *best_time,
                    Select::Last => time >= *best_time,
                    Select::Min => by_value()?.then(time.cmp(best_time)) == Ordering::Less,
                    Select::Max => by_value()?.then(best_time.cmp(&time)) == Ordering::Greater,
                }
            }
        };
        if better {
            self.best = Some((value, time));
        }
        Ok(())
    }

    fn time_scalar(&self, time: Option<i64>) -> Result<ScalarValue> {
        let zone = match &self.time_type {
            DataType::Timestamp(_, zone) => zone.clone(),
            _ => None,
        };
        ScalarValue::TimestampNanosecond(time, zone).cast_to(&self.time_type)
    }
}

impl Accumulator for SelectorAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [value, time] = values else {
            return exec_err!("selectors take a value and a time");
        };
        if let Some((row, t)) = self.best_row(value, time)? {
            self.offer(ScalarValue::try_from_array(value, row)?, t)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (value, time) = match &self.best {
            Some((value, time)) => (value.clone(), Some(*time)),
            None => (ScalarValue::try_from(&self.value_type)?, None),
        };
        Ok(vec![value, self.time_scalar(time)?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let fields = struct_fields(&self.value_type, &self.time_type);
        let [value, time] = <[ScalarValue; 2]>::try_from(self.state()?)
            .map_err(|_| datafusion::common::DataFusionError::Internal("selector state".into()))?;
        let nulls = self.best.is_none().then(|| arrow::buffer::NullBuffer::new_null(1));
        let array = StructArray::try_new(fields, vec![value.to_array()?, time.to_array()?], nulls)?;
        Ok(ScalarValue::Struct(Arc::new(array)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.best.as_ref().map_or(0, |(v, _)| v.size())
    }
}
