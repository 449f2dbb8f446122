//! `DELETE FROM <measurement> WHERE ...`: the WHERE clause as a
//! [`DeletePredicate`], and the plan that carries the delete out when it is
//! executed (never when it is only planned, described or explained).
//!
//! A delete removes rows by series and time, as InfluxDB's does: its WHERE
//! may hold bounds on `time` and comparisons of tags with values (`=`, `!=`,
//! `<>`, `IN`, `NOT IN`), joined by `AND`. DataFusion hands the conjuncts
//! over optimized: typed, with `now()` and casts folded to literals.

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use datafusion::prelude::lit;
use futures::TryStreamExt;

use super::table::TableWriter;
use super::QueryError;
use crate::catalog::{ColumnType, DeletePredicate, TableSchema, TagCondition, TIME_COLUMN, TIME_ZONE};

/// The rows a delete's WHERE conjuncts select, or why they are not a delete
/// by series and time.
pub(crate) fn predicate_of(filters: &[Expr], schema: &TableSchema) -> Result<DeletePredicate, QueryError> {
    let mut predicate = DeletePredicate::everything();
    for conjunct in filters.iter().flat_map(|f| split_conjunction(f)) {
        add_conjunct(&mut predicate, conjunct, schema)?;
    }
    Ok(predicate)
}

fn not_a_delete(expr: &Expr) -> QueryError {
    QueryError::Unsupported(format!(
        "DELETE removes rows by series and time: its WHERE may hold bounds on time and comparisons of tags with \
         values (=, !=, IN, NOT IN) joined by AND; {expr} is not one"
    ))
}

fn add_conjunct(predicate: &mut DeletePredicate, conjunct: &Expr, schema: &TableSchema) -> Result<(), QueryError> {
    match conjunct {
        // The optimizer writes a short IN list as equalities joined by OR.
        Expr::BinaryExpr(BinaryExpr { op: Operator::Or, .. }) => {
            let (column, values) = one_of(conjunct).ok_or_else(|| not_a_delete(conjunct))?;
            tag(schema, column, conjunct)?;
            predicate.tags.push(TagCondition { tag: column.to_owned(), values, negated: false });
            Ok(())
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, op, value) = match (column_name(left), column_name(right)) {
                (Some(column), None) => (column, *op, right.as_ref()),
                (None, Some(column)) => (column, op.swap().ok_or_else(|| not_a_delete(conjunct))?, left.as_ref()),
                _ => return Err(not_a_delete(conjunct)),
            };
            if column == TIME_COLUMN {
                let at = time_ns(value).ok_or_else(|| not_a_delete(conjunct))?;
                let (min, max) = match op {
                    Operator::GtEq => (at, i64::MAX),
                    Operator::Gt => (at.saturating_add(1), i64::MAX),
                    Operator::LtEq => (i64::MIN, at),
                    Operator::Lt => (i64::MIN, at.saturating_sub(1)),
                    Operator::Eq => (at, at),
                    _ => return Err(not_a_delete(conjunct)),
                };
                predicate.min_time = predicate.min_time.max(min);
                predicate.max_time = predicate.max_time.min(max);
                return Ok(());
            }
            tag(schema, column, conjunct)?;
            let negated = match op {
                Operator::Eq => false,
                Operator::NotEq => true,
                _ => return Err(not_a_delete(conjunct)),
            };
            let value = text(value).ok_or_else(|| not_a_delete(conjunct))?;
            predicate.tags.push(TagCondition { tag: column.to_owned(), values: vec![value], negated });
            Ok(())
        }
        Expr::Between(between) if !between.negated && column_name(&between.expr) == Some(TIME_COLUMN) => {
            let low = time_ns(&between.low).ok_or_else(|| not_a_delete(conjunct))?;
            let high = time_ns(&between.high).ok_or_else(|| not_a_delete(conjunct))?;
            predicate.min_time = predicate.min_time.max(low);
            predicate.max_time = predicate.max_time.min(high);
            Ok(())
        }
        Expr::InList(list) => {
            let column = column_name(&list.expr).ok_or_else(|| not_a_delete(conjunct))?;
            tag(schema, column, conjunct)?;
            let values =
                list.list.iter().map(text).collect::<Option<Vec<_>>>().ok_or_else(|| not_a_delete(conjunct))?;
            predicate.tags.push(TagCondition { tag: column.to_owned(), values, negated: list.negated });
            Ok(())
        }
        _ => Err(not_a_delete(conjunct)),
    }
}

/// `column = a OR column = b ...` as the column and its values.
fn one_of(expr: &Expr) -> Option<(&str, Vec<String>)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let (column, mut values) = one_of(left)?;
            let (other, more) = one_of(right)?;
            (column == other).then(|| {
                values.extend(more);
                (column, values)
            })
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => match (column_name(left), column_name(right))
        {
            (Some(column), None) => Some((column, vec![text(right)?])),
            (None, Some(column)) => Some((column, vec![text(left)?])),
            _ => None,
        },
        _ => None,
    }
}

/// Checks that `column` is a tag of the measurement.
fn tag(schema: &TableSchema, column: &str, conjunct: &Expr) -> Result<(), QueryError> {
    match schema.column_type(column) {
        Some(ColumnType::Tag) => Ok(()),
        Some(_) => Err(QueryError::Unsupported(format!(
            "DELETE removes rows by series and time, not by field values: {column} is a field ({conjunct})"
        ))),
        None => Err(QueryError::Plan(format!("DELETE: the measurement has no tag {column}"))),
    }
}

/// The column an expression reads, under casts that keep its values (to
/// another timestamp type, to text): `time::date` is not the time column.
fn column_name(expr: &Expr) -> Option<&str> {
    let keeps = |t: &DataType| {
        matches!(t, DataType::Timestamp(..) | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            || matches!(t, DataType::Dictionary(_, value) if value.as_ref() == &DataType::Utf8)
    };
    match expr {
        Expr::Column(column) => Some(column.name.as_str()),
        Expr::Cast(cast) if keeps(cast.field.data_type()) => column_name(&cast.expr),
        Expr::TryCast(cast) if keeps(cast.field.data_type()) => column_name(&cast.expr),
        _ => None,
    }
}

/// Why a DELETE's plan is not one by series and time, if it is not: its
/// rows must come from the measurement through filters, with no subquery,
/// join or LIMIT (DataFusion hands the table only the filters it finds, so
/// anything else would widen the delete).
pub(crate) fn check_shape(input: &LogicalPlan) -> Result<(), QueryError> {
    let mut refusal = None;
    let _ = input.apply(|node| {
        let fine = match node {
            LogicalPlan::Filter(filter) => !filter
                .predicate
                .exists(|e| Ok(matches!(e, Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_))))?,
            LogicalPlan::TableScan(_) | LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => true,
            _ => false,
        };
        if !fine {
            refusal = Some(QueryError::Unsupported(format!(
                "DELETE removes rows by series and time: its WHERE may not hold subqueries, and it takes no \
                 joins or LIMIT ({})",
                node.display()
            )));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    refusal.map_or(Ok(()), Err)
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

/// A constant time as nanoseconds since the epoch.
fn time_ns(expr: &Expr) -> Option<i64> {
    let value = literal(expr)?.cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, None)).ok()?;
    match value {
        ScalarValue::TimestampNanosecond(Some(ns), _) => Some(ns),
        _ => None,
    }
}

/// A constant string.
fn text(expr: &Expr) -> Option<String> {
    match literal(expr)?.cast_to(&DataType::Utf8).ok()? {
        ScalarValue::Utf8(Some(text)) => Some(text),
        _ => None,
    }
}

fn time_column() -> Expr {
    Expr::Column(datafusion::common::Column::new_unqualified(TIME_COLUMN))
}

/// The predicate as an expression over the table's columns, which is true
/// exactly where [`DeletePredicate::matches`] is.
pub(crate) fn predicate_expr(predicate: &DeletePredicate) -> Expr {
    let time = |ns: i64| lit(ScalarValue::TimestampNanosecond(Some(ns), Some(TIME_ZONE.into())));
    let mut conjuncts = Vec::new();
    if predicate.min_time > i64::MIN {
        conjuncts.push(time_column().gt_eq(time(predicate.min_time)));
    }
    if predicate.max_time < i64::MAX {
        conjuncts.push(time_column().lt_eq(time(predicate.max_time)));
    }
    for condition in &predicate.tags {
        let values = condition.values.iter().map(|v| lit(v.as_str())).collect();
        // The name as it is: `col()` would parse "Host" or "host.name".
        let tag = Expr::Column(datafusion::common::Column::new_unqualified(condition.tag.as_str()));
        conjuncts.push(tag.in_list(values, condition.negated));
    }
    conjuncts.into_iter().reduce(Expr::and).unwrap_or_else(|| lit(true))
}

/// Carries out a delete when executed, and answers how many rows it
/// removed: the rows `count` (the table's rows the predicate matches) read
/// just before.
#[derive(Debug)]
pub(crate) struct DeleteExec {
    database: String,
    table: String,
    predicate: DeletePredicate,
    writer: Arc<dyn TableWriter>,
    count: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DeleteExec {
    pub(crate) fn new(
        database: &str,
        table: &str,
        predicate: DeletePredicate,
        writer: Arc<dyn TableWriter>,
        count: Arc<dyn ExecutionPlan>,
    ) -> DeleteExec {
        let schema = Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        DeleteExec { database: database.into(), table: table.into(), predicate, writer, count, schema, properties }
    }
}

impl DisplayAs for DeleteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DeleteExec: {}.{} where {}", self.database, self.table, predicate_expr(&self.predicate))
    }
}

impl ExecutionPlan for DeleteExec {
    fn name(&self) -> &str {
        "DeleteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.count]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = super::single_input(children, "DeleteExec")?;
        Ok(Arc::new(DeleteExec::new(
            &self.database,
            &self.table,
            self.predicate.clone(),
            Arc::clone(&self.writer),
            input,
        )))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("DeleteExec has one partition, asked for {partition}");
        }
        let count = datafusion::physical_plan::execute_stream(Arc::clone(&self.count), context)?;
        let (writer, database, table) = (Arc::clone(&self.writer), self.database.clone(), self.table.clone());
        let (predicate, schema) = (self.predicate.clone(), Arc::clone(&self.schema));
        let deleted = async move {
            let matched: usize = count.try_fold(0, |n, batch| async move { Ok(n + batch.num_rows()) }).await?;
            writer
                .delete(&database, &table, predicate)
                .await
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            let rows = UInt64Array::from(vec![matched as u64]);
            Ok(RecordBatch::try_new(schema, vec![Arc::new(rows)])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), futures::stream::once(deleted))))
    }
}
