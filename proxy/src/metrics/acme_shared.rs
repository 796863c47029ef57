//! Metrics of `[acme.shared]`: the fleet's shared certificate store.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Registry};

use super::{counter, gauge, register};

/// Metrics of the shared ACME store (proxy/src/acme/shared).
pub struct AcmeSharedMetrics {
    /// `edge_acme_shared_store_up`: 1 when the last store operation and the
    /// listening connection succeeded, 0 after a failure; absent use = 0.
    pub store_up: IntGauge,
    /// `edge_acme_shared_errors_total{operation}`.
    pub errors: IntCounterVec,
    /// `edge_acme_shared_leases_total{outcome}`.
    pub leases: IntCounterVec,
    /// `edge_acme_shared_certificates_received_total`.
    pub certificates_received: IntCounter,
    /// `edge_acme_shared_challenge_lookups_total{outcome}`.
    pub challenge_lookups: IntCounterVec,
    /// `edge_acme_shared_load_duration_seconds`.
    pub load_duration: Gauge,
}

impl AcmeSharedMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            store_up: gauge(
                registry,
                "edge_acme_shared_store_up",
                "1 when the shared ACME store (PostgreSQL) answers, 0 after a failure.",
            ),
            errors: counter(
                registry,
                "edge_acme_shared_errors_total",
                "Shared ACME store failures by operation (connect, listen, lease, certificate, \
                 decode, challenge, limits, account).",
                &["operation"],
            ),
            leases: counter(
                registry,
                "edge_acme_shared_leases_total",
                "Per-name order leases by outcome (acquired, held_elsewhere, lost, write_refused).",
                &["outcome"],
            ),
            certificates_received: register(
                registry,
                "edge_acme_shared_certificates_received_total",
                IntCounter::new(
                    "edge_acme_shared_certificates_received_total",
                    "Certificates read from the shared store (start-up load, notifications, polls).",
                ),
            ),
            challenge_lookups: counter(
                registry,
                "edge_acme_shared_challenge_lookups_total",
                "HTTP-01 requests not answered locally and looked up in the shared store, by \
                 outcome (found, missing, error, timeout).",
                &["outcome"],
            ),
            load_duration: register(
                registry,
                "edge_acme_shared_load_duration_seconds",
                Gauge::new(
                    "edge_acme_shared_load_duration_seconds",
                    "Seconds the last full load of certificates from the shared store took.",
                ),
            ),
        }
    }
}
