//! Where the HTTP API accepts connections: plain TCP, or TLS with the same
//! certificate and key as the Postgres and FlightSQL fronts. Each request
//! learns the client's address ([`ClientAddress`]), which failed logins
//! are counted and logged by.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The address of the client a request came from.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub SocketAddr);

impl Connected<IncomingStream<'_, PlainListener>> for ClientAddress {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        ClientAddress(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddress {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        ClientAddress(*stream.remote_addr())
    }
}

/// A plain TCP listener whose connections send small answers at once.
pub struct PlainListener(pub TcpListener);

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = Listener::accept(&mut self.0).await;
        // Without TCP_NODELAY a small answer waits for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        (stream, address)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes finished and not yet taken by the server: a bound, so that
/// a flood of connections cannot grow memory while the server is busy.
const READY_CONNECTIONS: usize = 128;

/// Handshakes running at once; past it a new connection waits to be
/// accepted, as the kernel's backlog holds it.
const HANDSHAKES: usize = 256;

/// A TLS listener: a task accepts TCP connections and runs each handshake
/// on its own task, so that a slow or silent client holds up no other;
/// the server takes connections whose handshake succeeded.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` with `acceptor`'s certificate until the
    /// returned listener is dropped (which closes the socket too).
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (sender, ready) = tokio::sync::mpsc::channel(READY_CONNECTIONS);
        let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { return };
                let accepted = tokio::select! {
                    _ = sender.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (stream, address) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, for instance: wait rather than spin.
                        tracing::warn!("the HTTP front cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    let _handshaking = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, address)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(client = %address, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(client = %address, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended only because this listener is going.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
