//! The Postgres wire front: pgwire (through datafusion-postgres'
//! `serve_with_handlers`) in front of the one query engine.
//!
//! This module holds protocol code only. What SQL means, `pg_catalog` and the
//! Postgres functions are the engine's ([`crate::query::postgres`]); this
//! module chooses the database from the start-up packet, authenticates against
//! the same users as the HTTP front, turns engine errors into SQLSTATEs and
//! Arrow batches into rows.

mod cancel;
mod connection;
pub(crate) mod copy;
mod queries;
mod results;
mod startup;
mod text_rows;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion_postgres::pgwire;
use pgwire::api::{ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};

use super::auth::Authenticator;
use crate::errors::Classified;
use crate::query::{QueryEngine, QueryError};

use crate::config::PgAuthMethod;

/// How the Postgres front runs.
pub(crate) struct PgOptions {
    /// How passwords are checked when users are configured.
    pub(crate) auth: PgAuthMethod,
    /// TLS for clients that ask for it, from [`check_tls`].
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Most connections open at once; more are refused with 53300.
    pub(crate) max_connections: usize,
    /// The longest COPY line a load takes.
    pub(crate) max_copy_line_bytes: usize,
    /// How long queries in flight may run on after shutdown starts.
    pub(crate) shutdown_grace: Duration,
}

/// The TLS configuration of the certificate chain and key: checked at
/// start-up, so that a file that cannot be used stops the server rather
/// than leave it serving plain text to a user who set up TLS.
pub(crate) fn check_tls(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use std::io::BufReader;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{self, ServerConfig};
    let open = |path: &Path| {
        std::fs::File::open(path).map(BufReader::new).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<CertificateDer<'static>>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", cert.display()));
    }
    let key_der = rustls_pemfile::pkcs8_private_keys(&mut open(key)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            format!(
                "{} holds no PKCS#8 private key (-----BEGIN PRIVATE KEY-----); convert one with \
                 `openssl pkcs8 -topk8 -nocrypt -in {} -out key.pk8.pem`",
                key.display(),
                key.display()
            )
        })?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, PrivateKeyDer::from(key_der))
        .map_err(|e| format!("the certificate and key do not make a TLS configuration: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The handlers of every connection.
struct Handlers {
    engine: Arc<QueryEngine>,
    users: Arc<Authenticator>,
    auth: PgAuthMethod,
    /// Whether clients can have TLS: then a token is not taken in clear text
    /// from a client that did not ask for it, except on loopback.
    tls_available: bool,
    queries: Arc<queries::Queries>,
    connections: Arc<ConnectionManager>,
    signals: Arc<cancel::CancelSignals>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.queries)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        // A fresh handler per connection: pgwire's password handlers keep the
        // state of one login in themselves.
        Arc::new(startup::Startup::new(
            Arc::clone(&self.engine),
            Arc::clone(&self.users),
            self.auth,
            self.tls_available,
            Arc::clone(&self.connections),
            Arc::clone(&self.signals),
        ))
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::clone(&self.queries)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(Errors)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::new(cancel::Cancels { connections: Arc::clone(&self.connections), signals: Arc::clone(&self.signals) })
    }
}

/// Serves the Postgres protocol on `listener` until `shutdown` fires, then
/// lets queries in flight finish (see [`connection`]).
pub(crate) async fn serve(
    engine: Arc<QueryEngine>,
    users: Arc<Authenticator>,
    options: PgOptions,
    listener: tokio::net::TcpListener,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let handlers = Arc::new(Handlers {
        queries: Arc::new(queries::Queries::new(Arc::clone(&engine), options.max_copy_line_bytes)),
        engine,
        users,
        auth: options.auth,
        tls_available: options.tls.is_some(),
        connections: Arc::new(ConnectionManager::new()),
        signals: Arc::default(),
    });
    connection::serve(listener, handlers, options.tls, options.max_connections, shutdown, options.shutdown_grace).await;
}

/// An engine error as the Postgres error a client can act on; the
/// connection goes on.
pub(crate) fn query_error(error: QueryError) -> PgWireError {
    with_severity("ERROR", error)
}

/// An error that ends the connection (at start-up: an unknown database).
pub(crate) fn fatal_error(error: QueryError) -> PgWireError {
    with_severity("FATAL", error)
}

fn with_severity(severity: &str, error: QueryError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_owned(),
        error.sqlstate().to_owned(),
        error.to_string(),
    )))
}

/// Gives errors that reach pgwire without a SQLSTATE (from datafusion-postgres'
/// hooks and parser) the code of what they are.
struct Errors;

impl ErrorHandler for Errors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if matches!(error, PgWireError::ApiError(_)) {
            if let PgWireError::ApiError(inner) = std::mem::replace(error, PgWireError::InvalidCancelRequest) {
                let classified = match inner.downcast::<datafusion::common::DataFusionError>() {
                    Ok(e) => QueryError::from_datafusion(*e, true),
                    Err(other) if other.is::<datafusion::sql::sqlparser::parser::ParserError>() => {
                        QueryError::Syntax(other.to_string())
                    }
                    Err(other) => QueryError::Plan(other.to_string()),
                };
                *error = query_error(classified);
            }
        }
        if let PgWireError::UserError(info) = error {
            tracing::debug!(code = %info.code, message = %info.message, "postgres error");
        }
    }
}
