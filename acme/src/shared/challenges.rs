//! Challenge responses across the fleet: the ordering edge publishes them to
//! the store, so whichever edge the CA's validation reaches can answer.
//!
//! TLS-ALPN-01 is answered from the local map only (the certificate resolver
//! cannot wait), so other edges copy published responses into their map as
//! soon as the NOTIFY arrives ([`super::sync`]); the ordering edge publishes
//! before it tells the CA to validate. HTTP-01 is answered from the local
//! map, then from the store within `acme.shared.challenge_lookup_ms`.

use std::sync::Arc;
use std::time::Duration;

use edge_fleetstore::FleetStore;

use crate::Acme;
use crate::challenge::Challenges;
use crate::metrics::METRICS;

/// Rows outlive any order (`acme.order_timeout_seconds` is at most an hour)
/// and are deleted when the order ends.
const ROW_TTL: Duration = Duration::from_secs(3_600);

/// The store behind a [`Challenges`] map.
pub struct SharedChallenges {
    /// The store.
    pub store: Arc<FleetStore>,
    /// Bound on a lookup made while the CA waits.
    pub lookup: Duration,
}

impl Challenges {
    /// Connects the map to a shared store (`None`: this edge alone).
    pub fn set_shared(&self, shared: Option<SharedChallenges>) {
        self.shared.store(shared.map(Arc::new));
    }

    /// Publishes an HTTP-01 response to the fleet (no-op without a store).
    /// A failure is counted and logged: the CA may still reach this edge.
    pub async fn publish_http(&self, name: &str, token: &str, key_authorization: &str) {
        let Some(shared) = self.shared.load_full() else {
            return;
        };
        if let Err(e) = shared
            .store
            .put_http(token, name, key_authorization, ROW_TTL)
            .await
        {
            super::store_error("challenge", &e);
        }
    }

    /// Publishes a TLS-ALPN-01 key authorization digest to the fleet.
    pub async fn publish_alpn(&self, name: &str, digest: &[u8]) {
        let Some(shared) = self.shared.load_full() else {
            return;
        };
        if let Err(e) = shared.store.put_alpn(name, digest, ROW_TTL).await {
            super::store_error("challenge", &e);
        }
    }

    /// Withdraws published responses in the background (the order ended).
    pub fn unpublish(&self, http_tokens: Vec<String>, alpn_name: Option<String>) {
        let Some(shared) = self.shared.load_full() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            for token in http_tokens {
                if let Err(e) = shared.store.remove_http(&token).await {
                    super::store_error("challenge", &e);
                }
            }
            if let Some(name) = alpn_name
                && let Err(e) = shared.store.remove_alpn(&name).await
            {
                super::store_error("challenge", &e);
            }
        });
    }
}

impl Acme {
    /// The HTTP-01 answer for `token` on `host`: this edge's own map, then,
    /// for a name the policy covers, the store (bounded), so an order placed
    /// by another edge validates here. Tokens for other hosts never reach
    /// the store.
    pub async fn http_challenge(&self, host: &str, token: &str) -> Option<String> {
        if let Some(answer) = self.challenges.http_response(host, token) {
            return Some(answer);
        }
        let shared = self.challenges.shared.load_full()?;
        let policy = self.policy()?;
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if policy.configured_site(&name).is_none() && policy.on_demand_site(&name).is_none() {
            return None;
        }
        let outcome = tokio::time::timeout(shared.lookup, shared.store.get_http(token)).await;
        let (label, answer) = match outcome {
            Ok(Ok(Some((stored, key_authorization)))) if stored.eq_ignore_ascii_case(&name) => {
                ("found", Some(key_authorization))
            }
            Ok(Ok(_)) => ("missing", None),
            Ok(Err(_)) => ("error", None),
            Err(_) => ("timeout", None),
        };
        METRICS
            .acme_shared
            .challenge_lookups
            .with_label_values(&[label])
            .inc();
        answer
    }
}
