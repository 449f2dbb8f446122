//! A reader's part in distributed queries: it beats its FlightSQL URL into
//! the shared catalog's registry of readers, and learns the others' (the
//! workers its queries are spread over) from the same beat.

use std::sync::{Arc, RwLock};

use crate::catalog::{Catalog, CatalogError, HEARTBEAT_EVERY};
use crate::config::{MetadataType, Mode, Settings};
use crate::query::distributed::security::WorkerSecret;
use crate::query::distributed::{DistributionSettings, Workers};

use super::{ServeError, SettingError};

/// The live readers, as the last heartbeat saw them, and this reader's
/// place among them.
#[derive(Debug)]
pub(crate) struct LiveReaders {
    urls: RwLock<Vec<url::Url>>,
    catalog: Arc<dyn Catalog>,
    own: url::Url,
    /// Held over each heartbeat, and set when this reader leaves: a beat
    /// that began before the leave cannot add it back after.
    left: tokio::sync::Mutex<bool>,
}

impl Workers for LiveReaders {
    fn urls(&self) -> Vec<url::Url> {
        self.urls.read().map(|urls| urls.clone()).unwrap_or_default()
    }
}

impl LiveReaders {
    /// Beats `own` into `catalog`'s registry every [`HEARTBEAT_EVERY`]
    /// until [`Self::leave`] or the returned readers are dropped. While
    /// Redis does not answer, the last list stands: a query sent to a
    /// reader that is gone fails and can be retried.
    pub(crate) fn join(catalog: Arc<dyn Catalog>, own: url::Url) -> Arc<LiveReaders> {
        let readers =
            Arc::new(LiveReaders { urls: RwLock::default(), catalog, own, left: tokio::sync::Mutex::new(false) });
        let weak = Arc::downgrade(&readers);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(HEARTBEAT_EVERY);
            let mut failing = false;
            loop {
                every.tick().await;
                let Some(readers) = weak.upgrade() else { return };
                match readers.beat().await {
                    None => return,
                    Some(Ok(())) => failing = false,
                    Some(Err(error)) if !failing => {
                        tracing::warn!(%error, "a reader's heartbeat did not reach the catalog; the last list of readers stands");
                        failing = true;
                    }
                    Some(Err(_)) => {}
                }
            }
        });
        readers
    }

    /// One heartbeat; None once this reader has left.
    async fn beat(&self) -> Option<Result<(), CatalogError>> {
        let left = self.left.lock().await;
        let registry = self.catalog.readers()?;
        if *left {
            return None;
        }
        Some(registry.reader_heartbeat(self.own.as_str()).await.map(|live| {
            let mut urls: Vec<url::Url> = live.iter().filter_map(|u| url::Url::parse(u).ok()).collect();
            urls.sort();
            if let Ok(mut known) = self.urls.write() {
                *known = urls;
            }
        }))
    }

    /// Stops the heartbeats and takes this reader out of the registry, so
    /// that coordinators send it no more stages once their next heartbeat
    /// reads the list (it still runs those it has).
    pub(crate) async fn leave(&self) {
        let mut left = self.left.lock().await;
        *left = true;
        if let Some(registry) = self.catalog.readers() {
            match registry.reader_leave(self.own.as_str()).await {
                Ok(()) => tracing::info!(worker = %self.own, "left the cluster's live readers"),
                Err(error) => tracing::warn!(
                    %error,
                    "a stopping reader could not take itself out of the live readers; the others stop using it \
                     when its heartbeats lapse"
                ),
            }
        }
    }
}

/// When this process spreads queries over a cluster's readers: how, and
/// the URL other readers reach its worker at. `None` where it does not: not
/// a reader on the Redis catalog, distribution or FlightSQL off, or
/// FlightSQL over TLS (the workers' client does not yet trust the
/// cluster's certificate).
pub(crate) fn distribution(settings: &Settings) -> Result<Option<(DistributionSettings, url::Url)>, SettingError> {
    let applies = settings.mode == Mode::Readonly
        && settings.metadata_type == MetadataType::Redis
        && settings.distributed
        && settings.flightsql_enable;
    if !applies {
        return Ok(None);
    }
    if settings.tls_cert.is_some() {
        tracing::info!("queries are not spread over the readers: FlightSQL is served over TLS (HOURGLASS_TLS_CERT)");
        return Ok(None);
    }
    let url = match &settings.flightsql_advertise_url {
        Some(url) => url.clone(),
        None => match settings.http_host.as_str() {
            // Every reader would name itself the same (loopback) address.
            "0.0.0.0" | "::" | "[::]" => {
                tracing::warn!(
                    "queries are not spread over the readers: this reader listens on every address \
                     (--http-host {}) and no --flightsql-advertise-url tells the others where to reach it",
                    settings.http_host
                );
                return Ok(None);
            }
            host if host.contains(':') => format!("http://[{host}]:{}", settings.flightsql_port),
            host => format!("http://{host}:{}", settings.flightsql_port),
        },
    };
    let url = url::Url::parse(&url).map_err(|e| {
        SettingError::new("flightsql-advertise-url", "HOURGLASS_FLIGHTSQL_ADVERTISE_URL", format!("{url}: {e}"))
    })?;
    let settings = DistributionSettings { enabled: true, min_bytes: settings.distributed_min_bytes.0 };
    Ok(Some((settings, url)))
}

/// The secret this reader's worker asks for and its calls to the others'
/// carry, from the shared catalog.
pub(crate) async fn worker_secret(catalog: &dyn Catalog) -> Result<WorkerSecret, ServeError> {
    let registry = catalog.readers().ok_or_else(|| {
        ServeError::Runtime("distributed queries need the Redis catalog (GIGAPI_METADATA_TYPE)".into())
    })?;
    let secret = registry
        .worker_secret()
        .await
        .map_err(|e| ServeError::Runtime(format!("cannot read the readers' worker secret: {e}")))?;
    WorkerSecret::new(&secret).map_err(ServeError::Runtime)
}
