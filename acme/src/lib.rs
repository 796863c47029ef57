//! Automatic certificates for customer domains over ACME (the `edge-acme`
//! crate). It reads the running edge only through [`AcmeEdge`] and hands
//! certificates to the TLS resolver through `edge_certs::ManagedCerts`.
//!
//! * [`Acme`] is the state the listeners read: certificates by name, pending
//!   challenge responses, the compiled [`AcmePolicy`], and each name's status
//!   for `/admin/certs`. Handshakes only ever read it; they never wait on
//!   the CA.
//! * [`manager::AcmeManager`] is the background service that orders, renews,
//!   stores and withdraws certificates.
//!
//! Modules: [`policy`] (which names, what limits), [`authorize`] (`ask`
//! endpoint, DNS pre-check), [`order`] (one order with instant-acme),
//! [`challenge`] (HTTP-01 and TLS-ALPN-01 responses), [`store`] and
//! [`storage_key`] (encrypted at-rest storage), [`status`] (per-name state),
//! [`renew`] (operator-forced renewals and their limits), [`shared`] (a
//! fleet of edges sharing one PostgreSQL store, `[acme.shared]`).

// Only what another crate uses is `pub` (ARCHITECTURE.md); this keeps it so.
#![warn(unreachable_pub)]

mod authorize;
mod challenge;
mod expiry;
mod limits;
mod manager;
mod metrics;
mod metrics_shared;
mod order;
mod policy;
mod renew;
mod shared;
mod status;
mod storage_key;
mod store;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use edge_config::AcmeKeyType;
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;

use authorize::{AskCache, AskState, AskVerdict};
use challenge::Challenges;
use edge_certs::{ManagedCerts, MissKind};
pub use manager::{AcmeEdge, AcmeManager, SiteDomains};
pub use metrics::{AcmeMetrics, METRICS};
pub use policy::AcmePolicy;
pub use renew::RenewAnswer;
pub use shared::sync::decode_rows as decode_shared_rows;
use status::NameStatus;
pub use status::snapshot as status_snapshot;
pub use storage_key::StorageKey;
pub use store::CertStore;

/// A certificate the manager obtained and serves.
pub(crate) struct ManagedCert {
    /// The site the name belongs to.
    pub site: String,
    /// Chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// Leaf validity start, Unix seconds.
    pub not_before: i64,
    /// Leaf validity end, Unix seconds.
    pub not_after: i64,
    /// Key algorithm.
    pub key_type: AcmeKeyType,
}

impl ManagedCert {
    /// When renewal is due: `fraction` of the lifetime before expiry.
    pub(crate) fn renew_at(&self, fraction: f64) -> i64 {
        let lifetime = (self.not_after - self.not_before).max(0) as f64;
        self.not_after - (lifetime * fraction).round() as i64
    }
}

/// The ACME state shared by listeners, the admin API and the manager.
#[derive(Default)]
pub struct Acme {
    /// Pending HTTP-01 and TLS-ALPN-01 responses.
    pub challenges: Challenges,
    served: ArcSwap<HashMap<String, Arc<ManagedCert>>>,
    policy: ArcSwapOption<AcmePolicy>,
    /// Per-name status shown by `/admin/certs`.
    pub(crate) status: Mutex<HashMap<String, NameStatus>>,
    /// Answers of the `ask` endpoint.
    pub(crate) ask: AskCache,
    forced: Mutex<HashSet<String>>,
    /// Wakes the manager (config change, on-demand name, forced renewal).
    pub(crate) wake: Notify,
    /// Forced renewals accepted per name in the last week.
    forced_renewals: renew::ForcedRenewals,
    /// Set once the manager has loaded the certificate store into `served`.
    store_loaded: AtomicBool,
}

impl Acme {
    /// Whether every stored certificate can be served: ACME is off, or the
    /// manager has loaded the store. `/readyz` waits for this, so the first
    /// handshakes after a restart never miss a stored certificate.
    pub fn stored_certificates_loaded(&self) -> bool {
        self.policy.load().is_none() || self.store_loaded.load(Ordering::Acquire)
    }

    /// Marks the store as loaded (called by the manager after `set_served`).
    pub(crate) fn mark_store_loaded(&self) {
        self.store_loaded.store(true, Ordering::Release);
    }

    /// Installs the policy of a new configuration (`None` = ACME off) and
    /// wakes the manager to apply it.
    pub fn set_policy(&self, policy: Option<Arc<AcmePolicy>>) {
        let ask_changed = match (self.policy.load().as_deref(), policy.as_deref()) {
            (Some(old), Some(new)) => old.ask != new.ask,
            _ => true,
        };
        if ask_changed {
            self.ask.clear();
        }
        self.policy.store(policy);
        self.wake.notify_one();
    }

    /// The active policy, if ACME is configured.
    pub(crate) fn policy(&self) -> Option<Arc<AcmePolicy>> {
        self.policy.load_full()
    }

    /// Certificates currently served, by name.
    pub(crate) fn served(&self) -> Arc<HashMap<String, Arc<ManagedCert>>> {
        self.served.load_full()
    }

    /// Replaces the served map (the manager is the only writer).
    pub(crate) fn set_served(&self, map: HashMap<String, Arc<ManagedCert>>) {
        crate::metrics::METRICS
            .acme_certificates
            .set(map.len() as i64);
        self.served.store(Arc::new(map));
    }

    /// Takes the names whose renewal was forced.
    pub(crate) fn take_forced(&self) -> HashSet<String> {
        self.forced
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default()
    }
}

impl ManagedCerts for Acme {
    fn challenge_cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.challenges.alpn_certificate(name)
    }

    fn cert(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let served = self.served.load();
        if served.is_empty() {
            return None;
        }
        if let Some(c) = served.get(name) {
            return Some(c.key.clone());
        }
        let normal = name.trim_end_matches('.').to_ascii_lowercase();
        served.get(&normal).map(|c| c.key.clone())
    }

    fn missing(&self, name: &str) -> MissKind {
        let Some(policy) = self.policy.load_full() else {
            return MissKind::Unknown;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if policy.configured_site(&name).is_some() {
            // The manager orders site domains on its own schedule (backoff
            // included); a handshake must not be able to speed that up.
            return MissKind::NoCertYet;
        }
        let (Some(_), Some(ask)) = (policy.on_demand_site(&name), policy.ask.as_ref()) else {
            return MissKind::Unknown;
        };
        match self.ask.lookup_or_queue(&name, ask.max_pending) {
            AskState::Known(AskVerdict::Approved) | AskState::AlreadyQueued => MissKind::NoCertYet,
            AskState::Known(_) | AskState::QueueFull => MissKind::Unknown,
            AskState::Queued => {
                self.wake.notify_one();
                MissKind::NoCertYet
            }
        }
    }
}
