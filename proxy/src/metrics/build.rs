//! The construction steps of [`Metrics`](super::Metrics): one group of
//! related metrics per step, each registered in the shared registry.
//!
//! Registration only fails on a programming error (duplicate or invalid
//! name), which the unit test of `metrics` catches; panicking at startup is right.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use super::{LATENCY_BUCKETS, counter, gauge, register};

/// Public requests and their events: outcomes, latency, rejections, encryption failures.
pub(super) struct RequestMetrics {
    pub(super) requests: IntCounterVec,
    pub(super) request_duration: HistogramVec,
    pub(super) events: IntCounterVec,
    pub(super) event_rejections: IntCounterVec,
    pub(super) encryption_failures: IntCounterVec,
}

impl RequestMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            requests: counter(
                registry,
                "edge_requests_total",
                "Public HTTP requests by site and outcome.",
                &["site", "outcome"],
            ),
            request_duration: register(
                registry,
                "edge_request_duration_seconds",
                HistogramVec::new(
                    HistogramOpts::new(
                        "edge_request_duration_seconds",
                        "Time from request headers to response, by outcome.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["outcome"],
                ),
            ),
            events: counter(
                registry,
                "edge_events_total",
                "Analytics events by site and outcome: accepted (acknowledged by Kafka) or failed (not stored; the client got 5xx).",
                &["site", "outcome"],
            ),
            event_rejections: counter(
                registry,
                "edge_event_rejections_total",
                "Requests whose events failed validation, by reason.",
                &["reason"],
            ),
            encryption_failures: counter(
                registry,
                "edge_encryption_failures_total",
                "Events that could not be encrypted, by reason.",
                &["reason"],
            ),
        }
    }
}

/// Kafka deliveries and producer readiness.
pub(super) struct KafkaMetrics {
    pub(super) kafka_delivery: IntCounterVec,
    pub(super) kafka_delivery_duration: Histogram,
    pub(super) kafka_ready: IntGauge,
}

impl KafkaMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            kafka_delivery: counter(
                registry,
                "edge_kafka_delivery_total",
                "Kafka record deliveries by outcome (acked, failed, queue_full).",
                &["outcome"],
            ),
            kafka_delivery_duration: register(
                registry,
                "edge_kafka_delivery_duration_seconds",
                Histogram::with_opts(
                    HistogramOpts::new(
                        "edge_kafka_delivery_duration_seconds",
                        "Time from enqueueing a record to the broker's acknowledgement.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                ),
            ),
            kafka_ready: gauge(
                registry,
                "edge_kafka_ready",
                "1 when the Kafka producer reached the broker and the topic has partitions.",
            ),
        }
    }
}

/// TLS handshakes and the certificates served.
pub(super) struct TlsMetrics {
    pub(super) tls_handshakes: IntCounterVec,
    pub(super) tls_certificate_expiry: IntGaugeVec,
    pub(super) tls_certificates: IntGauge,
}

impl TlsMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            tls_handshakes: counter(
                registry,
                "edge_tls_handshakes_total",
                "TLS handshakes on the public listener by outcome (ok, no_sni, unknown_sni, no_cert_yet, alpn_challenge, failed, timeout).",
                &["outcome"],
            ),
            tls_certificate_expiry: register(
                registry,
                "edge_tls_certificate_expiry_seconds",
                IntGaugeVec::new(
                    Opts::new(
                        "edge_tls_certificate_expiry_seconds",
                        "Seconds until the earliest expiry among the certificates serving a site (negative once expired).",
                    ),
                    &["site"],
                ),
            ),
            tls_certificates: gauge(
                registry,
                "edge_tls_certificates",
                "Certificates loaded in the active configuration.",
            ),
        }
    }
}

/// ACME orders, renewals and what holds them back.
pub(super) struct AcmeOrderMetrics {
    pub(super) acme_orders: IntCounterVec,
    pub(super) acme_issuance_duration: Histogram,
    pub(super) acme_renewals: IntCounterVec,
    pub(super) acme_forced_renewals: IntCounterVec,
    pub(super) acme_backoffs: IntCounter,
    pub(super) acme_names_in_backoff: IntGauge,
    pub(super) acme_rate_limited: IntCounterVec,
}

impl AcmeOrderMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            acme_orders: counter(
                registry,
                "edge_acme_orders_total",
                "ACME order attempts by challenge type and outcome (valid, invalid, error, timeout, not_offered).",
                &["challenge", "outcome"],
            ),
            acme_issuance_duration: register(
                registry,
                "edge_acme_issuance_duration_seconds",
                Histogram::with_opts(
                    HistogramOpts::new(
                        "edge_acme_issuance_duration_seconds",
                        "Time from starting an order to serving its certificate.",
                    )
                    .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
                ),
            ),
            acme_renewals: counter(
                registry,
                "edge_acme_renewals_total",
                "Certificate renewals by outcome (renewed, failed); a failed renewal keeps the old certificate.",
                &["outcome"],
            ),
            acme_forced_renewals: counter(
                registry,
                "edge_acme_forced_renewals_total",
                "Operator-forced renewals (POST /admin/certs/renew) by outcome.",
                &["outcome"],
            ),
            acme_backoffs: register(
                registry,
                "edge_acme_backoffs_total",
                IntCounter::new(
                    "edge_acme_backoffs_total",
                    "Failed certificate attempts that put a name into exponential backoff.",
                ),
            ),
            acme_names_in_backoff: gauge(
                registry,
                "edge_acme_names_in_backoff",
                "Names waiting out a backoff after failed attempts.",
            ),
            acme_rate_limited: counter(
                registry,
                "edge_acme_rate_limited_total",
                "Orders held back by acme.max_orders_per_hour (global) or acme.max_orders_per_name_per_day (name).",
                &["scope"],
            ),
        }
    }
}

/// ACME certificates served, on-demand asks, DNS checks, challenges, store errors.
pub(super) struct AcmeServiceMetrics {
    pub(super) acme_certificates: IntGauge,
    pub(super) acme_ask: IntCounterVec,
    pub(super) acme_dns_checks: IntCounterVec,
    pub(super) acme_challenges_served: IntCounterVec,
    pub(super) acme_store_errors: IntCounterVec,
}

impl AcmeServiceMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            acme_certificates: gauge(
                registry,
                "edge_acme_certificates",
                "Certificates obtained over ACME and currently served.",
            ),
            acme_ask: counter(
                registry,
                "edge_acme_ask_total",
                "On-demand ask endpoint calls by outcome (approved, denied, error, queue_full).",
                &["outcome"],
            ),
            acme_dns_checks: counter(
                registry,
                "edge_acme_dns_checks_total",
                "DNS pre-validations by outcome (ok, mismatch, error).",
                &["outcome"],
            ),
            acme_challenges_served: counter(
                registry,
                "edge_acme_challenges_served_total",
                "Challenge responses served to the CA by type.",
                &["challenge"],
            ),
            acme_store_errors: counter(
                registry,
                "edge_acme_store_errors_total",
                "Certificate store failures by operation (open, load, save, account).",
                &["operation"],
            ),
        }
    }
}

/// Configuration reloads and the active version.
pub(super) struct ConfigMetrics {
    pub(super) config_reloads: IntCounterVec,
    pub(super) config_info: IntGaugeVec,
    pub(super) config_last_success: IntGauge,
}

impl ConfigMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            config_reloads: counter(
                registry,
                "edge_config_reloads_total",
                "Configuration reload attempts by outcome (applied, unchanged, invalid, rejected).",
                &["outcome"],
            ),
            config_info: register(
                registry,
                "edge_config_info",
                IntGaugeVec::new(
                    Opts::new(
                        "edge_config_info",
                        "Always 1; the version label is the active configuration's hash.",
                    ),
                    &["version"],
                ),
            ),
            config_last_success: gauge(
                registry,
                "edge_config_last_reload_success_timestamp_seconds",
                "Unix time at which the active configuration was applied.",
            ),
        }
    }
}

/// The tracker script and the admin listener.
pub(super) struct TagAdminMetrics {
    pub(super) tag_requests: IntCounterVec,
    pub(super) tag_integrity_mismatch: IntGauge,
    pub(super) admin_requests: IntCounterVec,
    pub(super) admin_refused: IntCounterVec,
}

impl TagAdminMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            tag_requests: counter(
                registry,
                "edge_tag_requests_total",
                "Tracker script requests by outcome (served, not_modified, refused_integrity).",
                &["outcome"],
            ),
            tag_integrity_mismatch: gauge(
                registry,
                "edge_tag_integrity_mismatch",
                "1 while tag.expected_sri differs from the embedded tracker's SRI value (the tracker is refused).",
            ),
            admin_requests: counter(
                registry,
                "edge_admin_requests_total",
                "Admin listener requests by endpoint and status class.",
                &["endpoint", "status"],
            ),
            admin_refused: counter(
                registry,
                "edge_admin_refused_total",
                "Admin requests refused before reaching an endpoint, by reason.",
                &["reason"],
            ),
        }
    }
}
