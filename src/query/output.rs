//! A query's result as the fronts stream it: its schema and its batches,
//! ending with an error at the time limit or on a client's cancel, and
//! holding the query's admission slot until the last batch is read.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, StreamExt};

use super::admission::QuerySlot;
use super::error::{QueryCancelled, QueryTimeout};
use super::QueryError;

/// A query's result: its schema and a stream of batches, which ends with an
/// error if the query runs past its time limit.
pub struct QueryOutput {
    /// The columns.
    pub schema: SchemaRef,
    /// The rows.
    pub stream: SendableRecordBatchStream,
}

impl std::fmt::Debug for QueryOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryOutput").field("schema", &self.schema).finish()
    }
}

impl QueryOutput {
    /// A result of batches computed already (SHOW, DDL counts).
    pub(super) fn of_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> QueryOutput {
        let stream = futures::stream::iter(batches.into_iter().map(Ok));
        QueryOutput { schema: Arc::clone(&schema), stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)) }
    }

    /// The same result, ending with [`QueryError::Cancelled`] as soon as
    /// `cancelled` resolves: how a client's cancel request stops a query that
    /// is running or streaming. The query's operators stop when the stream
    /// is dropped.
    pub fn cancellable(self, cancelled: impl Future<Output = ()> + Send + 'static) -> QueryOutput {
        let cancelled =
            futures::stream::once(cancelled).map(|()| Some(Err(DataFusionError::External(Box::new(QueryCancelled)))));
        // The end of the result is a `None`, which ends the stream even while
        // the cancellation is still pending.
        let batches = self.stream.map(Some).chain(futures::stream::once(futures::future::ready(None)));
        // Whichever comes first: the next batch or the cancellation; after an
        // error, nothing more.
        let mut failed = false;
        let stream = futures::stream::select(batches, cancelled)
            .take_while(move |item| {
                let go = !failed && item.is_some();
                failed |= matches!(item, Some(Err(_)));
                futures::future::ready(go)
            })
            .filter_map(futures::future::ready);
        QueryOutput {
            schema: Arc::clone(&self.schema),
            stream: Box::pin(RecordBatchStreamAdapter::new(self.schema, stream)),
        }
    }

    /// Reads every batch (for small results and tests).
    pub async fn collect(self) -> Result<Vec<RecordBatch>, QueryError> {
        use futures::TryStreamExt;
        self.stream.try_collect().await.map_err(|e| QueryError::from_datafusion(e, false))
    }

    /// The same result, ending with the time-limit error at `deadline` (the
    /// limit was `timeout`), and holding `slot` (the query's admission)
    /// until the stream is dropped or the deadline passes, whichever comes
    /// first: at the deadline the query is dropped and its slot freed even if
    /// nobody reads the stream (a client that stopped reading).
    pub(super) fn bounded(self, deadline: tokio::time::Instant, timeout: Duration, slot: QuerySlot) -> QueryOutput {
        let running = Arc::new(Mutex::new(Some(Running { stream: self.stream, _slot: slot })));
        let reaper = tokio::spawn({
            let running = Arc::clone(&running);
            async move {
                tokio::time::sleep_until(deadline).await;
                let expired = running.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
                drop(expired);
            }
        });
        let bounded = DeadlineStream {
            running,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
            expired: false,
            reaper,
        };
        QueryOutput {
            schema: Arc::clone(&self.schema),
            stream: Box::pin(RecordBatchStreamAdapter::new(self.schema, bounded)),
        }
    }
}

/// A query being read: its stream and its admission slot.
struct Running {
    stream: SendableRecordBatchStream,
    /// The query counts as running while its result is read.
    _slot: QuerySlot,
}

/// A stream that ends with [`QueryTimeout`] at its deadline.
struct DeadlineStream {
    /// Taken (the query dropped, its slot freed) at the deadline.
    running: Arc<Mutex<Option<Running>>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: bool,
    /// Ends the query at the deadline if nobody polls the stream then.
    reaper: tokio::task::JoinHandle<()>,
}

impl Drop for DeadlineStream {
    fn drop(&mut self) {
        self.reaper.abort();
    }
}

impl Stream for DeadlineStream {
    type Item = datafusion::common::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        let timeout = self.timeout;
        let timed_out = move || Poll::Ready(Some(Err(DataFusionError::External(Box::new(QueryTimeout(timeout))))));
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
            let answer = timed_out();
            self.expired = true;
            return answer;
        }
        let polled = match self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_mut() {
            Some(running) => running.stream.as_mut().poll_next(cx),
            // The reaper got there first.
            None => timed_out(),
        };
        self.expired |= matches!(polled, Poll::Ready(Some(Err(_))) | Poll::Ready(None));
        polled
    }
}
