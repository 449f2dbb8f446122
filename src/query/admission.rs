//! Query admission: at most a set number of queries run at once, a bounded
//! number wait for a slot for a bounded time, and the rest are refused with
//! "busy, retry shortly" (HTTP 429, Postgres 53300, FlightSQL
//! `ResourceExhausted`), so that a burst of dashboards cannot queue without
//! bound or starve the memory pool, and a client hears "busy" in seconds
//! rather than waiting toward the query's time limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::QueryError;

/// A query's place among the running ones; the slot frees when it is
/// dropped (with the query's result stream).
#[derive(Debug)]
pub struct QuerySlot {
    _permit: OwnedSemaphorePermit,
}

/// The gate every query passes before it runs.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    max_running: usize,
    max_queued: usize,
    queue_timeout: Duration,
    queued: AtomicUsize,
}

/// Takes one place in the queue and gives it back when dropped, whether the
/// wait ended with a slot, an error or a cancelled future.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// A gate for `max_running` queries at once (at least one) and
    /// `max_queued` waiting, each at most `queue_timeout`.
    pub(crate) fn new(max_running: usize, max_queued: usize, queue_timeout: Duration) -> Admission {
        let max_running = max_running.max(1);
        Admission {
            slots: Arc::new(Semaphore::new(max_running)),
            max_running,
            max_queued,
            queue_timeout,
            queued: AtomicUsize::new(0),
        }
    }

    /// A slot for one query: at once if one is free, after a wait in the
    /// queue if the queue has room and one frees within the queue timeout,
    /// else [`QueryError::Busy`] or [`QueryError::QueuedTooLong`]. The
    /// caller's time limit bounds the wait too.
    pub(crate) async fn admit(&self) -> Result<QuerySlot, QueryError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(QuerySlot { _permit: permit });
        }
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let _place = QueuePlace(&self.queued);
        if ahead >= self.max_queued {
            return Err(QueryError::Busy { running: self.max_running, queued: ahead });
        }
        let permit = tokio::time::timeout(self.queue_timeout, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| QueryError::QueuedTooLong {
                running: self.max_running,
                waited_s: self.queue_timeout.as_secs_f64(),
            })?
            .map_err(|_| QueryError::Internal("the query admission gate is closed".into()))?;
        Ok(QuerySlot { _permit: permit })
    }

    /// Queries running now.
    pub(crate) fn running(&self) -> usize {
        self.max_running - self.slots.available_permits()
    }

    /// Queries waiting for a slot now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}
