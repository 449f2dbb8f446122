//! The query engine: one DataFusion planner for every front door.
//!
//! Each database is a catalog with the schema `public` ([`catalog`]); each
//! measurement a [`table::TimeseriesTable`] that prunes by time through the
//! catalog and deduplicates overlapping sources. The engine adds TimescaleDB's,
//! GigAPI's and DuckDB's functions ([`functions`]), answers `SHOW DATABASES`,
//! `SHOW TABLES` and `DESCRIBE` with GigAPI's column names, keeps user SQL away
//! from the file system and the network, and bounds every query's memory and
//! time.

mod admission;
pub mod bounds;
mod catalog;
mod ddl;
pub mod dedup;
mod delete;
#[cfg(feature = "distributed")]
pub mod distributed;
mod error;
pub mod functions;
pub mod gapfill;
mod information_schema;
mod last_values;
mod output;
pub mod overview;
pub mod params;
mod pg_catalog;
mod pg_format;
mod placeholders;
pub mod postgres;
mod postgres_rewrites;
pub mod postgres_sql;
pub mod selectors;
pub mod series;
mod statements;
pub mod table;
mod utc_date_trunc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::execution::context::SessionState;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::SessionConfig;

pub use admission::QuerySlot;
pub use catalog::SCHEMA;
pub use ddl::{command_tag, identifier, name_parts, quote_identifier};
pub use error::QueryError;
pub use output::QueryOutput;
pub use placeholders::numbered_placeholders;
pub use statements::{sql_type_name, ResolvedTable};
pub use table::{BufferedRows, TableWriter};

use crate::access::{Access, Privilege};
use crate::catalog::relations::RelationStore;
use crate::catalog::Catalog;
use crate::storage::Storage;
use admission::Admission;

/// Limits and tuning of the engine.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Memory all running queries may use together; operators that can spill
    /// to disk do so past it, others fail their query.
    pub memory_bytes: usize,
    /// A query running longer is cancelled.
    pub timeout: Duration,
    /// Partitions (threads) a query may use.
    pub target_partitions: usize,
    /// Where operators spill.
    pub spill_dir: PathBuf,
    /// Queries running at once; more wait for a slot.
    pub max_concurrent: usize,
    /// Queries waiting for a slot at once; more are refused as busy.
    pub max_queued: usize,
    /// Longest wait for a slot; a query that waits longer is refused as busy.
    pub queue_timeout: Duration,
    /// A `writeonly` process: `INSERT`, `COPY FROM STDIN` and statements that
    /// read no table run; reads of measurements, views and tables, and
    /// catalog statements, are refused with a pointer to the readers. Its
    /// view of the data (its own buffer, the shared catalog) is not what a
    /// reader answers from, so a query here would answer differently.
    pub writes_only: bool,
}

/// A table or view of a database, as metadata listings show it.
#[derive(Debug, Clone)]
pub struct ListedRelation {
    /// Its schema (`public`, a schema SQL created, `information_schema`, ...).
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Table or view.
    pub table_type: datafusion::datasource::TableType,
    /// Its columns.
    pub columns: SchemaRef,
}

/// The query engine shared by every front.
#[derive(Debug)]
pub struct QueryEngine {
    catalog: Arc<dyn Catalog>,
    storage: Arc<Storage>,
    base: SessionState,
    /// What `base`'s catalog list is made of, for sessions limited to one database.
    sources: catalog::Sources,
    options: QueryOptions,
    /// Where `INSERT` and `COPY` rows go, in modes that write.
    writer: Option<Arc<dyn TableWriter>>,
    /// Schemas, tables and views that SQL created.
    relations: Arc<RelationStore>,
    /// The gate every query passes before it runs.
    admission: Admission,
    /// The secret of the cluster whose queries this engine coordinates and
    /// whose stages it runs, and the count of the queries it spread; None
    /// while it takes no part in distribution.
    #[cfg(feature = "distributed")]
    distributed: Option<(distributed::security::WorkerSecret, Arc<std::sync::atomic::AtomicU64>)>,
}

impl QueryEngine {
    /// An engine over the catalog, storage and (in modes that write) the write
    /// buffer and the write path that takes `INSERT`.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        storage: Arc<Storage>,
        buffer: Option<Arc<dyn BufferedRows>>,
        writer: Option<Arc<dyn TableWriter>>,
        relations: Arc<RelationStore>,
        last_values: Option<Arc<crate::last_values::LastValueCache>>,
        options: QueryOptions,
    ) -> Result<QueryEngine, QueryError> {
        let setup = |e: DataFusionError| QueryError::Internal(format!("setting up the query engine: {e}"));
        std::fs::create_dir_all(&options.spill_dir)
            .map_err(|e| QueryError::Internal(format!("creating {}: {e}", options.spill_dir.display())))?;
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(options.memory_bytes),
            std::num::NonZeroUsize::new(5).unwrap_or(std::num::NonZeroUsize::MIN),
        );
        let runtime: Arc<RuntimeEnv> = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![options.spill_dir.clone()])),
            )
            .build_arc()
            .map_err(setup)?;
        let own_tables = relations.files().own_store();
        let stores = storage.layers().iter().map(|layer| (layer.url(), layer.object_store())).chain(own_tables);
        for (url, store) in stores {
            let url = url::Url::parse(url).map_err(|e| QueryError::Internal(e.to_string()))?;
            runtime.register_object_store(&url, store);
        }
        let mut config = SessionConfig::new()
            // Each database answers `information_schema` itself, the Postgres way.
            .with_information_schema(false)
            .with_target_partitions(options.target_partitions.max(1))
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema("default", SCHEMA);
        config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        config.options_mut().execution.time_zone = Some("UTC".into());
        let view_planner = Arc::new(std::sync::OnceLock::new());
        let storage_for_merges = Arc::clone(&storage);
        let sources = catalog::Sources {
            catalog: Arc::clone(&catalog),
            storage,
            buffer,
            writer: writer.clone(),
            shared_schemas: Default::default(),
            relations: Arc::clone(&relations),
            view_planner: Arc::clone(&view_planner),
            view_stack: Arc::default(),
            pg_catalogs: Arc::default(),
            only: None,
        };
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_query_planner(Arc::new(gapfill::node::QueryPlanner))
            .with_catalog_list(Arc::new(catalog::DatabaseList::new(sources.clone())));
        // Gap filling reads the plan as SQL made it, before any rule moves
        // its filters: it goes first.
        let mut rules: Vec<Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>> =
            vec![Arc::new(gapfill::rewrite::GapFillRule)];
        rules.extend(datafusion::optimizer::Optimizer::new().rules);
        builder = builder.with_optimizer_rules(rules);
        if let Some(cache) = last_values {
            builder = builder.with_optimizer_rule(Arc::new(last_values::LastValuesRule::new(cache)));
        }
        let base = builder.build();
        // pg_catalog registers into the catalog `default`, which always exists;
        // the catalog provider shares it with every database.
        let context = datafusion::prelude::SessionContext::new_with_state(base);
        postgres::install(&context, crate::catalog::DEFAULT_DATABASE).map_err(setup)?;
        let base = context.state();
        let admission = Admission::new(options.max_concurrent, options.max_queued, options.queue_timeout);
        let mut engine = QueryEngine {
            catalog,
            storage: storage_for_merges,
            base,
            sources,
            options,
            writer,
            relations,
            admission,
            #[cfg(feature = "distributed")]
            distributed: None,
        };
        for function in functions::scalar_functions().into_iter().chain(gapfill::scalar_functions()) {
            engine.base.register_udf(function).map_err(setup)?;
        }
        for function in functions::aggregate_functions()
            .into_iter()
            .chain(selectors::aggregate_functions())
            .chain(series::aggregate_functions())
        {
            engine.base.register_udaf(function).map_err(setup)?;
        }
        for function in series::window_functions() {
            engine.base.register_udwf(function).map_err(setup)?;
        }
        engine.base.register_function_rewrite(Arc::new(functions::IntegerTimeComparisons)).map_err(setup)?;
        let _ = view_planner.set(engine.base.clone());
        Ok(engine)
    }

    /// This engine as a coordinator: its queries are spread over `workers`,
    /// whose calls carry `secret`, when `settings` find them worth it (see
    /// [`distributed::coordinating`]). A copy, with its own admission gate,
    /// so that an engine already shared can be made one too.
    #[cfg(feature = "distributed")]
    pub fn coordinating(
        &self,
        workers: Arc<dyn distributed::Workers>,
        settings: distributed::DistributionSettings,
        secret: distributed::security::WorkerSecret,
    ) -> QueryEngine {
        let builder = SessionStateBuilder::new_from_existing(self.base.clone());
        let (builder, spread) = distributed::coordinating(builder, workers, settings, &secret);
        let options = self.options.clone();
        QueryEngine {
            catalog: Arc::clone(&self.catalog),
            storage: Arc::clone(&self.storage),
            base: builder.build(),
            sources: self.sources.clone(),
            admission: Admission::new(options.max_concurrent, options.max_queued, options.queue_timeout),
            options,
            writer: self.writer.clone(),
            relations: Arc::clone(&self.relations),
            distributed: spread.map(|spread| (secret, spread)),
        }
    }

    /// The worker that runs other coordinators' stages with this engine's
    /// functions and storage, when this engine takes part in distributed
    /// queries.
    #[cfg(feature = "distributed")]
    pub fn distributed_worker(&self) -> Option<distributed::ServedWorker> {
        let (secret, _) = self.distributed.as_ref()?;
        let own_tables = self.relations.files().own_store().map(|(url, _)| url.to_owned());
        let stores = self.storage.layers().iter().map(|layer| layer.url().to_owned()).chain(own_tables).collect();
        Some(distributed::worker(&self.base, Arc::clone(self.base.runtime_env()), secret, stores))
    }

    /// The engine's limits.
    pub fn options(&self) -> &QueryOptions {
        &self.options
    }

    /// Why the relations SQL made (schemas, tables, views) take no more
    /// changes, if a write of theirs had an unknown outcome.
    pub fn relations_stopped(&self) -> Option<String> {
        self.relations.stopped()
    }

    /// Queries this engine spread over a cluster's readers since it
    /// started.
    pub fn queries_spread(&self) -> u64 {
        #[cfg(feature = "distributed")]
        if let Some((_, spread)) = &self.distributed {
            return spread.load(std::sync::atomic::Ordering::Relaxed);
        }
        0
    }

    /// Queries running now.
    pub fn queries_running(&self) -> usize {
        self.admission.running()
    }

    /// Queries waiting for a slot now.
    pub fn queries_queued(&self) -> usize {
        self.admission.queued()
    }

    /// Every database `access` sees.
    pub fn databases(&self, access: &Access) -> Vec<String> {
        let mut names = self.sources.databases();
        names.retain(|name| access.sees(name));
        names
    }

    /// The schemas of a database (`public`, `information_schema`, `pg_catalog`
    /// and those SQL created), sorted.
    pub fn schemas(&self, database: &str, access: &Access) -> Result<Vec<String>, QueryError> {
        access.require(database, Privilege::Read)?;
        let catalog = self.database_catalog(database, access)?;
        let mut names = catalog.schema_names();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Every table and view of a database with its schema, type and columns,
    /// as `information_schema.tables` and `.columns` list them: for metadata
    /// calls that are not SQL (FlightSQL's GetTables).
    pub async fn relations(&self, database: &str, access: &Access) -> Result<Vec<ListedRelation>, QueryError> {
        access.require(database, Privilege::Read)?;
        let catalog = self.database_catalog(database, access)?;
        let schema = catalog.schema(information_schema::INFORMATION_SCHEMA);
        let listing = schema
            .as_ref()
            .and_then(|s| (s.as_ref() as &dyn std::any::Any).downcast_ref::<information_schema::PgInformationSchema>())
            .ok_or_else(|| QueryError::Internal(format!("database '{database}' has no information_schema")))?;
        let relations = listing.relations().await.map_err(|e| QueryError::from_datafusion(e, false))?;
        Ok(relations
            .into_iter()
            .map(|(schema, name, table_type, columns)| ListedRelation { schema, name, table_type, columns })
            .collect())
    }

    /// The catalog of `database` as `access` sees it: views in it are planned
    /// with the same limits as the caller's queries.
    fn database_catalog(
        &self,
        database: &str,
        access: &Access,
    ) -> Result<Arc<dyn datafusion::catalog::CatalogProvider>, QueryError> {
        self.session_for(database, access)
            .catalog_list()
            .catalog(database)
            .ok_or_else(|| QueryError::UnknownDatabase(database.to_owned()))
    }

    /// Whether a database exists.
    pub fn database_exists(&self, database: &str) -> bool {
        self.sources.databases().iter().any(|d| d == database)
    }

    /// A session whose unqualified table names resolve in `database`. Its query
    /// start time is now: `now()` in every statement planned with it.
    pub fn session(&self, database: &str) -> SessionState {
        database_session(&self.base, database)
    }

    /// [`Self::session`] for `access`: one limited to a database sees no other.
    pub fn session_for(&self, database: &str, access: &Access) -> SessionState {
        let state = self.session(database);
        match access.only_database() {
            None => state,
            Some(only) => {
                let mut sources = self.sources.clone();
                sources.only = Some(only.to_owned());
                SessionStateBuilder::new_from_existing(state)
                    .with_catalog_list(Arc::new(catalog::DatabaseList::new(sources)))
                    .build()
            }
        }
    }

    /// The rows of `files` of a measurement (oldest first, as the catalog
    /// lists them) merged into one stream sorted by tags then time, with rows
    /// of the same series and time merged as every query merges them: the
    /// input of a compaction. Memory stays bounded by a few batches per file.
    pub async fn merged_files(
        &self,
        database: &str,
        table: &str,
        files: Vec<crate::catalog::FileEntry>,
    ) -> Result<QueryOutput, QueryError> {
        let schema = self
            .catalog
            .table_schema(database, table)
            .ok_or_else(|| QueryError::UnknownTable(format!("table '{database}.{SCHEMA}.{table}' not found")))?;
        let measurement = table::TimeseriesTable::new(
            database,
            table,
            schema,
            Arc::clone(&self.catalog),
            Arc::clone(&self.storage),
            None,
            None,
        );
        let state = self.session(database);
        let plan = measurement.merged_files(&state, files).map_err(|e| QueryError::from_datafusion(e, true))?;
        let schema = plan.schema();
        let stream = datafusion::physical_plan::execute_stream(plan, state.task_ctx())
            .map_err(|e| QueryError::from_datafusion(e, false))?;
        Ok(QueryOutput { schema, stream })
    }

    /// Whether `database` has the measurement `table` (the name as it is: a
    /// measurement's name may hold dots).
    pub fn measurement_exists(&self, database: &str, table: &str) -> bool {
        self.catalog.table_schema(database, table).is_some()
    }

    /// Writes a batch into a measurement through the write path (Postgres
    /// `COPY`): values are cast to the columns' types, and the same rules,
    /// WAL and acknowledgement as every write apply.
    pub async fn write_batch(
        &self,
        database: &str,
        table: &str,
        batch: RecordBatch,
        access: &Access,
    ) -> Result<usize, QueryError> {
        access.require(database, Privilege::Write)?;
        match &self.writer {
            Some(writer) => writer.write(database, table, batch).await,
            None => Err(QueryError::read_only("COPY")),
        }
    }
}

/// The one input of a plan node that takes one, from `with_new_children`.
pub(crate) fn single_input(
    mut children: Vec<Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
    node: &str,
) -> datafusion::common::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    match (children.pop(), children.is_empty()) {
        (Some(input), true) => Ok(input),
        _ => datafusion::common::internal_err!("{node} takes one input"),
    }
}

/// A session over `base` whose unqualified names resolve in `database`, and
/// whose `now()` is now.
fn database_session(base: &SessionState, database: &str) -> SessionState {
    let mut state = base.clone();
    state.config_mut().options_mut().catalog.default_catalog = database.to_owned();
    // Registering replaces the previous function of that name; it cannot fail.
    let _ = state.register_udf(Arc::new(postgres::current_database(database)));
    let options = Arc::new(state.config().options().as_ref().clone());
    state.execution_props_mut().mark_start_execution(options);
    state
}
