//! The Postgres front's listener and connections: accepting with
//! `TCP_NODELAY`, a bound on open connections, the message loop of each
//! connection, and a shutdown that lets queries in flight finish.
//!
//! The loop is pgwire's (`process_socket`) with three differences a client
//! can see: a FATAL error (a failed login, an unknown database, the server
//! shutting down) closes the connection without a `ReadyForQuery`, as
//! PostgreSQL does; a connection past the limit gets PostgreSQL's `53300
//! sorry, too many clients already`; and at shutdown idle connections get
//! `57P01` while a connection in the middle of a query finishes it first.

use std::sync::Arc;
use std::time::Duration;

use datafusion_postgres::pgwire;
use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use pgwire::tokio::TlsAcceptor;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// How long a client has to finish its start-up (as pgwire gives it).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves connections from `listener` until `shutdown` fires, then waits up
/// to `grace` for the connections' queries in flight to finish and closes
/// what is left.
pub(super) async fn serve<H>(
    listener: TcpListener,
    handlers: Arc<H>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) where
    H: PgWireServerHandlers + Send + Sync + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let permit = Arc::clone(&slots).try_acquire_owned().ok();
                    let task = connection(socket, tls.clone(), Arc::clone(&handlers), permit, shutdown.clone());
                    connections.spawn(task);
                }
                Err(error) => {
                    // Out of file descriptors, most likely: a pause, not a busy loop.
                    tracing::warn!(%error, "the Postgres front could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(connections = open, "waiting for Postgres connections to finish their queries");
    }
    let finished = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace_s = grace.as_secs_f64(),
            "closing Postgres connections still busy after the shutdown timeout (HOURGLASS_SHUTDOWN_TIMEOUT_S)"
        );
        connections.shutdown().await;
    }
}

/// An error that ends the connection.
fn fatal(code: &str, message: &str) -> ErrorInfo {
    ErrorInfo::new("FATAL".to_owned(), code.to_owned(), message.to_owned())
}

/// One connection: TLS negotiation, then its messages until it closes, a
/// FATAL error ends it, or the server shuts down while it is idle.
async fn connection<H>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: Arc<H>,
    permit: Option<OwnedSemaphorePermit>,
    mut shutdown: watch::Receiver<bool>,
) where
    H: PgWireServerHandlers + Send + Sync + 'static,
{
    // pgwire sets it too; set here so that every connection has it, whatever
    // pgwire does.
    let _ = socket.set_nodelay(true);
    let startup_deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_deadline);
    let negotiated = tokio::select! {
        _ = &mut startup_deadline => return,
        negotiated = negotiate_tls(socket, tls) => negotiated,
    };
    let mut socket = match negotiated {
        Ok(Some(socket)) => socket,
        // A client that spoke TLS first to a server without TLS, or a broken connection.
        Ok(None) | Err(_) => return,
    };
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    let socket = &mut socket;
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        let idle = starting || matches!(socket.state(), PgWireConnectionState::ReadyForQuery);
        let message = tokio::select! {
            // A shutdown wins over a message that arrives with it: an idle
            // connection starts nothing new once the server is stopping.
            biased;
            _ = shutdown.changed(), if idle => {
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(
                        fatal("57P01", "terminating connection due to administrator command").into(),
                    ))
                    .await;
                let _ = socket.close().await;
                return;
            }
            _ = &mut startup_deadline, if starting => None,
            message = socket.next() => message,
        };
        let Some(Ok(message)) = message else { return };
        // The client is leaving: close, so clients that wait for the close (asyncpg) go on.
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return;
        }
        // Past the connection limit, a start-up gets PostgreSQL's answer; a
        // cancel request (a connection of its own) is served all the same.
        if permit.is_none() && !matches!(message, PgWireFrontendMessage::CancelRequest(_)) {
            let refused = fatal("53300", "sorry, too many clients already (HOURGLASS_PG_MAX_CONNECTIONS)");
            let _ = socket.send(PgWireBackendMessage::ErrorResponse(refused.into())).await;
            let _ = socket.close().await;
            return;
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended_query) => extended_query,
            _ => message.is_extended_query(),
        };
        let processed = process_message(
            message,
            socket,
            Arc::clone(&startup),
            Arc::clone(&simple),
            Arc::clone(&extended),
            Arc::clone(&copy),
            Arc::clone(&cancel),
        )
        .await;
        let Err(mut error) = processed else { continue };
        errors.on_error(socket, &mut error);
        let info = ErrorInfo::from(error);
        if info.is_fatal() {
            // PostgreSQL sends a FATAL error and closes; a ReadyForQuery
            // after it confuses clients (asyncpg: "cannot process message Z").
            let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
            let _ = socket.close().await;
            return;
        }
        if process_error(socket, PgWireError::UserError(Box::new(info)), extended_query).await.is_err() {
            return;
        }
    }
}
