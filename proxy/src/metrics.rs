//! Every Prometheus metric the edge exports, defined in one place.
//!
//! Label values come from fixed sets (the `as_label` methods of the enums
//! below, configured site ids, and error `kind()` strings), never from client
//! input such as IP addresses, user agents or paths.

mod acme_shared;
mod connections;
mod delivery;
pub mod events;
mod ratelimit;

use std::sync::LazyLock;

pub use acme_shared::AcmeSharedMetrics;
pub use connections::{ConnectionMetrics, InputMetrics};
pub use delivery::{KafkaHealthMetrics, SpoolMetrics};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The outcome of one public HTTP request, the `outcome` label of `edge_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
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
    pub fn as_label(self) -> &'static str {
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
pub struct Metrics {
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
    /// `edge_tls_certificate_expiry_seconds{site}`: seconds until the site's earliest certificate expiry.
    pub tls_certificate_expiry: IntGaugeVec,
    /// `edge_acme_orders_total{challenge,outcome}`.
    pub acme_orders: IntCounterVec,
    /// `edge_acme_issuance_duration_seconds`: order start to certificate installed.
    pub acme_issuance_duration: Histogram,
    /// `edge_acme_renewals_total{outcome}`.
    pub acme_renewals: IntCounterVec,
    /// `edge_acme_certificates`: certificates obtained over ACME and served.
    pub acme_certificates: IntGauge,
    /// `edge_acme_backoffs_total`: failed attempts that put a name into backoff.
    pub acme_backoffs: IntCounter,
    /// `edge_acme_names_in_backoff`.
    pub acme_names_in_backoff: IntGauge,
    /// `edge_acme_rate_limited_total{scope}`: orders held back by issuance limits.
    pub acme_rate_limited: IntCounterVec,
    /// `edge_acme_ask_total{outcome}`: on-demand `ask` calls.
    pub acme_ask: IntCounterVec,
    /// `edge_acme_dns_checks_total{outcome}`.
    pub acme_dns_checks: IntCounterVec,
    /// `edge_acme_challenges_served_total{challenge}`.
    pub acme_challenges_served: IntCounterVec,
    /// `edge_acme_store_errors_total{operation}`.
    pub acme_store_errors: IntCounterVec,
    /// `edge_tls_certificates`: certificates loaded in the active configuration.
    pub tls_certificates: IntGauge,
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
    /// `edge_capture_records_total{outcome}`: traffic capture records (written, dropped_queue_full, write_error).
    pub capture_records: IntCounterVec,
    /// Connection caps, deadlines and client faults of the listeners.
    pub connections: ConnectionMetrics,
    /// The fleet's shared ACME store (`[acme.shared]`).
    pub acme_shared: AcmeSharedMetrics,
    /// Request head and header checks (hostile input).
    pub input: InputMetrics,
    /// `edge_admin_refused_total{reason}`: admin requests refused before
    /// reaching an endpoint (foreign Host, browser, token, method, header).
    pub admin_refused: IntCounterVec,
    /// `edge_acme_forced_renewals_total{outcome}`: `POST /admin/certs/renew` answers.
    pub acme_forced_renewals: IntCounterVec,
    /// Kafka producer health: rebuilds, client errors, last error time.
    pub kafka_health: KafkaHealthMetrics,
    /// The durable spool and its shipper.
    pub spool: SpoolMetrics,
}

/// Metrics of the abuse controls (rate limits, client address, bots).
pub struct AbuseMetrics {
    /// `edge_ratelimit_decisions_total{scope,decision}`, counted per event.
    pub ratelimit_decisions: IntCounterVec,
    /// `edge_ratelimit_tracked_keys{scope}`: keys held by exact limiters.
    pub ratelimit_tracked_keys: IntGaugeVec,
    /// `edge_ratelimit_pruned_keys_total{scope}`: keys dropped because their bucket was full again.
    pub ratelimit_pruned_keys: IntCounterVec,
    /// `edge_ratelimit_degraded{scope}`: 1 while a scope judges by the fixed-memory estimator.
    pub ratelimit_degraded: IntGaugeVec,
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
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

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

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    // Registration only fails on a programming error (duplicate or invalid
    // name), which the unit test below catches; panicking at startup is right.
    #[allow(clippy::panic)]
    fn new() -> Self {
        let registry = Registry::new();
        let requests = counter(
            &registry,
            "edge_requests_total",
            "Public HTTP requests by site and outcome.",
            &["site", "outcome"],
        );
        let request_duration = register(
            &registry,
            "edge_request_duration_seconds",
            HistogramVec::new(
                HistogramOpts::new(
                    "edge_request_duration_seconds",
                    "Time from request headers to response, by outcome.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["outcome"],
            ),
        );
        let events = counter(
            &registry,
            "edge_events_total",
            "Analytics events by site and outcome: accepted (acknowledged by Kafka) or failed (not stored; the client got 5xx).",
            &["site", "outcome"],
        );
        let event_rejections = counter(
            &registry,
            "edge_event_rejections_total",
            "Requests whose events failed validation, by reason.",
            &["reason"],
        );
        let kafka_delivery = counter(
            &registry,
            "edge_kafka_delivery_total",
            "Kafka record deliveries by outcome (acked, failed, queue_full).",
            &["outcome"],
        );
        let kafka_delivery_duration = register(
            &registry,
            "edge_kafka_delivery_duration_seconds",
            Histogram::with_opts(
                HistogramOpts::new(
                    "edge_kafka_delivery_duration_seconds",
                    "Time from enqueueing a record to the broker's acknowledgement.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            ),
        );
        let kafka_ready = gauge(
            &registry,
            "edge_kafka_ready",
            "1 when the Kafka producer reached the broker and the topic has partitions.",
        );
        let tls_handshakes = counter(
            &registry,
            "edge_tls_handshakes_total",
            "TLS handshakes on the public listener by outcome (ok, no_sni, unknown_sni, no_cert_yet, alpn_challenge, failed, timeout).",
            &["outcome"],
        );
        let tls_certificate_expiry = register(
            &registry,
            "edge_tls_certificate_expiry_seconds",
            IntGaugeVec::new(
                Opts::new(
                    "edge_tls_certificate_expiry_seconds",
                    "Seconds until the earliest expiry among the certificates serving a site (negative once expired).",
                ),
                &["site"],
            ),
        );
        let acme_orders = counter(
            &registry,
            "edge_acme_orders_total",
            "ACME order attempts by challenge type and outcome (valid, invalid, error, timeout, not_offered).",
            &["challenge", "outcome"],
        );
        let acme_issuance_duration = register(
            &registry,
            "edge_acme_issuance_duration_seconds",
            Histogram::with_opts(
                HistogramOpts::new(
                    "edge_acme_issuance_duration_seconds",
                    "Time from starting an order to serving its certificate.",
                )
                .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
            ),
        );
        let acme_renewals = counter(
            &registry,
            "edge_acme_renewals_total",
            "Certificate renewals by outcome (renewed, failed); a failed renewal keeps the old certificate.",
            &["outcome"],
        );
        let acme_certificates = gauge(
            &registry,
            "edge_acme_certificates",
            "Certificates obtained over ACME and currently served.",
        );
        let acme_backoffs = register(
            &registry,
            "edge_acme_backoffs_total",
            IntCounter::new(
                "edge_acme_backoffs_total",
                "Failed certificate attempts that put a name into exponential backoff.",
            ),
        );
        let acme_names_in_backoff = gauge(
            &registry,
            "edge_acme_names_in_backoff",
            "Names waiting out a backoff after failed attempts.",
        );
        let acme_rate_limited = counter(
            &registry,
            "edge_acme_rate_limited_total",
            "Orders held back by acme.max_orders_per_hour (global) or acme.max_orders_per_name_per_day (name).",
            &["scope"],
        );
        let acme_ask = counter(
            &registry,
            "edge_acme_ask_total",
            "On-demand ask endpoint calls by outcome (approved, denied, error, queue_full).",
            &["outcome"],
        );
        let acme_dns_checks = counter(
            &registry,
            "edge_acme_dns_checks_total",
            "DNS pre-validations by outcome (ok, mismatch, error).",
            &["outcome"],
        );
        let acme_challenges_served = counter(
            &registry,
            "edge_acme_challenges_served_total",
            "Challenge responses served to the CA by type.",
            &["challenge"],
        );
        let acme_store_errors = counter(
            &registry,
            "edge_acme_store_errors_total",
            "Certificate store failures by operation (open, load, save, account).",
            &["operation"],
        );
        let tls_certificates = gauge(
            &registry,
            "edge_tls_certificates",
            "Certificates loaded in the active configuration.",
        );
        let config_reloads = counter(
            &registry,
            "edge_config_reloads_total",
            "Configuration reload attempts by outcome (applied, unchanged, invalid, rejected).",
            &["outcome"],
        );
        let config_info = register(
            &registry,
            "edge_config_info",
            IntGaugeVec::new(
                Opts::new(
                    "edge_config_info",
                    "Always 1; the version label is the active configuration's hash.",
                ),
                &["version"],
            ),
        );
        let config_last_success = gauge(
            &registry,
            "edge_config_last_reload_success_timestamp_seconds",
            "Unix time at which the active configuration was applied.",
        );
        let encryption_failures = counter(
            &registry,
            "edge_encryption_failures_total",
            "Events that could not be encrypted, by reason.",
            &["reason"],
        );
        let tag_requests = counter(
            &registry,
            "edge_tag_requests_total",
            "Tracker script requests by outcome (served, not_modified, refused_integrity).",
            &["outcome"],
        );
        let tag_integrity_mismatch = gauge(
            &registry,
            "edge_tag_integrity_mismatch",
            "1 while tag.expected_sri differs from the embedded tracker's SRI value (the tracker is refused).",
        );
        let admin_requests = counter(
            &registry,
            "edge_admin_requests_total",
            "Admin listener requests by endpoint and status class.",
            &["endpoint", "status"],
        );
        let abuse = AbuseMetrics::new(&registry);
        let capture_records = counter(
            &registry,
            "edge_capture_records_total",
            "Traffic capture records by outcome (written, dropped_queue_full, write_error).",
            &["outcome"],
        );
        let connections = ConnectionMetrics::new(&registry);
        let acme_shared = AcmeSharedMetrics::new(&registry);
        let input = InputMetrics::new(&registry);
        let admin_refused = counter(
            &registry,
            "edge_admin_refused_total",
            "Admin requests refused before reaching an endpoint, by reason.",
            &["reason"],
        );
        let acme_forced_renewals = counter(
            &registry,
            "edge_acme_forced_renewals_total",
            "Operator-forced renewals (POST /admin/certs/renew) by outcome.",
            &["outcome"],
        );
        let kafka_health = KafkaHealthMetrics::new(&registry);
        let spool = SpoolMetrics::new(&registry);
        Self {
            connections,
            acme_shared,
            input,
            admin_refused,
            acme_forced_renewals,
            abuse,
            capture_records,
            spool,
            registry,
            requests,
            request_duration,
            events,
            event_rejections,
            kafka_delivery,
            kafka_delivery_duration,
            kafka_ready,
            tls_handshakes,
            tls_certificates,
            tls_certificate_expiry,
            acme_orders,
            acme_issuance_duration,
            acme_renewals,
            acme_certificates,
            acme_backoffs,
            acme_names_in_backoff,
            acme_rate_limited,
            acme_ask,
            acme_dns_checks,
            acme_challenges_served,
            acme_store_errors,
            config_reloads,
            config_info,
            config_last_success,
            encryption_failures,
            tag_requests,
            tag_integrity_mismatch,
            admin_requests,
            kafka_health,
        }
    }

    /// Marks `version` as the active configuration, removing the previous label.
    pub fn set_config_version(&self, previous: Option<&str>, version: &str) {
        if let Some(prev) = previous
            && prev != version
        {
            let _ = self.config_info.remove_label_values(&[prev]);
        }
        self.config_info.with_label_values(&[version]).set(1);
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
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
