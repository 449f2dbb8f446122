//! Queries answered from the last-value cache.
//!
//! An aggregate whose answer over a measurement equals its answer over the
//! last row of each series reads [`LastValueCache`] instead of the table. That
//! holds when:
//! - it groups by tags, or by expressions of tags only (constant within a
//!   series), or by nothing;
//! - every aggregate is `first_value(x ORDER BY <tags>..., time DESC ...)` or
//!   `last_value(x ORDER BY <tags>..., time ...)` (what `DISTINCT ON (tags)
//!   ... ORDER BY tags, time DESC` becomes), `max(time)`, `min`/`max` of tags,
//!   TimescaleDB's `last(x, time)`, or `count(DISTINCT <tags>)`; no
//!   `FILTER`, no `IGNORE NULLS`;
//! - it has no aggregate at all: `SELECT DISTINCT host FROM cpu`;
//! - the rows it reads are filtered by tags only and by bounds on `time`. A
//!   series whose last row is older than a lower bound has no row after it,
//!   and one whose last row is newer keeps that row as its last. An upper
//!   bound (Grafana's `$__timeFilter` ends at now) is answered only when no
//!   last row of the table is at or past it, which the scan checks; otherwise
//!   the scan reads the table.
//!
//! Anything else (a filter on a field, a join) reads the table as before.
//! The rewrite swaps the scan's table, so the plan above computes the same
//! answer from fewer rows; if the cache is off for the table when the query
//! runs, the scan reads the table. When the cache is ready at planning, a
//! `DISTINCT ON` also becomes a window that suits few rows
//! ([`one_row_per_group`]).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::SchemaRef;
use arrow::datatypes::TimestampNanosecondType;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{provider_as_source, source_as_provider, TableProvider, TableType};
use datafusion::functions_window::expr_fn::{lag, row_number};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    binary_expr, col, lit, Aggregate, BinaryExpr, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, Operator,
    SortExpr as Sort, TableProviderFilterPushDown, TableScan,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;

use super::table::TimeseriesTable;
use crate::catalog::{ColumnType, TableSchema, TIME_COLUMN};
use crate::last_values::{CachePhase, LastValueCache};

/// Points the scans of the aggregates described in the module docs at the cache.
#[derive(Debug)]
pub(super) struct LastValuesRule {
    cache: Arc<LastValueCache>,
}

impl LastValuesRule {
    /// The rule, reading `cache`.
    pub(super) fn new(cache: Arc<LastValueCache>) -> Self {
        LastValuesRule { cache }
    }
}

impl OptimizerRule for LastValuesRule {
    fn name(&self) -> &str {
        "hourglass_last_values"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else { return Ok(Transformed::no(plan)) };
        let mut before = None;
        let Some(classes) = column_classes(&aggregate.input, &mut before) else { return Ok(Transformed::no(plan)) };
        if !aggregate_is_answerable(aggregate, &classes) {
            return Ok(Transformed::no(plan));
        }
        let input = Arc::unwrap_or_clone(Arc::clone(&aggregate.input));
        let mut ready = false;
        let input = input.transform_up(|node| {
            let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
            let Some(measurement) = measurement(scan) else { return Ok(Transformed::no(node)) };
            match self.cache.phase(&measurement.database, &measurement.table) {
                CachePhase::Off => return Ok(Transformed::no(node)),
                CachePhase::Ready => ready = true,
                CachePhase::NotBuilt => {}
            }
            let cached = LastValuesTable {
                inner: measurement.provider,
                cache: Arc::clone(&self.cache),
                database: measurement.database,
                table: measurement.table,
                before,
            };
            let mut scan = scan.clone();
            scan.source = provider_as_source(Arc::new(cached));
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        })?;
        if !input.transformed {
            return Ok(Transformed::no(plan));
        }
        if ready {
            if let Some(picked) = one_row_per_group(aggregate, input.data.clone())? {
                return Ok(Transformed::yes(picked));
            }
        }
        let rewritten = plan.with_new_exprs(plan.expressions(), vec![input.data])?;
        Ok(Transformed::yes(rewritten))
    }
}

/// The aggregate as a window, when every aggregate is `first_value(x ORDER
/// BY s)` with one `s` (or `last_value` with one `s`), as `DISTINCT ON`
/// makes it: that picks one whole row per group. The aggregate keeps an
/// accumulator per group and column (560 ms for 4,000 series of 20 columns),
/// and a window partitioned by the groups pays per partition (44 ms); one
/// window in one order (groups, then `s`) finds each group's first row by
/// comparing its keys with the row before. That is one sort of everything,
/// in one partition: right for the cache's rows, so the rule uses it only
/// when the cache is ready. `None` for any other aggregate, and without
/// groups (an aggregate of no rows is one row; a window of none is none).
fn one_row_per_group(aggregate: &Aggregate, input: LogicalPlan) -> Result<Option<LogicalPlan>> {
    if aggregate.group_expr.is_empty() || aggregate.aggr_expr.is_empty() {
        return Ok(None);
    }
    let mut order: Option<Vec<Sort>> = None;
    let mut picked = Vec::with_capacity(aggregate.aggr_expr.len());
    for expr in &aggregate.aggr_expr {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr.clone().unalias() else {
            return Ok(None);
        };
        let sort: Vec<Sort> = match func.name() {
            "first_value" => params.order_by.clone(),
            "last_value" => params.order_by.iter().map(Sort::reverse).collect(),
            _ => return Ok(None),
        };
        let [argument] = params.args.as_slice() else { return Ok(None) };
        match &order {
            None => order = Some(sort),
            Some(same) if *same == sort => {}
            Some(_) => return Ok(None),
        }
        picked.push(argument.clone());
    }
    let Some(order) = order else { return Ok(None) };
    let groups = &aggregate.group_expr;
    let window_order: Vec<Sort> = groups.iter().map(|g| g.clone().sort(true, true)).chain(order).collect();
    const FIRST: &str = "__hourglass_row";
    let mut windows = vec![row_number().order_by(window_order.clone()).build()?.alias(FIRST)];
    let mut first_of_group = col(FIRST).eq(lit(1u64));
    for (i, group) in groups.iter().enumerate() {
        let name = format!("__hourglass_previous_{i}");
        windows.push(lag(group.clone(), Some(1), None).order_by(window_order.clone()).build()?.alias(&name));
        first_of_group = first_of_group.or(binary_expr(col(name), Operator::IsDistinctFrom, group.clone()));
    }
    // The aggregate's own output names, so the plan above reads them as before.
    let outputs: Vec<Expr> = groups
        .iter()
        .chain(&picked)
        .zip(aggregate.schema.iter())
        .map(|(expr, (qualifier, field))| expr.clone().alias_qualified(qualifier.cloned(), field.name()))
        .collect();
    LogicalPlanBuilder::from(input).window(windows)?.filter(first_of_group)?.project(outputs)?.build().map(Some)
}

/// What a column is, as far as a series' last row is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A tag, or an expression of tags only: the same on every row of a series.
    Tag,
    /// The `time` column itself.
    Time,
    /// Anything else.
    Other,
}

/// A measurement's table under a scan.
struct Measurement {
    provider: Arc<dyn TableProvider>,
    database: String,
    table: String,
    schema: Arc<TableSchema>,
}

fn measurement(scan: &TableScan) -> Option<Measurement> {
    let provider = source_as_provider(&scan.source).ok()?;
    let table = (provider.as_ref() as &dyn Any).downcast_ref::<TimeseriesTable>()?;
    let (database, name, schema) = (table.database().to_owned(), table.table().to_owned(), table.table_schema());
    Some(Measurement { provider, database, table: name, schema })
}

/// The classes of the columns `plan` outputs, when it is a measurement's scan
/// under filters the cache can answer, projections and aliases; `None` otherwise.
fn column_classes(plan: &LogicalPlan, before: &mut Option<i64>) -> Option<HashMap<Column, Class>> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let table = measurement(scan)?;
            if scan.fetch.is_some() {
                return None;
            }
            let classes: HashMap<Column, Class> = scan
                .projected_schema
                .iter()
                .map(|(qualifier, field)| {
                    let class = if field.name() == TIME_COLUMN {
                        Class::Time
                    } else if table.schema.column_type(field.name()) == Some(ColumnType::Tag) {
                        Class::Tag
                    } else {
                        Class::Other
                    };
                    (Column::new(qualifier.cloned(), field.name()), class)
                })
                .collect();
            // Filters pushed into the scan are checked against every table column.
            let all: HashMap<Column, Class> = table
                .schema
                .columns()
                .iter()
                .map(|c| {
                    let class = match c.column_type {
                        ColumnType::Tag => Class::Tag,
                        ColumnType::Time => Class::Time,
                        _ => Class::Other,
                    };
                    (Column::new(Some(scan.table_name.clone()), c.name.as_ref()), class)
                })
                .chain(std::iter::once((Column::new(Some(scan.table_name.clone()), TIME_COLUMN), Class::Time)))
                .collect();
            scan.filters
                .iter()
                .flat_map(split_conjunction)
                .all(|f| filter_is_answerable(f, &all, before))
                .then_some(classes)
        }
        LogicalPlan::Filter(filter) => {
            let classes = column_classes(&filter.input, before)?;
            split_conjunction(&filter.predicate)
                .into_iter()
                .all(|f| filter_is_answerable(f, &classes, before))
                .then_some(classes)
        }
        LogicalPlan::Projection(projection) => {
            let classes = column_classes(&projection.input, before)?;
            Some(
                projection
                    .expr
                    .iter()
                    .zip(projection.schema.iter())
                    .map(|(expr, (qualifier, field))| {
                        (Column::new(qualifier.cloned(), field.name()), class_of(expr, &classes))
                    })
                    .collect(),
            )
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let classes = column_classes(&alias.input, before)?;
            Some(
                alias
                    .input
                    .schema()
                    .iter()
                    .zip(alias.schema.iter())
                    .map(|((inner_qualifier, inner), (qualifier, field))| {
                        let class = classes
                            .get(&Column::new(inner_qualifier.cloned(), inner.name()))
                            .copied()
                            .unwrap_or(Class::Other);
                        (Column::new(qualifier.cloned(), field.name()), class)
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

fn class_of(expr: &Expr, classes: &HashMap<Column, Class>) -> Class {
    if let Expr::Column(column) = expr.clone().unalias() {
        return classes.get(&column).copied().unwrap_or(Class::Other);
    }
    // A subquery may read a field of the outer row, which column_refs does not show.
    let has_subquery = expr
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_) | Expr::OuterReferenceColumn(..)
            ))
        })
        .unwrap_or(true);
    if expr.is_volatile() || has_subquery {
        return Class::Other;
    }
    if expr.column_refs().iter().all(|c| classes.get(*c) == Some(&Class::Tag)) {
        Class::Tag
    } else {
        Class::Other
    }
}

/// Whether the cache can answer under `predicate`. An upper bound on time
/// (`time < t`, `time <= t`) can be answered when no last row is at or past
/// it, which only the scan can know: the strictest is kept in `before` (an
/// exclusive bound, in nanoseconds) for it to check.
fn filter_is_answerable(predicate: &Expr, classes: &HashMap<Column, Class>, before: &mut Option<i64>) -> bool {
    if class_of(predicate, classes) == Class::Tag {
        return true;
    }
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else { return false };
    let is_time = |e: &Expr| class_of(e, classes) == Class::Time;
    let is_constant = |e: &Expr| e.column_refs().is_empty() && !e.is_volatile();
    let mut bound = |value: &Expr, inclusive: bool| match timestamp_ns(value) {
        Some(t) => {
            let t = if inclusive { t.saturating_add(1) } else { t };
            *before = Some(before.map_or(t, |b| b.min(t)));
            true
        }
        None => false,
    };
    match op {
        Operator::Gt | Operator::GtEq if is_time(left) => is_constant(right),
        Operator::Lt | Operator::LtEq if is_time(right) => is_constant(left),
        Operator::Lt | Operator::LtEq if is_time(left) => bound(right, *op == Operator::LtEq),
        Operator::Gt | Operator::GtEq if is_time(right) => bound(left, *op == Operator::GtEq),
        _ => false,
    }
}

/// A timestamp literal (the planner has folded `now()` and casts by now), in
/// nanoseconds.
fn timestamp_ns(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else { return None };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

fn aggregate_is_answerable(aggregate: &Aggregate, classes: &HashMap<Column, Class>) -> bool {
    let groups_are_tags =
        aggregate.group_expr.iter().all(|g| !matches!(g, Expr::GroupingSet(_)) && class_of(g, classes) == Class::Tag);
    groups_are_tags && aggregate.aggr_expr.iter().all(|a| aggregate_function_is_answerable(a, classes))
}

fn aggregate_function_is_answerable(expr: &Expr, classes: &HashMap<Column, Class>) -> bool {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = expr.clone().unalias() else { return false };
    if params.filter.is_some() || matches!(params.null_treatment, Some(NullTreatment::IgnoreNulls)) {
        return false;
    }
    let arguments = || params.args.iter().map(|a| class_of(a, classes));
    match func.name() {
        "first_value" | "last_value" if !params.distinct => {
            if params.args.iter().any(Expr::is_volatile) {
                return false;
            }
            // The first key that is not constant within a series must be
            // `time`, newest first for first_value, oldest first for last_value.
            let newest_first = func.name() == "first_value";
            params
                .order_by
                .iter()
                .find(|sort| class_of(&sort.expr, classes) != Class::Tag)
                .is_some_and(|sort| class_of(&sort.expr, classes) == Class::Time && sort.asc != newest_first)
        }
        // TimescaleDB's last(x, time): x on the row of the greatest time.
        "last" if !params.distinct && params.order_by.is_empty() => {
            params.args.len() == 2 && !params.args[0].is_volatile() && class_of(&params.args[1], classes) == Class::Time
        }
        "max" => arguments().all(|c| c == Class::Tag || c == Class::Time),
        "min" => arguments().all(|c| c == Class::Tag),
        "count" => params.distinct && arguments().all(|c| c == Class::Tag),
        _ => false,
    }
}

/// A measurement read from the last-value cache; reads the table itself when
/// the cache is off for it.
#[derive(Debug)]
struct LastValuesTable {
    inner: Arc<dyn TableProvider>,
    cache: Arc<LastValueCache>,
    database: String,
    table: String,
    /// The query's upper bound on time (exclusive, nanoseconds): the cache
    /// answers only if every last row is before it.
    before: Option<i64>,
}

#[async_trait]
impl TableProvider for LastValuesTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact, whatever the table says: the rows from the cache are not
        // filtered by the scan, so every filter must stay above it.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.inner.schema();
        let inner = Arc::clone(&self.inner);
        let rows = self
            .cache
            .last_rows(&self.database, &self.table, &schema, || async {
                let plan = inner.scan(state, None, &[], None).await?;
                datafusion::physical_plan::execute_stream(plan, state.task_ctx())
            })
            .await?;
        let rows = rows.filter(|rows| match self.before {
            None => true,
            Some(before) => rows
                .column_by_name(TIME_COLUMN)
                .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
                .is_some_and(|times| arrow::compute::max(times).is_none_or(|last| last < before)),
        });
        match rows {
            // Every filter stays above the scan (see supports_filters_pushdown).
            Some(rows) => Ok(MemorySourceConfig::try_new_exec(&[vec![rows]], schema, projection.cloned())?),
            None => self.inner.scan(state, projection, filters, limit).await,
        }
    }
}
