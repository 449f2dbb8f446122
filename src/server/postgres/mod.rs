//! The Postgres wire front: pgwire (through datafusion-postgres'
//! `serve_with_handlers`) in front of the one query engine.
//!
//! This module holds protocol code only. What SQL means, `pg_catalog` and the
//! Postgres functions are the engine's ([`crate::query::postgres`]); this
//! module chooses the database from the start-up packet, authenticates against
//! the same users as the HTTP front, turns engine errors into SQLSTATEs and
//! Arrow batches into rows.

mod cancel;
mod copy;
mod queries;
mod startup;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion_postgres::pgwire;
use pgwire::api::{ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};

use super::auth::Users;
use crate::query::{QueryEngine, QueryError};

use crate::config::PgAuthMethod;

/// How the Postgres front runs.
#[derive(Debug, Clone)]
pub(crate) struct PgOptions {
    /// Interface to listen on.
    pub(crate) host: String,
    /// Port to listen on.
    pub(crate) port: u16,
    /// How passwords are checked when users are configured.
    pub(crate) auth: PgAuthMethod,
    /// Certificate chain and key for TLS, checked by [`check_tls`].
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

/// Loads the certificate chain and key as datafusion-postgres will, so that
/// a file it cannot use stops the server at start-up: datafusion-postgres
/// itself would log a warning and serve plain text, which a user who set up
/// TLS must never get.
pub(crate) fn check_tls(cert: &Path, key: &Path) -> Result<(), String> {
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
    // Every key block is read, as datafusion-postgres reads them: one it
    // cannot parse would make it fall back to plain text.
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
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, PrivateKeyDer::from(key_der))
        .map_err(|e| format!("the certificate and key do not make a TLS configuration: {e}"))?;
    Ok(())
}

/// The handlers of every connection.
struct Handlers {
    engine: Arc<QueryEngine>,
    users: Arc<Users>,
    auth: PgAuthMethod,
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

/// Serves the Postgres protocol until the process ends.
pub(crate) async fn serve(engine: Arc<QueryEngine>, users: Arc<Users>, options: PgOptions) -> std::io::Result<()> {
    let handlers = Arc::new(Handlers {
        queries: Arc::new(queries::Queries::new(Arc::clone(&engine))),
        engine,
        users,
        auth: options.auth,
        connections: Arc::new(ConnectionManager::new()),
        signals: Arc::default(),
    });
    let mut server = datafusion_postgres::ServerOptions::new().with_host(options.host).with_port(options.port);
    if let Some((cert, key)) = options.tls {
        server = server
            .with_tls_cert_path(Some(cert.to_string_lossy().into_owned()))
            .with_tls_key_path(Some(key.to_string_lossy().into_owned()));
    }
    datafusion_postgres::serve_with_handlers(handlers, &server).await
}

/// An engine error as the Postgres error a client can act on.
pub(crate) fn query_error(error: QueryError) -> PgWireError {
    let severity = if matches!(error, QueryError::UnknownDatabase(_)) { "FATAL" } else { "ERROR" };
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
