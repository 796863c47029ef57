//! Claiming a name before ordering it: one order per name fleet-wide.
//!
//! [`Shared::claim`] takes the name's lease, then, holding it, re-reads the
//! store (another edge may have issued the name since this edge last heard),
//! the fleet-wide backoff and the fleet-wide issuance limits. Only then does
//! this edge order. [`SharedClaim`] renews the lease while the order runs
//! and writes the certificate fenced: if the lease was lost meanwhile (this
//! edge stalled, another took over), the store refuses the write.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use edge_config::AcmeKeyType;
use edge_fleetstore::certs::NewCert;
use edge_fleetstore::{Charge, FleetStore, FleetStoreError, Lease, LimitScope};

use crate::limits::LimitScope as Scope;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{Shared, SharedCert, store_error};
use crate::metrics::METRICS;
use crate::order::Issued;
use crate::storage_key::StorageKey;
use edge_certs::from_der_parts;

/// The answer of [`Shared::claim`].
pub(crate) enum Claim {
    /// This edge orders the name; `failures` is its fleet-wide failure count.
    Order {
        /// The lease, renewed during the order.
        claim: SharedClaim,
        /// Consecutive failed orders of the name across the fleet.
        failures: u32,
    },
    /// Another edge is ordering it.
    HeldElsewhere,
    /// The store holds a certificate that is not due: serve it, order nothing.
    Stored(SharedCert),
    /// The store holds a certificate that is not due but sealed under a
    /// storage key this edge does not have (a key rotation in progress):
    /// order nothing; it arrives re-sealed once the rotation reaches it.
    OtherKey,
    /// The name is in fleet-wide backoff.
    Backoff {
        /// Consecutive failed orders.
        failures: u32,
        /// Until this Unix time.
        until_unix: i64,
    },
    /// A fleet-wide issuance limit refuses for `wait`.
    Limited {
        /// Which limit (the label of `edge_acme_rate_limited_total`).
        scope: Scope,
        /// Until the limit allows a start.
        wait: Duration,
    },
    /// The store failed (counted); nothing is ordered until it answers.
    Unavailable,
}

/// Limits and freshness rules the claim applies.
pub(crate) struct ClaimRules<'a> {
    /// Whether a stored certificate (not_before, not_after, key type) can
    /// be served as it is.
    pub fresh: &'a (dyn Fn(i64, i64, AcmeKeyType) -> bool + Sync),
    /// `acme.max_orders_per_hour`, fleet-wide.
    pub per_hour: u32,
    /// `acme.max_orders_per_name_per_day`, fleet-wide.
    pub per_name_per_day: u32,
    /// Now, Unix seconds.
    pub now_unix: i64,
}

impl Shared {
    /// Claims `name` for an order (see the module documentation).
    pub(crate) async fn claim(
        &self,
        name: &str,
        key: &Arc<StorageKey>,
        rules: ClaimRules<'_>,
    ) -> Claim {
        let lease = match self
            .store
            .acquire(name, &self.holder, self.settings.lease)
            .await
        {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                lease_counted("held_elsewhere");
                return Claim::HeldElsewhere;
            }
            Err(e) => {
                store_error("lease", &e);
                return Claim::Unavailable;
            }
        };
        lease_counted("acquired");
        let claim = SharedClaim {
            store: self.store.clone(),
            lease,
            ttl: self.settings.lease,
            key: key.clone(),
            key_check: key.check_hex(),
        };
        match self.store.get_cert(name).await {
            Ok(Some(row)) if !row.key_check.is_empty() && row.key_check != claim.key_check => {
                // Re-ordering it would make the fleet's copy unreadable to
                // the edges that switched keys; once due, order anyway (a
                // key nobody re-seals with must not let it expire).
                let fresh = validity(&row.chain_pem)
                    .zip(super::parse_key_type(&row.key_type))
                    .is_some_and(|((from, until), kind)| (rules.fresh)(from, until, kind));
                if fresh {
                    super::other_key_counted(1);
                    claim.release().await;
                    return Claim::OtherKey;
                }
                tracing::warn!(
                    name,
                    "acme: the shared certificate is due and sealed under another storage key; ordering anew"
                );
            }
            Ok(Some(row)) => match super::sync::decode(&row, key) {
                Ok(stored)
                    if (rules.fresh)(
                        stored.cert.not_before,
                        stored.cert.not_after,
                        stored.key_type,
                    ) =>
                {
                    claim.release().await;
                    return Claim::Stored(SharedCert { stored, row });
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "acme: shared certificate unusable; ordering anew")
                }
            },
            Ok(None) => {}
            Err(e) => {
                store_error("certificate", &e);
                claim.release().await;
                return Claim::Unavailable;
            }
        }
        let failures = match self.store.backoff(name).await {
            Ok(Some(b)) if b.until_unix > rules.now_unix => {
                claim.release().await;
                return Claim::Backoff {
                    failures: b.failures,
                    until_unix: b.until_unix,
                };
            }
            Ok(b) => b.map_or(0, |b| b.failures),
            Err(e) => {
                store_error("limits", &e);
                claim.release().await;
                return Claim::Unavailable;
            }
        };
        match self
            .store
            .try_charge(name, rules.now_unix, rules.per_hour, rules.per_name_per_day)
            .await
        {
            Ok(Charge::Charged) => Claim::Order { claim, failures },
            Ok(Charge::Refused { scope, wait }) => {
                claim.release().await;
                Claim::Limited {
                    scope: match scope {
                        LimitScope::Global => Scope::Global,
                        LimitScope::Name => Scope::Name,
                    },
                    wait,
                }
            }
            Err(e) => {
                store_error("limits", &e);
                claim.release().await;
                Claim::Unavailable
            }
        }
    }

    /// Records a failed order's backoff for the fleet (in the background).
    pub(crate) fn share_backoff(&self, name: &str, failures: u32, until_unix: i64) {
        let (store, name) = (self.store.clone(), name.to_string());
        tokio::spawn(async move {
            let b = edge_fleetstore::Backoff {
                failures,
                until_unix,
            };
            if let Err(e) = store.set_backoff(&name, b).await {
                store_error("limits", &e);
            }
        });
    }

    /// Clears a name's fleet-wide backoff (it was issued).
    pub(crate) fn clear_backoff(&self, name: &str) {
        let (store, name) = (self.store.clone(), name.to_string());
        tokio::spawn(async move {
            if let Err(e) = store.clear_backoff(&name).await {
                store_error("limits", &e);
            }
        });
    }
}

/// A lease held for one order.
pub(crate) struct SharedClaim {
    store: Arc<FleetStore>,
    lease: Lease,
    ttl: Duration,
    key: Arc<StorageKey>,
    key_check: String,
}

impl SharedClaim {
    /// Runs `order`, renewing the lease every third of its lifetime.
    pub(crate) async fn hold_while<T>(&self, order: impl Future<Output = T>) -> T {
        let mut order = std::pin::pin!(order);
        let mut renew = tokio::time::interval(self.ttl / 3);
        renew.tick().await;
        let mut held = true;
        loop {
            tokio::select! {
                out = &mut order => return out,
                _ = renew.tick(), if held => {
                    match self.store.renew(&self.lease, self.ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            held = false;
                            lease_counted("lost");
                            tracing::warn!(name = %self.lease.name, "acme: lease lost during the order; its result will not be stored");
                        }
                        Err(e) => store_error("lease", &e),
                    }
                }
            }
        }
    }

    /// Stores the issued certificate (key sealed as on disk) under the lease,
    /// then releases it. A refused (stale) write is counted and logged.
    pub(crate) async fn store_and_release(self, key_type: AcmeKeyType, issued: &Issued) {
        if let Err(e) = self.store_issued(key_type, issued).await {
            match e {
                FleetStoreError::StaleLease { .. } => {
                    lease_counted("write_refused");
                    tracing::warn!(name = %self.lease.name, "acme: lease expired before the certificate was stored; the fleet keeps the newer one");
                }
                other => store_error("certificate", &other),
            }
        }
        self.release().await;
    }

    async fn store_issued(
        &self,
        key_type: AcmeKeyType,
        issued: &Issued,
    ) -> Result<(), FleetStoreError> {
        let name = &self.lease.name;
        let invalid = |e: String| FleetStoreError::Settings(format!("{name}: {e}"));
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(e.to_string()))?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_pkcs8_der.clone()));
        let loaded = from_der_parts(chain, private, name).map_err(|e| invalid(e.to_string()))?;
        let sealed = self
            .key
            .seal(&format!("cert-key:{name}"), &issued.key_pkcs8_der)
            .map_err(|e| invalid(e.to_string()))?;
        let cert = NewCert {
            name,
            key_type: key_type.as_str(),
            chain_pem: &issued.chain_pem,
            key_sealed: &sealed,
            not_after: loaded.not_after,
            key_check: &self.key_check,
        };
        self.store.put_cert(&self.lease, cert).await
    }

    /// Ends the lease (failed orders, or nothing to order after all).
    pub(crate) async fn release(self) {
        if let Err(e) = self.store.release(&self.lease).await {
            // It expires on its own.
            store_error("lease", &e);
        }
    }
}

/// The leaf's (notBefore, notAfter), Unix seconds.
fn validity(chain_pem: &str) -> Option<(i64, i64)> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let v = parsed.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn lease_counted(outcome: &'static str) {
    METRICS
        .acme_shared
        .leases
        .with_label_values(&[outcome])
        .inc();
}
