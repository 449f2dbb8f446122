//! Gap filling: InfluxDB 3's `date_bin_gapfill(interval, time [, origin])`
//! and TimescaleDB's `time_bucket_gapfill(interval, time [, start [, finish]])`
//! as GROUP BY keys, with `locf(aggregate)` and `interpolate(aggregate)`.
//!
//! A query grouped by one of them returns a row for every bucket of its time
//! range in every group of its other keys. The range comes from the WHERE
//! clause's bounds on the time column (or `start`/`finish`); a query without
//! both bounds is refused, naming the one missing.
//!
//! How: the functions are markers that fail when executed. The optimizer rule
//! of [`rewrite`] runs first, replaces the marker with `date_bin` in the
//! aggregate, puts a [`node::GapFill`] node over the aggregate and takes
//! `locf`/`interpolate` out of the projection, recording how each column
//! fills. [`exec::GapFillExec`] makes the rows. Where a column fills with
//! `locf` or `interpolate`, the aggregate also reads a span as long as the
//! range before it, so that a value from before the range can carry in.

pub mod exec;
pub mod fill;
pub mod node;
pub mod rewrite;

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// The most rows a gap-filled query returns (groups × buckets): the node
/// holds its input and makes every row, so this bounds its memory and time.
pub const MAX_OUTPUT_ROWS: usize = 10_000_000;

/// The gap-filling functions, to register in a session.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    [Marker::DateBinGapfill, Marker::TimeBucketGapfill, Marker::Locf, Marker::Interpolate]
        .into_iter()
        .map(|marker| Arc::new(ScalarUDF::from(GapFillFunction::new(marker))))
        .collect()
}

/// The functions the rewrite looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Marker {
    DateBinGapfill,
    TimeBucketGapfill,
    Locf,
    Interpolate,
}

impl Marker {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Marker::DateBinGapfill => "date_bin_gapfill",
            Marker::TimeBucketGapfill => "time_bucket_gapfill",
            Marker::Locf => "locf",
            Marker::Interpolate => "interpolate",
        }
    }

    pub(crate) fn of(name: &str) -> Option<Marker> {
        [Marker::DateBinGapfill, Marker::TimeBucketGapfill, Marker::Locf, Marker::Interpolate]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// A marker: typed like what it stands for, failing with where it belongs
/// when run anywhere else.
#[derive(Debug, PartialEq, Eq, Hash)]
struct GapFillFunction {
    marker: Marker,
    signature: Signature,
}

impl GapFillFunction {
    fn new(marker: Marker) -> Self {
        let signature = match marker {
            Marker::DateBinGapfill => datafusion::functions::datetime::date_bin().signature().clone(),
            Marker::TimeBucketGapfill => Signature::user_defined(Volatility::Immutable),
            Marker::Locf | Marker::Interpolate => Signature::any(1, Volatility::Immutable),
        };
        GapFillFunction { marker, signature }
    }
}

impl ScalarUDFImpl for GapFillFunction {
    fn name(&self) -> &str {
        self.marker.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        // time_bucket_gapfill(interval, time [, start [, finish]]): the bounds
        // in the time column's type, so strings and dates work.
        let name = self.marker.name();
        if !(2..=4).contains(&arg_types.len()) {
            return plan_err!("{name}(interval, time [, start [, finish]]) takes 2 to 4 arguments");
        }
        let stride = match &arg_types[0] {
            interval @ (DataType::Interval(_) | DataType::Duration(_)) => interval.clone(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano)
            }
            other => return plan_err!("{name}() takes an interval first, not {other}"),
        };
        let time = match &arg_types[1] {
            time @ DataType::Timestamp(..) => time.clone(),
            other => return plan_err!("{name}() buckets a timestamp, not {other}"),
        };
        let bound = match &time {
            DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Nanosecond, zone.clone()),
            _ => time.clone(),
        };
        let mut types = vec![stride, time];
        types.extend(arg_types[2..].iter().map(|_| bound.clone()));
        Ok(types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match (self.marker, arg_types) {
            (Marker::DateBinGapfill, _) => datafusion::functions::datetime::date_bin().return_type(arg_types),
            (_, [_, time, ..]) if self.marker == Marker::TimeBucketGapfill => Ok(time.clone()),
            (_, [value]) => Ok(value.clone()),
            _ => plan_err!("{}(): wrong number of arguments", self.marker.name()),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match self.marker {
            Marker::DateBinGapfill | Marker::TimeBucketGapfill => exec_err!(
                "{}() fills gaps only as a GROUP BY key of its own (GROUP BY 1, not inside another expression), \
                 in a query whose WHERE bounds the time column",
                self.marker.name()
            ),
            Marker::Locf | Marker::Interpolate => exec_err!(
                "{}() takes one aggregate of a query grouped by date_bin_gapfill() or time_bucket_gapfill(), \
                 as in {}(avg(usage))",
                self.marker.name(),
                self.marker.name()
            ),
        }
    }
}

/// A nanosecond time as RFC 3339, for plans and errors.
pub(crate) fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
