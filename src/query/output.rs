//! A query's result as the fronts stream it: its schema and its batches,
//! ending with an error at the time limit or on a client's cancel, and
//! holding the query's admission slot until the last batch is read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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

    /// The same result, ending with the time-limit error `timeout` from now,
    /// and holding `slot` (the query's admission) until the stream is
    /// dropped.
    pub(super) fn bounded(self, timeout: Duration, slot: Option<QuerySlot>) -> QueryOutput {
        let deadline = DeadlineStream {
            inner: self.stream,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            expired: false,
            _slot: slot,
        };
        QueryOutput {
            schema: Arc::clone(&self.schema),
            stream: Box::pin(RecordBatchStreamAdapter::new(self.schema, deadline)),
        }
    }
}

/// A stream that ends with [`QueryTimeout`] at its deadline.
struct DeadlineStream {
    inner: SendableRecordBatchStream,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: bool,
    /// The query counts as running while its result is read.
    _slot: Option<QuerySlot>,
}

impl Stream for DeadlineStream {
    type Item = datafusion::common::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            let timeout = self.timeout;
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(QueryTimeout(timeout))))));
        }
        self.inner.as_mut().poll_next(cx)
    }
}
