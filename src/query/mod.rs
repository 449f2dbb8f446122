//! The query engine: one DataFusion planner for every front door.
//!
//! Each database is a catalog with the schema `public` ([`catalog`]); each
//! measurement a [`table::TimeseriesTable`] that prunes by time through the
//! catalog and deduplicates overlapping sources. The engine adds TimescaleDB's,
//! GigAPI's and DuckDB's functions ([`functions`]), answers `SHOW DATABASES`,
//! `SHOW TABLES` and `DESCRIBE` with GigAPI's column names, keeps user SQL away
//! from the file system and the network, and bounds every query's memory and
//! time.

pub mod bounds;
mod catalog;
mod ddl;
pub mod dedup;
pub mod functions;
mod information_schema;
mod placeholders;
pub mod postgres;
pub mod table;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::DataFusionError;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{FunctionRegistry, SendableRecordBatchStream};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{ObjectName, ShowStatementIn, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use futures::{Stream, StreamExt};

pub use catalog::SCHEMA;
pub use ddl::{command_tag, identifier, name_parts};
pub use placeholders::numbered_placeholders;
pub use table::{BufferedRows, TableWriter};

use crate::catalog::relations::RelationStore;
use crate::catalog::{Catalog, ColumnType};
use crate::storage::Storage;

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
}

/// Why a query failed, by what the client should do about it.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The database does not exist.
    #[error("database '{0}' not found")]
    UnknownDatabase(String),
    /// The statement would touch the file system or the network.
    #[error("{0}")]
    Forbidden(String),
    /// The statement is valid SQL that this engine does not run.
    #[error("{0}")]
    Unsupported(String),
    /// The SQL does not parse.
    #[error("{0}")]
    Syntax(String),
    /// A table the SQL names does not exist.
    #[error("{0}")]
    UnknownTable(String),
    /// A column the SQL names does not exist.
    #[error("{0}")]
    UnknownColumn(String),
    /// The SQL is wrong in another way: a type error, a bad argument.
    #[error("{0}")]
    Plan(String),
    /// A value cannot be converted or computed: a bad cast, division by zero.
    #[error("{message}")]
    InvalidData {
        /// What went wrong.
        message: String,
        /// The SQLSTATE of the problem (class 22).
        sqlstate: &'static str,
    },
    /// A write (`INSERT`) was refused by the write path: a schema conflict, a
    /// bad row, a full buffer. The SQLSTATE says which.
    #[error("{message}")]
    Write {
        /// What went wrong.
        message: String,
        /// The SQLSTATE of the problem.
        sqlstate: &'static str,
    },
    /// The query needed more memory than it may use.
    #[error("the query needs more memory than HOURGLASS_QUERY_MEMORY_BYTES allows: {0}")]
    ResourcesExhausted(String),
    /// The query ran past its time limit.
    #[error("the query ran longer than {0:?} (HOURGLASS_QUERY_TIMEOUT_S) and was cancelled")]
    Timeout(Duration),
    /// The client cancelled the query (Postgres CancelRequest).
    #[error("canceling statement due to user request")]
    Cancelled,
    /// The query failed while running.
    #[error("{0}")]
    Execution(String),
}

impl QueryError {
    /// Classifies an error from DataFusion.
    pub fn from_datafusion(error: DataFusionError, planning: bool) -> QueryError {
        use arrow::error::ArrowError;
        use datafusion::common::SchemaError;
        let root = error.find_root();
        let data = |sqlstate| QueryError::InvalidData { message: strip_prefix(&root.to_string()), sqlstate };
        match root {
            DataFusionError::ResourcesExhausted(message) => QueryError::ResourcesExhausted(message.clone()),
            DataFusionError::External(e) if e.downcast_ref::<QueryTimeout>().is_some() => {
                QueryError::Timeout(e.downcast_ref::<QueryTimeout>().map(|t| t.0).unwrap_or_default())
            }
            DataFusionError::External(e) if e.downcast_ref::<QueryCancelled>().is_some() => QueryError::Cancelled,
            // The table writer's own errors, passed through DataFusion's sink.
            DataFusionError::External(e) if e.downcast_ref::<QueryError>().is_some() => {
                let inner = e.downcast_ref::<QueryError>();
                QueryError::Write {
                    message: inner.map(ToString::to_string).unwrap_or_default(),
                    sqlstate: inner.map_or("XX000", QueryError::sqlstate),
                }
            }
            DataFusionError::SQL(..) => QueryError::Syntax(strip_prefix(&root.to_string())),
            DataFusionError::SchemaError(e, _) if matches!(**e, SchemaError::FieldNotFound { .. }) => {
                QueryError::UnknownColumn(strip_prefix(&root.to_string()))
            }
            // DataFusion has no typed error for a missing table; its message is stable.
            DataFusionError::Plan(message) if message.starts_with("table '") && message.ends_with("' not found") => {
                QueryError::UnknownTable(message.clone())
            }
            DataFusionError::ArrowError(e, _) => match **e {
                ArrowError::CastError(_) | ArrowError::ParseError(_) => data("22P02"),
                ArrowError::DivideByZero => data("22012"),
                ArrowError::ArithmeticOverflow(_) => data("22003"),
                _ if planning => QueryError::Plan(strip_prefix(&error.to_string())),
                _ => QueryError::Execution(strip_prefix(&error.to_string())),
            },
            DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
                QueryError::Plan(strip_prefix(&root.to_string()))
            }
            DataFusionError::NotImplemented(message) => QueryError::Unsupported(message.clone()),
            _ if planning => QueryError::Plan(strip_prefix(&error.to_string())),
            _ => QueryError::Execution(strip_prefix(&error.to_string())),
        }
    }
}

impl QueryError {
    /// A write refused because this server's mode takes none.
    pub(crate) fn read_only(what: &str) -> QueryError {
        QueryError::Unsupported(format!("{what} is not available: this server does not take writes (GIGAPI_MODE)"))
    }

    /// The Postgres SQLSTATE for this error: how Postgres clients tell a user's
    /// mistake from a server's failure.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            QueryError::UnknownDatabase(_) => "3D000",
            QueryError::Forbidden(_) => "42501",
            QueryError::Unsupported(_) => "0A000",
            QueryError::Syntax(_) => "42601",
            QueryError::UnknownTable(_) => "42P01",
            QueryError::UnknownColumn(_) => "42703",
            QueryError::Plan(_) => "42000",
            QueryError::InvalidData { sqlstate, .. } | QueryError::Write { sqlstate, .. } => sqlstate,
            QueryError::ResourcesExhausted(_) => "53200",
            QueryError::Timeout(_) | QueryError::Cancelled => "57014",
            QueryError::Execution(_) => "XX000",
        }
    }
}

/// DataFusion prefixes messages with the error kind ("Error during planning: ");
/// clients want the problem.
fn strip_prefix(message: &str) -> String {
    for prefix in ["Error during planning: ", "SQL error: ", "Schema error: ", "Execution error: ", "Arrow error: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
    message.to_owned()
}

/// The marker error a timed-out stream ends with.
#[derive(Debug, thiserror::Error)]
#[error("the query ran longer than {0:?} (HOURGLASS_QUERY_TIMEOUT_S) and was cancelled")]
struct QueryTimeout(Duration);

/// The marker error a cancelled stream ends with.
#[derive(Debug, thiserror::Error)]
#[error("canceling statement due to user request")]
struct QueryCancelled;

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

/// A query's result: its schema and a stream of batches, which ends with an
/// error if the query runs past its time limit.
pub struct QueryOutput {
    /// The columns.
    pub schema: SchemaRef,
    /// The rows.
    pub stream: SendableRecordBatchStream,
}

impl std::fmt::Debug for QueryOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryOutput").field("schema", &self.schema).finish()
    }
}

impl QueryOutput {
    /// The same result, ending with [`QueryError::Cancelled`] as soon as
    /// `cancelled` resolves: how a client's cancel request stops a query that
    /// is running or streaming. The query's operators stop when the stream
    /// is dropped.
    pub fn cancellable(self, cancelled: impl Future<Output = ()> + Send + 'static) -> QueryOutput {
        let cancelled =
            futures::stream::once(cancelled).map(|()| Some(Err(DataFusionError::External(Box::new(QueryCancelled)))));
        // The end of the result is a `None`, which ends the stream even while
        // the cancellation is still pending.
        let batches = self.stream.map(Some).chain(futures::stream::once(futures::future::ready(None)));
        // Whichever comes first: the next batch or the cancellation; after an
        // error, nothing more.
        let mut failed = false;
        let stream = futures::stream::select(batches, cancelled)
            .take_while(move |item| {
                let go = !failed && item.is_some();
                failed |= matches!(item, Some(Err(_)));
                futures::future::ready(go)
            })
            .filter_map(futures::future::ready);
        QueryOutput {
            schema: Arc::clone(&self.schema),
            stream: Box::pin(RecordBatchStreamAdapter::new(self.schema, stream)),
        }
    }

    /// Reads every batch (for small results and tests).
    pub async fn collect(self) -> Result<Vec<RecordBatch>, QueryError> {
        use futures::TryStreamExt;
        self.stream.try_collect().await.map_err(|e| QueryError::from_datafusion(e, false))
    }
}

/// A stream that ends with [`QueryTimeout`] at its deadline.
struct DeadlineStream {
    inner: SendableRecordBatchStream,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: bool,
}

impl Stream for DeadlineStream {
    type Item = datafusion::common::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            let timeout = self.timeout;
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(QueryTimeout(timeout))))));
        }
        self.inner.as_mut().poll_next(cx)
    }
}

/// The query engine shared by every front.
#[derive(Debug)]
pub struct QueryEngine {
    catalog: Arc<dyn Catalog>,
    storage: Arc<Storage>,
    base: SessionState,
    options: QueryOptions,
    /// Where `INSERT` and `COPY` rows go, in modes that write.
    writer: Option<Arc<dyn TableWriter>>,
    /// Schemas, tables and views that SQL created.
    relations: Arc<RelationStore>,
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
        options: QueryOptions,
    ) -> Result<QueryEngine, QueryError> {
        let setup = |e: DataFusionError| QueryError::Execution(format!("setting up the query engine: {e}"));
        std::fs::create_dir_all(&options.spill_dir)
            .map_err(|e| QueryError::Execution(format!("creating {}: {e}", options.spill_dir.display())))?;
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
        for layer in storage.layers() {
            let url = url::Url::parse(layer.url()).map_err(|e| QueryError::Execution(e.to_string()))?;
            runtime.register_object_store(&url, layer.object_store());
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
        };
        let base = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_catalog_list(Arc::new(catalog::DatabaseList::new(sources)))
            .build();
        // pg_catalog registers into the catalog `default`, which always exists;
        // the catalog provider shares it with every database.
        let context = datafusion::prelude::SessionContext::new_with_state(base);
        postgres::install(&context, crate::catalog::DEFAULT_DATABASE).map_err(setup)?;
        let base = context.state();
        let mut engine = QueryEngine { catalog, storage: storage_for_merges, base, options, writer, relations };
        for function in functions::scalar_functions() {
            engine.base.register_udf(function).map_err(setup)?;
        }
        for function in functions::aggregate_functions() {
            engine.base.register_udaf(function).map_err(setup)?;
        }
        engine.base.register_function_rewrite(Arc::new(functions::IntegerTimeComparisons)).map_err(setup)?;
        let _ = view_planner.set(engine.base.clone());
        Ok(engine)
    }

    /// The engine's limits.
    pub fn options(&self) -> &QueryOptions {
        &self.options
    }

    /// Every database.
    pub fn databases(&self) -> Vec<String> {
        self.catalog.databases()
    }

    /// The schemas of a database (`public`, `information_schema`, `pg_catalog`
    /// and those SQL created), sorted.
    pub fn schemas(&self, database: &str) -> Result<Vec<String>, QueryError> {
        let catalog = self.database_catalog(database)?;
        let mut names = catalog.schema_names();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Every table and view of a database with its schema, type and columns,
    /// as `information_schema.tables` and `.columns` list them: for metadata
    /// calls that are not SQL (FlightSQL's GetTables).
    pub async fn relations(&self, database: &str) -> Result<Vec<ListedRelation>, QueryError> {
        let catalog = self.database_catalog(database)?;
        let schema = catalog.schema(information_schema::INFORMATION_SCHEMA);
        let listing = schema
            .as_ref()
            .and_then(|s| (s.as_ref() as &dyn std::any::Any).downcast_ref::<information_schema::PgInformationSchema>())
            .ok_or_else(|| QueryError::Execution(format!("database '{database}' has no information_schema")))?;
        let relations = listing.relations().await.map_err(|e| QueryError::from_datafusion(e, false))?;
        Ok(relations
            .into_iter()
            .map(|(schema, name, table_type, columns)| ListedRelation { schema, name, table_type, columns })
            .collect())
    }

    fn database_catalog(&self, database: &str) -> Result<Arc<dyn datafusion::catalog::CatalogProvider>, QueryError> {
        self.base.catalog_list().catalog(database).ok_or_else(|| QueryError::UnknownDatabase(database.to_owned()))
    }

    /// Whether a database exists.
    pub fn database_exists(&self, database: &str) -> bool {
        self.catalog.databases().iter().any(|d| d == database)
    }

    /// A session whose unqualified table names resolve in `database`. Its query
    /// start time is now: `now()` in every statement planned with it.
    pub fn session(&self, database: &str) -> SessionState {
        database_session(&self.base, database)
    }

    /// Runs one SQL statement against `database`.
    pub async fn sql(&self, database: &str, sql: &str) -> Result<QueryOutput, QueryError> {
        let timeout = self.options.timeout;
        let started = async {
            let plan = self.plan(database, sql).await?;
            self.start(database, plan).await
        };
        let output = tokio::time::timeout(timeout, started).await.map_err(|_| QueryError::Timeout(timeout))??;
        Ok(self.with_deadline(output))
    }

    /// Plans one SQL statement against `database` without running it, for
    /// clients that prepare statements (Postgres' extended protocol): the plan
    /// tells them the parameter and result types. Statements the engine answers
    /// itself (SHOW, DESCRIBE) become plans over their result.
    pub async fn plan(&self, database: &str, sql: &str) -> Result<LogicalPlan, QueryError> {
        if !self.database_exists(database) {
            return Err(QueryError::UnknownDatabase(database.to_owned()));
        }
        let plan_error = |e: DataFusionError| QueryError::from_datafusion(e, true);
        let mut statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}).map_err(plan_error)?;
        let statement = match (statements.pop_front(), statements.is_empty()) {
            (Some(statement), true) => statement,
            (None, _) => return Err(QueryError::Syntax("the query is empty".into())),
            (Some(_), false) => return Err(QueryError::Syntax("send one statement per query".into())),
        };
        let state = self.session(database);
        let statement = match statement {
            DfStatement::CopyTo(_) => {
                return Err(QueryError::Forbidden(
                    "COPY ... TO is refused: queries cannot write files. Fetch results in the format you need \
                     (format=csv|parquet|arrow)"
                        .into(),
                ))
            }
            DfStatement::CreateExternalTable(_) => {
                return Err(QueryError::Forbidden(
                    "CREATE EXTERNAL TABLE is refused: queries cannot read files or URLs; write data through \
                     the write endpoints"
                        .into(),
                ))
            }
            DfStatement::Statement(inner) => match *inner {
                SqlStatement::ShowDatabases { .. } => return self.show_databases().and_then(result_plan),
                SqlStatement::ShowTables { show_options, .. } => {
                    let database = match show_options.show_in {
                        Some(ShowStatementIn { parent_name: Some(name), .. }) => object_name(&name),
                        _ => database.to_owned(),
                    };
                    return self.show_tables(&database).and_then(result_plan);
                }
                SqlStatement::ExplainTable { table_name, .. } => {
                    return self.describe_table(database, &object_name(&table_name)).and_then(result_plan);
                }
                SqlStatement::Explain { describe_alias, statement, .. }
                    if !matches!(describe_alias, datafusion::sql::sqlparser::ast::DescribeAlias::Explain) =>
                {
                    return self.describe_query(&state, DfStatement::Statement(statement)).await.and_then(result_plan);
                }
                SqlStatement::Copy { .. } => {
                    return Err(QueryError::Forbidden("COPY is refused: queries cannot read or write files".into()))
                }
                alter @ SqlStatement::AlterTable(_) => {
                    let plan = ddl::alter_plan(&alter)?
                        .ok_or_else(|| QueryError::Unsupported("this ALTER statement is not supported".into()))?;
                    return self.writable(plan, "CREATE, ALTER and DROP");
                }
                other => DfStatement::Statement(Box::new(other)),
            },
            other => other,
        };
        let plan = state.statement_to_plan(statement).await.map_err(plan_error)?;
        if ddl::is_catalog_statement(&plan) {
            return self.writable(plan, "CREATE, ALTER and DROP");
        }
        if let LogicalPlan::Dml(dml) = &plan {
            // Rows go to measurements only, through the WAL; a table made by
            // CREATE TABLE AS is a snapshot of its query.
            let measurement = datafusion::datasource::source_as_provider(&dml.target)
                .is_ok_and(|provider| (provider.as_ref() as &dyn std::any::Any).is::<table::TimeseriesTable>());
            if !measurement {
                return Err(QueryError::Unsupported(format!(
                    "'{}' is not a measurement: rows are written into measurements only",
                    dml.table_name
                )));
            }
            return match dml.op {
                WriteOp::Insert(InsertOp::Append) => self.writable(plan, "INSERT"),
                ref op => Err(QueryError::Unsupported(format!(
                    "{op} is not supported: measurements are appended to with INSERT; a row with the same series \
                     and time replaces the fields it names"
                ))),
            };
        }
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| {
            QueryError::Unsupported(format!(
                "{}: only queries (SELECT, EXPLAIN, SHOW, DESCRIBE) and INSERT run here",
                strip_prefix(&e.to_string())
            ))
        })?;
        Ok(plan)
    }

    /// Whether a plan writes rows or changes the catalog (INSERT, CREATE,
    /// ALTER, DROP), for fronts that allow that only to some requests.
    pub fn changes_data(plan: &LogicalPlan) -> bool {
        matches!(plan, LogicalPlan::Dml(_)) || ddl::is_catalog_statement(plan)
    }

    /// The types of a plan's `$1, $2, ...` parameters, in order; `None` where
    /// the plan does not tell. At most 65535, as Postgres numbers them.
    pub fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, QueryError> {
        let types = plan.get_parameter_types().map_err(|e| QueryError::from_datafusion(e, true))?;
        let mut numbered: Vec<(usize, Option<DataType>)> = types
            .into_iter()
            .filter_map(|(name, data_type)| name.trim_start_matches('$').parse::<usize>().ok().map(|n| (n, data_type)))
            .collect();
        numbered.sort_by_key(|(n, _)| *n);
        let count = numbered.last().map_or(0, |(n, _)| *n);
        if count > usize::from(u16::MAX) {
            return Err(QueryError::Plan(format!("there is no parameter ${count}: at most 65535 are allowed")));
        }
        let mut ordered = vec![None; count];
        for (n, data_type) in numbered {
            if let Some(slot) = n.checked_sub(1).and_then(|i| ordered.get_mut(i)) {
                *slot = data_type;
            }
        }
        Ok(ordered)
    }

    /// The columns a plan's result will have: what a front announces before
    /// running it. CREATE, ALTER and DROP answer a `count`, as INSERT does.
    pub fn result_schema(plan: &LogicalPlan) -> SchemaRef {
        if ddl::is_catalog_statement(plan) {
            return count_schema();
        }
        Arc::new(plan.schema().as_arrow().clone())
    }

    /// A plan that writes, if this server takes writes.
    fn writable(&self, plan: LogicalPlan, what: &str) -> Result<LogicalPlan, QueryError> {
        match self.writer {
            Some(_) => Ok(plan),
            None => Err(QueryError::read_only(what)),
        }
    }

    /// Runs a plan from [`QueryEngine::plan`] (with its parameters filled in)
    /// against `database`, within the engine's time limit.
    pub async fn execute(&self, database: &str, plan: LogicalPlan) -> Result<QueryOutput, QueryError> {
        let timeout = self.options.timeout;
        let output = tokio::time::timeout(timeout, self.start(database, plan))
            .await
            .map_err(|_| QueryError::Timeout(timeout))??;
        Ok(self.with_deadline(output))
    }

    async fn start(&self, database: &str, plan: LogicalPlan) -> Result<QueryOutput, QueryError> {
        if ddl::is_catalog_statement(&plan) {
            let statements = ddl::CatalogStatements {
                database,
                catalog: self.catalog.as_ref(),
                relations: &self.relations,
                state: self.session(database),
            };
            let rows = statements.run(plan).await?;
            let count = count_schema();
            let batch = RecordBatch::try_new(
                Arc::clone(&count),
                vec![Arc::new(arrow::array::UInt64Array::from(vec![rows as u64])) as ArrayRef],
            )
            .map_err(|e| QueryError::Execution(e.to_string()))?;
            let stream = futures::stream::iter(vec![Ok(batch)]);
            return Ok(QueryOutput {
                schema: Arc::clone(&count),
                stream: Box::pin(RecordBatchStreamAdapter::new(count, stream)),
            });
        }
        let frame = DataFrame::new(self.session(database), plan);
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let stream = frame.execute_stream().await.map_err(|e| QueryError::from_datafusion(e, true))?;
        Ok(QueryOutput { schema, stream })
    }

    fn with_deadline(&self, output: QueryOutput) -> QueryOutput {
        let timeout = self.options.timeout;
        let deadline = DeadlineStream {
            inner: output.stream,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            expired: false,
        };
        QueryOutput {
            schema: Arc::clone(&output.schema),
            stream: Box::pin(RecordBatchStreamAdapter::new(output.schema, deadline)),
        }
    }

    fn show_databases(&self) -> Result<RecordBatch, QueryError> {
        let names = self.catalog.databases();
        single_column("database_name", names)
    }

    fn show_tables(&self, database: &str) -> Result<RecordBatch, QueryError> {
        if !self.database_exists(database) {
            return Err(QueryError::UnknownDatabase(database.to_owned()));
        }
        single_column("table_name", self.catalog.tables(database))
    }

    /// The database, name and schema of the measurement `name` (`table`,
    /// `public.table`, `db.table` or `db.public.table`) seen from `database`.
    pub fn resolve_table(
        &self,
        database: &str,
        name: &str,
    ) -> Result<(String, String, Arc<crate::catalog::TableSchema>), QueryError> {
        let parts: Vec<&str> = name.split('.').collect();
        let (database, table) = match parts.as_slice() {
            [table] => (database, *table),
            [db, table] if *db != SCHEMA => (*db, *table),
            [_, table] => (database, *table),
            [db, _, table] => (*db, *table),
            _ => return Err(QueryError::Plan(format!("'{name}' is not a table name"))),
        };
        let schema = self
            .catalog
            .table_schema(database, table)
            .ok_or_else(|| QueryError::UnknownTable(format!("table '{database}.{SCHEMA}.{table}' not found")))?;
        Ok((database.to_owned(), table.to_owned(), schema))
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
    pub async fn write_batch(&self, database: &str, table: &str, batch: RecordBatch) -> Result<usize, QueryError> {
        match &self.writer {
            Some(writer) => writer.write(database, table, batch).await,
            None => Err(QueryError::read_only("COPY")),
        }
    }

    fn describe_table(&self, database: &str, name: &str) -> Result<RecordBatch, QueryError> {
        let (_, _, schema) = self.resolve_table(database, name)?;
        let arrow = schema.arrow_schema();
        let kinds = schema.columns().iter().map(|c| match c.column_type {
            ColumnType::Tag => "tag",
            ColumnType::Time => "time",
            _ => "field",
        });
        describe_batch(&arrow, kinds.map(Some).collect())
    }

    async fn describe_query(&self, state: &SessionState, statement: DfStatement) -> Result<RecordBatch, QueryError> {
        let plan = state.statement_to_plan(statement).await.map_err(|e| QueryError::from_datafusion(e, true))?;
        let schema = plan.schema().as_arrow().clone();
        let kinds = vec![None; schema.fields().len()];
        describe_batch(&schema, kinds)
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

/// The result of a statement run for its effect: the rows it changed.
fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]))
}

/// A plan that returns the rows the engine computed itself (SHOW, DESCRIBE).
fn result_plan(batch: RecordBatch) -> Result<LogicalPlan, QueryError> {
    let table =
        MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(|e| QueryError::from_datafusion(e, true))?;
    LogicalPlanBuilder::scan("result", provider_as_source(Arc::new(table)), None)
        .and_then(|b| b.build())
        .map_err(|e| QueryError::from_datafusion(e, true))
}

fn object_name(name: &ObjectName) -> String {
    name.0.iter().map(|part| part.to_string().trim_matches('"').to_owned()).collect::<Vec<_>>().join(".")
}

fn single_column(name: &str, values: Vec<String>) -> Result<RecordBatch, QueryError> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values)) as ArrayRef])
        .map_err(|e| QueryError::Execution(e.to_string()))
}

/// The SQL name of an Arrow type, as DESCRIBE shows it.
pub fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Dictionary(_, value) => sql_type_name(value),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        other => other.to_string().to_uppercase(),
    }
}

/// DESCRIBE's rows, with DuckDB's (and so GigAPI's) column names plus `kind`.
fn describe_batch(schema: &Schema, kinds: Vec<Option<&str>>) -> Result<RecordBatch, QueryError> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let types: Vec<String> = schema.fields().iter().map(|f| sql_type_name(f.data_type())).collect();
    let nulls: Vec<&str> = schema.fields().iter().map(|f| if f.is_nullable() { "YES" } else { "NO" }).collect();
    let out = Arc::new(Schema::new(vec![
        Field::new("column_name", DataType::Utf8, false),
        Field::new("column_type", DataType::Utf8, false),
        Field::new("null", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        out,
        vec![
            Arc::new(StringArray::from(names)) as ArrayRef,
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(nulls)),
            Arc::new(StringArray::from(kinds)),
        ],
    )
    .map_err(|e| QueryError::Execution(e.to_string()))
}
