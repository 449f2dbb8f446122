//! A reader's part in distributed queries: it beats its FlightSQL URL into
//! the shared catalog's registry of readers, and learns the others' (the
//! workers its queries are spread over) from the same beat.

use std::sync::{Arc, RwLock};

use crate::catalog::{Catalog, HEARTBEAT_EVERY};
use crate::config::{MetadataType, Mode, Settings};
use crate::query::distributed::{DistributionSettings, Workers};

use super::SettingError;

/// The live readers, as the last heartbeat saw them.
#[derive(Debug, Default)]
pub(crate) struct LiveReaders {
    urls: RwLock<Vec<url::Url>>,
}

impl Workers for LiveReaders {
    fn urls(&self) -> Vec<url::Url> {
        self.urls.read().map(|urls| urls.clone()).unwrap_or_default()
    }
}

impl LiveReaders {
    /// Beats `own` into `catalog`'s registry every [`HEARTBEAT_EVERY`]
    /// until the returned readers are dropped. While Redis does not answer,
    /// the last list stands: a query sent to a reader that is gone fails
    /// and can be retried.
    pub(crate) fn join(catalog: Arc<dyn Catalog>, own: url::Url) -> Arc<LiveReaders> {
        let readers = Arc::new(LiveReaders::default());
        let weak = Arc::downgrade(&readers);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(HEARTBEAT_EVERY);
            let mut failing = false;
            loop {
                every.tick().await;
                let (Some(readers), Some(registry)) = (weak.upgrade(), catalog.readers()) else { return };
                match registry.reader_heartbeat(own.as_str()).await {
                    Ok(live) => {
                        let mut urls: Vec<url::Url> = live.iter().filter_map(|u| url::Url::parse(u).ok()).collect();
                        urls.sort();
                        if let Ok(mut known) = readers.urls.write() {
                            *known = urls;
                        }
                        failing = false;
                    }
                    Err(error) if !failing => {
                        tracing::warn!(%error, "a reader's heartbeat did not reach the catalog; the last list of readers stands");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
        readers
    }
}

/// When this process spreads queries over a cluster's readers: how, and
/// the URL other readers reach its worker at. `None` where it does not: not
/// a reader on the Redis catalog, distribution or FlightSQL off, users
/// configured (a worker does not check credentials yet), or FlightSQL over
/// TLS (the workers' client does not yet trust the cluster's certificate).
pub(crate) fn distribution(settings: &Settings) -> Result<Option<(DistributionSettings, url::Url)>, SettingError> {
    let applies = settings.mode == Mode::Readonly
        && settings.metadata_type == MetadataType::Redis
        && settings.distributed
        && settings.flightsql_enable;
    if !applies {
        return Ok(None);
    }
    // A worker runs any plan it is sent and does not yet ask who sends it:
    // where users are configured, it would be a way around them.
    if settings.http_basic_auth_username.is_some() {
        tracing::info!(
            "queries are not spread over the readers: users are configured (HTTP_BASIC_AUTH_USERNAME), and workers \
             do not check credentials yet"
        );
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
