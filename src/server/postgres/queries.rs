//! Simple and extended query protocol over the engine.
//!
//! SQL is parsed by the engine's Postgres parser (datafusion-postgres'
//! compatibility parser and the engine's own rewrites), passed through
//! datafusion-postgres' hooks (SET/SHOW, transactions) and otherwise planned
//! and run by the engine, in the connection's database, with the engine's
//! sandbox and limits. A simple query with several statements runs them one
//! at a time, each result sent before the next statement starts, and stops at
//! the first error, as PostgreSQL does.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::UInt64Array;
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::copy::{send_copy_in_response, send_copy_out_response, CopyHandler};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    send_execution_response, send_query_response, send_ready_for_query, ExtendedQueryHandler, SimpleQueryHandler,
};
use pgwire::api::results::{CopyResponse, DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, PgWireConnectionState, Type, METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyOutResponse};
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::messages::simplequery::Query;
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use super::cancel::QuerySignal;
use super::copy::{CopyIn, CopySlot, CopyStatement};
use super::{query_error, results};
use crate::access::Access;
use crate::catalog::DEFAULT_DATABASE;
use crate::query::postgres_sql::{column_names, PostgresParser};
use crate::query::{params, postgres as pg, QueryEngine, QueryError, QueryOutput};

/// A prepared statement: its SQL and, unless it was empty, the parsed statement
/// and its plan (the type datafusion-postgres' hooks expect in the portal store).
pub(crate) type Prepared = (String, Option<(Statement, LogicalPlan)>);

/// The query handlers shared by every connection.
pub(crate) struct Queries {
    engine: Arc<QueryEngine>,
    parser: Arc<Parser>,
    /// The longest COPY line (or binary row) a load takes.
    max_copy_line_bytes: usize,
}

/// What running one statement of a simple query gives.
enum Outcome {
    /// A response pgwire knows how to send.
    Response(Response),
    /// The rows of a COPY TO.
    CopyOut(super::copy::CopyOut),
}

impl Queries {
    pub(crate) fn new(engine: Arc<QueryEngine>, max_copy_line_bytes: usize) -> Self {
        let hooks: Vec<Arc<dyn QueryHook>> =
            vec![Arc::new(ShowSettings), Arc::new(SetShowHook), Arc::new(TransactionStatementHook)];
        let parser = Arc::new(Parser { engine: Arc::clone(&engine), sql: PostgresParser::new(), hooks });
        Queries { engine, parser, max_copy_line_bytes }
    }
}

fn database_of<C: ClientInfo + ?Sized>(client: &C) -> String {
    client.metadata().get(METADATA_DATABASE).cloned().unwrap_or_else(|| DEFAULT_DATABASE.to_owned())
}

/// What the connection may do, as its start-up settled it. A connection
/// without one never finished authenticating: it is refused, not let in.
fn access_of<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Access> {
    client
        .session_extensions()
        .get::<Access>()
        .map(|access| (*access).clone())
        .ok_or_else(|| query_error(QueryError::Internal("the connection did not authenticate; this is a bug".into())))
}

/// Parses SQL for a client: its user stands for `"$user"` in the search path.
fn parse_for<C: ClientInfo + ?Sized>(parser: &PostgresParser, client: &C, sql: &str) -> Result<Vec<Statement>, String> {
    let user = client.metadata().get(METADATA_USER).map_or("", String::as_str);
    let search_path = pg::setting("search_path").unwrap_or_default();
    parser.parse(sql, user, &search_path).map_err(|e| e.to_string())
}

/// A context over the connection's database, for datafusion-postgres' hooks
/// (`SHOW CATALOGS` lists its catalogs): one limited to a token's database
/// sees no other.
fn hook_context(engine: &QueryEngine, database: &str, access: &Access) -> SessionContext {
    SessionContext::new_with_state(engine.session_for(database, access))
}

fn format_options(client: &impl ClientInfo) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

/// Encodes a result as rows, batch by batch as the engine produces them,
/// with its columns named `names` where given.
fn encode(
    output: QueryOutput,
    names: &[Option<String>],
    format: &Format,
    client: &impl ClientInfo,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(results::fields(&output.schema, names, format, format_options(client))?);
    let rows = results::rows(output.stream, Arc::clone(&fields));
    Ok(QueryResponse::new(fields, rows))
}

impl Queries {
    /// Runs a plan: rows for a query, the `INSERT 0 n` or `DELETE n` tag for
    /// an insert or a delete.
    async fn run(
        &self,
        database: &str,
        plan: LogicalPlan,
        names: &[Option<String>],
        format: &Format,
        client: &impl ClientInfo,
    ) -> PgWireResult<Response> {
        let insert = matches!(plan, LogicalPlan::Dml(_));
        let delete = matches!(&plan, LogicalPlan::Dml(dml) if dml.op == datafusion::logical_expr::WriteOp::Delete);
        let catalog_tag = crate::query::command_tag(&plan);
        let output = self.engine.execute(database, plan).await.map_err(query_error)?;
        // A CancelRequest for this connection ends the result with 57014.
        let output = match client.session_extensions().get::<Arc<QuerySignal>>() {
            Some(signal) => output.cancellable(signal.next_cancel()),
            None => output,
        };
        if !insert && catalog_tag.is_none() {
            return Ok(Response::Query(encode(output, names, format, client)?));
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
            None if delete => Tag::new("DELETE").with_rows(rows),
            None => Tag::new("INSERT").with_oid(0).with_rows(rows),
        }))
    }

    /// Plans and runs one parsed statement through the engine, its columns
    /// named as PostgreSQL names them.
    async fn run_statement(
        &self,
        database: &str,
        statement: Statement,
        format: &Format,
        client: &impl ClientInfo,
    ) -> PgWireResult<Response> {
        let access = access_of(client)?;
        let planned =
            self.engine.plan_statement(database, DfStatement::Statement(Box::new(statement.clone())), &access);
        let plan = planned.await.map_err(query_error)?;
        let names = column_names(&statement, plan.schema().fields().len());
        self.run(database, plan, &names, format, client).await
    }

    /// Starts `COPY ... FROM STDIN`: the load waits in the connection for the
    /// client's CopyData.
    fn start_copy(
        &self,
        copy: super::copy::CopyFrom,
        database: &str,
        client: &impl ClientInfo,
    ) -> PgWireResult<Response> {
        let load = copy.start(&self.engine, database, self.max_copy_line_bytes, &access_of(client)?)?;
        let (format, columns) = (load.format_code(), load.column_count());
        let slot = client.session_extensions().get_or_insert_with(CopySlot::default);
        *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(load);
        Ok(Response::CopyIn(CopyResponse::new(format, columns, stream::empty())))
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

    /// One statement of a simple query: COPY, a hook's answer (SET, SHOW,
    /// transactions), or the engine's result.
    async fn simple_statement<C>(
        &self,
        client: &mut C,
        database: &str,
        statement: Statement,
        last: bool,
    ) -> PgWireResult<Outcome>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match CopyStatement::from_statement(&statement)? {
            Some(CopyStatement::From(copy)) => {
                if !last {
                    return Err(syntax_error("COPY FROM STDIN must be the last statement of a query"));
                }
                return self.start_copy(copy, database, client).map(Outcome::Response);
            }
            Some(CopyStatement::To(copy)) => {
                let options = FormatOptions::from_client_metadata(client.metadata());
                let signal = client.session_extensions().get::<Arc<QuerySignal>>().map(|signal| Arc::clone(&*signal));
                let access = access_of(client)?;
                return copy.run(&self.engine, database, options, signal, &access).await.map(Outcome::CopyOut);
            }
            None => {}
        }
        let context = hook_context(&self.engine, database, &access_of(client)?);
        for hook in &self.parser.hooks {
            if let Some(response) = hook.handle_simple_query(&statement, &context, client).await {
                return response.map(Outcome::Response);
            }
        }
        self.run_statement(database, statement, &Format::UnifiedText, client).await.map(Outcome::Response)
    }

    /// Runs a simple query's statements in order, sending each result before
    /// the next statement runs; `status` follows the transaction statements.
    /// Returns whether a COPY FROM now waits for the client's data.
    async fn simple_query<C>(
        &self,
        client: &mut C,
        query: &str,
        status: &mut pgwire::messages::response::TransactionStatus,
    ) -> PgWireResult<bool>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let database = database_of(client);
        let statements = match parse_for(&self.parser.sql, client, query) {
            Ok(statements) => statements,
            // What Postgres' grammar rejects may be DataFusion's own syntax: the
            // engine runs it or says why not (CREATE EXTERNAL TABLE is refused).
            Err(_) => {
                let plan = self.engine.plan(&database, query, &access_of(client)?).await.map_err(query_error)?;
                let response = self.run(&database, plan, &[], &Format::UnifiedText, client).await?;
                send(client, response, status).await?;
                return Ok(false);
            }
        };
        if statements.is_empty() {
            client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
            return Ok(false);
        }
        // A cancel while a statement is planned or started: its result
        // stream has its own (QuerySignal), for the rows.
        let handle = client.session_extensions().get::<Arc<ConnectionHandle>>();
        let mut cancelled = match handle {
            Some(handle) => Some(handle.start_query().await),
            None => None,
        };
        let count = statements.len();
        for (index, statement) in statements.into_iter().enumerate() {
            let outcome = {
                let run = self.simple_statement(client, &database, statement, index + 1 == count);
                match cancelled.as_mut() {
                    Some(cancel) => tokio::select! {
                        outcome = run => outcome,
                        _ = cancel => Err(PgWireError::QueryCanceled),
                    },
                    None => run.await,
                }
            }?;
            match outcome {
                Outcome::CopyOut(out) => {
                    let rows = send_copy_out(client, out).await?;
                    send_execution_response(client, Tag::new("COPY").with_rows(rows)).await?;
                }
                Outcome::Response(Response::CopyIn(copy)) => {
                    send_copy_in_response(client, copy).await?;
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    return Ok(true);
                }
                Outcome::Response(response) => {
                    if !send(client, response, status).await? {
                        break;
                    }
                }
            }
        }
        Ok(false)
    }
}

/// Sends one response of a simple query; `false` after an error response,
/// which ends the query.
async fn send<C>(
    client: &mut C,
    response: Response,
    status: &mut pgwire::messages::response::TransactionStatus,
) -> PgWireResult<bool>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match response {
        Response::EmptyQuery => {
            client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?
        }
        Response::Query(results) => send_query_response(client, results, true).await?,
        Response::Execution(tag) => send_execution_response(client, tag).await?,
        Response::TransactionStart(tag) => {
            send_execution_response(client, tag).await?;
            *status = status.to_in_transaction_state();
        }
        Response::TransactionEnd(tag) => {
            send_execution_response(client, tag).await?;
            *status = status.to_idle_state();
        }
        Response::Error(error) => {
            client.feed(PgWireBackendMessage::ErrorResponse((*error).into())).await?;
            *status = status.to_error_state();
            return Ok(false);
        }
        Response::CopyOut(copy) => send_copy_out_response(client, copy).await?,
        Response::CopyIn(_) | Response::CopyBoth(_) => {
            return Err(syntax_error("COPY FROM STDIN must be the last statement of a query"))
        }
    }
    Ok(true)
}

/// Sends a COPY TO's data: CopyOutResponse, a CopyData per row, CopyDone;
/// returns the rows sent (the header line is not one), for the `COPY n` that
/// follows. An error in the rows ends the copy with the error, which the
/// connection sends as an ErrorResponse, as PostgreSQL does.
async fn send_copy_out<C>(client: &mut C, out: super::copy::CopyOut) -> PgWireResult<usize>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let formats = vec![0i16; out.columns];
    client.send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(0, out.columns as i16, formats))).await?;
    let mut data = out.data;
    let mut messages = 0usize;
    while let Some(message) = data.next().await {
        client.feed(PgWireBackendMessage::CopyData(message?)).await?;
        messages += 1;
    }
    client.feed(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    Ok(messages - usize::from(out.has_header && messages > 0))
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
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let mut status = client.transaction_status();
        client.set_state(PgWireConnectionState::QueryInProgress);
        let copying = self.simple_query(client, &query.query, &mut status).await;
        // On an error the connection's answer (ErrorResponse, ReadyForQuery)
        // reports the transaction as the statements before it left it.
        client.set_transaction_status(status);
        if copying? {
            return Ok(());
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // `on_query` above runs simple queries statement by statement; pgwire
        // calls this only from the `on_query` it replaces.
        Err(PgWireError::ApiError("simple queries run through on_query".into()))
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
        match CopyStatement::from_statement(statement)? {
            Some(CopyStatement::From(copy)) => return self.start_copy(copy, &database, client),
            Some(CopyStatement::To(copy)) => {
                // Sent here rather than by pgwire, which would count the
                // header as a row and answer an error with a CopyFail; pgwire
                // then sends the `COPY n`.
                let options = FormatOptions::from_client_metadata(client.metadata());
                let signal = client.session_extensions().get::<Arc<QuerySignal>>().map(|signal| Arc::clone(&*signal));
                let out = copy.run(&self.engine, &database, options, signal, &access_of(client)?).await?;
                let rows = send_copy_out(client, out).await?;
                return Ok(Response::Execution(Tag::new("COPY").with_rows(rows)));
            }
            None => {}
        }
        let types = parameter_types(plan)?;
        let wire = wire_types(&types)?;
        let inferred: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
        let server: Vec<Option<&Type>> = wire.iter().map(Some).collect();
        let params: ParamValues = deserialize_parameters_with_server_types(portal, &inferred, &server)?;
        let context = hook_context(&self.engine, &database, &access_of(client)?);
        for hook in &self.parser.hooks {
            if let Some(response) = hook.handle_extended_query(statement, plan, &params, &context, client).await {
                return response;
            }
        }
        let plan = match params {
            ParamValues::List(values) => {
                params::bind(plan.clone(), values.into_iter().map(|v| v.value).collect()).map_err(query_error)?
            }
            ParamValues::Map(values) => {
                params::bind_named(plan.clone(), values.into_iter().map(|(name, v)| (name, v.value)).collect())
                    .map_err(query_error)?
            }
        };
        let names = column_names(statement, plan.schema().fields().len());
        self.run(&database, plan, &names, &portal.result_column_format, client).await
    }
}

/// Plans statements for the extended protocol.
pub(crate) struct Parser {
    engine: Arc<QueryEngine>,
    sql: PostgresParser,
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
        let mut statements = match parse_for(&self.sql, client, sql) {
            Ok(statements) => statements,
            Err(e) => {
                // As in the simple protocol, the engine's reason (CREATE EXTERNAL TABLE
                // is refused) is clearer than Postgres' grammar's; DataFusion-only
                // syntax is not prepared.
                self.engine.plan(&database, sql, &access_of(client)?).await.map_err(query_error)?;
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
        if CopyStatement::from_statement(&statement)?.is_some() {
            // The COPY starts at Execute; it has no parameters and its
            // columns are announced by its CopyInResponse or CopyOutResponse.
            let plan = LogicalPlanBuilder::empty(false)
                .build()
                .map_err(|e| query_error(QueryError::from_datafusion(e, true)))?;
            return Ok(Some((sql.to_owned(), Some((statement, plan)))));
        }
        let context = hook_context(&self.engine, &database, &access_of(client)?);
        for hook in &self.hooks {
            if let Some(plan) = hook.handle_extended_parse_query(&statement, &context, client).await {
                return Ok(Some((sql.to_owned(), Some((statement, plan?)))));
            }
        }
        let access = access_of(client)?;
        let planned =
            self.engine.plan_statement(&database, DfStatement::Statement(Box::new(statement.clone())), &access);
        let plan = planned.await.map_err(query_error)?;
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
            (_, Some((statement, plan)))
                if !matches!(plan, LogicalPlan::Ddl(_)) && !QueryEngine::changes_data(plan) =>
            {
                let schema = plan.schema().as_arrow();
                let names = column_names(statement, schema.fields().len());
                let options = Arc::new(FormatOptions::default());
                results::fields(schema, &names, format.unwrap_or(&Format::UnifiedText), options)
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
