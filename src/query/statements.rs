//! From SQL to a running query: which statements run here and how (SHOW and
//! DESCRIBE answered by the engine, file access refused, DML only into
//! measurements and only where the server takes writes), and the admission,
//! time limit and cancellation every run gets.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::DataFusionError;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, WriteOp};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{ObjectType, ShowStatementIn, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use super::error::strip_prefix;
use super::{ddl, delete, name_parts, table, QueryEngine, QueryError, QueryOutput, SCHEMA};
use crate::access::{Access, Privilege};
use crate::catalog::{ColumnType, TableSchema};

/// A measurement found from a name as a client wrote it.
#[derive(Debug, Clone)]
pub struct ResolvedTable {
    /// The database that holds it.
    pub database: String,
    /// Its name (which may hold dots).
    pub table: String,
    /// Its schema.
    pub schema: Arc<TableSchema>,
}

impl QueryEngine {
    /// Runs one SQL statement against `database`.
    pub async fn sql(&self, database: &str, sql: &str, access: &Access) -> Result<QueryOutput, QueryError> {
        let (timeout, deadline) = self.deadline();
        let planned = tokio::time::timeout_at(deadline, self.plan(database, sql, access))
            .await
            .map_err(|_| QueryError::Timeout(timeout))??;
        self.execute_by(database, planned, deadline).await
    }

    /// The time limit of a query starting now, and its deadline.
    fn deadline(&self) -> (std::time::Duration, tokio::time::Instant) {
        let timeout = self.options.timeout;
        (timeout, tokio::time::Instant::now() + timeout)
    }

    /// Plans one SQL statement against `database` without running it, for
    /// clients that prepare statements (Postgres' extended protocol): the plan
    /// tells them the parameter and result types. Statements the engine answers
    /// itself (SHOW, DESCRIBE) become plans over their result.
    pub async fn plan(&self, database: &str, sql: &str, access: &Access) -> Result<LogicalPlan, QueryError> {
        let plan_error = |e: DataFusionError| QueryError::from_datafusion(e, true);
        let mut statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}).map_err(plan_error)?;
        let statement = match (statements.pop_front(), statements.is_empty()) {
            (Some(statement), true) => statement,
            (None, _) => return Err(QueryError::Syntax("the query is empty".into())),
            (Some(_), false) => return Err(QueryError::Syntax("send one statement per query".into())),
        };
        self.plan_statement(database, statement, access).await
    }

    /// Plans one parsed statement against `database`: what [`Self::plan`]
    /// does after parsing, for fronts that parse SQL themselves (the
    /// Postgres front's compatibility parser).
    ///
    /// `access` must see `database`; a session limited to one database
    /// resolves no name in another, and a plan that writes rows needs
    /// [`Privilege::Write`], one that changes the catalog [`Privilege::Admin`].
    pub async fn plan_statement(
        &self,
        database: &str,
        statement: DfStatement,
        access: &Access,
    ) -> Result<LogicalPlan, QueryError> {
        access.require(database, Privilege::Read)?;
        if !self.database_exists(database) {
            return Err(QueryError::UnknownDatabase(database.to_owned()));
        }
        let plan_error = |e: DataFusionError| QueryError::from_datafusion(e, true);
        let state = self.session_for(database, access);
        let copy_to_refused = || {
            QueryError::Forbidden(
                "COPY ... TO is refused: queries cannot write files. Fetch results in the format you need \
                 (format=csv|parquet|arrow), or COPY ... TO STDOUT over the Postgres wire"
                    .into(),
            )
        };
        let statement = match statement {
            DfStatement::CopyTo(_) => return Err(copy_to_refused()),
            DfStatement::CreateExternalTable(_) => {
                return Err(QueryError::Forbidden(
                    "CREATE EXTERNAL TABLE is refused: queries cannot read files or URLs; write data through \
                     the write endpoints"
                        .into(),
                ))
            }
            DfStatement::Statement(inner) => match *inner {
                SqlStatement::ShowDatabases { .. } => return self.show_databases(access).and_then(result_plan),
                SqlStatement::ShowTables { show_options, .. } => {
                    let database = match show_options.show_in {
                        // `SHOW TABLES FROM db`: one name, the database's, dots and all.
                        Some(ShowStatementIn { parent_name: Some(name), .. }) => name_parts(&name).join("."),
                        _ => database.to_owned(),
                    };
                    access.require(&database, Privilege::Read)?;
                    return self.show_tables(&database).and_then(result_plan);
                }
                SqlStatement::ExplainTable { table_name, .. } => {
                    return self.describe_table(database, &name_parts(&table_name), access).and_then(result_plan);
                }
                SqlStatement::Explain { describe_alias, statement, .. }
                    if !matches!(describe_alias, datafusion::sql::sqlparser::ast::DescribeAlias::Explain) =>
                {
                    return self.describe_query(&state, DfStatement::Statement(statement)).await.and_then(result_plan);
                }
                SqlStatement::Copy { to: true, .. } => return Err(copy_to_refused()),
                SqlStatement::Copy { .. } => {
                    return Err(QueryError::Forbidden(
                        "COPY ... FROM a file is refused: queries cannot read files. Over the Postgres wire, \
                         COPY ... FROM STDIN loads rows"
                            .into(),
                    ))
                }
                SqlStatement::Drop { object_type: ObjectType::Database, if_exists, names, .. } => {
                    let (named, plan) = ddl::drop_database_plan(&names, if_exists)?;
                    access.require(&named, Privilege::Admin)?;
                    return self.relations_changeable(plan);
                }
                alter @ SqlStatement::AlterTable(_) => {
                    access.require(database, Privilege::Admin)?;
                    let plan = ddl::alter_plan(&alter)?
                        .ok_or_else(|| QueryError::Unsupported("this ALTER statement is not supported".into()))?;
                    return self.relations_changeable(plan);
                }
                other => DfStatement::Statement(Box::new(other)),
            },
            other => other,
        };
        let plan = state.statement_to_plan(statement).await.map_err(plan_error)?;
        if ddl::is_catalog_statement(&plan) {
            access.require(database, Privilege::Admin)?;
            return self.relations_changeable(plan);
        }
        // A DELETE reads its measurement only through its WHERE, which may
        // say nothing but series and time (`delete::check_shape`): a write.
        let is_delete = matches!(&plan, LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Delete));
        if self.options.writes_only && !is_delete {
            refuse_reads_on_a_writer(&plan)?;
        }
        if let LogicalPlan::Dml(dml) = &plan {
            access.require(database, Privilege::Write)?;
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
                WriteOp::Delete => {
                    delete::check_shape(&dml.input)?;
                    // A WHERE that is always false (`WHERE false`, `host = NULL`)
                    // is optimized into no rows, and DataFusion would then hand
                    // the table no filter at all: it deletes nothing.
                    let optimized = state.optimize(&plan).map_err(plan_error)?;
                    if datafusion::common::tree_node::TreeNode::exists(&optimized, |n| {
                        Ok(matches!(n, LogicalPlan::EmptyRelation(_)))
                    })
                    .unwrap_or(true)
                    {
                        let zero =
                            datafusion::logical_expr::LogicalPlanBuilder::values(vec![vec![datafusion::prelude::lit(
                                0u64,
                            )]])
                            .and_then(|b| b.project(vec![datafusion::prelude::col("column1").alias("count")]))
                            .and_then(|b| b.build())
                            .map_err(plan_error)?;
                        return Ok(zero);
                    }
                    self.writable(plan, "DELETE")
                }
                ref op => Err(QueryError::Unsupported(format!(
                    "{op} is not supported: measurements are appended to with INSERT (a row with the same series \
                     and time replaces the fields it names) and deleted from with DELETE"
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

    /// A catalog statement, if this process changes the relations.
    fn relations_changeable(&self, plan: LogicalPlan) -> Result<LogicalPlan, QueryError> {
        if self.options.writes_only {
            refuse_reads_on_a_writer(&plan)?;
        }
        match self.relations.refuses() {
            Some(reason) => Err(QueryError::refused(&crate::catalog::relations::RelationError::Refused(format!(
                "CREATE, ALTER and DROP are refused: {reason}"
            )))),
            None => Ok(plan),
        }
    }

    /// Runs a plan from [`QueryEngine::plan`] (with its parameters filled in)
    /// against `database`: once admitted (see `HOURGLASS_MAX_CONCURRENT_QUERIES`),
    /// within the engine's time limit, which counts the wait for admission.
    pub async fn execute(&self, database: &str, plan: LogicalPlan) -> Result<QueryOutput, QueryError> {
        self.execute_by(database, plan, self.deadline().1).await
    }

    /// [`Self::execute`] with one deadline for the wait, the start and every
    /// batch of the result.
    async fn execute_by(
        &self,
        database: &str,
        plan: LogicalPlan,
        deadline: tokio::time::Instant,
    ) -> Result<QueryOutput, QueryError> {
        let timeout = self.options.timeout;
        let started = async {
            let slot = self.admission.admit().await?;
            let output = self.start(database, plan).await?;
            Ok::<_, QueryError>(output.bounded(deadline, timeout, slot))
        };
        tokio::time::timeout_at(deadline, started).await.map_err(|_| QueryError::Timeout(timeout))?
    }

    async fn start(&self, database: &str, plan: LogicalPlan) -> Result<QueryOutput, QueryError> {
        if ddl::is_catalog_statement(&plan) {
            let statements = ddl::CatalogStatements {
                database,
                catalog: self.catalog.as_ref(),
                relations: &self.relations,
                state: self.session(database),
                writer: self.writer.as_ref(),
            };
            let rows = statements.run(plan).await?;
            let count = count_schema();
            let batch = RecordBatch::try_new(
                Arc::clone(&count),
                vec![Arc::new(UInt64Array::from(vec![rows as u64])) as ArrayRef],
            )
            .map_err(|e| QueryError::Internal(e.to_string()))?;
            return Ok(QueryOutput::of_batches(count, vec![batch]));
        }
        let frame = DataFrame::new(self.session(database), plan);
        let stream = frame.execute_stream().await.map_err(|e| QueryError::from_datafusion(e, true))?;
        // The batches' own schema: the optimizer may make columns nullable
        // (gap filling's NULL counts) that the statement's plan did not.
        let schema = stream.schema();
        Ok(QueryOutput { schema, stream })
    }

    fn show_databases(&self, access: &Access) -> Result<RecordBatch, QueryError> {
        single_column("database_name", self.databases(access))
    }

    fn show_tables(&self, database: &str) -> Result<RecordBatch, QueryError> {
        if !self.database_exists(database) {
            return Err(QueryError::UnknownDatabase(database.to_owned()));
        }
        single_column("table_name", self.catalog.tables(database))
    }

    /// The measurement a name means, seen from `database`. `parts` are the
    /// name's identifiers as SQL means them (see [`name_parts`]), so a
    /// quoted `"cpu.load"` is one part: `table`, `public.table`, `db.table`
    /// or `db.public.table`.
    /// `access` must see the database the name is in.
    pub fn resolve_table(
        &self,
        database: &str,
        parts: &[String],
        access: &Access,
    ) -> Result<ResolvedTable, QueryError> {
        let (database, table) = match parts {
            [table] => (database, table.as_str()),
            [schema, table] if schema == SCHEMA => (database, table.as_str()),
            [db, table] => (db.as_str(), table.as_str()),
            [db, schema, table] if schema == SCHEMA => (db.as_str(), table.as_str()),
            _ => {
                return Err(QueryError::Plan(format!(
                    "{} is not a measurement's name: measurements are [database.][{SCHEMA}.]table",
                    parts.iter().map(|p| super::quote_identifier(p)).collect::<Vec<_>>().join(".")
                )))
            }
        };
        access.require(database, Privilege::Read)?;
        let schema = self
            .catalog
            .table_schema(database, table)
            .ok_or_else(|| QueryError::UnknownTable(format!("table '{database}.{SCHEMA}.{table}' not found")))?;
        Ok(ResolvedTable { database: database.to_owned(), table: table.to_owned(), schema })
    }

    fn describe_table(&self, database: &str, parts: &[String], access: &Access) -> Result<RecordBatch, QueryError> {
        let resolved = self.resolve_table(database, parts, access)?;
        let arrow = resolved.schema.arrow_schema();
        let kinds = resolved.schema.columns().iter().map(|c| match c.column_type {
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

/// The result of a statement run for its effect: the rows it changed.
pub(super) fn count_schema() -> SchemaRef {
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

fn single_column(name: &str, values: Vec<String>) -> Result<RecordBatch, QueryError> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values)) as ArrayRef])
        .map_err(|e| QueryError::Internal(e.to_string()))
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
    .map_err(|e| QueryError::Internal(e.to_string()))
}

/// What a `writeonly` process refuses (see [`super::QueryOptions::writes_only`]):
/// catalog statements, and any plan that reads a measurement or a table SQL
/// made, itself or through a view. The server's own catalogs (`pg_catalog`,
/// `information_schema`, whose views read no data) stay readable, since
/// drivers read them on connecting.
fn refuse_reads_on_a_writer(plan: &LogicalPlan) -> Result<(), QueryError> {
    let to_readers = "this process is writeonly (GIGAPI_MODE): it takes INSERT, DELETE and COPY ... FROM STDIN; \
                      send queries and CREATE, ALTER or DROP to a readonly or aio process";
    if ddl::is_catalog_statement(plan) {
        return Err(QueryError::Forbidden(format!("CREATE, ALTER and DROP are refused: {to_readers}")));
    }
    match first_data_read(plan).map_err(|e| QueryError::from_datafusion(e, true))? {
        Some(table) => Err(QueryError::Forbidden(format!("reading '{table}' is refused: {to_readers}"))),
        None => Ok(()),
    }
}

/// The first measurement or table made by SQL that `plan` reads, looking
/// into the views it reads.
fn first_data_read(plan: &LogicalPlan) -> datafusion::common::Result<Option<String>> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::datasource::listing::ListingTable;
    use datafusion::datasource::view::ViewTable;
    let mut read = None;
    plan.apply_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = node else { return Ok(TreeNodeRecursion::Continue) };
        let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source) else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let any = provider.as_ref() as &dyn std::any::Any;
        if any.is::<table::TimeseriesTable>() || any.is::<ListingTable>() {
            read = Some(scan.table_name.to_string());
        } else if let Some(view) = any.downcast_ref::<ViewTable>() {
            read = first_data_read(view.logical_plan())?.map(|inner| format!("{} (through {inner})", scan.table_name));
        }
        Ok(if read.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })?;
    Ok(read)
}
