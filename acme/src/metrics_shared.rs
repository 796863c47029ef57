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
                 decode, challenge, limits, account).",
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
        }
    }

    /// Registers every shared-store metric into the edge's `registry`.
    pub(crate) fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        let all: [Box<dyn Collector>; 6] = [
            Box::new(self.store_up.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.leases.clone()),
            Box::new(self.certificates_received.clone()),
            Box::new(self.challenge_lookups.clone()),
            Box::new(self.load_duration.clone()),
        ];
        all.into_iter().try_for_each(|m| registry.register(m))
    }
}
