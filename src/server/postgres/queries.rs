//! Simple and extended query protocol over the engine.
//!
//! SQL is parsed by datafusion-postgres' compatibility parser (which rewrites
//! what psql, Grafana, dbt and others send into SQL DataFusion plans), passed
//! through its hooks (SET/SHOW, transactions) and otherwise planned and run by
//! the engine, in the connection's database, with the engine's sandbox and
//! limits.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::UInt64Array;
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type, METADATA_DATABASE};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::DataRow;
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use super::cancel::QuerySignal;
use super::copy::{CopyFrom, CopyIn, CopySlot};
use super::query_error;
use crate::catalog::DEFAULT_DATABASE;
use crate::query::{postgres as pg, QueryEngine, QueryError, QueryOutput};

/// A prepared statement: its SQL and, unless it was empty, the parsed statement
/// and its plan (the type datafusion-postgres' hooks expect in the portal store).
pub(crate) type Prepared = (String, Option<(Statement, LogicalPlan)>);

/// The query handlers shared by every connection.
pub(crate) struct Queries {
    engine: Arc<QueryEngine>,
    parser: Arc<Parser>,
}

impl Queries {
    pub(crate) fn new(engine: Arc<QueryEngine>) -> Self {
        let hooks: Vec<Arc<dyn QueryHook>> =
            vec![Arc::new(ShowSettings), Arc::new(SetShowHook), Arc::new(TransactionStatementHook)];
        let parser = Arc::new(Parser { engine: Arc::clone(&engine), sql: PostgresCompatibilityParser::new(), hooks });
        Queries { engine, parser }
    }
}

fn database_of<C: ClientInfo + ?Sized>(client: &C) -> String {
    client.metadata().get(METADATA_DATABASE).cloned().unwrap_or_else(|| DEFAULT_DATABASE.to_owned())
}

/// A context over the connection's database, for datafusion-postgres' hooks.
fn hook_context(engine: &QueryEngine, database: &str) -> SessionContext {
    SessionContext::new_with_state(engine.session(database))
}

/// Encodes a result as rows, batch by batch as the engine produces them.
fn encode(output: QueryOutput, format: &Format, client: &impl ClientInfo) -> PgWireResult<QueryResponse> {
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let fields = Arc::new(arrow_schema_to_pg_fields(&output.schema, format, Some(options))?);
    let row_fields = Arc::clone(&fields);
    let rows = output
        .stream
        .map(move |batch| -> Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> {
            match batch {
                Ok(batch) => encode_recordbatch(Arc::clone(&row_fields), batch),
                Err(e) => Box::new(std::iter::once(Err(query_error(QueryError::from_datafusion(e, false))))),
            }
        })
        .flat_map(stream::iter);
    Ok(QueryResponse::new(fields, rows))
}

impl Queries {
    /// Runs a plan: rows for a query, the `INSERT 0 n` tag for an insert.
    async fn run(
        &self,
        database: &str,
        plan: LogicalPlan,
        format: &Format,
        client: &impl ClientInfo,
    ) -> PgWireResult<Response> {
        let insert = matches!(plan, LogicalPlan::Dml(_));
        let catalog_tag = crate::query::command_tag(&plan);
        let output = self.engine.execute(database, plan).await.map_err(query_error)?;
        // A CancelRequest for this connection ends the result with 57014.
        let output = match client.session_extensions().get::<Arc<QuerySignal>>() {
            Some(signal) => output.cancellable(signal.next_cancel()),
            None => output,
        };
        if !insert && catalog_tag.is_none() {
            return Ok(Response::Query(encode(output, format, client)?));
        }
        let mut rows = 0;
        for batch in output.collect().await.map_err(query_error)? {
            if let Some(counts) = batch.column(0).as_any().downcast_ref::<UInt64Array>() {
                rows += counts.iter().flatten().sum::<u64>() as usize;
            }
        }
        Ok(Response::Execution(match catalog_tag {
            // CREATE TABLE AS answers like Postgres: `SELECT n`.
            Some(tag @ "SELECT") => Tag::new(tag).with_rows(rows),
            Some(tag) => Tag::new(tag),
            None => Tag::new("INSERT").with_oid(0).with_rows(rows),
        }))
    }

    /// Starts `COPY ... FROM STDIN`: the load waits in the connection for the
    /// client's CopyData.
    fn start_copy(&self, copy: CopyFrom, database: &str, client: &impl ClientInfo) -> PgWireResult<Response> {
        let load = copy.start(&self.engine, database)?;
        let columns = load.column_count();
        let slot = client.session_extensions().get_or_insert_with(CopySlot::default);
        *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(load);
        Ok(Response::CopyIn(CopyResponse::new(0, columns, stream::empty())))
    }

    fn take_copy(client: &impl ClientInfo) -> Option<CopyIn> {
        let slot = client.session_extensions().get::<CopySlot>()?;
        let load = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        load
    }

    fn put_copy(client: &impl ClientInfo, load: CopyIn) {
        if let Some(slot) = client.session_extensions().get::<CopySlot>() {
            *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(load);
        }
    }
}

#[async_trait]
impl CopyHandler for Queries {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The state leaves the slot while it is written, so no lock is held
        // across the write.
        if let Some(mut load) = Self::take_copy(client) {
            load.data(&self.engine, &copy_data.data).await;
            Self::put_copy(client, load);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(load) = Self::take_copy(client) else {
            return Err(syntax_error("CopyDone without a COPY in progress"));
        };
        let rows = load.finish(&self.engine).await?;
        client.send(PgWireBackendMessage::CommandComplete(Tag::new("COPY").with_rows(rows).into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let written = Self::take_copy(client).map_or(0, |load| load.written());
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_owned(),
            "57014".to_owned(),
            format!("COPY from stdin failed: {} ({written} rows were written before it)", fail.message),
        )))
    }
}

fn syntax_error(error: impl std::fmt::Display) -> PgWireError {
    query_error(QueryError::Syntax(error.to_string()))
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let database = database_of(client);
        let statements = match self.parser.sql.parse(query) {
            Ok(statements) => statements,
            // What Postgres' grammar rejects may be DataFusion's own syntax: the
            // engine runs it or says why not (CREATE EXTERNAL TABLE is refused).
            Err(_) => {
                let plan = self.engine.plan(&database, query).await.map_err(query_error)?;
                return Ok(vec![self.run(&database, plan, &Format::UnifiedText, client).await?]);
            }
        };
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        let count = statements.len();
        'statements: for (i, statement) in statements.into_iter().enumerate() {
            if let Some(copy) = CopyFrom::from_statement(&statement)? {
                if i + 1 != count {
                    return Err(syntax_error("COPY FROM STDIN must be the last statement of a query"));
                }
                responses.push(self.start_copy(copy, &database, client)?);
                break;
            }
            let context = hook_context(&self.engine, &database);
            for hook in &self.parser.hooks {
                if let Some(response) = hook.handle_simple_query(&statement, &context, client).await {
                    responses.push(response?);
                    continue 'statements;
                }
            }
            let plan = self.engine.plan(&database, &statement.to_string()).await.map_err(query_error)?;
            responses.push(self.run(&database, plan, &Format::UnifiedText, client).await?);
        }
        Ok(responses)
    }
}

/// The parameter types of a plan, in `$1, $2, ...` order.
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    QueryEngine::parameter_types(plan).map_err(query_error)
}

fn wire_types(types: &[Option<DataType>]) -> PgWireResult<Vec<Type>> {
    types.iter().map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type)).collect()
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (_, Some((statement, plan))) = &portal.statement.statement else {
            return Ok(Response::EmptyQuery);
        };
        let database = database_of(client);
        if let Some(copy) = CopyFrom::from_statement(statement)? {
            return self.start_copy(copy, &database, client);
        }
        let types = parameter_types(plan)?;
        let wire = wire_types(&types)?;
        let inferred: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
        let server: Vec<Option<&Type>> = wire.iter().map(Some).collect();
        let params: ParamValues = deserialize_parameters_with_server_types(portal, &inferred, &server)?;
        let context = hook_context(&self.engine, &database);
        for hook in &self.parser.hooks {
            if let Some(response) = hook.handle_extended_query(statement, plan, &params, &context, client).await {
                return response;
            }
        }
        let plan = plan
            .clone()
            .replace_params_with_values(&params)
            .map_err(|e| query_error(QueryError::InvalidData { message: e.to_string(), sqlstate: "22023" }))?;
        self.run(&database, plan, &portal.result_column_format, client).await
    }
}

/// Plans statements for the extended protocol.
pub(crate) struct Parser {
    engine: Arc<QueryEngine>,
    sql: PostgresCompatibilityParser,
    hooks: Vec<Arc<dyn QueryHook>>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let database = database_of(client);
        let mut statements = match self.sql.parse(sql) {
            Ok(statements) => statements,
            Err(e) => {
                // As in the simple protocol, the engine's reason (CREATE EXTERNAL TABLE
                // is refused) is clearer than Postgres' grammar's; DataFusion-only
                // syntax is not prepared.
                self.engine.plan(&database, sql).await.map_err(query_error)?;
                return Err(syntax_error(e));
            }
        };
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(syntax_error("cannot insert multiple commands into a prepared statement"));
        }
        let statement = statements.remove(0);
        if CopyFrom::from_statement(&statement)?.is_some() {
            // The load starts at Execute; it has no parameters and no result columns.
            let plan = LogicalPlanBuilder::empty(false)
                .build()
                .map_err(|e| query_error(QueryError::from_datafusion(e, true)))?;
            return Ok(Some((sql.to_owned(), Some((statement, plan)))));
        }
        let context = hook_context(&self.engine, &database);
        for hook in &self.hooks {
            if let Some(plan) = hook.handle_extended_parse_query(&statement, &context, client).await {
                return Ok(Some((sql.to_owned(), Some((statement, plan?)))));
            }
        }
        let plan = self.engine.plan(&database, &statement.to_string()).await.map_err(query_error)?;
        Ok(Some((sql.to_owned(), Some((statement, plan)))))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        match statement {
            (_, Some((_, plan))) => wire_types(&parameter_types(plan)?),
            _ => Ok(Vec::new()),
        }
    }

    fn get_result_schema(&self, statement: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match statement {
            (_, Some((_, plan))) if !matches!(plan, LogicalPlan::Ddl(_)) && !QueryEngine::changes_data(plan) => {
                arrow_schema_to_pg_fields(plan.schema().as_arrow(), format.unwrap_or(&Format::UnifiedText), None)
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// `SHOW server_version` and the other settings the engine knows, with the
/// values announced at start-up (datafusion-postgres' own hook would name
/// DataFusion's version instead).
struct ShowSettings;

impl ShowSettings {
    fn answer(statement: &Statement) -> Option<(String, String)> {
        let Statement::ShowVariable { variable } = statement else { return None };
        let name = variable.iter().map(|part| part.value.as_str()).collect::<Vec<_>>().join(" ");
        pg::settings()
            .into_iter()
            .find(|(key, _, _)| key.eq_ignore_ascii_case(&name))
            .map(|(key, value, _)| (key.to_owned(), value))
    }

    fn response(name: &str, value: &str) -> PgWireResult<Response> {
        let field = FieldInfo::new(name.to_owned(), None, None, Type::TEXT, FieldFormat::Text);
        let fields = Arc::new(vec![field]);
        let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
        encoder.encode_field(&Some(value))?;
        let row = encoder.take_row();
        Ok(Response::Query(QueryResponse::new(fields, stream::iter(vec![Ok(row)]))))
    }
}

#[async_trait]
impl QueryHook for ShowSettings {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement).map(|(name, value)| Self::response(&name, &value))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let (name, value) = Self::answer(statement)?;
        let plan = datafusion::logical_expr::LogicalPlanBuilder::empty(true)
            .project(vec![datafusion::prelude::lit(value).alias(name)])
            .and_then(|b| b.build());
        Some(plan.map_err(|e| query_error(QueryError::from_datafusion(e, true))))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement).map(|(name, value)| Self::response(&name, &value))
    }
}
