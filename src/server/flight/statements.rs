//! FlightSQL commands as calls on the engine and the ingester: statements,
//! prepared statements, updates, bulk ingest, the handshake, and InfluxDB 3's
//! JSON tickets. The metadata commands are in [`super::metadata`].

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, CommandGetCatalogs,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::sql::{ActionCancelQueryRequest, ActionCancelQueryResult};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightData, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, SchemaResult, Ticket,
};
use bytes::Bytes;
use datafusion::logical_expr::LogicalPlan;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::sync::Notify;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::metadata::{self, MetadataCommand};
use super::running::{Registration, RunningQueries};
use super::status::{arrow_status, client_data_status, ipc_schema, query_status, StatementHandle};
use super::Call;
use crate::access::Access;
use crate::ingest::Ingester;
use crate::query::{params, QueryEngine, QueryError, QueryOutput};
use crate::server::auth::{Authenticator, Credentials, Refusal, Users};

pub(super) type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// The FlightSQL service: each command planned and run by the engine, bulk
/// ingest written by the ingester.
pub(crate) struct SqlService {
    pub(super) engine: Arc<QueryEngine>,
    ingester: Option<Arc<Ingester>>,
    users: Arc<Authenticator>,
    sql_info: SqlInfoData,
    type_info: XdbcTypeInfoData,
    running: Arc<RunningQueries>,
}

impl SqlService {
    pub(crate) fn new(
        engine: Arc<QueryEngine>,
        ingester: Option<Arc<Ingester>>,
        users: Arc<Authenticator>,
    ) -> Result<SqlService, String> {
        let sql_info = metadata::sql_info(ingester.is_none()).map_err(|e| format!("FlightSQL GetSqlInfo: {e}"))?;
        let type_info = metadata::xdbc_type_info().map_err(|e| format!("FlightSQL GetXdbcTypeInfo: {e}"))?;
        Ok(SqlService { engine, ingester, users, sql_info, type_info, running: Arc::default() })
    }

    /// Plans a handle's statement with row `row` of `parameters` filled in.
    async fn plan(
        &self,
        handle: &StatementHandle,
        parameters: Option<&RecordBatch>,
        row: usize,
        access: &Access,
    ) -> Result<LogicalPlan, Status> {
        let plan = self.engine.plan(&handle.database, &handle.sql, access).await.map_err(query_status)?;
        bind_row(plan, parameters, row)
    }

    /// Runs a query and streams its result, batch by batch, until it ends or
    /// a client cancels `ticket`.
    async fn query(
        &self,
        handle: &StatementHandle,
        ticket: Bytes,
        access: &Access,
    ) -> Result<Response<DoGetStream>, Status> {
        let parameters = handle.parameters()?;
        if let Some(rows) = parameters.as_ref().map(RecordBatch::num_rows).filter(|rows| *rows > 1) {
            return Err(Status::invalid_argument(format!(
                "{rows} parameter rows are bound: a query takes one (an update may take many)"
            )));
        }
        // Registered before planning: a cancel that comes while the query
        // plans or starts still stops it.
        let (registration, signal) = self.running.register(ticket);
        let plan = self.plan(handle, parameters.as_ref(), 0, access).await?;
        let output = self.engine.execute(&handle.database, plan).await.map_err(query_status)?;
        Ok(Response::new(Self::cancellable_stream(output, registration, signal)))
    }

    /// The result as Flight data, ending with `Cancelled` when a client
    /// cancels the query's ticket (CancelFlightInfo).
    fn cancellable_stream(output: QueryOutput, registration: Registration, signal: Arc<Notify>) -> DoGetStream {
        let output = output.cancellable(async move { signal.notified().await });
        let stream = result_stream(output);
        // The registration ends with the stream.
        Box::pin(stream.map(move |item| {
            let _running = &registration;
            item
        }))
    }

    /// Cancels the queries running from a FlightInfo's tickets.
    fn cancel(&self, info: &FlightInfo) -> CancelStatus {
        let stopped: usize =
            info.endpoint.iter().filter_map(|e| e.ticket.as_ref()).map(|t| self.running.cancel(&t.ticket)).sum();
        if stopped > 0 {
            CancelStatus::Cancelled
        } else {
            // Finished, or never started: nothing to stop.
            CancelStatus::NotCancellable
        }
    }

    /// Runs a statement for its effect (INSERT, DDL) once per row of
    /// `parameters` (once without), and returns the rows it changed.
    async fn update(
        &self,
        handle: &StatementHandle,
        parameters: Option<&RecordBatch>,
        access: &Access,
    ) -> Result<i64, Status> {
        // Clients with nothing to bind send a batch with no columns (arrow-go,
        // Java): run once. Columns but no rows (executemany of nothing): none.
        let executions = match parameters {
            Some(parameters) if parameters.num_columns() > 0 => parameters.num_rows(),
            _ => 1,
        };
        // Planned once; each row binds its values into a copy.
        let planned = self.engine.plan(&handle.database, &handle.sql, access).await.map_err(query_status)?;
        let mut changed = 0i64;
        for row in 0..executions {
            let plan = bind_row(planned.clone(), parameters, row)?;
            let output = self.engine.execute(&handle.database, plan).await.map_err(query_status)?;
            changed = changed.saturating_add(affected_rows(output).await?);
        }
        Ok(changed)
    }

    /// A FlightInfo whose one endpoint's ticket is `ticket`, describing
    /// `schema` as it goes on the wire.
    fn flight_info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(arrow_status)?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor)
            .with_ordered(true);
        Ok(info)
    }

    /// A statement's result schema: planned with its bound parameters, if
    /// any, as DoGet will plan it (`SELECT $1` has the type of its value).
    async fn result_schema(&self, handle: &StatementHandle, access: &Access) -> Result<SchemaRef, Status> {
        let plan = match handle.parameters()? {
            Some(parameters) if parameters.num_rows() > 0 => self.plan(handle, Some(&parameters), 0, access).await?,
            _ => self.engine.plan(&handle.database, &handle.sql, access).await.map_err(query_status)?,
        };
        Ok(QueryEngine::result_schema(&plan))
    }

    /// GetSchema for a statement or a prepared statement.
    pub(crate) async fn schema_of(&self, request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let call = call_of(&request)?;
        let message = Any::decode(&*request.get_ref().cmd)
            .map_err(|e| Status::invalid_argument(format!("the descriptor is not a FlightSQL command: {e}")))?;
        let handle = if let Some(query) = message.unpack::<CommandStatementQuery>().map_err(client_data_status)? {
            StatementHandle::new(&call.headers_database()?, &query.query)
        } else if let Some(prepared) = message.unpack::<CommandPreparedStatementQuery>().map_err(client_data_status)? {
            StatementHandle::decode(&prepared.prepared_statement_handle)?
        } else {
            return Err(Status::unimplemented(format!(
                "GetSchema answers statements and prepared statements, not {}",
                message.type_url
            )));
        };
        let schema = result_wire_schema(&*self.result_schema(&handle, &call.access).await?);
        Ok(Response::new(SchemaResult { schema: ipc_schema(&schema)? }))
    }

    pub(super) fn ingester(&self) -> Result<&Arc<Ingester>, Status> {
        self.ingester
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this server does not take writes (GIGAPI_MODE); write to a writer"))
    }
}

/// The call's admission record (set by [`super::FlightFront`]).
pub(super) fn call_of<T>(request: &Request<T>) -> Result<Call, Status> {
    request.extensions().get::<Call>().cloned().ok_or_else(|| Status::internal("the call was not admitted"))
}

/// The schema clients receive: dictionaries (tags) become their values, as
/// the Flight encoder sends them, so FlightInfo and the data agree.
pub(crate) fn wire_schema(schema: &Schema) -> Schema {
    let encoder = FlightDataEncoderBuilder::new()
        .with_schema(Arc::new(schema.clone()))
        .build(futures::stream::empty::<Result<RecordBatch, FlightError>>());
    encoder.known_schema().map_or_else(|| schema.clone(), |s| s.as_ref().clone())
}

/// The schema a statement's result is announced with (FlightInfo, GetSchema,
/// a prepared statement's dataset schema) and sent with (DoGet): the wire
/// schema with every column nullable. The announcement comes from the plan as
/// SQL made it, before the optimizer and the physical plan run, and they may
/// make a column nullable (DISTINCT ON's `first_value`, gap filling's counts);
/// clients refuse a stream whose schema is not the one announced, so both
/// promise only what holds for any plan.
pub(crate) fn result_wire_schema(schema: &Schema) -> Schema {
    let wire = wire_schema(schema);
    let fields: Vec<Field> = wire.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    Schema::new_with_metadata(fields, wire.metadata().clone())
}

/// A result as Flight data: the schema first (so an empty result still has
/// one), then each batch as the engine produces it.
pub(super) fn result_stream(output: QueryOutput) -> DoGetStream {
    let schema = Arc::new(result_wire_schema(&output.schema));
    let batches =
        output.stream.map_err(|e| FlightError::Tonic(Box::new(query_status(QueryError::from_datafusion(e, false)))));
    let encoded = FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(Status::from);
    Box::pin(encoded)
}

/// How many rows a statement run for its effect changed: INSERT and DDL
/// answer one `count`; anything else counts its rows as they stream by.
async fn affected_rows(output: QueryOutput) -> Result<i64, Status> {
    let counted = output.schema.fields().len() == 1
        && output.schema.field(0).name() == "count"
        && output.schema.field(0).data_type() == &DataType::UInt64;
    let mut stream = output.stream;
    let mut total = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| query_status(QueryError::from_datafusion(e, false)))?;
        let counts = batch.columns().first().and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
        total += match counts {
            Some(counts) if counted => counts.iter().flatten().sum(),
            _ => batch.num_rows() as u64,
        };
    }
    Ok(i64::try_from(total).unwrap_or(i64::MAX))
}

/// The plan's `$1, $2, ...` parameter types, in order.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, Status> {
    QueryEngine::parameter_types(plan).map_err(query_status)
}

/// The parameter schema of a prepared statement: `$1, $2, ...` with the types
/// the engine infers; text where it cannot tell (the value is then used with
/// the type it is sent in).
fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, Status> {
    let fields: Vec<Field> = parameter_types(plan)?
        .into_iter()
        .enumerate()
        .map(|(i, t)| Field::new(format!("${}", i + 1), t.unwrap_or(DataType::Utf8), true))
        .collect();
    Ok(Schema::new(fields))
}

/// The plan with row `row` of `parameters` bound, column `i` for `$i+1`
/// (see [`params::bind`]); a plan with parameters and nothing bound is the
/// client's error.
fn bind_row(plan: LogicalPlan, parameters: Option<&RecordBatch>, row: usize) -> Result<LogicalPlan, Status> {
    let types = parameter_types(&plan)?;
    match parameters {
        Some(parameters) if !types.is_empty() || parameters.num_columns() > 0 => {
            let values = params::row_values(parameters, row).map_err(query_status)?;
            params::bind(plan, values).map_err(query_status)
        }
        _ if !types.is_empty() => Err(Status::invalid_argument(format!(
            "the statement has {} parameter(s): bind them (DoPut with the prepared statement's handle) before \
             executing it",
            types.len()
        ))),
        _ => Ok(plan),
    }
}

/// Reads a DoPut stream's batches (after its descriptor message), refusing
/// more than `max_bytes` of encoded data in all.
pub(super) fn put_batches(
    request: Request<PeekableFlightDataStream>,
    max_bytes: usize,
) -> impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static {
    let mut seen = 0usize;
    // A message with only the descriptor (a prepared update without new
    // parameters) carries no IPC data.
    let data = request
        .into_inner()
        .try_filter(|message| futures::future::ready(!message.data_header.is_empty()))
        .and_then(move |message| {
            seen = seen.saturating_add(message.data_header.len() + message.data_body.len());
            futures::future::ready(if seen > max_bytes {
                Err(Status::resource_exhausted(format!(
                    "more than {} MiB of data in one call: write many rows with bulk ingest instead",
                    max_bytes >> 20
                )))
            } else {
                // Before arrow allocates what its compressed buffers claim.
                super::ipc_guard::check_message(&message.data_header, &message.data_body, max_bytes)
                    .map(|()| message)
                    .map_err(|e| Status::invalid_argument(format!("the data sent cannot be read: {e}")))
            })
        })
        .map_err(FlightError::from);
    let batches = FlightRecordBatchStream::new_from_flight_data(data).map_err(|e| match e {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!("the data is not Arrow IPC: {other}")),
    });
    // arrow's IPC decoding panics on some damaged messages instead of failing
    // (tests/it/fuzz.rs found several, in the same code reading a statement
    // handle's parameters). These bytes come from the client, so a panic
    // while decoding them ends the call with an error, as bad data should.
    std::panic::AssertUnwindSafe(batches).catch_unwind().map(|item| {
        item.unwrap_or_else(|_| Err(Status::invalid_argument("the data sent cannot be read: damaged Arrow IPC")))
    })
}

/// The most parameter data one DoPut may bind.
const MAX_PARAMETER_BYTES: usize = 16 << 20;

/// Reads every parameter batch of a DoPut into one batch, at most
/// [`MAX_PARAMETER_BYTES`] of encoded data.
async fn read_parameters(request: Request<PeekableFlightDataStream>) -> Result<Option<RecordBatch>, Status> {
    let batches: Vec<RecordBatch> = put_batches(request, MAX_PARAMETER_BYTES).try_collect().await?;
    let Some(first) = batches.first() else { return Ok(None) };
    let batch = arrow::compute::concat_batches(&first.schema(), &batches).map_err(client_data_status)?;
    Ok(Some(batch))
}

/// Basic credentials from the handshake: the `authorization` header, or the
/// `BasicAuth` message older clients put in the first request's payload.
async fn handshake_credentials(request: Request<Streaming<HandshakeRequest>>) -> Option<Credentials> {
    if let Some(credentials) =
        request.metadata().get("authorization").and_then(|v| v.to_str().ok()).and_then(Users::parse_authorization)
    {
        return Some(credentials);
    }
    let first = request.into_inner().next().await?.ok()?;
    let basic = arrow_flight::BasicAuth::decode(first.payload).ok()?;
    Some(Credentials::Password { user: basic.username, password: basic.password })
}

#[tonic::async_trait]
impl FlightSqlService for SqlService {
    type FlightService = SqlService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let client = request.remote_addr().map(|address| address.ip());
        let credentials = handshake_credentials(request).await;
        // A token from an earlier handshake logs in again.
        let access = match self.users.authenticate(credentials.as_ref(), client, "flightsql").await {
            Ok(access) => access,
            Err(Refusal::Missing) => {
                return Err(Status::unauthenticated(
                    "the handshake needs credentials: `authorization: Basic base64(user:password)`, or a token",
                ))
            }
            Err(refusal) => return Err(super::refusal_status(refusal)),
        };
        let token = self.users.sessions().issue(access);
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("the token is not a header value"))?;
        let answer = HandshakeResponse { protocol_version: 0, payload: token.into_bytes().into() };
        let mut response: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(futures::stream::iter(vec![Ok(answer)])));
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let call = call_of(&request)?;
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented("transactions are not supported"));
        }
        let handle = StatementHandle::new(&call.headers_database()?, &query.query);
        let schema = result_wire_schema(&*self.result_schema(&handle, &call.access).await?);
        let ticket = TicketStatementQuery { statement_handle: handle.for_one_flight().encode()? };
        let info = Self::flight_info(&schema, ticket.as_any().encode_to_vec(), request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let call = call_of(&request)?;
        let handle = StatementHandle::decode(&command.prepared_statement_handle)?;
        let schema = result_wire_schema(&*self.result_schema(&handle, &call.access).await?);
        let ticket = CommandPreparedStatementQuery { prepared_statement_handle: handle.for_one_flight().encode()? };
        let info = Self::flight_info(&schema, ticket.as_any().encode_to_vec(), request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let call = call_of(&request)?;
        let handle = StatementHandle::decode(&ticket.statement_handle)?;
        self.query(&handle, request.into_inner().ticket, &call.access).await
    }

    async fn do_get_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let call = call_of(&request)?;
        let handle = StatementHandle::decode(&command.prepared_statement_handle)?;
        self.query(&handle, request.into_inner().ticket, &call.access).await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let call = call_of(&request)?;
        if command.transaction_id.is_some() {
            return Err(Status::unimplemented("transactions are not supported"));
        }
        self.update(&StatementHandle::new(&call.headers_database()?, &command.query), None, &call.access).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = StatementHandle::decode(&command.prepared_statement_handle)?;
        let handle = match read_parameters(request).await? {
            Some(parameters) => handle.with_parameters(&parameters)?,
            None => handle,
        };
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.encode()?) })
    }

    async fn do_put_prepared_statement_update(
        &self,
        command: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let call = call_of(&request)?;
        let handle = StatementHandle::decode(&command.prepared_statement_handle)?;
        // Parameters come with the update itself, or were bound before.
        let parameters = match read_parameters(request).await? {
            Some(parameters) => Some(parameters),
            None => handle.parameters()?,
        };
        self.update(&handle, parameters.as_ref(), &call.access).await
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.ingest(command, request).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let call = call_of(&request)?;
        if query.transaction_id.is_some() {
            return Err(Status::unimplemented("transactions are not supported"));
        }
        let handle = StatementHandle::new(&call.headers_database()?, &query.query);
        let plan = self.engine.plan(&handle.database, &handle.sql, &call.access).await.map_err(query_status)?;
        let dataset = result_wire_schema(&QueryEngine::result_schema(&plan));
        let parameters = parameter_schema(&plan)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode()?,
            dataset_schema: ipc_schema(&dataset)?,
            parameter_schema: ipc_schema(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles carry their statement; there is nothing to free.
        Ok(())
    }

    #[allow(deprecated)]
    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("CancelQuery: the FlightInfo does not decode: {e}")))?;
        // CancelResult (not exported by arrow-flight): 1 cancelled, 3 not cancellable.
        let result = match self.cancel(&info) {
            CancelStatus::Cancelled => 1,
            _ => 3,
        };
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(Status::unimplemented(
            "transactions are not supported: each statement and each ingest batch commits on its own",
        ))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        match request.get_ref().r#type.as_str() {
            // ADBC ends a connection with CloseSession; sessions hold nothing here.
            // The answer is CloseSessionResult { status: CLOSED } (field 1 = 1).
            "CloseSession" => {
                let closed = arrow_flight::Result { body: Bytes::from_static(&[0x08, 0x01]) };
                Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(closed)]))))
            }
            "CancelFlightInfo" => {
                let cancel = CancelFlightInfoRequest::decode(request.into_inner().body)
                    .map_err(|e| Status::invalid_argument(format!("CancelFlightInfo: {e}")))?;
                let info =
                    cancel.info.ok_or_else(|| Status::invalid_argument("CancelFlightInfo needs the FlightInfo"))?;
                let result = CancelFlightInfoResult::new(self.cancel(&info));
                let body = arrow_flight::Result { body: result.encode_to_vec().into() };
                Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(body)]))))
            }
            other => Err(Status::unimplemented(format!("the action '{other}' is not supported"))),
        }
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::Catalogs(query), request)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::Schemas(query), request)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::Tables(query), request)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::TableTypes(query), request)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::SqlInfo(query), request)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::XdbcTypeInfo(query), request)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::PrimaryKeys(query), request)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::ExportedKeys(query), request)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::ImportedKeys(query), request)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(MetadataCommand::CrossReference(query), request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::Catalogs(query), &request).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::Schemas(query), &request).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::Tables(query), &request).await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::TableTypes(query), &request).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::SqlInfo(query), &request).await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::XdbcTypeInfo(query), &request).await
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::PrimaryKeys(query), &request).await
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::ExportedKeys(query), &request).await
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::ImportedKeys(query), &request).await
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_rows(MetadataCommand::CrossReference(query), &request).await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl SqlService {
    /// FlightInfo for a metadata command: its schema, and the command itself as
    /// the ticket (the rows are computed at DoGet).
    fn metadata_info(
        &self,
        command: MetadataCommand,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = wire_schema(&command.schema(&self.sql_info, &self.type_info));
        let info = Self::flight_info(&schema, command.ticket(), request.into_inner())?;
        Ok(Response::new(info))
    }

    /// The rows of a metadata command.
    async fn metadata_rows(
        &self,
        command: MetadataCommand,
        request: &Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let call = call_of(request)?;
        let batch = command.rows(&self.engine, &self.sql_info, &self.type_info, &call.access).await?;
        let schema = batch.schema();
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::iter(vec![Ok(batch)]))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }
}
