//! Metrics of `[acme.shared]`: the fleet's shared certificate store.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Registry, core::Collector};

use crate::metrics::{counter, gauge};

/// Metrics of the shared ACME store (`shared/`), part of [`crate::METRICS`].
pub(crate) struct AcmeSharedMetrics {
    /// `edge_acme_shared_store_up`: 1 when the last store operation and the
    /// listening connection succeeded, 0 after a failure; absent use = 0.
    pub(crate) store_up: IntGauge,
    /// `edge_acme_shared_errors_total{operation}`.
    pub(crate) errors: IntCounterVec,
    /// `edge_acme_shared_leases_total{outcome}`.
    pub(crate) leases: IntCounterVec,
    /// `edge_acme_shared_certificates_received_total`.
    pub(crate) certificates_received: IntCounter,
    /// `edge_acme_shared_challenge_lookups_total{outcome}`.
    pub(crate) challenge_lookups: IntCounterVec,
    /// `edge_acme_shared_load_duration_seconds`.
    pub(crate) load_duration: Gauge,
    /// `edge_acme_shared_approvals_total{outcome}`.
    pub(crate) approvals: IntCounterVec,
    /// `edge_acme_shared_resealed_total{outcome}`.
    pub(crate) resealed: IntCounterVec,
    /// `edge_acme_shared_other_key_total`.
    pub(crate) other_key: IntCounter,
    /// `edge_acme_shared_swept_total{kind}`.
    pub(crate) swept: IntCounterVec,
}

impl AcmeSharedMetrics {
    // Building only fails on an invalid name, a programming error the unit
    // test in metrics.rs catches; panicking at startup is right.
    #[allow(clippy::expect_used)]
    pub(crate) fn new() -> Self {
        Self {
            store_up: gauge(
                "edge_acme_shared_store_up",
                "1 when the shared ACME store (PostgreSQL) answers, 0 after a failure.",
            ),
            errors: counter(
                "edge_acme_shared_errors_total",
                "Shared ACME store failures by operation (connect, listen, lease, certificate, \
                 decode, challenge, limits, account, approval, reseal, retention).",
                &["operation"],
            ),
            leases: counter(
                "edge_acme_shared_leases_total",
                "Per-name order leases by outcome (acquired, held_elsewhere, lost, write_refused).",
                &["outcome"],
            ),
            certificates_received: IntCounter::new(
                "edge_acme_shared_certificates_received_total",
                "Certificates read from the shared store (start-up load, notifications, polls).",
            )
            .expect("edge_acme_shared_certificates_received_total"),
            challenge_lookups: counter(
                "edge_acme_shared_challenge_lookups_total",
                "HTTP-01 requests not answered locally and looked up in the shared store, by \
                 outcome (found, missing, error, timeout).",
                &["outcome"],
            ),
            load_duration: Gauge::new(
                "edge_acme_shared_load_duration_seconds",
                "Seconds the last full load of certificates from the shared store took.",
            )
            .expect("edge_acme_shared_load_duration_seconds"),
            approvals: counter(
                "edge_acme_shared_approvals_total",
                "On-demand approvals shared through the store, by outcome: stored (this edge's \
                 ask answer written), used (a queued name approved from the store without \
                 asking), received (another edge's approval or refusal applied).",
                &["outcome"],
            ),
            resealed: counter(
                "edge_acme_shared_resealed_total",
                "Shared rows a storage-key change re-sealed, by outcome: resealed, raced (changed \
                 by another writer between read and write; left as it is), unreadable (sealed \
                 under neither key).",
                &["outcome"],
            ),
            other_key: IntCounter::new(
                "edge_acme_shared_other_key_total",
                "Shared certificates skipped because a storage key this edge does not hold \
                 sealed them (a key rotation in progress).",
            )
            .expect("edge_acme_shared_other_key_total"),
            swept: counter(
                "edge_acme_shared_swept_total",
                "Shared rows this edge's sweep deleted because no edge covered their name for \
                 acme.shared.retain_unwanted_hours, by kind (certificate, approval).",
                &["kind"],
            ),
        }
    }

    /// Registers every shared-store metric into the edge's `registry`.
    pub(crate) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        let all: [Box<dyn Collector>; 10] = [
            Box::new(self.store_up.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.leases.clone()),
            Box::new(self.certificates_received.clone()),
            Box::new(self.challenge_lookups.clone()),
            Box::new(self.load_duration.clone()),
            Box::new(self.approvals.clone()),
            Box::new(self.resealed.clone()),
            Box::new(self.other_key.clone()),
            Box::new(self.swept.clone()),
        ];
        all.into_iter().try_for_each(|m| registry.register(m))
    }
}
