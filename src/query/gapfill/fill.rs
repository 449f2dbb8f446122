//! What a gap-filled group's rows are: the buckets of the range, each with
//! the input row that has its time (if any), and the values `locf` and
//! `interpolate` put where a bucket has none.
//!
//! Pure functions over one group's bucket times, sorted ascending; the
//! execution node gathers columns with what they return.

use arrow::array::{Array, ArrayRef, Float64Array, UInt32Array};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};

/// How an aggregate column fills a bucket that has no row, or whose value is
/// NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Fill {
    /// NULL, as InfluxDB's and TimescaleDB's gap filling leave a plain
    /// aggregate.
    Null,
    /// `locf(...)`: the last non-NULL value before it in the group, also from
    /// before the range.
    Locf,
    /// `interpolate(...)`: on the line between the nearest non-NULL values
    /// before and after it; NULL without both.
    Interpolate,
}

/// The buckets of a query's range: `count` of them, from `first`, `stride`
/// apart (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, serde::Serialize, serde::Deserialize)]
pub struct Buckets {
    pub first: i64,
    pub stride: i64,
    pub count: usize,
}

impl Buckets {
    /// The start of bucket `i`.
    pub fn time(&self, i: usize) -> i64 {
        self.first + self.stride * i as i64
    }
}

/// For every bucket, the row of `times` (a group's bucket times, ascending,
/// offset by `base` in the input) that has that time. Rows before the first
/// bucket are left to the fills; rows after the last are dropped.
pub fn matching_rows(times: &[i64], base: usize, buckets: &Buckets) -> Vec<Option<u32>> {
    let mut out = vec![None; buckets.count];
    for (i, &time) in times.iter().enumerate() {
        let offset = time - buckets.first;
        if offset < 0 || offset % buckets.stride != 0 {
            continue;
        }
        let bucket = (offset / buckets.stride) as usize;
        if bucket < buckets.count {
            out[bucket] = Some((base + i) as u32);
        }
    }
    out
}

/// `locf`: for every bucket, the latest row at or before it whose value in
/// `column` is not NULL (rows `base..base + times.len()` of `column` are the
/// group's).
pub fn locf_rows(times: &[i64], base: usize, column: &dyn Array, buckets: &Buckets) -> Vec<Option<u32>> {
    let mut out = Vec::with_capacity(buckets.count);
    let mut next = 0;
    let mut last = None;
    for b in 0..buckets.count {
        let time = buckets.time(b);
        while next < times.len() && times[next] <= time {
            if column.is_valid(base + next) {
                last = Some((base + next) as u32);
            }
            next += 1;
        }
        out.push(last);
    }
    out
}

/// `interpolate`: for every bucket, its own non-NULL value, or the value on
/// the line between the nearest non-NULL values before and after it, as
/// `Float64`; NULL where one of those is missing.
pub fn interpolated(times: &[i64], base: usize, column: &dyn Array, buckets: &Buckets) -> Result<Float64Array> {
    let values = match cast(column, &DataType::Float64) {
        Ok(values) => values,
        Err(_) => return exec_err!("interpolate() takes numbers, not {}", column.data_type()),
    };
    let Some(values) = values.as_any().downcast_ref::<Float64Array>() else {
        return exec_err!("interpolate(): {} did not cast to Float64", column.data_type());
    };
    let points: Vec<(i64, f64)> =
        (0..times.len()).filter(|&i| values.is_valid(base + i)).map(|i| (times[i], values.value(base + i))).collect();
    let mut out = Vec::with_capacity(buckets.count);
    let mut after = 0; // the first point later than the bucket
    for b in 0..buckets.count {
        let time = buckets.time(b);
        while after < points.len() && points[after].0 <= time {
            after += 1;
        }
        let value = match (after.checked_sub(1).map(|i| points[i]), points.get(after)) {
            (Some((t, v)), _) if t == time => Some(v),
            (Some((t0, v0)), Some(&(t1, v1))) => Some(v0 + (v1 - v0) * ((time - t0) as f64 / (t1 - t0) as f64)),
            _ => None,
        };
        out.push(value);
    }
    Ok(Float64Array::from(out))
}

/// The interpolated values in the column's own type: integers round to the
/// nearest.
pub fn interpolated_as(values: Float64Array, data_type: &DataType) -> Result<ArrayRef> {
    let values =
        if data_type.is_integer() { values.unary::<_, arrow::datatypes::Float64Type>(f64::round) } else { values };
    Ok(cast(&values, data_type)?)
}

/// Rows as `take` indices.
pub fn indices(rows: Vec<Option<u32>>) -> UInt32Array {
    UInt32Array::from(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    const BUCKETS: Buckets = Buckets { first: 100, stride: 10, count: 5 }; // 100..=140

    #[test]
    fn rows_match_their_bucket_and_seeds_before_the_range_only_fill() {
        // a seed at 80, rows at 110 and 130, one past the range at 150
        let times = [80, 110, 130, 150];
        assert_eq!(matching_rows(&times, 3, &BUCKETS), vec![None, Some(4), None, Some(5), None]);
        let values = Int64Array::from(vec![Some(9), Some(1), Some(3), None, Some(7), Some(8), None]);
        // rows 3..7 are the group: 80 -> NULL, 110 -> 7, 130 -> 8, 150 -> NULL
        assert_eq!(locf_rows(&times, 3, &values, &BUCKETS), vec![None, Some(4), Some(4), Some(5), Some(5)]);
    }

    #[test]
    fn locf_carries_a_value_from_before_the_range_and_skips_nulls() {
        let times = [80, 110, 120];
        let values = Int64Array::from(vec![Some(5), None, Some(6)]);
        assert_eq!(locf_rows(&times, 0, &values, &BUCKETS), vec![Some(0), Some(0), Some(2), Some(2), Some(2)]);
    }

    #[test]
    fn interpolation_is_linear_between_neighbours_and_null_past_the_last() {
        let times = [90, 120, 130];
        let values = Int64Array::from(vec![Some(0), Some(30), None]);
        let out = interpolated(&times, 0, &values, &BUCKETS).expect("numbers");
        let out: Vec<Option<f64>> = out.iter().collect();
        assert_eq!(out, vec![Some(10.0), Some(20.0), Some(30.0), None, None]);
        let ints = interpolated_as(Float64Array::from(vec![Some(2.5), Some(2.4)]), &DataType::Int64).expect("cast");
        let ints = ints.as_any().downcast_ref::<Int64Array>().expect("int64");
        assert_eq!(ints.values().to_vec(), vec![3, 2]);
    }
}
