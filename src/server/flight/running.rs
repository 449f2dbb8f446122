//! The queries DoGet calls are streaming, by ticket: what a client's
//! CancelFlightInfo stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

/// The cancel signals of the queries running from one ticket, by query.
type Signals = Vec<(u64, Arc<Notify>)>;

/// The running queries. Entries live as long as their result stream, so the
/// map holds at most one entry per open DoGet.
#[derive(Debug, Default)]
pub(crate) struct RunningQueries {
    by_ticket: Mutex<HashMap<Bytes, Signals>>,
    next_id: AtomicU64,
}

/// A query's place in [`RunningQueries`]; dropping it (with the result
/// stream) removes the entry.
pub(crate) struct Registration {
    queries: Arc<RunningQueries>,
    ticket: Bytes,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.queries.by_ticket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entries) = map.get_mut(&self.ticket) {
            entries.retain(|(id, _)| *id != self.id);
            if entries.is_empty() {
                map.remove(&self.ticket);
            }
        }
    }
}

impl RunningQueries {
    /// Records a query started from `ticket`; the signal fires when a client
    /// cancels that ticket.
    pub(crate) fn register(self: &Arc<Self>, ticket: Bytes) -> (Registration, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(Notify::new());
        let mut map = self.by_ticket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(ticket.clone()).or_default().push((id, Arc::clone(&signal)));
        (Registration { queries: Arc::clone(self), ticket, id }, signal)
    }

    /// Cancels every query running from `ticket`; returns how many there were.
    pub(crate) fn cancel(&self, ticket: &[u8]) -> usize {
        let map = self.by_ticket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entries = map.get(ticket).map(Vec::as_slice).unwrap_or_default();
        for (_, signal) in entries {
            // A stored permit: a query that has not started waiting yet still stops.
            signal.notify_one();
        }
        entries.len()
    }
}
