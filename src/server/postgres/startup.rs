//! The start-up of a Postgres connection: the database it asks for, then a
//! password check, then the parameters the engine announces.
//!
//! The configured user's password is checked the way `HOURGLASS_PG_AUTH_METHOD`
//! says (cleartext, MD5 or SCRAM-SHA-256); any other user name logs in with
//! a token (`hourglass token create`) as its password, which the server must
//! receive to check against the stored hash, so it is asked for in clear
//! text (use TLS where the network is not trusted). Failed logins are
//! counted per client address (`crate::server::auth::LoginGuard`).

use super::cancel::{CancelSignals, QuerySignal};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::pgwire;
use futures::{Sink, SinkExt};
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::md5pass::{hash_md5_password, Md5PasswordAuthStartupHandler};
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, AuthSource, LoginInfo, Password,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::{
    ClientInfo, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
    METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::access::{Access, Privilege};
use crate::catalog::DEFAULT_DATABASE;
use crate::config::PgAuthMethod as AuthMethod;
use crate::query::{postgres as pg, QueryEngine, QueryError};
use crate::server::auth::{Authenticator, Credentials, Refusal};

/// SCRAM's PBKDF2 rounds, as PostgreSQL's default.
const SCRAM_ITERATIONS: usize = 4096;

/// The parameters announced after authentication: the engine's, so that `SHOW`
/// and `current_setting()` agree with them.
pub(crate) struct ServerParameters;

impl ServerParameterProvider for ServerParameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let mut parameters: HashMap<String, String> = pg::settings()
            .into_iter()
            .filter(|(_, _, announced)| *announced)
            .map(|(k, v, _)| (k.to_owned(), v))
            .collect();
        for key in ["application_name"] {
            if let Some(value) = client.metadata().get(key) {
                parameters.insert(key.to_owned(), value.clone());
            }
        }
        if let Some(user) = client.metadata().get(METADATA_USER) {
            parameters.insert("session_authorization".to_owned(), user.clone());
        }
        Some(parameters)
    }
}

/// The password of a user in the form the chosen method checks.
#[derive(Debug)]
struct Passwords {
    users: Arc<Authenticator>,
    method: AuthMethod,
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(n);
    out
}

#[async_trait]
impl AuthSource for Passwords {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        // An unknown user gets a random password, so the answer is the same
        // "password authentication failed" as for a wrong password.
        let random = uuid::Uuid::new_v4().to_string();
        let password = self.users.users().password_of(user).unwrap_or(&random);
        Ok(match self.method {
            AuthMethod::Password => Password::new(None, password.as_bytes().to_vec()),
            AuthMethod::Md5 => {
                let salt = random_bytes(4);
                let hashed = hash_md5_password(user, password, &salt);
                Password::new(Some(salt), hashed.into_bytes())
            }
            AuthMethod::ScramSha256 => {
                let salt = random_bytes(16);
                let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
                Password::new(Some(salt), salted)
            }
        })
    }
}

/// How this connection authenticates.
enum Method {
    Open { connections: Arc<ConnectionManager> },
    Password(CleartextPasswordAuthStartupHandler<Passwords, ServerParameters>),
    Md5(Md5PasswordAuthStartupHandler<Passwords, ServerParameters>),
    Scram(SASLAuthStartupHandler<ServerParameters>),
}

/// The start-up handler of one connection.
pub(crate) struct Startup {
    engine: Arc<QueryEngine>,
    users: Arc<Authenticator>,
    method: Method,
    signals: Arc<CancelSignals>,
    /// For a token's login, which pgwire has no handler for.
    connections: Arc<ConnectionManager>,
    /// Whether the server offers TLS (see `Handlers::tls_available`).
    tls_available: bool,
}

/// The connection metadata key that marks a start-up that named no database:
/// a token's login then works in the token's own.
const METADATA_NO_DATABASE: &str = "hourglass.no_database";

/// The connection metadata key that marks a login by token.
const METADATA_TOKEN_LOGIN: &str = "hourglass.token_login";

impl Startup {
    pub(crate) fn new(
        engine: Arc<QueryEngine>,
        users: Arc<Authenticator>,
        method: AuthMethod,
        tls_available: bool,
        connections: Arc<ConnectionManager>,
        signals: Arc<CancelSignals>,
    ) -> Self {
        let passwords = Passwords { users: Arc::clone(&users), method };
        let method = if !users.enabled() {
            Method::Open { connections: Arc::clone(&connections) }
        } else {
            match method {
                AuthMethod::Password => Method::Password(
                    CleartextPasswordAuthStartupHandler::new(passwords, ServerParameters)
                        .with_connection_manager(Arc::clone(&connections)),
                ),
                AuthMethod::Md5 => Method::Md5(
                    Md5PasswordAuthStartupHandler::new(Arc::new(passwords), Arc::new(ServerParameters))
                        .with_connection_manager(Arc::clone(&connections)),
                ),
                AuthMethod::ScramSha256 => {
                    let mut scram = ScramAuth::new(Arc::new(passwords));
                    scram.set_iterations(SCRAM_ITERATIONS);
                    Method::Scram(
                        SASLAuthStartupHandler::new(Arc::new(ServerParameters))
                            .with_scram(scram)
                            .with_connection_manager(Arc::clone(&connections)),
                    )
                }
            }
        };
        Startup { engine, users, method, signals, connections, tls_available }
    }

    /// A login by token: its password is asked for in clear text and
    /// checked against the stored hashes; the token must allow the database.
    async fn token_login<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                let address = client.socket_addr().ip();
                if self.tls_available && !client.is_secure() && !address.is_loopback() {
                    return Err(PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
                        "FATAL".to_owned(),
                        "28000".to_owned(),
                        "a token is sent as a clear-text password: connect with TLS (sslmode=require)".to_owned(),
                    ))));
                }
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                client.metadata_mut().insert(METADATA_TOKEN_LOGIN.to_owned(), "1".to_owned());
                if startup.parameters.get(METADATA_DATABASE).is_none_or(|d| d.is_empty()) {
                    client.metadata_mut().insert(METADATA_NO_DATABASE.to_owned(), "1".to_owned());
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client.send(PgWireBackendMessage::Authentication(Authentication::CleartextPassword)).await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?.password;
                let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
                let credentials = Credentials::Password { user: user.clone(), password };
                let access = self
                    .users
                    .authenticate(Some(&credentials), Some(client.socket_addr().ip()), "postgres")
                    .await
                    .map_err(|refusal| refused(refusal, &user))?;
                // No database named: the token's own, not `default`.
                if client.metadata().contains_key(METADATA_NO_DATABASE) {
                    if let Some(own) = access.only_database().filter(|own| self.engine.database_exists(own)) {
                        client.metadata_mut().insert(METADATA_DATABASE.to_owned(), own.to_owned());
                    }
                }
                let database = client.metadata().get(METADATA_DATABASE).cloned().unwrap_or_default();
                access.require(&database, Privilege::Read).map_err(|denied| super::fatal_error(denied.into()))?;
                let_in(client, &self.connections).await?;
                client.session_extensions().insert(access);
            }
            _ => {}
        }
        Ok(())
    }
}

/// A refused login as Postgres tells it: a wrong password or token is
/// 28P01, an address turned away for its failures 28000.
fn refused(refusal: Refusal, user: &str) -> PgWireError {
    match refusal {
        Refusal::Blocked(_) => PgWireError::UserError(Box::new(pgwire::error::ErrorInfo::new(
            "FATAL".to_owned(),
            "28000".to_owned(),
            refusal.message(),
        ))),
        Refusal::Missing | Refusal::Wrong => PgWireError::InvalidPassword(user.to_owned()),
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut database = None;
        if let PgWireFrontendMessage::Startup(startup) = &message {
            // No database named means `default`; a database named that does not
            // exist is refused, as PostgreSQL does.
            let named = startup.parameters.get(METADATA_DATABASE).filter(|d| !d.is_empty());
            let name = named.map_or(DEFAULT_DATABASE, |d| d);
            // A token's login that names none works in the token's own,
            // known only once the password has come.
            let user = startup.parameters.get(METADATA_USER).map_or("", String::as_str);
            let token_without_database =
                named.is_none() && self.users.enabled() && self.users.users().password_of(user).is_none();
            if !self.engine.database_exists(name) && !token_without_database {
                return Err(super::fatal_error(QueryError::UnknownDatabase(name.to_owned())));
            }
            database = Some(name.to_owned());
        }
        let by_token = match &message {
            PgWireFrontendMessage::Startup(startup) => {
                let user = startup.parameters.get(METADATA_USER).map_or("", String::as_str);
                if let Some(after) = self.users.guard().blocked(client.socket_addr().ip()) {
                    return Err(refused(Refusal::Blocked(after), user));
                }
                self.users.enabled() && self.users.users().password_of(user).is_none()
            }
            _ => client.metadata().contains_key(METADATA_TOKEN_LOGIN),
        };
        if by_token {
            // Failures are counted by the authenticator; the access is set on success.
            self.token_login(client, message).await?;
        } else {
            let outcome = match &self.method {
                Method::Open { connections } => {
                    if let PgWireFrontendMessage::Startup(startup) = &message {
                        protocol_negotiation(client, startup).await?;
                        save_startup_parameters_to_metadata(client, startup);
                        if let Some(database) = database.take() {
                            client.metadata_mut().insert(METADATA_DATABASE.to_owned(), database);
                        }
                        let_in(client, connections).await?;
                        client.set_state(PgWireConnectionState::ReadyForQuery);
                    }
                    Ok(())
                }
                Method::Password(handler) => handler.on_startup(client, message).await,
                Method::Md5(handler) => handler.on_startup(client, message).await,
                Method::Scram(handler) => handler.on_startup(client, message).await,
            };
            if let Err(PgWireError::InvalidPassword(user)) = &outcome {
                self.users.guard().failed(Some(client.socket_addr().ip()), "postgres", user);
            }
            outcome?;
            if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
                // The configured user, or anyone on a server with no users.
                client.session_extensions().insert(Access::Full);
            }
        }
        if let Some(database) = database {
            client.metadata_mut().insert(METADATA_DATABASE.to_owned(), database);
        }
        let ready = matches!(client.state(), PgWireConnectionState::ReadyForQuery);
        if ready && client.session_extensions().get::<Arc<QuerySignal>>().is_none() {
            let (pid, secret_key) = client.pid_and_secret_key();
            client.session_extensions().insert(self.signals.register(pid, &secret_key));
        }
        Ok(())
    }
}

/// Ends a start-up that needs nothing more from the client (no password, or
/// one checked here): a cancel key, the connection known to the cancel
/// handler, and the parameters announced.
async fn let_in<C>(client: &mut C, connections: &Arc<ConnectionManager>) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let (pid, secret_key) = RandomPidSecretKeyGenerator::default().generate(client);
    client.set_pid_and_secret_key(pid, secret_key);
    register_connection(client, connections);
    finish_authentication(client, &ServerParameters).await
}

/// Makes the connection known to the cancel handler (what pgwire's own
/// handlers do through a crate-private function).
fn register_connection<C: ClientInfo>(client: &C, connections: &Arc<ConnectionManager>) {
    let (pid, secret_key) = client.pid_and_secret_key();
    let (handle, guard) = connections.register(pid, secret_key);
    client.session_extensions().insert::<Arc<pgwire::api::ConnectionHandle>>(handle);
    client.session_extensions().insert::<pgwire::api::ConnectionGuard>(guard);
}
