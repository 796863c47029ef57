//! Process-wide state shared by the listeners, the admin app and background tasks.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use edge_acme::{Acme, AcmeEdge, SiteDomains};
use edge_collector::enrich::Enricher;
use edge_config::{ConfigErrors, LoadedConfig};

use crate::kafka::KafkaSink;
use crate::metrics::METRICS;
use crate::runtime::Runtime;
use crate::shipper::SpoolState;
use crate::tls::TlsContext;
/// Kept here for the callers that read the clock through `state`.
pub(crate) use edge_certs::clock::{unix_millis, unix_seconds};

/// Where the configuration comes from, and what the process overrides in it.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The TOML file.
    pub path: PathBuf,
    /// `edge dev` replaces `kafka.brokers` with its embedded broker's address.
    pub brokers_override: Option<String>,
}

impl ConfigSource {
    /// Loads and validates the file, applying the overrides.
    pub fn load(&self) -> Result<LoadedConfig, ConfigErrors> {
        let mut loaded = edge_config::load(&self.path)?;
        if let Some(brokers) = &self.brokers_override {
            loaded.config.kafka.brokers = brokers.clone();
        }
        Ok(loaded)
    }
}

/// The state every request handler reads.
pub struct EdgeState {
    runtime: ArcSwap<Runtime>,
    /// Public TLS handshake configuration and certificate resolver.
    pub tls: Arc<TlsContext>,
    /// Turns validated events into anonymous records.
    pub enricher: Enricher,
    /// Kafka producer.
    pub sink: Arc<KafkaSink>,
    /// Where reloads read from.
    pub source: ConfigSource,
    /// Certificates obtained over ACME and their challenges.
    pub acme: Arc<Acme>,
    /// The durable spool every accepted event is written to.
    pub spool: Arc<SpoolState>,
}

impl EdgeState {
    /// Creates the state around a first runtime and installs its certificates.
    pub fn new(
        runtime: Runtime,
        tls: Arc<TlsContext>,
        enricher: Enricher,
        sink: Arc<KafkaSink>,
        source: ConfigSource,
        spool: Arc<SpoolState>,
    ) -> Arc<Self> {
        tls.resolver().install(runtime.certs.clone());
        let acme = Arc::new(Acme::default());
        acme.set_policy(runtime.acme.clone());
        tls.resolver().set_managed(acme.clone());
        METRICS.set_config_version(None, runtime.version());
        crate::tracker::publish_integrity(&runtime.loaded.config);
        METRICS.config_last_success.set(unix_seconds());
        Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            tls,
            enricher,
            sink,
            source,
            acme,
            spool,
        })
    }

    /// The active runtime (cheap; hold it for the whole request).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Makes `runtime` active: certificates, TLS settings and the request
    /// path switch together. Requests already running keep the old one.
    pub fn install(&self, runtime: Runtime) -> Result<(), crate::tls::accept::TlsSetupError> {
        self.tls.set_min_version(runtime.min_tls)?;
        self.tls.resolver().install(runtime.certs.clone());
        self.acme.set_policy(runtime.acme.clone());
        crate::tracker::publish_integrity(&runtime.loaded.config);
        let spool = &runtime.loaded.config.spool;
        self.spool
            .spool
            .set_limits(spool.max_bytes, spool.min_free_disk_bytes);
        self.spool
            .spool
            .set_commit_delay(crate::shipper::commit_delay(spool));
        let previous = self.runtime.swap(Arc::new(runtime));
        METRICS.set_config_version(Some(previous.version()), self.runtime.load().version());
        METRICS.config_last_success.set(unix_seconds());
        Ok(())
    }
}

impl AcmeEdge for EdgeState {
    fn data_dir(&self) -> PathBuf {
        self.runtime().loaded.config.data_dir.clone()
    }

    fn site_domains(&self) -> Vec<SiteDomains> {
        let rt = self.runtime();
        rt.loaded
            .config
            .sites
            .iter()
            .map(|site| SiteDomains {
                site: site.id.clone(),
                domains: site
                    .domains
                    .iter()
                    .map(|d| (d.clone(), rt.certs.not_after(d)))
                    .collect(),
            })
            .collect()
    }
}
