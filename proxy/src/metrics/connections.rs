//! Metrics of the connection layer and the request head checks: what
//! hostile clients cost and how they were refused.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{counter, gauge, register};

/// Metrics of the connection layer (proxy/src/connections).
pub(crate) struct ConnectionMetrics {
    /// `edge_connections_open{listener}`: connections open right now.
    pub open: IntGaugeVec,
    /// `edge_connections_refused_total{listener,reason}`: closed at accept by a cap.
    pub refused: IntCounterVec,
    /// `edge_connection_timeouts_total{listener,phase}`: closed by a deadline.
    pub timeouts: IntCounterVec,
    /// `edge_client_faults_total{kind}`: client faults counted instead of logged.
    pub client_faults: IntCounterVec,
    /// `edge_log_lines_suppressed_total{reason}`: Pingora log lines dropped.
    pub log_lines_suppressed: IntCounterVec,
    /// `edge_open_files_limit`: the soft `RLIMIT_NOFILE` in force.
    pub open_files_limit: IntGauge,
}

impl ConnectionMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            open: register(
                registry,
                "edge_connections_open",
                IntGaugeVec::new(
                    Opts::new(
                        "edge_connections_open",
                        "Open connections by listener (http, https, admin).",
                    ),
                    &["listener"],
                ),
            ),
            refused: counter(
                registry,
                "edge_connections_refused_total",
                "Connections closed at accept by a cap, by listener and reason (listener_limit, client_limit).",
                &["listener", "reason"],
            ),
            timeouts: counter(
                registry,
                "edge_connection_timeouts_total",
                "Connections closed by a deadline, by listener and phase (header, keepalive, h2_handshake).",
                &["listener", "phase"],
            ),
            client_faults: counter(
                registry,
                "edge_client_faults_total",
                "Per-connection client faults counted instead of logged, by kind (reset, timeout, protocol, incomplete_head, head_too_large, h2_handshake, handshake, accept_error).",
                &["kind"],
            ),
            log_lines_suppressed: counter(
                registry,
                "edge_log_lines_suppressed_total",
                "Pingora log lines dropped, by reason (client_fault, rate_limited).",
                &["reason"],
            ),
            open_files_limit: gauge(
                registry,
                "edge_open_files_limit",
                "The soft open-file limit (RLIMIT_NOFILE) the edge runs with.",
            ),
        }
    }
}

/// Metrics of the request head checks in `http/head.rs`.
pub(crate) struct InputMetrics {
    /// `edge_header_rejections_total{header,reason}`: requests refused for a
    /// header the edge reads (`header` from [`crate::http::head::CHECKED_HEADERS`]
    /// or the trusted forwarding header), `reason` `unreadable` (not visible
    /// ASCII) or `repeated`.
    pub header_rejections: IntCounterVec,
}

impl InputMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            header_rejections: counter(
                registry,
                "edge_header_rejections_total",
                "Requests refused for a header the edge reads: unreadable (not visible ASCII) or repeated where one value is allowed.",
                &["header", "reason"],
            ),
        }
    }
}
