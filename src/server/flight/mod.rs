//! The FlightSQL front: Arrow Flight SQL over gRPC for ADBC, JDBC, Grafana's
//! FlightSQL and InfluxDB 3 datasources, plus the plain Flight `DoGet` with a
//! JSON ticket that InfluxDB 3's own clients send.
//!
//! [`FlightFront`] is the gRPC service: it checks credentials and picks the
//! database on every call, answers JSON tickets, and hands everything else to
//! [`SqlService`], the `FlightSqlService` that turns FlightSQL commands into
//! calls on the query engine and the ingester. Protocol code only: SQL is
//! planned and run by the engine, rows are written by the ingester.

mod ingest;
mod ipc_guard;
mod metadata;
mod running;
mod statements;
mod status;
mod tickets;

pub(crate) use status::StatementHandle;
pub(crate) use tickets::TicketQuery;

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse,
    PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::metadata::MetadataMap;
use tonic::transport::server::{Connected, Router, TcpIncoming};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Authenticator, Refusal, Users};
use super::database::DatabaseChoice;
use crate::access::Access;
use crate::ingest::Ingester;
use crate::query::QueryEngine;
pub(crate) use statements::SqlService;

/// The gRPC headers that name the database, in the order InfluxDB 3 and its
/// clients use them (`database` is preferred; the others are older names).
const DATABASE_HEADERS: &[&str] = &["database", "bucket", "bucket-name", "iox-namespace-name", "namespace"];

/// What every call carries once it is admitted: what it may do, and the
/// database its headers name, if any.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// What the caller's credentials allow.
    pub(crate) access: Access,
    /// The database from the headers.
    pub(crate) header_database: Option<String>,
}

impl Call {
    /// The database of the call: its headers', else `default`.
    pub(crate) fn headers_database(&self) -> Result<String, Status> {
        self.database("", None)
    }

    /// The database of the call, with `payload` (a JSON ticket's, an
    /// ingest's catalog) named at `place`: a different database in the
    /// headers and in the payload is a conflict, not a choice.
    pub(crate) fn database(&self, place: &str, payload: Option<&str>) -> Result<String, Status> {
        DatabaseChoice::for_access(&self.access)
            .named("header", self.header_database.as_deref())
            .named(place, payload)
            .only()
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

/// The gRPC service: credentials and database on every call, JSON tickets,
/// and FlightSQL through [`SqlService`].
#[derive(Clone)]
pub(crate) struct FlightFront {
    sql: Arc<SqlService>,
    users: Arc<Authenticator>,
}

impl FlightFront {
    /// The front over the engine and (in modes that write) the ingester.
    pub(crate) fn new(
        engine: Arc<QueryEngine>,
        ingester: Option<Arc<Ingester>>,
        users: Arc<Authenticator>,
    ) -> Result<FlightFront, String> {
        let sql = SqlService::new(engine, ingester, Arc::clone(&users))?;
        Ok(FlightFront { sql: Arc::new(sql), users })
    }

    /// Checks the caller's credentials and records what it may do and the
    /// database of the call.
    async fn admit<T>(&self, request: &mut Request<T>) -> Result<(), Status> {
        let access = authorize(&self.users, request).await?;
        let call = Call { access, header_database: database_header(request.metadata())? };
        request.extensions_mut().insert(call);
        Ok(())
    }
}

/// What the `authorization` header allows: a token from a handshake or
/// `hourglass token create`, or what the HTTP front accepts (Basic, or
/// `Bearer`/`Token` with the password).
async fn authorize<T>(users: &Authenticator, request: &Request<T>) -> Result<Access, Status> {
    let credentials = request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(Users::parse_authorization);
    let client = request.remote_addr().map(|address| address.ip());
    users.authenticate(credentials.as_ref(), client, "flightsql").await.map_err(refusal_status)
}

/// A refused login as gRPC tells it.
pub(super) fn refusal_status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::Missing => Status::unauthenticated(
            "authentication required: send `authorization: Bearer <token>` (a token from the handshake or from \
             `hourglass token create`, or the password), or Basic credentials",
        ),
        Refusal::Wrong => Status::unauthenticated(refusal.message()),
        Refusal::Blocked(_) => Status::resource_exhausted(refusal.message()),
    }
}

/// The database named by the call's headers; two different names are an error.
fn database_header(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    let mut choice = DatabaseChoice::new();
    for header in DATABASE_HEADERS {
        for value in metadata.get_all(*header) {
            let value =
                value.to_str().map_err(|_| Status::invalid_argument(format!("the '{header}' header is not text")))?;
            choice = choice.named(format!("{header} header"), Some(value));
        }
    }
    if !choice.is_named() {
        return Ok(None);
    }
    choice.only().map(Some).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// arrow-flight answers a command whose inner message does not decode (a
/// client's bytes: a ticket, a descriptor, an action body) with INTERNAL,
/// the Debug text of an Arrow `ParseError`. It is the client's mistake:
/// INVALID_ARGUMENT, so that clients do not retry it or report a server fault.
fn undecodable_is_invalid(status: Status) -> Status {
    if status.code() == tonic::Code::Internal && status.message().starts_with("ParseError(") {
        Status::invalid_argument(format!("the command cannot be decoded: {}", status.message()))
    } else {
        status
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightService for FlightFront {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;
    type DoExchangeStream = BoxStream<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        // The handshake is where credentials become a token: no token yet.
        self.sql.do_handshake(request).await
    }

    async fn list_flights(&self, mut request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.admit(&mut request).await?;
        Err(Status::unimplemented("ListFlights: this server keeps no named flights; send SQL with FlightSQL"))
    }

    async fn get_flight_info(&self, mut request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        self.admit(&mut request).await?;
        FlightService::get_flight_info(self.sql.as_ref(), request).await.map_err(undecodable_is_invalid)
    }

    async fn poll_flight_info(&self, mut request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        self.admit(&mut request).await?;
        Err(Status::unimplemented("PollFlightInfo: use GetFlightInfo; results are ready when DoGet starts"))
    }

    async fn get_schema(&self, mut request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        self.admit(&mut request).await?;
        self.sql.schema_of(request).await
    }

    async fn do_get(&self, mut request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        self.admit(&mut request).await?;
        // InfluxDB 3's clients send a JSON ticket, not a FlightSQL command.
        if request.get_ref().ticket.first() == Some(&b'{') {
            return self.sql.influx_ticket(request).await;
        }
        FlightService::do_get(self.sql.as_ref(), request).await.map_err(undecodable_is_invalid)
    }

    async fn do_put(&self, mut request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        self.admit(&mut request).await?;
        FlightService::do_put(self.sql.as_ref(), request).await.map_err(undecodable_is_invalid)
    }

    async fn do_action(&self, mut request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        self.admit(&mut request).await?;
        FlightService::do_action(self.sql.as_ref(), request).await.map_err(undecodable_is_invalid)
    }

    async fn list_actions(&self, mut request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        self.admit(&mut request).await?;
        // The actions this server answers, not every action FlightSQL defines.
        let actions = [
            ("CreatePreparedStatement", "Plans a statement; answers its handle, result schema and parameter schema."),
            ("ClosePreparedStatement", "Forgets a prepared statement (handles hold their statement: nothing to free)."),
            ("CloseSession", "Ends a session (sessions hold nothing)."),
            ("CancelFlightInfo", "Stops the queries running from the FlightInfo's tickets."),
        ]
        .map(|(name, description)| Ok(ActionType { r#type: name.to_owned(), description: description.to_owned() }));
        Ok(Response::new(Box::pin(futures::stream::iter(actions))))
    }

    async fn do_exchange(
        &self,
        mut request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.admit(&mut request).await?;
        Err(Status::unimplemented("DoExchange: use DoGet for queries and DoPut for writes"))
    }
}

/// Where and how the front listens.
#[derive(Debug, Clone)]
pub(crate) struct FlightOptions {
    /// The certificate and key files, for TLS.
    pub(crate) tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The largest gRPC message taken or sent: a batch of an ingest or a
    /// parameter binding (clients split larger writes).
    pub(crate) max_message_bytes: usize,
}

/// The gRPC server of the front, with TLS when configured: built before the
/// server starts, so that a certificate tonic cannot use stops the start-up.
pub(crate) fn router(front: FlightFront, options: &FlightOptions) -> Result<Router, String> {
    // Pings find connections whose client is gone, so they give back their
    // place among HOURGLASS_FLIGHTSQL_MAX_CONNECTIONS.
    let mut server = Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
    if let Some((cert, key)) = &options.tls {
        let read = |path: &std::path::Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| format!("the TLS certificate or key cannot be used for FlightSQL: {e}"))?;
    }
    // A reader that takes part in distributed queries serves its worker
    // (datafusion-distributed's own gRPC service) on the same port.
    #[cfg(feature = "distributed")]
    let worker = front.sql.engine.distributed_worker();
    let service = FlightServiceServer::new(front)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes);
    let router = server.add_service(service);
    #[cfg(feature = "distributed")]
    let router = match worker {
        Some(served) => router.add_service(tonic::service::interceptor::InterceptedService::new(
            served.worker.into_worker_server(),
            served.check,
        )),
        None => router,
    };
    Ok(router)
}

/// A connection the front admitted: the socket and its place among the
/// open connections, freed when the connection closes.
struct AdmittedConnection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for AdmittedConnection {
    type ConnectInfo = <TcpStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for AdmittedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AdmittedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves FlightSQL on `listener` until `shutdown` fires, then lets the calls
/// in flight finish. Sockets get `TCP_NODELAY` (without it every call waits
/// for the client's delayed ACK, about 40 ms), and connections past
/// `max_connections` are closed at once.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    max_connections: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true)).filter_map(move |accepted| {
        let slots = Arc::clone(&slots);
        async move {
            match accepted {
                Ok(stream) => match slots.try_acquire_owned() {
                    Ok(slot) => Some(Ok(AdmittedConnection { stream, _slot: slot })),
                    Err(_) => {
                        tracing::warn!(
                            max_connections,
                            "refused a FlightSQL connection: too many are open (HOURGLASS_FLIGHTSQL_MAX_CONNECTIONS)"
                        );
                        None
                    }
                },
                Err(error) => Some(Err(error)),
            }
        }
    });
    let stopped = async move {
        let _ = shutdown.changed().await;
    };
    router.serve_with_incoming_shutdown(incoming, stopped).await.map_err(|e| format!("FlightSQL server: {e}"))
}
