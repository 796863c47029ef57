//! The ACME manager's side of `[acme.shared]`: a fleet of edges sharing one
//! PostgreSQL store (`edge-fleetstore`).
//!
//! * [`Shared`] is the manager's handle: the store, this edge's holder id,
//!   and the updates of the background [`sync`] task (certificates written
//!   by any edge, loaded at start without blocking serving, then on NOTIFY
//!   and at every poll).
//! * [`claim`]: before ordering a name, take its lease, re-check the store
//!   (another edge may just have issued it), its fleet-wide backoff and the
//!   fleet-wide issuance limits; [`claim::SharedClaim`] renews the lease
//!   during the order and writes the result fenced.
//! * [`challenges`]: challenge responses published to the store, and the
//!   HTTP-01 fallback lookup for tokens another edge published.
//! * [`account`]: one ACME account for the fleet.
//! * [`rekey`]: re-sealing the shared rows when the storage key changes.
//!   Every row records which key sealed it; rows sealed under a key this
//!   edge lacks are skipped (counted), never decoded, and not re-ordered
//!   while their certificate is fresh.
//! * On-demand approvals: an `ask` answer is written to the store
//!   (`manager/on_demand.rs`) and read back by every edge ([`sync`]).
//!
//! Without `[acme.shared]` none of this runs: the edge behaves as before.

pub(crate) mod account;
pub(crate) mod challenges;
pub(crate) mod claim;
pub(crate) mod rekey;
pub(crate) mod sync;

use std::sync::{Arc, Weak};
use std::time::Duration;

use edge_config::{AcmeKeyType, AcmeShared};
use edge_fleetstore::{FleetStore, FleetStoreError, StoreOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Acme;
use super::storage_key::StorageKey;
use super::store::StoredCert;
use crate::metrics::METRICS;

/// `[acme.shared]` as the manager uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SharedSettings {
    /// Where the store is.
    pub options: StoreOptions,
    /// Lease lifetime (renewed every third of it).
    pub lease: Duration,
    /// Poll interval for certificates (a fallback for missed NOTIFYs).
    pub poll: Duration,
    /// Bound on the HTTP-01 fallback lookup.
    pub lookup: Duration,
    /// Rows of names no edge covered for this long are deleted.
    pub retain: Duration,
}

impl SharedSettings {
    /// From the configuration.
    pub(crate) fn from_config(shared: &AcmeShared) -> Self {
        Self {
            options: StoreOptions {
                url: shared.postgres_url.clone(),
                schema: shared.schema.clone(),
                timeout: Duration::from_millis(shared.timeout_ms),
            },
            lease: Duration::from_secs(shared.lease_seconds),
            poll: Duration::from_secs(shared.poll_seconds),
            lookup: Duration::from_millis(shared.challenge_lookup_ms),
            retain: Duration::from_secs(shared.retain_unwanted_hours.saturating_mul(3600)),
        }
    }
}

/// A certificate read from the store: ready to serve, plus its row (the key
/// still sealed) for this edge's disk copy.
pub(crate) struct SharedCert {
    /// Parsed and unsealed, for the SNI resolver.
    pub stored: StoredCert,
    /// As stored.
    pub row: edge_fleetstore::CertRow,
}

/// What the sync task hands the manager.
pub(crate) enum SharedUpdate {
    /// Certificates read from the store (new, renewed, or the start-up load).
    Certs(Vec<SharedCert>),
    /// A certificate deleted from the store.
    Gone(String),
    /// On-demand approvals (name, Unix time approved) read from the store:
    /// all of them at start and at every poll, one on its NOTIFY.
    Approvals(Vec<(String, i64)>),
    /// The `ask` endpoint refused this name on some edge.
    Unapproved(String),
}

/// The manager's handle on the shared store.
pub(crate) struct Shared {
    /// The store.
    pub store: Arc<FleetStore>,
    /// What it was opened with (a reload that changes it reconnects).
    pub settings: SharedSettings,
    /// Storage key check this handle seals with.
    pub key_check: String,
    /// This edge's lease holder id: host name, process id, random suffix.
    pub holder: String,
    /// Certificates from the sync task.
    pub updates: mpsc::Receiver<SharedUpdate>,
    /// When this edge next marks the names it covers (manager/fleet.rs).
    pub next_mark: std::time::Instant,
    sync: JoinHandle<()>,
    acme: Weak<Acme>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.sync.abort();
        if let Some(acme) = self.acme.upgrade() {
            acme.challenges.set_shared(None);
        }
    }
}

impl Shared {
    /// Connects (creating the schema if needed) and starts the sync task.
    pub(crate) async fn connect(
        settings: SharedSettings,
        storage_key: Arc<StorageKey>,
        acme: Arc<Acme>,
        order_timeout: Duration,
    ) -> Result<Self, FleetStoreError> {
        let store = match FleetStore::connect(settings.options.clone()).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                METRICS.acme_shared.store_up.set(0);
                METRICS
                    .acme_shared
                    .errors
                    .with_label_values(&["connect"])
                    .inc();
                return Err(e);
            }
        };
        METRICS.acme_shared.store_up.set(1);
        acme.challenges
            .set_shared(Some(challenges::SharedChallenges {
                store: store.clone(),
                lookup: settings.lookup,
            }));
        let (tx, updates) = mpsc::channel(64);
        let sync = tokio::spawn(sync::run(sync::SyncTask {
            store: store.clone(),
            key: storage_key.clone(),
            acme: acme.clone(),
            poll: settings.poll,
            mirror_for: order_timeout * 2,
            tx,
        }));
        Ok(Self {
            store,
            key_check: storage_key.check_hex(),
            holder: holder_id(),
            settings,
            updates,
            next_mark: std::time::Instant::now(),
            sync,
            acme: Arc::downgrade(&acme),
        })
    }
}

/// Counts a failed store operation (`operation` is a fixed label).
pub(crate) fn store_error(operation: &'static str, error: &FleetStoreError) {
    METRICS
        .acme_shared
        .errors
        .with_label_values(&[operation])
        .inc();
    if matches!(error, FleetStoreError::Db(_) | FleetStoreError::Timeout(_)) {
        METRICS.acme_shared.store_up.set(0);
    }
    tracing::warn!(operation, error = %error, "acme: shared store operation failed");
}

/// Counts shared rows skipped because another storage key sealed them.
pub(crate) fn other_key_counted(rows: usize) {
    METRICS.acme_shared.other_key.inc_by(rows as u64);
}

/// The configuration spelling of a key type, back from the store.
pub(crate) fn parse_key_type(text: &str) -> Option<AcmeKeyType> {
    [AcmeKeyType::EcdsaP256, AcmeKeyType::EcdsaP384]
        .into_iter()
        .find(|k| k.as_str() == text)
}

/// `hostname/pid/random`: unique per process, readable in the lease table.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "edge".into());
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
