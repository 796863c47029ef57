//! Every Prometheus metric the edge exports, defined in one place.
//!
//! Label values come from fixed sets (the `as_label` methods of the enums
//! below, configured site ids, and error `kind()` strings), never from client
//! input such as IP addresses, user agents or paths.

mod build;
mod connections;
mod delivery;
pub(crate) mod delivery_events;
pub(crate) mod events;
pub(crate) mod handles;
mod ratelimit;

use std::sync::LazyLock;

pub(crate) use connections::{ConnectionMetrics, InputMetrics};
pub(crate) use delivery::{KafkaHealthMetrics, SpoolMetrics};
use prometheus::{
    Encoder, Histogram, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
pub(crate) use ratelimit::count_ratelimit;

/// The outcome of one public HTTP request, the `outcome` label of `edge_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestOutcome {
    /// Events accepted and acknowledged by Kafka (202, or 200 for the pixel).
    Accepted,
    /// CORS preflight answered.
    Preflight,
    /// Host names no configured site (421).
    UnknownHost,
    /// No route for the path (404).
    NotFound,
    /// Wrong method for the route (405).
    MethodNotAllowed,
    /// Body larger than `limits.max_body_bytes` (413).
    PayloadTooLarge,
    /// Content type the event endpoint does not take (415).
    UnsupportedMediaType,
    /// Body or query failed parsing or validation (400).
    Malformed,
    /// The client did not send its body in time (408).
    BodyTimeout,
    /// The `Origin` is not allowed for the site (403).
    OriginForbidden,
    /// Kafka did not acknowledge in time (503).
    Unavailable,
    /// A bug or resource failure inside the edge (500).
    InternalError,
    /// The tracker script served (200) or revalidated (304).
    Tag,
    /// The tracker script refused: it does not match `tag.expected_sri` (503).
    TagRefused,
    /// An ACME HTTP-01 challenge answered (200).
    AcmeChallenge,
    /// Plain HTTP redirected to HTTPS (308).
    Redirect,
    /// A rate-limit scope refused the events (429).
    RateLimited,
    /// A bot's events, dropped with the normal success status.
    BotDropped,
    /// Request head above `limits.max_request_head_bytes` (431).
    HeadTooLarge,
    /// Request target above `limits.max_uri_bytes` (414).
    UriTooLong,
    /// A header the edge reads is unreadable (not visible ASCII), repeated
    /// where one value is allowed, or `Content-Length` is repeated (400).
    InvalidHeader,
    /// `HEAD /api/event.gif`: the pixel's headers, nothing ingested (200).
    PixelHead,
}

impl RequestOutcome {
    /// The label value.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Preflight => "preflight",
            Self::UnknownHost => "unknown_host",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Malformed => "malformed",
            Self::BodyTimeout => "body_timeout",
            Self::OriginForbidden => "origin_forbidden",
            Self::Unavailable => "unavailable",
            Self::InternalError => "internal_error",
            Self::Tag => "tag",
            Self::TagRefused => "tag_refused",
            Self::AcmeChallenge => "acme_challenge",
            Self::Redirect => "redirect",
            Self::RateLimited => "rate_limited",
            Self::BotDropped => "bot_dropped",
            Self::HeadTooLarge => "head_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::InvalidHeader => "invalid_header",
            Self::PixelHead => "pixel_head",
        }
    }
}

/// All metrics of the edge process.
pub(crate) struct Metrics {
    registry: Registry,
    /// `edge_requests_total{site,outcome}`.
    pub requests: IntCounterVec,
    /// `edge_request_duration_seconds{outcome}`.
    pub request_duration: HistogramVec,
    /// `edge_events_total{site,outcome}`: events accepted or failed (rejections are counted per request).
    pub events: IntCounterVec,
    /// `edge_event_rejections_total{reason}`: why events were rejected (collector error kinds).
    pub event_rejections: IntCounterVec,
    /// `edge_kafka_delivery_total{outcome}`.
    pub kafka_delivery: IntCounterVec,
    /// `edge_kafka_delivery_duration_seconds`: enqueue to broker acknowledgement.
    pub kafka_delivery_duration: Histogram,
    /// `edge_kafka_ready`: 1 when the producer reached the broker and the topic exists.
    pub kafka_ready: IntGauge,
    /// `edge_tls_handshakes_total{outcome}`.
    pub tls_handshakes: IntCounterVec,
    /// `edge_config_reloads_total{outcome}`.
    pub config_reloads: IntCounterVec,
    /// `edge_config_info{version}`: 1 for the active config version (first 12 hex chars of its SHA-256).
    pub config_info: IntGaugeVec,
    /// `edge_config_last_reload_success_timestamp_seconds`.
    pub config_last_success: IntGauge,
    /// `edge_encryption_failures_total{reason}`.
    pub encryption_failures: IntCounterVec,
    /// `edge_tag_requests_total{outcome}`: tracker requests (served, not_modified, refused_integrity).
    pub tag_requests: IntCounterVec,
    /// `edge_tag_integrity_mismatch`: 1 while `tag.expected_sri` differs from the embedded tracker.
    pub tag_integrity_mismatch: IntGauge,
    /// `edge_admin_requests_total{endpoint,status}`.
    pub admin_requests: IntCounterVec,
    /// Rate limits, client addresses and bot verdicts.
    pub abuse: AbuseMetrics,
    /// `edge_capture_records_total{outcome}`: traffic capture records
    /// (written, dropped_queue_full, write_error), counted by `edge-capture`.
    pub capture: edge_capture::CaptureMetrics,
    /// Connection caps, deadlines and client faults of the listeners.
    pub connections: ConnectionMetrics,
    /// Request head and header checks (hostile input).
    pub input: InputMetrics,
    /// `edge_admin_refused_total{reason}`: admin requests refused before
    /// reaching an endpoint (foreign Host, browser, token, method, header).
    pub admin_refused: IntCounterVec,
    /// Kafka producer health: rebuilds, client errors, last error time.
    pub kafka_health: KafkaHealthMetrics,
    /// The durable spool and its shipper.
    pub spool: SpoolMetrics,
}

/// Metrics of the abuse controls (rate limits, client address, bots).
pub(crate) struct AbuseMetrics {
    /// `edge_ratelimit_decisions_total{scope,decision}`, counted per event.
    pub ratelimit_decisions: IntCounterVec,
    /// `edge_ratelimit_tracked_keys{scope}`: keys held by exact limiters.
    pub ratelimit_tracked_keys: IntGaugeVec,
    /// `edge_ratelimit_pruned_keys_total{scope}`: keys dropped because their bucket was full again.
    pub ratelimit_pruned_keys: IntCounterVec,
    /// `edge_ratelimit_degraded{scope}`: 1 while a scope judges by the fixed-memory estimator.
    pub ratelimit_degraded: IntGaugeVec,
    /// `edge_ratelimit_shared_sync_total{outcome}`: syncs with the fleet's Redis.
    pub ratelimit_shared_sync: IntCounterVec,
    /// `edge_ratelimit_shared_degraded`: 1 while shared per-site limits fall back to the local share.
    pub ratelimit_shared_degraded: IntGauge,
    /// `edge_client_ip_source_total{source}`: where the client address came from.
    pub client_ip_source: IntCounterVec,
    /// `edge_proxy_protocol_total{outcome}`: PROXY protocol headers read on public listeners.
    pub proxy_protocol: IntCounterVec,
    /// `edge_bot_verdicts_total{reason,action}`: requests judged to come from bots.
    pub bot_verdicts: IntCounterVec,
}

impl AbuseMetrics {
    fn new(registry: &Registry) -> Self {
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                name,
                IntGaugeVec::new(Opts::new(name, help), labels),
            )
        };
        Self {
            ratelimit_decisions: counter(
                registry,
                "edge_ratelimit_decisions_total",
                "Rate-limit decisions per event, by scope (per_ip, per_site, per_site_ip) and decision (allowed, limited, dry_run_limited, over_burst).",
                &["scope", "decision"],
            ),
            ratelimit_tracked_keys: gauge_vec(
                "edge_ratelimit_tracked_keys",
                "Keys tracked by the exact limiters of a scope.",
                &["scope"],
            ),
            ratelimit_pruned_keys: counter(
                registry,
                "edge_ratelimit_pruned_keys_total",
                "Limiter keys pruned because their bucket had refilled.",
                &["scope"],
            ),
            ratelimit_degraded: gauge_vec(
                "edge_ratelimit_degraded",
                "1 while a scope is over rate_limits.max_tracked_keys and judges by the fixed-memory estimator.",
                &["scope"],
            ),
            ratelimit_shared_sync: counter(
                registry,
                "edge_ratelimit_shared_sync_total",
                "Syncs of the fleet-wide per-site limits with Redis, by outcome (ok, error, timeout).",
                &["outcome"],
            ),
            ratelimit_shared_degraded: gauge(
                registry,
                "edge_ratelimit_shared_degraded",
                "1 while Redis is unreachable and every shared per-site limit is enforced as this edge's local share.",
            ),
            client_ip_source: counter(
                registry,
                "edge_client_ip_source_total",
                "Requests by where their client address came from (peer, proxy_protocol, x_forwarded_for, forwarded, header_invalid).",
                &["source"],
            ),
            proxy_protocol: counter(
                registry,
                "edge_proxy_protocol_total",
                "Connections on PROXY-protocol listeners by outcome (v1, v2, local, missing, invalid, timeout).",
                &["outcome"],
            ),
            bot_verdicts: counter(
                registry,
                "edge_bot_verdicts_total",
                "Requests judged to come from bots, by reason and action (dropped, tagged).",
                &["reason", "action"],
            ),
        }
    }
}

/// The process-wide metrics.
pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        name,
        IntCounterVec::new(Opts::new(name, help), labels),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, name, IntGauge::new(name, help))
}

/// Registers a freshly built metric; both steps only fail on a programming
/// error (invalid or duplicate name), which the unit test below catches.
fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    name: &str,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.unwrap_or_else(|e| panic!("{name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    metric
}

/// Another crate's metrics, registered into the edge's registry by that
/// crate (`edge-capture` builds its type, `edge-certs` and `edge-acme`
/// register their statics). Like [`register`], it only fails on a
/// programming error (duplicate or invalid name), which the unit test below
/// catches.
fn register_owned<M>(owner: &str, result: prometheus::Result<M>) -> M {
    result.unwrap_or_else(|e| panic!("{owner} metrics: {e}"))
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// Registers every metric, one group per step (see [`build`]); the
    /// sub-structs register their own.
    fn new() -> Self {
        let registry = Registry::new();
        let request = build::RequestMetrics::new(&registry);
        let kafka = build::KafkaMetrics::new(&registry);
        let tls = build::TlsMetrics::new(&registry);
        let config = build::ConfigMetrics::new(&registry);
        let tag_admin = build::TagAdminMetrics::new(&registry);
        // The certificate and ACME crates own their metrics; the edge
        // registers them so /metrics shows them with everything else.
        register_owned("edge-certs", edge_certs::METRICS.register(&registry));
        register_owned("edge-acme", edge_acme::METRICS.register(&registry));
        Self {
            requests: request.requests,
            request_duration: request.request_duration,
            events: request.events,
            event_rejections: request.event_rejections,
            kafka_delivery: kafka.kafka_delivery,
            kafka_delivery_duration: kafka.kafka_delivery_duration,
            kafka_ready: kafka.kafka_ready,
            tls_handshakes: tls.tls_handshakes,
            config_reloads: config.config_reloads,
            config_info: config.config_info,
            config_last_success: config.config_last_success,
            encryption_failures: request.encryption_failures,
            tag_requests: tag_admin.tag_requests,
            tag_integrity_mismatch: tag_admin.tag_integrity_mismatch,
            admin_requests: tag_admin.admin_requests,
            abuse: AbuseMetrics::new(&registry),
            capture: register_owned("edge-capture", edge_capture::CaptureMetrics::new(&registry)),
            connections: ConnectionMetrics::new(&registry),
            input: InputMetrics::new(&registry),
            admin_refused: tag_admin.admin_refused,
            kafka_health: KafkaHealthMetrics::new(&registry),
            spool: SpoolMetrics::new(&registry),
            registry,
        }
    }

    /// Marks `version` as the active configuration, removing the previous label.
    pub(crate) fn set_config_version(&self, previous: Option<&str>, version: &str) {
        if let Some(prev) = previous
            && prev != version
        {
            let _ = self.config_info.remove_label_values(&[prev]);
        }
        self.config_info.with_label_values(&[version]).set(1);
    }

    /// Renders every metric in the Prometheus text format.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders_with_edge_prefix() {
        METRICS.requests.with_label_values(&["s", "accepted"]).inc();
        METRICS.set_config_version(None, "abc");
        METRICS.set_config_version(Some("abc"), "def");
        let text = String::from_utf8(METRICS.render()).unwrap();
        assert!(text.contains("edge_requests_total{outcome=\"accepted\",site=\"s\"} 1"));
        assert!(text.contains("edge_config_info{version=\"def\"} 1"));
        assert!(!text.contains("version=\"abc\""));
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("edge_"), "{line}");
        }
    }
}
