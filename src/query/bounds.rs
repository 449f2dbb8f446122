//! The time ranges a query's filters allow, found with DataFusion's own interval
//! analysis of the filter expressions (never by matching SQL text).
//!
//! Each filter is split into disjuncts (OR) and each disjunct into conjuncts
//! (AND). A conjunct that mentions only `time` is turned into a physical
//! expression and analysed ([`analyze`]), which narrows the interval of `time`
//! that can satisfy it: `time >= a AND time < b`, BETWEEN, `time > now() -
//! interval '1 hour'` (the optimizer has already folded `now()`), string literals
//! cast to timestamps, `to_timestamp(...)`. A conjunct that mentions other columns
//! or that the analysis does not understand narrows nothing, which is always
//! correct: the filter itself still runs over the rows.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::utils::split_binary;
use datafusion::logical_expr::{Expr, Operator};
use datafusion::physical_expr::analysis::{analyze, AnalysisContext, ExprBoundaries};

use crate::catalog::{time_data_type, TIME_COLUMN};

/// A closed interval of nanosecond times.
pub type TimeRange = (i64, i64);

/// Every time.
pub const ALL_TIME: TimeRange = (i64::MIN, i64::MAX);

/// The sorted, disjoint ranges of time that rows can have and still pass every
/// one of `filters` (a conjunction). `[ALL_TIME]` when the filters bound nothing;
/// empty when they allow no time at all.
pub fn time_ranges(filters: &[Expr], session: &dyn Session) -> Vec<TimeRange> {
    let schema = Arc::new(Schema::new(vec![Field::new(TIME_COLUMN, time_data_type(), false)]));
    let Ok(df_schema) = DFSchema::try_from(Arc::clone(&schema)) else {
        return vec![ALL_TIME];
    };
    let mut ranges = vec![ALL_TIME];
    for filter in filters {
        let mut allowed = Vec::new();
        for disjunct in split_binary(filter, Operator::Or) {
            if let Some(range) = disjunct_range(disjunct, &schema, &df_schema, session) {
                allowed.push(range);
            }
        }
        ranges = intersect(&ranges, &normalize(allowed));
    }
    ranges
}

/// The range one disjunct allows, or `None` when it allows nothing.
fn disjunct_range(
    disjunct: &Expr,
    schema: &Arc<Schema>,
    df_schema: &DFSchema,
    session: &dyn Session,
) -> Option<TimeRange> {
    let mut range = ALL_TIME;
    for conjunct in split_binary(disjunct, Operator::And) {
        let columns = conjunct.column_refs();
        if columns.is_empty() || columns.iter().any(|c| c.name != TIME_COLUMN) {
            continue;
        }
        let Some(bound) = analyse_conjunct(conjunct, schema, df_schema, session) else { continue };
        let bound = bound?;
        range = (range.0.max(bound.0), range.1.min(bound.1));
        if range.0 > range.1 {
            return None;
        }
    }
    Some(range)
}

/// The interval of `time` a conjunct allows: `None` when the analysis cannot
/// tell (no narrowing), `Some(None)` when nothing passes.
fn analyse_conjunct(
    conjunct: &Expr,
    schema: &Arc<Schema>,
    df_schema: &DFSchema,
    session: &dyn Session,
) -> Option<Option<TimeRange>> {
    // The filter refers to the column by its qualified name; analyse it against
    // the bare `time` column.
    let unqualified = conjunct
        .clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })
        .ok()?
        .data;
    let physical = session.create_physical_expr(unqualified, df_schema).ok()?;
    let boundaries = ExprBoundaries::try_new_unbounded(schema).ok()?;
    let result = analyze(&physical, AnalysisContext::new(boundaries), schema).ok()?;
    let boundary = result.boundaries.into_iter().next()?;
    let Some(interval) = boundary.interval else {
        return Some(None);
    };
    let lower = nanos(interval.lower()).unwrap_or(i64::MIN);
    let upper = nanos(interval.upper()).unwrap_or(i64::MAX);
    Some((lower <= upper).then_some((lower, upper)))
}

fn nanos(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampNanosecond(v, _) => *v,
        ScalarValue::TimestampMicrosecond(v, _) => v.and_then(|v| v.checked_mul(1_000)),
        ScalarValue::TimestampMillisecond(v, _) => v.and_then(|v| v.checked_mul(1_000_000)),
        ScalarValue::TimestampSecond(v, _) => v.and_then(|v| v.checked_mul(1_000_000_000)),
        _ => None,
    }
}

/// Sorts ranges and merges the ones that touch or overlap.
fn normalize(mut ranges: Vec<TimeRange>) -> Vec<TimeRange> {
    ranges.sort_unstable();
    let mut out: Vec<TimeRange> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The intersection of two sorted lists of disjoint ranges.
fn intersect(a: &[TimeRange], b: &[TimeRange]) -> Vec<TimeRange> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo <= hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The smallest range holding all of `ranges`.
pub fn hull(ranges: &[TimeRange]) -> Option<TimeRange> {
    Some((ranges.first()?.0, ranges.last()?.1))
}

/// Whether `[min, max]` meets any of `ranges`.
pub fn overlaps(ranges: &[TimeRange], min: i64, max: i64) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= max && min <= hi)
}

/// Whether a data type is the `time` column's.
pub fn is_time_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Timestamp(_, _))
}
