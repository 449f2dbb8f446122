//! One query spread over the readers of a cluster, on datafusion-distributed
//! (pinned in Cargo.toml, behind the `distributed` feature). Everything the
//! rest of HourglassDB knows of it is here, so that moving to another engine
//! (Ballista, a later release) changes this module only:
//!
//! - [`coordinating`] makes a session a coordinator: a query it plans is
//!   split into stages that run on workers, when [`DistributionSettings`]
//!   say it is worth it (see `GatedPlanner`);
//! - [`worker`] is the gRPC service a reader serves beside FlightSQL, which
//!   runs the stages other readers send it;
//! - [`Workers`] is where the coordinator finds the workers: the shared
//!   catalog's registry of live readers;
//! - [`codec::HourglassCodec`] carries HourglassDB's own plan nodes across;
//! - [`errors`] tells a lost worker from other failures;
//! - [`security`] keeps the workers to the cluster: a shared secret on
//!   every call, and a check of every plan a worker is sent.

pub mod codec;
pub mod errors;
pub mod security;

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    DesiredTaskCountEvent, DesiredTaskCountEventResponse, DesiredTaskCountHandler, DistributedExt,
    SessionStateBuilderExt, Worker, WorkerQueryContext, WorkerResolver,
};

use super::dedup::DeduplicateExec;
use super::table::TimeseriesScanExec;
use codec::HourglassCodec;
use security::{SecretChannels, SecretCheck, StoresOnly, WorkerSecret};

/// When a query is spread over the workers.
#[derive(Debug, Clone, Copy)]
pub struct DistributionSettings {
    /// Off: every query runs where it was received.
    pub enabled: bool,
    /// The bytes of files a query must scan to be spread: below, a network
    /// hop would only add latency.
    pub min_bytes: u64,
}

/// The workers a coordinator may send stages to: the FlightSQL addresses
/// of the live readers (itself among them).
pub trait Workers: Send + Sync + fmt::Debug + 'static {
    /// The workers now; empty when none is known.
    fn urls(&self) -> Vec<url::Url>;
}

/// [`Workers`] as datafusion-distributed asks for them.
struct Resolver(Arc<dyn Workers>);

impl WorkerResolver for Resolver {
    fn get_urls(&self) -> Result<Vec<url::Url>, DataFusionError> {
        Ok(self.0.urls())
    }
}

/// `builder` made a coordinator over `workers`, whose calls carry `secret`:
/// its queries are planned as before and spread when `GatedPlanner` finds
/// them worth it. The builder's own query planner must be set before this
/// is called; without one, `builder` comes back as it was, with None. With
/// one, the count of the queries spread comes with it.
pub fn coordinating(
    mut builder: SessionStateBuilder,
    workers: Arc<dyn Workers>,
    settings: DistributionSettings,
    secret: &WorkerSecret,
) -> (SessionStateBuilder, Option<Arc<AtomicU64>>) {
    let Some(local) = builder.query_planner().clone() else {
        tracing::warn!("queries are not spread over the readers: the engine has no query planner to fall back on");
        return (builder, None);
    };
    let builder = builder
        .with_query_planner(Arc::new(HandOff(Arc::clone(&local))))
        .with_distributed_worker_resolver(Resolver(Arc::clone(&workers)))
        .with_distributed_channel_resolver(SecretChannels::new(secret))
        .with_distributed_user_codec(HourglassCodec)
        .with_distributed_desired_task_count_handler(WholeMerges)
        .with_distributed_planner();
    // A query past the threshold is worth its workers: its files are split
    // in pieces of a sixteenth of it (the planner caps the tasks at the
    // workers there are).
    let piece = usize::try_from(settings.min_bytes / 16).unwrap_or(usize::MAX).max(1);
    let mut builder = builder;
    if let Err(error) = builder.set_distributed_file_scan_config_bytes_per_partition(piece) {
        tracing::warn!(%error, "the size of the pieces a distributed scan reads is the default");
    }
    // with_distributed_planner always sets one: it wraps HandOff.
    let distributed = builder.query_planner().clone().unwrap_or_else(|| Arc::clone(&local));
    let spread = Arc::new(AtomicU64::new(0));
    let planner = GatedPlanner { local, distributed, workers, settings, spread: Arc::clone(&spread) };
    (builder.with_query_planner(Arc::new(planner)), Some(spread))
}

tokio::task_local! {
    /// The plan [`GatedPlanner`] has just made here, for [`HandOff`] to give
    /// the distributed planner.
    static PLANNED: RefCell<Option<(usize, Arc<dyn ExecutionPlan>)>>;
}

/// The planner datafusion-distributed's wraps (it plans locally, then cuts
/// the plan into stages): it hands over the plan [`GatedPlanner`] already
/// made to decide, so that a spread query is not planned twice. Outside
/// such a hand-over it plans with the local planner.
#[derive(Debug)]
struct HandOff(Arc<dyn QueryPlanner + Send + Sync>);

#[async_trait]
impl QueryPlanner for HandOff {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Only the plan of this very logical plan (the address tells).
        let this = logical_plan as *const LogicalPlan as usize;
        let handed = PLANNED.try_with(|planned| planned.borrow_mut().take_if(|(of, _)| *of == this)).ok().flatten();
        if let Some((_, plan)) = handed {
            return Ok(plan);
        }
        self.0.create_physical_plan(logical_plan, session_state).await
    }
}

/// A merge of overlapping files ([`DeduplicateExec`]) must see every row of
/// the series it merges: the stage it is in runs as one task (its files
/// are not split between workers).
struct WholeMerges;

#[async_trait]
impl DesiredTaskCountHandler for WholeMerges {
    async fn handle(&self, event: DesiredTaskCountEvent<'_>) -> Option<Result<DesiredTaskCountEventResponse>> {
        event.plan.is::<DeduplicateExec>().then(|| Ok(DesiredTaskCountEventResponse::maximum(1)))
    }
}

/// Plans every query locally, and again for the workers when it is worth
/// it: distribution is on, there are workers besides this one, the query
/// scans measurements, at least [`DistributionSettings::min_bytes`] of
/// their files, and no node of its plan must stay here ([`LOCAL_ONLY`],
/// rows in memory). A plan that fails to distribute runs here too.
struct GatedPlanner {
    local: Arc<dyn QueryPlanner + Send + Sync>,
    distributed: Arc<dyn QueryPlanner + Send + Sync>,
    workers: Arc<dyn Workers>,
    settings: DistributionSettings,
    /// Plans made for the workers (EXPLAINs and EXPLAIN ANALYZEs included).
    spread: Arc<AtomicU64>,
}

impl fmt::Debug for GatedPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatedPlanner").field("settings", &self.settings).finish()
    }
}

#[async_trait]
impl QueryPlanner for GatedPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let LogicalPlan::Explain(explain) = logical_plan {
            return self.explain(explain, session_state).await;
        }
        let local = self.local.create_physical_plan(logical_plan, session_state).await?;
        if !self.settings.enabled || self.workers.urls().len() < 2 {
            return Ok(local);
        }
        let (scans, bytes, encodable) = inspect(&local)?;
        tracing::debug!(scans, bytes, encodable, "whether a query is worth spreading over the readers");
        if scans == 0 || bytes < self.settings.min_bytes || !encodable {
            return Ok(local);
        }
        // Stages are encoded when the query runs, too late to run it here
        // instead: a node datafusion-proto cannot encode (a recursive CTE's)
        // is found now.
        if let Err(error) = encode(&local) {
            tracing::debug!(%error, "a query has a node that cannot be sent to a worker; it runs here");
            return Ok(local);
        }
        let planned = RefCell::new(Some((logical_plan as *const LogicalPlan as usize, Arc::clone(&local))));
        let distributed = PLANNED.scope(planned, self.distributed.create_physical_plan(logical_plan, session_state));
        match distributed.await {
            Ok(plan) => {
                // EXPLAIN ANALYZE's root is the crate's own node, above it.
                if plan.exists(|node| Ok(node.is::<datafusion_distributed::DistributedExec>()))? {
                    self.spread.fetch_add(1, Ordering::Relaxed);
                }
                Ok(plan)
            }
            Err(error) => {
                tracing::warn!(%error, "a query could not be spread over the readers; it runs here");
                Ok(local)
            }
        }
    }
}

impl GatedPlanner {
    /// `EXPLAIN` of a query this planner spreads: its stages and the tasks
    /// of each, with the workers they run on (DataFusion's own EXPLAIN plans
    /// the query again without asking this planner, so it would show the
    /// plan of one process). A query that runs here is explained as before.
    async fn explain(
        &self,
        explain: &datafusion::logical_expr::Explain,
        session_state: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::common::display::{PlanType, StringifiedPlan};
        let explained = LogicalPlan::Explain(explain.clone());
        if !explain.logical_optimization_succeeded {
            return self.local.create_physical_plan(&explained, session_state).await;
        }
        let plan = self.create_physical_plan(&explain.plan, session_state).await?;
        if !plan.is::<datafusion_distributed::DistributedExec>() {
            return self.local.create_physical_plan(&explained, session_state).await;
        }
        let mut plans: Vec<StringifiedPlan> = explain
            .stringified_plans
            .iter()
            .filter(|p| explain.verbose || matches!(p.plan_type, PlanType::FinalLogicalPlan))
            .cloned()
            .collect();
        // Tasks are routed when the query runs, over the live readers.
        let workers: Vec<String> = self.workers.urls().iter().map(url::Url::to_string).collect();
        let shown = datafusion_distributed::display_plan_ascii(plan.as_ref(), false);
        plans.push(StringifiedPlan::new(
            PlanType::FinalPhysicalPlan,
            format!("{shown}\nWorkers (a stage's tasks go to distinct ones): {}\n", workers.join(", ")),
        ));
        let schema = Arc::clone(explain.schema.inner());
        Ok(Arc::new(datafusion::physical_plan::explain::ExplainExec::new(schema, plans, explain.verbose)))
    }
}

/// The number of the task `context` runs, when it runs one task of a
/// stage of a distributed query (None where the query runs whole here).
pub fn task_index(context: &TaskContext) -> Option<usize> {
    context.session_config().get_extension::<datafusion_distributed::DistributedTaskContext>().map(|t| t.task_index)
}

/// The plan nodes a query with one runs where it was planned:
/// - HourglassDB's that [`HourglassCodec`] does not encode: a delete and an
///   insert, which a reader refuses anyway;
/// - window functions (derivatives, moving averages, ...): their input
///   ordering may rest on what a filter of another stage made constant
///   (`WHERE host = 'a'` orders `PARTITION BY host`), which a network
///   boundary does not carry, so a worker fails to run them
///   (sql/series.slt found it).
const LOCAL_ONLY: &[&str] = &["DeleteExec", "DataSinkExec", "WindowAggExec", "BoundedWindowAggExec"];

/// The measurement scans of `plan`, the bytes of files they read, and
/// whether every node in it can be sent to a worker (a plan with no
/// measurement scan, a catalog query, runs here). Rows held in memory (a
/// write buffer's, a cache's) stay here too: datafusion-proto 55.2 decodes
/// a projected memory source wrongly (sql/delete.slt found it), and they are
/// this process's anyway.
fn inspect(plan: &Arc<dyn ExecutionPlan>) -> Result<(usize, u64, bool)> {
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::datasource::source::DataSourceExec;
    let (mut scans, mut bytes) = (0, 0);
    let mut encodable = true;
    plan.apply(|node| {
        if let Some(scan) = node.downcast_ref::<TimeseriesScanExec>() {
            scans += 1;
            bytes += scan.bytes_scanned();
        }
        let in_memory = node
            .downcast_ref::<DataSourceExec>()
            .is_some_and(|source| source.data_source().downcast_ref::<MemorySourceConfig>().is_some());
        if LOCAL_ONLY.contains(&node.name()) || in_memory {
            encodable = false;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok((scans, bytes, encodable))
}

/// Encodes `plan` as its stages will be (EXPLAIN ANALYZE's root aside,
/// which the crate replaces), to find what cannot be.
fn encode(plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    use datafusion::physical_plan::analyze::AnalyzeExec;
    use datafusion_proto::physical_plan::{DefaultPhysicalProtoConverter, PhysicalProtoConverterExtension};
    let plan = plan.downcast_ref::<AnalyzeExec>().map_or_else(|| Arc::clone(plan), |a| Arc::clone(a.input()));
    DefaultPhysicalProtoConverter {}.execution_plan_to_proto(&plan, &HourglassCodec).map(|_| ())
}

/// The worker of a reader as its FlightSQL front serves it: `worker` runs
/// the stages coordinators send it, once `check` has found the cluster's
/// secret on the call.
pub struct ServedWorker {
    /// datafusion-distributed's worker; its `into_worker_server()` is the
    /// gRPC service.
    pub worker: Worker,
    /// The interceptor to put in front of that service.
    pub check: SecretCheck,
}

/// The worker of a reader, which runs the stages coordinators send it with
/// `base`'s functions and `runtime`'s object stores and memory pool. It
/// answers only calls that carry `secret`, runs only plans that read
/// `stores` (the URLs of the storage layers) and write nothing, and reads
/// other workers with `secret` too.
pub fn worker(
    base: &SessionState,
    runtime: Arc<RuntimeEnv>,
    secret: &WorkerSecret,
    stores: Vec<String>,
) -> ServedWorker {
    let scalars: Vec<_> = base.scalar_functions().values().cloned().collect();
    let aggregates: Vec<_> = base.aggregate_functions().values().cloned().collect();
    let windows: Vec<_> = base.window_functions().values().cloned().collect();
    let channels = SecretChannels::new(secret);
    let stores = StoresOnly::new(stores);
    let session = move |context: WorkerQueryContext| {
        let (scalars, aggregates, windows) = (scalars.clone(), aggregates.clone(), windows.clone());
        let (channels, stores) = (channels.clone(), stores.clone());
        async move {
            let mut builder = context
                .builder
                .with_distributed_user_codec(HourglassCodec)
                .with_distributed_channel_resolver(channels)
                .with_distributed_worker_plan_rewrite_handler(stores);
            builder.scalar_functions().get_or_insert_default().extend(scalars);
            builder.aggregate_functions().get_or_insert_default().extend(aggregates);
            builder.window_functions().get_or_insert_default().extend(windows);
            Ok(builder.build())
        }
    };
    let worker =
        Worker::from_session_builder(session).with_runtime_env(runtime).with_version(env!("CARGO_PKG_VERSION"));
    ServedWorker { worker, check: SecretCheck::new(secret) }
}
