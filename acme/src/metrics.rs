//! The `edge_acme_*` metrics. They live here, next to what they measure;
//! the edge registers them into its own registry ([`AcmeMetrics::register`])
//! so `/metrics` shows them beside everything else.

use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, core::Collector,
};

/// The process-wide ACME metrics (registered by the edge at startup).
pub static METRICS: LazyLock<AcmeMetrics> = LazyLock::new(AcmeMetrics::new);

/// The ACME metrics.
pub struct AcmeMetrics {
    /// `edge_acme_orders_total{challenge,outcome}`.
    pub(crate) acme_orders: IntCounterVec,
    /// `edge_acme_issuance_duration_seconds`: order start to certificate installed.
    pub(crate) acme_issuance_duration: Histogram,
    /// `edge_acme_renewals_total{outcome}`.
    pub(crate) acme_renewals: IntCounterVec,
    /// `edge_acme_certificates`: certificates obtained over ACME and served.
    pub(crate) acme_certificates: IntGauge,
    /// `edge_acme_backoffs_total`: failed attempts that put a name into backoff.
    pub(crate) acme_backoffs: IntCounter,
    /// `edge_acme_names_in_backoff`.
    pub(crate) acme_names_in_backoff: IntGauge,
    /// `edge_acme_rate_limited_total{scope}`: orders held back by issuance limits.
    pub(crate) acme_rate_limited: IntCounterVec,
    /// `edge_acme_ask_total{outcome}`: on-demand `ask` calls.
    pub(crate) acme_ask: IntCounterVec,
    /// `edge_acme_dns_checks_total{outcome}`.
    pub(crate) acme_dns_checks: IntCounterVec,
    /// `edge_acme_challenges_served_total{challenge}`: counted by the edge,
    /// which answers the CA (HTTP-01 on port 80, TLS-ALPN-01 in the handshake).
    pub acme_challenges_served: IntCounterVec,
    /// `edge_acme_store_errors_total{operation}`.
    pub(crate) acme_store_errors: IntCounterVec,
    /// `edge_acme_forced_renewals_total{outcome}`: `POST /admin/certs/renew` answers.
    pub(crate) acme_forced_renewals: IntCounterVec,
    /// `edge_acme_shared_*`: the fleet's shared store (`[acme.shared]`).
    pub(crate) acme_shared: crate::metrics_shared::AcmeSharedMetrics,
}

// Building only fails on an invalid name or label, a programming error the
// unit test below catches; panicking at startup is right.
#[allow(clippy::expect_used)]
pub(crate) fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect(name)
}

#[allow(clippy::expect_used)]
pub(crate) fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect(name)
}

impl AcmeMetrics {
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        Self {
            acme_orders: counter(
                "edge_acme_orders_total",
                "ACME order attempts by challenge type and outcome (valid, invalid, error, timeout, not_offered).",
                &["challenge", "outcome"],
            ),
            acme_issuance_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "edge_acme_issuance_duration_seconds",
                    "Time from starting an order to serving its certificate.",
                )
                .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
            )
            .expect("edge_acme_issuance_duration_seconds"),
            acme_renewals: counter(
                "edge_acme_renewals_total",
                "Certificate renewals by outcome (renewed, failed); a failed renewal keeps the old certificate.",
                &["outcome"],
            ),
            acme_certificates: gauge(
                "edge_acme_certificates",
                "Certificates obtained over ACME and currently served.",
            ),
            acme_backoffs: IntCounter::new(
                "edge_acme_backoffs_total",
                "Failed certificate attempts that put a name into exponential backoff.",
            )
            .expect("edge_acme_backoffs_total"),
            acme_names_in_backoff: gauge(
                "edge_acme_names_in_backoff",
                "Names waiting out a backoff after failed attempts.",
            ),
            acme_rate_limited: counter(
                "edge_acme_rate_limited_total",
                "Orders held back by acme.max_orders_per_hour (global) or acme.max_orders_per_name_per_day (name).",
                &["scope"],
            ),
            acme_ask: counter(
                "edge_acme_ask_total",
                "On-demand ask endpoint calls by outcome (approved, denied, error, queue_full).",
                &["outcome"],
            ),
            acme_dns_checks: counter(
                "edge_acme_dns_checks_total",
                "DNS pre-validations by outcome (ok, mismatch, error).",
                &["outcome"],
            ),
            acme_challenges_served: counter(
                "edge_acme_challenges_served_total",
                "Challenge responses served to the CA by type.",
                &["challenge"],
            ),
            acme_store_errors: counter(
                "edge_acme_store_errors_total",
                "Certificate store failures by operation (open, load, save, account).",
                &["operation"],
            ),
            acme_forced_renewals: counter(
                "edge_acme_forced_renewals_total",
                "Operator-forced renewals (POST /admin/certs/renew) by outcome.",
                &["outcome"],
            ),
            acme_shared: crate::metrics_shared::AcmeSharedMetrics::new(),
        }
    }

    /// Registers every ACME metric into the edge's `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        let all: [Box<dyn Collector>; 12] = [
            Box::new(self.acme_orders.clone()),
            Box::new(self.acme_issuance_duration.clone()),
            Box::new(self.acme_renewals.clone()),
            Box::new(self.acme_certificates.clone()),
            Box::new(self.acme_backoffs.clone()),
            Box::new(self.acme_names_in_backoff.clone()),
            Box::new(self.acme_rate_limited.clone()),
            Box::new(self.acme_ask.clone()),
            Box::new(self.acme_dns_checks.clone()),
            Box::new(self.acme_challenges_served.clone()),
            Box::new(self.acme_store_errors.clone()),
            Box::new(self.acme_forced_renewals.clone()),
        ];
        all.into_iter().try_for_each(|m| registry.register(m))?;
        self.acme_shared.register(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_with_the_edge_acme_prefix() {
        let registry = Registry::new();
        let metrics = AcmeMetrics::new();
        metrics.register(&registry).unwrap();
        metrics.acme_backoffs.inc();
        metrics.acme_ask.with_label_values(&["approved"]).inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(names.contains(&"edge_acme_backoffs_total".to_string()));
        assert!(names.contains(&"edge_acme_ask_total".to_string()));
        assert!(
            names.iter().all(|n| n.starts_with("edge_acme_")),
            "{names:?}"
        );
    }
}
