//! What keeps a reader's worker to its cluster. A worker runs the plans it
//! is sent with the reader's storage credentials, so:
//!
//! - every call to it must carry the cluster's [`WorkerSecret`] (checked by
//!   [`SecretCheck`]; coordinators and workers add it through
//!   [`SecretChannels`]);
//! - every plan it is sent may read the storage layers only, and write
//!   nothing ([`StoresOnly`]), so that a leaked secret does not turn into a
//!   way to write files or read the reader's disk.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::grpc::{create_worker_client, BoxCloneSyncChannel, DefaultChannelResolver};
use datafusion_distributed::{
    ChannelResolver, WorkerChannel, WorkerPlanRewriteEvent, WorkerPlanRewriteEventResponse, WorkerPlanRewriteHandler,
};
use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic::codegen::Service;
use tonic::metadata::MetadataValue;

use crate::catalog::tokens::constant_time_eq;

/// The header a worker finds the secret in.
const SECRET_HEADER: &str = "x-hourglass-worker-secret";

/// What a worker answers a call without the cluster's secret; a
/// coordinator that meets it has a secret the others do not share.
pub const NOT_OF_THE_CLUSTER: &str =
    "this is a reader's worker for distributed queries: only the readers of its cluster may call it";

/// The secret the readers of a cluster show each other's workers (kept in
/// the shared catalog: see [`crate::catalog::ReaderRegistry::worker_secret`]).
#[derive(Clone)]
pub struct WorkerSecret(Arc<str>);

impl WorkerSecret {
    /// `secret`, which must be a valid header value (the catalog makes it
    /// hex).
    pub fn new(secret: &str) -> Result<WorkerSecret, String> {
        if secret.is_empty() || HeaderValue::from_str(secret).is_err() {
            return Err("the readers' worker secret is empty or not printable ASCII".into());
        }
        Ok(WorkerSecret(secret.into()))
    }

    fn header(&self) -> HeaderValue {
        // Checked in `new`; a value that fails is sent empty and refused.
        let mut value = HeaderValue::from_str(&self.0).unwrap_or_else(|_| HeaderValue::from_static(""));
        value.set_sensitive(true);
        value
    }
}

impl fmt::Debug for WorkerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkerSecret(..)")
    }
}

/// The interceptor in front of a worker's gRPC service: a call without the
/// cluster's secret is refused as unauthenticated.
#[derive(Clone)]
pub struct SecretCheck(WorkerSecret);

impl SecretCheck {
    /// A check for `secret`.
    pub fn new(secret: &WorkerSecret) -> SecretCheck {
        SecretCheck(secret.clone())
    }
}

impl tonic::service::Interceptor for SecretCheck {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let shown: Option<&MetadataValue<_>> = request.metadata().get(SECRET_HEADER);
        match shown {
            Some(shown) if constant_time_eq(shown.as_bytes(), self.0 .0.as_bytes()) => Ok(request),
            _ => Err(tonic::Status::unauthenticated(NOT_OF_THE_CLUSTER)),
        }
    }
}

/// Channels to the workers that carry the secret on every call: those of a
/// coordinator, and those a worker reads other workers' stages through.
#[derive(Clone)]
pub struct SecretChannels {
    /// Keeps one connection per worker, shared by every query.
    channels: DefaultChannelResolver,
    secret: HeaderValue,
}

impl SecretChannels {
    /// Channels that show `secret`.
    pub fn new(secret: &WorkerSecret) -> SecretChannels {
        SecretChannels { channels: DefaultChannelResolver::default(), secret: secret.header() }
    }
}

#[async_trait]
impl ChannelResolver for SecretChannels {
    async fn get_worker_client_for_url(&self, url: &url::Url) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        let channel = self.channels.get_channel(url).await?;
        let with_secret = WithSecret { inner: channel, secret: self.secret.clone() };
        Ok(create_worker_client(BoxCloneSyncChannel::new(with_secret)))
    }
}

/// A channel that adds the secret header to each request.
#[derive(Clone)]
struct WithSecret {
    inner: BoxCloneSyncChannel,
    secret: HeaderValue,
}

impl Service<Request<tonic::body::Body>> for WithSecret {
    type Response = Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = <BoxCloneSyncChannel as Service<Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<tonic::body::Body>) -> Self::Future {
        request.headers_mut().insert(SECRET_HEADER, self.secret.clone());
        self.inner.call(request)
    }
}

/// The check of every plan a worker is sent, before it runs: it may read
/// files from the storage layers' object stores only (not the reader's
/// local disk, which DataFusion reaches as `file://`), and may write
/// nothing.
#[derive(Clone)]
pub struct StoresOnly {
    stores: Arc<[String]>,
}

impl StoresOnly {
    /// A check that lets plans read `stores` (object store URLs, as
    /// registered with the engine's runtime).
    pub fn new(stores: Vec<String>) -> StoresOnly {
        let stores = stores.iter().map(|url| url.trim_end_matches('/').to_owned()).collect();
        StoresOnly { stores }
    }

    /// Why `plan` may not run on a worker, if it may not.
    pub fn refusal(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<Option<String>> {
        let mut refusal = None;
        plan.apply(|node| {
            if node.name().contains("Sink") {
                refusal = Some(format!("it writes ({})", node.name()));
                return Ok(TreeNodeRecursion::Stop);
            }
            if let Some(files) =
                node.downcast_ref::<DataSourceExec>().and_then(|d| d.data_source().downcast_ref::<FileScanConfig>())
            {
                let url = files.object_store_url.as_str().trim_end_matches('/');
                if !self.stores.iter().any(|store| store == url) {
                    refusal = Some(format!("it reads {url}, which is not a storage layer"));
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(refusal)
    }
}

impl WorkerPlanRewriteHandler for StoresOnly {
    fn rewrite_worker_plan(&self, event: WorkerPlanRewriteEvent) -> Result<WorkerPlanRewriteEventResponse> {
        match self.refusal(&event.plan)? {
            None => Ok(WorkerPlanRewriteEventResponse::new(event.plan)),
            // Not the query's fault: a coordinator that sends such a stage is
            // not one of this cluster's, or is broken.
            Some(why) => Err(DataFusionError::Internal(format!("a reader's worker refuses a stage: {why}"))),
        }
    }
}
