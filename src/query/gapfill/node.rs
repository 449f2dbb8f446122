//! The `GapFill` logical node and its physical planner.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use datafusion::common::{internal_err, DFSchema, DFSchemaRef, Result};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::exec::{GapFillColumns, GapFillExec};
use super::fill::Buckets;

/// Fills the gaps of the aggregate below it (see [`super`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GapFill {
    input: LogicalPlan,
    schema: DFSchemaRef,
    columns: GapFillColumns,
    buckets: Buckets,
}

impl GapFill {
    /// Over `input`, an aggregate whose columns `columns` describes; the
    /// filled columns are named `names`.
    pub fn try_new(
        input: LogicalPlan,
        columns: GapFillColumns,
        names: Vec<String>,
        buckets: Buckets,
    ) -> Result<GapFill> {
        let schema = output_schema(input.schema(), &columns, &names)?;
        Ok(GapFill { input, schema, columns, buckets })
    }

    /// The names of the filled columns.
    fn names(&self) -> Vec<String> {
        let first = self.input.schema().fields().len();
        self.schema.fields()[first..].iter().map(|f| f.name().clone()).collect()
    }
}

/// The input's schema with the filled columns nullable: a bucket without rows
/// has no `count(*)` either.
fn output_schema(input: &DFSchema, columns: &GapFillColumns, names: &[String]) -> Result<DFSchemaRef> {
    if columns.filled.len() != names.len() {
        return internal_err!("GapFill: {} filled columns, {} names", columns.filled.len(), names.len());
    }
    let mut fields: Vec<_> = input
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            let filled = i != columns.time && !columns.groups.contains(&i);
            let field = if filled { Arc::new(field.as_ref().clone().with_nullable(true)) } else { Arc::clone(field) };
            (qualifier.cloned(), field)
        })
        .collect();
    for (filled, name) in columns.filled.iter().zip(names) {
        // NULL where nothing comes before (locf) or after (interpolate).
        let data_type = input.field(filled.source).data_type().clone();
        fields.push((None, Arc::new(arrow::datatypes::Field::new(name, data_type, true))));
    }
    Ok(Arc::new(DFSchema::new_with_metadata(fields, input.metadata().clone())?))
}

impl PartialOrd for GapFill {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (&self.columns, &self.buckets).partial_cmp(&(&other.columns, &other.buckets))
    }
}

impl UserDefinedLogicalNodeCore for GapFill {
    fn name(&self) -> &str {
        "GapFill"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        // Only filters on the other group keys may go below: a filter on a
        // bucket or an aggregate would drop rows the node then fills back.
        self.schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.columns.groups.contains(i))
            .map(|(_, f)| f.name().clone())
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "GapFill: bucket={}, buckets={} from {} every {}ns",
            self.schema.field(self.columns.time).name(),
            self.buckets.count,
            super::rfc3339(self.buckets.first),
            self.buckets.stride
        )
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        if inputs.len() != 1 {
            return internal_err!("GapFill takes one input");
        }
        GapFill::try_new(inputs.swap_remove(0), self.columns.clone(), self.names(), self.buckets)
    }
}

/// Plans [`GapFill`] as [`GapFillExec`].
#[derive(Debug)]
struct GapFillPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for GapFillPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(gap_fill) = node.as_any().downcast_ref::<GapFill>() else { return Ok(None) };
        let [input] = physical_inputs else { return internal_err!("GapFill takes one input") };
        let schema = Arc::new(gap_fill.schema.as_arrow().clone());
        Ok(Some(Arc::new(GapFillExec::try_new(Arc::clone(input), gap_fill.columns.clone(), gap_fill.buckets, schema)?)))
    }
}

/// The query planner: DataFusion's, with the planners of our own nodes.
#[derive(Debug)]
pub struct QueryPlanner;

#[async_trait::async_trait]
impl datafusion::execution::context::QueryPlanner for QueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(GapFillPlanner)]);
        planner.create_physical_plan(logical_plan, session).await
    }
}
