//! The optimizer rule that turns a query grouped by `date_bin_gapfill` or
//! `time_bucket_gapfill` into an aggregate by `date_bin` under a
//! [`GapFill`] node.
//!
//! It runs before every other rule, on the plan as SQL made it (a projection
//! over the aggregate, over the WHERE filter), and folds the time bounds to
//! constants with the statement's `now()`.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{plan_err, Column, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, Between, BinaryExpr, Expr, ExprSchemable, Extension, Filter, LogicalPlan, Operator, Projection,
};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::exec::{FilledColumn, GapFillColumns};
use super::fill::{Buckets, Fill};
use super::node::GapFill;
use super::{rfc3339, Marker, MAX_OUTPUT_ROWS};

const DAY_NS: i128 = 86_400_000_000_000;

/// Rewrites gap-filling queries (see the module).
#[derive(Debug, Default)]
pub struct GapFillRule;

impl OptimizerRule for GapFillRule {
    fn name(&self) -> &str {
        "gap_fill"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let folder = Folder::new(config);
        plan.transform_up_with_subqueries(|node| rewrite_projection(node, &folder))
    }
}

/// Folds constant expressions (`now() - interval '1 hour'`) to literals with
/// the statement's start time.
struct Folder {
    simplifier: ExprSimplifier,
}

impl Folder {
    fn new(config: &dyn OptimizerConfig) -> Folder {
        let context = SimplifyContext::builder()
            .with_query_execution_start_time(config.query_execution_start_time())
            .with_config_options(config.options())
            .build();
        Folder { simplifier: ExprSimplifier::new(context) }
    }

    fn scalar(&self, expr: &Expr) -> Result<Option<ScalarValue>> {
        Ok(match self.simplifier.simplify(expr.clone())? {
            Expr::Literal(value, _) => Some(value),
            _ => None,
        })
    }

    /// A time as nanoseconds since the epoch.
    fn time_ns(&self, expr: &Expr, what: &str) -> Result<i64> {
        let value = match self.scalar(expr)? {
            Some(value) => value.cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, None))?,
            None => return plan_err!("gap filling needs {what} to be a constant time, not {expr}"),
        };
        match value {
            ScalarValue::TimestampNanosecond(Some(ns), _) => Ok(ns),
            _ => plan_err!("gap filling needs {what} to be a time, not NULL"),
        }
    }

    /// An interval of days or less, as nanoseconds.
    fn stride_ns(&self, expr: &Expr, function: &str) -> Result<i64> {
        let ns: i128 = match self.scalar(expr)? {
            Some(ScalarValue::IntervalMonthDayNano(Some(v))) if v.months == 0 => {
                i128::from(v.days) * DAY_NS + i128::from(v.nanoseconds)
            }
            Some(ScalarValue::IntervalDayTime(Some(v))) => {
                i128::from(v.days) * DAY_NS + i128::from(v.milliseconds) * 1_000_000
            }
            Some(ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_))) => {
                return plan_err!("{function}() takes intervals of days or less, not months or years")
            }
            Some(
                value @ (ScalarValue::DurationSecond(_)
                | ScalarValue::DurationMillisecond(_)
                | ScalarValue::DurationMicrosecond(_)
                | ScalarValue::DurationNanosecond(_)),
            ) => match value.cast_to(&DataType::Duration(TimeUnit::Nanosecond))? {
                ScalarValue::DurationNanosecond(Some(ns)) => i128::from(ns),
                _ => 0,
            },
            _ => return plan_err!("{function}() takes a constant interval first, such as INTERVAL '1 minute'"),
        };
        match i64::try_from(ns) {
            Ok(ns) if ns > 0 => Ok(ns),
            _ => plan_err!("{function}() takes a positive interval"),
        }
    }
}

/// The gap-filling key of an aggregate: where it is, which function, its
/// arguments.
struct GapFillKey {
    position: usize,
    marker: Marker,
    args: Vec<Expr>,
    name: String,
}

fn gap_fill_key(aggregate: &Aggregate) -> Result<Option<GapFillKey>> {
    let mut found = None;
    for (position, expr) in aggregate.group_expr.iter().enumerate() {
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::ScalarFunction(ScalarFunction { func, args }) = inner else { continue };
        let Some(marker @ (Marker::DateBinGapfill | Marker::TimeBucketGapfill)) = Marker::of(func.name()) else {
            continue;
        };
        if found.is_some() {
            return plan_err!("a query fills the gaps of one time bucket: GROUP BY has two gap-filling functions");
        }
        found = Some(GapFillKey { position, marker, args: args.clone(), name: expr.schema_name().to_string() });
    }
    Ok(found)
}

fn rewrite_projection(node: LogicalPlan, folder: &Folder) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Projection(projection) = &node else { return Ok(Transformed::no(node)) };
    let (having, aggregate) = match projection.input.as_ref() {
        LogicalPlan::Aggregate(aggregate) => (None, aggregate),
        LogicalPlan::Filter(filter) => match filter.input.as_ref() {
            LogicalPlan::Aggregate(aggregate) => (Some(filter), aggregate),
            _ => return Ok(Transformed::no(node)),
        },
        _ => return Ok(Transformed::no(node)),
    };
    if aggregate.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
        // A gap-filling function inside one fails when run, saying where it belongs.
        return Ok(Transformed::no(node));
    }
    let Some(key) = gap_fill_key(aggregate)? else { return Ok(Transformed::no(node)) };
    let function = key.marker.name();
    let time = match strip_casts(&key.args[1]) {
        Expr::Column(column) => column.clone(),
        other => return plan_err!("{function}() buckets a time column, not {other}"),
    };
    let stride = folder.stride_ns(&key.args[0], function)?;
    // Bounds compare with the column itself, in its own type.
    let time_type = Expr::Column(time.clone()).get_type(aggregate.input.schema())?;
    let (origin, origin_expr) = match (key.marker, key.args.get(2)) {
        (Marker::DateBinGapfill, Some(origin)) => (folder.time_ns(origin, "the origin")?, None),
        (Marker::DateBinGapfill, None) => (0, None),
        (_, _) => {
            let origin = crate::query::functions::TIMESCALE_ORIGIN_NS;
            (origin, Some(time_literal(origin, &time_type)?))
        }
    };

    // The fills, from the projection.
    let group_count = aggregate.group_expr.len();
    let mut filled = Filled::default();
    let preserver = NamePreserver::new_for_projection();
    let mut exprs = Vec::with_capacity(projection.expr.len());
    for expr in &projection.expr {
        let saved = preserver.save(expr);
        let rewritten = expr.clone().transform_up(|e| filled.take(e, aggregate.schema.as_ref(), group_count))?;
        exprs.push(saved.restore(rewritten.data));
    }

    // The range, from start/finish or WHERE.
    let where_filter = match aggregate.input.as_ref() {
        LogicalPlan::Filter(filter) => Some(filter),
        _ => None,
    };
    let bounds = match where_filter {
        Some(filter) => TimeBounds::of(&filter.predicate, &time, folder)?,
        None => TimeBounds::default(),
    };
    let start = match key.args.get(2).filter(|_| key.marker == Marker::TimeBucketGapfill) {
        Some(start) => Some(folder.time_ns(start, "start")?),
        None => bounds.start,
    };
    let end = match key.args.get(3) {
        Some(finish) => Some(folder.time_ns(finish, "finish")?),
        None => bounds.end,
    };
    let (start, end) = match (start, end) {
        (Some(start), Some(end)) => (start, end),
        (start, _) => {
            let missing = if start.is_none() { "lower" } else { "upper" };
            let time = &time.name;
            return plan_err!(
                "{function}() needs a time range: WHERE has no {missing} bound on {time}. \
                 Bound it on both sides, for example {time} >= now() - interval '1 hour' AND {time} <= now()"
            );
        }
    };
    let buckets = buckets(start, end, stride, origin)?;

    // The aggregate by date_bin, reading the span before the range too where
    // a column carries values in.
    // The aggregate reads the range only (start/finish may be narrower than
    // WHERE, or WHERE may have no bound), and the span before it too where a
    // column carries values in.
    let column = Expr::Column(time.clone());
    let in_range =
        column.clone().gt_eq(time_literal(start, &time_type)?).and(column.clone().lt(time_literal(end, &time_type)?));
    let (predicate, below) = match where_filter {
        Some(filter) => (filter.predicate.clone().and(in_range), Arc::clone(&filter.input)),
        None => (in_range, Arc::clone(&aggregate.input)),
    };
    let predicate = if filled.columns.is_empty() {
        predicate
    } else {
        let lookback = (end.saturating_sub(start)).max(stride);
        let mut before_range: Vec<Expr> = match where_filter {
            Some(filter) => {
                split_conjunction(&filter.predicate).into_iter().filter(|c| !bounds.is_lower(c)).cloned().collect()
            }
            None => Vec::new(),
        };
        before_range.push(column.clone().gt_eq(time_literal(buckets.first.saturating_sub(lookback), &time_type)?));
        before_range.push(column.lt(time_literal(buckets.first, &time_type)?));
        match conjunction(before_range) {
            Some(before_range) => predicate.or(before_range),
            None => predicate,
        }
    };
    let input = Arc::new(LogicalPlan::Filter(Filter::try_new(predicate, below)?));
    let date_bin_args = match origin_expr {
        Some(origin) => vec![key.args[0].clone(), key.args[1].clone(), origin],
        None => key.args.clone(),
    };
    let date_bin =
        Expr::ScalarFunction(ScalarFunction::new_udf(datafusion::functions::datetime::date_bin(), date_bin_args));
    let mut group_expr = aggregate.group_expr.clone();
    group_expr[key.position] = date_bin.alias(key.name.clone());
    let aggregate = Aggregate::try_new(input, group_expr, aggregate.aggr_expr.clone())?;
    let columns = GapFillColumns {
        groups: (0..group_count).filter(|&i| i != key.position).collect(),
        time: key.position,
        filled: filled.columns,
    };
    let gap_fill = GapFill::try_new(LogicalPlan::Aggregate(aggregate), columns, filled.names, buckets)?;
    let mut plan = LogicalPlan::Extension(Extension { node: Arc::new(gap_fill) });
    if let Some(having) = having {
        plan = LogicalPlan::Filter(Filter::try_new(having.predicate.clone(), Arc::new(plan))?);
    }
    Ok(Transformed::yes(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan))?)))
}

/// The columns `locf(...)` and `interpolate(...)` ask the node for.
#[derive(Default)]
struct Filled {
    columns: Vec<FilledColumn>,
    names: Vec<String>,
}

impl Filled {
    /// Replaces `locf(column)` and `interpolate(column)` with a reference to
    /// the node's filled copy of the column.
    fn take(&mut self, expr: Expr, schema: &DFSchema, group_count: usize) -> Result<Transformed<Expr>> {
        let Expr::ScalarFunction(ScalarFunction { func, args }) = &expr else { return Ok(Transformed::no(expr)) };
        let fill = match Marker::of(func.name()) {
            Some(Marker::Locf) => Fill::Locf,
            Some(Marker::Interpolate) => Fill::Interpolate,
            _ => return Ok(Transformed::no(expr)),
        };
        let name = func.name();
        let [Expr::Column(column)] = args.as_slice() else {
            return plan_err!("{name}() takes one aggregate, as in {name}(avg(usage)), not {expr}");
        };
        let source = schema.index_of_column(column)?;
        if source < group_count {
            return plan_err!("{name}() takes an aggregate, not the GROUP BY key {}", column.name);
        }
        let wanted = FilledColumn { source, fill };
        let index = match self.columns.iter().position(|c| *c == wanted) {
            Some(index) => index,
            None => {
                self.columns.push(wanted);
                self.names.push(expr.schema_name().to_string());
                self.columns.len() - 1
            }
        };
        Ok(Transformed::yes(Expr::Column(Column::from_name(self.names[index].clone()))))
    }
}

/// `expr` under casts from one timestamp type to another, which keep the
/// instant: `time::date` is not the time column.
fn strip_casts(expr: &Expr) -> &Expr {
    match expr {
        Expr::Cast(cast) if matches!(cast.field.data_type(), DataType::Timestamp(..)) => strip_casts(&cast.expr),
        Expr::TryCast(cast) if matches!(cast.field.data_type(), DataType::Timestamp(..)) => strip_casts(&cast.expr),
        other => other,
    }
}

/// A time literal in the time column's type.
fn time_literal(ns: i64, time_type: &DataType) -> Result<Expr> {
    let zone = match time_type {
        DataType::Timestamp(_, zone) => zone.clone(),
        _ => None,
    };
    let value = ScalarValue::TimestampNanosecond(Some(ns), zone).cast_to(time_type)?;
    Ok(Expr::Literal(value, None))
}

/// The buckets from the one holding `start` to the one holding the last
/// nanosecond before `end`.
fn buckets(start: i64, end: i64, stride: i64, origin: i64) -> Result<Buckets> {
    let floor = |t: i64| -> i128 {
        let offset = i128::from(t) - i128::from(origin);
        i128::from(origin) + offset.div_euclid(i128::from(stride)) * i128::from(stride)
    };
    let first = floor(start);
    let count = if end <= start { 0 } else { (floor(end - 1) - first) / i128::from(stride) + 1 };
    if count > MAX_OUTPUT_ROWS as i128 {
        return plan_err!(
            "gap filling from {} to {} every {stride}ns makes {count} buckets, more than {MAX_OUTPUT_ROWS}: \
             narrow the time range or widen the interval",
            rfc3339(start),
            rfc3339(end)
        );
    }
    let Ok(first) = i64::try_from(first) else { return plan_err!("gap filling: the range starts out of range") };
    Ok(Buckets { first, stride, count: count as usize })
}

/// The bounds WHERE puts on the time column: `start` inclusive, `end`
/// exclusive, nanoseconds.
#[derive(Debug, Default)]
struct TimeBounds {
    start: Option<i64>,
    end: Option<i64>,
    /// The conjuncts that gave a lower bound.
    lower: Vec<Expr>,
}

impl TimeBounds {
    fn of(predicate: &Expr, time: &Column, folder: &Folder) -> Result<TimeBounds> {
        let mut bounds = TimeBounds::default();
        let is_time = |e: &Expr| matches!(strip_casts(e), Expr::Column(c) if c == time);
        let constant = |e: &Expr| e.column_refs().is_empty();
        for conjunct in split_conjunction(predicate) {
            match conjunct {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    let (op, value) = if is_time(left) && constant(right) {
                        (*op, right.as_ref())
                    } else if is_time(right) && constant(left) {
                        match op.swap() {
                            Some(op) => (op, left.as_ref()),
                            None => continue,
                        }
                    } else {
                        continue;
                    };
                    match op {
                        Operator::GtEq => bounds.lower(conjunct, folder.time_ns(value, "the lower bound")?),
                        Operator::Gt => {
                            bounds.lower(conjunct, folder.time_ns(value, "the lower bound")?.saturating_add(1))
                        }
                        Operator::Lt => bounds.upper(folder.time_ns(value, "the upper bound")?),
                        Operator::LtEq => bounds.upper(folder.time_ns(value, "the upper bound")?.saturating_add(1)),
                        Operator::Eq => {
                            let at = folder.time_ns(value, "the time")?;
                            bounds.lower(conjunct, at);
                            bounds.upper(at.saturating_add(1));
                        }
                        _ => {}
                    }
                }
                Expr::Between(Between { expr, negated: false, low, high }) if is_time(expr) => {
                    bounds.lower(conjunct, folder.time_ns(low, "the lower bound")?);
                    bounds.upper(folder.time_ns(high, "the upper bound")?.saturating_add(1));
                }
                _ => {}
            }
        }
        Ok(bounds)
    }

    fn lower(&mut self, conjunct: &Expr, start: i64) {
        self.start = Some(self.start.map_or(start, |s| s.max(start)));
        self.lower.push(conjunct.clone());
    }

    fn upper(&mut self, end: i64) {
        self.end = Some(self.end.map_or(end, |e| e.min(end)));
    }

    fn is_lower(&self, conjunct: &Expr) -> bool {
        self.lower.contains(conjunct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_run_from_the_one_holding_start_to_the_one_before_end() {
        let b = buckets(105, 140, 10, 0).expect("buckets");
        assert_eq!((b.first, b.count), (100, 4)); // 100, 110, 120, 130
        let b = buckets(105, 141, 10, 3).expect("buckets");
        assert_eq!((b.first, b.count), (103, 4)); // 103 .. 133 (140 is in 133's bucket)
        assert_eq!(buckets(-5, 5, 10, 0).expect("buckets").first, -10);
        assert_eq!(buckets(10, 10, 10, 0).expect("buckets").count, 0);
        assert!(buckets(0, i64::MAX, 1, 0).is_err());
    }
}
