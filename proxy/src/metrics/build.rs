//! The construction steps of [`Metrics`](super::Metrics): one group of
//! related metrics per step, each registered in the shared registry.
//!
//! Registration only fails on a programming error (duplicate or invalid
//! name), which the unit test of `metrics` catches; panicking at startup is right.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
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

/// TLS handshakes on the public listener (the certificate metrics are
/// `edge-certs`' own).
pub(super) struct TlsMetrics {
    pub(super) tls_handshakes: IntCounterVec,
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
