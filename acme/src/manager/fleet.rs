//! The worker's side of `[acme.shared]`: connect to the fleet's store,
//! claim a name before ordering it, and serve certificates other edges
//! stored. Without `[acme.shared]` every method here is a no-op.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Worker;
use crate::ManagedCert;
use crate::metrics::METRICS;
use crate::policy::AcmePolicy;
use crate::shared::claim::{Claim, ClaimRules, SharedClaim};
use crate::shared::{Shared, SharedCert, SharedUpdate, parse_key_type, store_error};
use crate::status::NameState;
use crate::store::CertStore;
use edge_certs::clock::unix_seconds;

/// Pause before the next pass after the shared store failed.
pub(super) const SHARED_RETRY: Duration = Duration::from_secs(5);

/// Longest interval between two marks of the names this edge covers.
const MARK_EVERY: Duration = Duration::from_secs(3600);

/// Pause before looking again at a name whose shared certificate another
/// storage key sealed.
const OTHER_KEY_RETRY: Duration = Duration::from_secs(30);

/// What the pass does with a name after asking the shared store.
pub(super) enum Step {
    /// Order it (with the lease when shared).
    Order(Option<SharedClaim>),
    /// Not now; look again within this long.
    Skip(Duration),
    /// The store is unreachable: order nothing more in this pass.
    Stop,
}

impl Worker {
    /// Opens, re-opens (settings or storage key changed) or drops the shared
    /// store; false while it is configured but unreachable.
    pub(super) async fn ensure_shared(&mut self, policy: &AcmePolicy) -> bool {
        let Some(settings) = &policy.shared else {
            self.shared = None;
            self.rekeyed_from = None;
            return true;
        };
        let check = policy.storage_key.check_hex();
        if self
            .shared
            .as_ref()
            .is_some_and(|s| s.settings == *settings && s.key_check == check)
        {
            return true;
        }
        self.shared = None;
        match Shared::connect(
            settings.clone(),
            policy.storage_key.clone(),
            self.acme.clone(),
            policy.order_timeout,
        )
        .await
        {
            Ok(shared) => {
                tracing::info!(schema = %settings.options.schema, holder = %shared.holder, "acme: shared store connected");
                // The storage key just changed and this edge still holds the
                // old one: re-seal the fleet's rows (shared/rekey.rs).
                if let Some(old) = self.rekeyed_from.take()
                    && old.check_hex() != check
                {
                    crate::shared::rekey::spawn(
                        shared.store.clone(),
                        old,
                        policy.storage_key.clone(),
                    );
                }
                self.shared = Some(shared);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "acme: shared store unreachable; serving what is loaded, ordering nothing");
                false
            }
        }
    }

    /// Asks the shared store whether this edge may order `name` now.
    pub(super) async fn claim_shared(
        &mut self,
        policy: &AcmePolicy,
        name: &str,
        site: &str,
        served: Option<&Arc<ManagedCert>>,
        forced: bool,
    ) -> Step {
        let Some(shared) = &self.shared else {
            return Step::Order(None);
        };
        let now_unix = unix_seconds();
        let served_until = served.map(|c| c.not_after);
        let (fraction, key_type) = (policy.renew_remaining_fraction, policy.key_type);
        let fresh = move |not_before: i64, not_after: i64, kind| {
            let lifetime = (not_after - not_before).max(0) as f64;
            let renew_at = not_after - (lifetime * fraction).round() as i64;
            now_unix < renew_at
                && kind == key_type
                && (!forced || served_until.is_some_and(|s| not_after > s))
        };
        let rules = ClaimRules {
            fresh: &fresh,
            per_hour: policy.max_orders_per_hour,
            per_name_per_day: policy.max_orders_per_name_per_day,
            now_unix,
        };
        let lease = shared.settings.lease;
        match shared.claim(name, &policy.storage_key, rules).await {
            Claim::Order { claim, failures } => {
                if let Ok(mut status) = self.acme.status.lock()
                    && let Some(s) = status.get_mut(name)
                {
                    s.failures = failures;
                }
                Step::Order(Some(claim))
            }
            // Its result arrives by NOTIFY; look again (this name only)
            // once a crashed holder's lease could have expired.
            Claim::HeldElsewhere => {
                let wait = (lease / 2).max(Duration::from_secs(1));
                self.held_elsewhere
                    .insert(name.to_string(), Instant::now() + wait);
                Step::Skip(wait)
            }
            // Sealed under a key this edge lacks: it arrives re-sealed
            // (NOTIFY) once the rotation reaches the row.
            Claim::OtherKey => Step::Skip(OTHER_KEY_RETRY),
            Claim::Stored(stored) => {
                self.forced.remove(name);
                self.apply_shared(SharedUpdate::Certs(vec![stored]));
                Step::Skip(Duration::from_secs(1))
            }
            Claim::Backoff {
                failures,
                until_unix,
            } => {
                let wait = Duration::from_secs((until_unix - now_unix).max(1) as u64);
                self.backoff_until
                    .insert(name.to_string(), Instant::now() + wait);
                if let Ok(mut status) = self.acme.status.lock()
                    && let Some(s) = status.get_mut(name)
                {
                    s.failures = failures;
                    s.state = NameState::Backoff;
                    s.next_attempt_unix = Some(until_unix);
                }
                Step::Skip(wait)
            }
            Claim::Limited { scope, wait } => {
                self.rate_limited(name, site, wait, scope);
                Step::Skip(wait.max(Duration::from_secs(1)))
            }
            Claim::Unavailable => Step::Stop,
        }
    }

    /// Every quarter of `acme.shared.retain_unwanted_hours` (at most
    /// hourly): marks every name this edge covers as wanted, then deletes
    /// the shared rows of names no edge marked for that long
    /// (`edge_fleetstore::retention`), in the background. A failed mark
    /// skips the sweep.
    pub(super) fn mark_wanted(&mut self, desired: &HashMap<String, String>) {
        let Some(shared) = self.shared.as_mut() else {
            return;
        };
        let now = Instant::now();
        if shared.next_mark > now {
            return;
        }
        let retain = shared.settings.retain;
        let period = (retain / 4).min(MARK_EVERY);
        shared.next_mark = now + period;
        let names: Vec<String> = desired.keys().cloned().collect();
        let store = shared.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.mark_wanted(&names, period / 2).await {
                store_error("retention", &e);
                return;
            }
            match store.sweep(retain).await {
                Ok(swept) => {
                    let m = &METRICS.acme_shared.swept;
                    m.with_label_values(&["certificate"])
                        .inc_by(swept.certificates);
                    m.with_label_values(&["approval"]).inc_by(swept.approvals);
                    if swept.certificates + swept.approvals > 0 {
                        tracing::info!(
                            certificates = swept.certificates,
                            approvals = swept.approvals,
                            "acme: shared rows of names no edge covers any more deleted"
                        );
                    }
                }
                Err(e) => store_error("retention", &e),
            }
        });
    }

    /// Under `[acme.shared]`: offers this edge's account credentials to the
    /// fleet and, when another edge stored an account first, switches to it
    /// (`None`: the switch failed; retried like any account failure).
    pub(super) async fn fleet_account(
        &mut self,
        policy: &AcmePolicy,
        account: instant_acme::Account,
        new_credentials: Option<Vec<u8>>,
        stored: Option<Vec<u8>>,
    ) -> Option<instant_acme::Account> {
        let Some(shared) = &self.shared else {
            return Some(account);
        };
        let Some(mine) = new_credentials.or(stored) else {
            return Some(account);
        };
        let fleet = shared
            .adopt_account(&policy.storage_key, &policy.directory_url, &mine)
            .await;
        let Some(fleet) = fleet else {
            return Some(account);
        };
        let restored = tokio::time::timeout(
            super::ACCOUNT_TIMEOUT,
            crate::order::account(
                &policy.directory_url,
                policy.ca_file.as_deref(),
                &policy.contact,
                Some(&fleet),
            ),
        )
        .await;
        match restored {
            Ok(Ok((account, _))) => {
                tracing::info!("acme: adopted the fleet's ACME account");
                Some(account)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "acme: the fleet's account could not be restored; retrying in 30 s");
                self.account_retry_at = Some(Instant::now() + super::SETUP_RETRY);
                None
            }
            Err(_) => {
                self.account_retry_at = Some(Instant::now() + super::SETUP_RETRY);
                None
            }
        }
    }

    /// Serves certificates read from the store when they are newer than
    /// what this edge serves, for names its policy covers.
    pub(super) fn apply_shared(&mut self, update: SharedUpdate) {
        let Some(policy) = self.acme.policy() else {
            return;
        };
        let certs = match update {
            SharedUpdate::Certs(certs) => certs,
            SharedUpdate::Gone(name) => {
                // Served until the policy drops the name, like a disk file
                // removed behind the edge's back.
                tracing::info!(%name, "acme: certificate deleted from the shared store");
                return;
            }
            SharedUpdate::Approvals(approvals) => return self.shared_approvals(approvals),
            SharedUpdate::Unapproved(name) => return self.shared_unapproved(&name),
        };
        let served = self.acme.served();
        let mut map: HashMap<String, Arc<ManagedCert>> = HashMap::new();
        let mut disk_copies = Vec::new();
        for SharedCert { stored, row } in certs {
            let site = policy
                .configured_site(&stored.name)
                .or_else(|| policy.on_demand_site(&stored.name))
                .map(str::to_string);
            let Some(site) = site else { continue };
            let current = map.get(&stored.name).or_else(|| served.get(&stored.name));
            if current.is_some_and(|c| c.not_after >= stored.cert.not_after) {
                continue;
            }
            self.backoff_until.remove(&stored.name);
            // An order of this edge for the name is finishing: its own
            // install writes the disk copy.
            if !self.in_flight.contains(&stored.name) {
                disk_copies.push(row);
            }
            if let Ok(mut status) = self.acme.status.lock()
                && let Some(s) = status.get_mut(&stored.name)
            {
                s.state = NameState::Valid;
                s.failures = 0;
                s.last_error = None;
                s.next_attempt_unix = None;
            }
            map.insert(
                stored.name.clone(),
                Arc::new(ManagedCert {
                    site,
                    key: stored.cert.key,
                    not_before: stored.cert.not_before,
                    not_after: stored.cert.not_after,
                    key_type: stored.key_type,
                }),
            );
        }
        if map.is_empty() {
            return;
        }
        tracing::debug!(
            certificates = map.len(),
            "acme: certificates from the shared store installed"
        );
        let mut merged: HashMap<String, Arc<ManagedCert>> =
            served.iter().map(|(n, c)| (n.clone(), c.clone())).collect();
        merged.extend(map);
        self.acme.set_served(merged);
        self.publish_expiry();
        self.copy_to_disk(&policy, disk_copies);
    }

    /// Writes certificates received from the store to this edge's disk
    /// store too (in the background: each write is synced), so a restart
    /// while PostgreSQL is unreachable still serves them.
    fn copy_to_disk(&self, policy: &AcmePolicy, rows: Vec<edge_fleetstore::CertRow>) {
        let dir = self.edge.data_dir().join("acme");
        let key = policy.storage_key.clone();
        tokio::task::spawn_blocking(move || {
            let store = match CertStore::open(&dir, key.clone()) {
                Ok(store) => store,
                Err(e) => {
                    METRICS.acme_store_errors.with_label_values(&["save"]).inc();
                    tracing::error!(error = %e, "acme: shared certificates not copied to disk");
                    return;
                }
            };
            for row in rows {
                let Some(key_type) = parse_key_type(&row.key_type) else {
                    continue;
                };
                let saved = key
                    .open(&format!("cert-key:{}", row.name), &row.key_sealed)
                    .map_err(|e| e.to_string())
                    .and_then(|der| {
                        store
                            .save_cert(&row.name, key_type, &row.chain_pem, &der)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = saved {
                    METRICS.acme_store_errors.with_label_values(&["save"]).inc();
                    tracing::error!(error = %e, "acme: shared certificate not copied to disk");
                }
            }
        });
    }
}
