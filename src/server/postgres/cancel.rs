//! CancelRequest for queries that are still streaming their rows.
//!
//! pgwire cancels a query only while its handler runs (it selects on its own
//! per-connection signal, which allows one waiter), but the engine does most
//! of its work while the rows stream, after the handler has returned. So
//! every connection also gets a [`QuerySignal`], found by the same process id
//! and secret key; a cancel request fires both, and the running result ends
//! with `57014`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion_postgres::pgwire;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::ConnectionManager;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::watch;

/// One connection's cancel signal: a counter of cancel requests.
#[derive(Debug)]
pub(crate) struct QuerySignal(watch::Sender<u64>);

impl QuerySignal {
    /// Resolves at the next cancel request for this connection.
    pub(crate) fn next_cancel(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut requests = self.0.subscribe();
        async move {
            if requests.changed().await.is_err() {
                // The connection is gone; nothing will be cancelled.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The signals of every open connection.
#[derive(Debug, Default)]
pub(crate) struct CancelSignals {
    by_key: Mutex<HashMap<(i32, Bytes), Weak<QuerySignal>>>,
}

impl CancelSignals {
    /// A signal for the connection with this process id and secret key; it
    /// lives as long as the connection holds it.
    pub(crate) fn register(&self, pid: i32, secret_key: &SecretKey) -> Arc<QuerySignal> {
        let signal = Arc::new(QuerySignal(watch::channel(0).0));
        let mut by_key = self.by_key.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Closed connections' entries go here, so the map stays as large as
        // the number of open connections.
        by_key.retain(|_, signal| signal.strong_count() > 0);
        by_key.insert((pid, secret_key.to_bytes()), Arc::downgrade(&signal));
        signal
    }

    fn cancel(&self, pid: i32, secret_key: &SecretKey) {
        let by_key = self.by_key.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(signal) = by_key.get(&(pid, secret_key.to_bytes())).and_then(Weak::upgrade) {
            signal.0.send_modify(|requests| *requests += 1);
        }
    }
}

/// Fires pgwire's signal (a query still being planned) and ours (a result
/// being streamed).
pub(crate) struct Cancels {
    pub(crate) connections: Arc<ConnectionManager>,
    pub(crate) signals: Arc<CancelSignals>,
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.connections.cancel(request.pid, &request.secret_key).await;
        self.signals.cancel(request.pid, &request.secret_key);
    }
}
