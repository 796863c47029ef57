//! The view model: what the screen shows, computed from the current
//! [`Snapshot`] and the one before it (rates are counter deltas over the
//! time between the two scrapes). Pure functions, no I/O.

use std::collections::BTreeMap;

use crate::samples::Samples;
use crate::scrape::{CertsStatus, Snapshot, SpoolStatus};

/// A certificate expiring within this many seconds is listed as expiring soon.
pub const EXPIRING_SOON_SECONDS: f64 = 14.0 * 86_400.0;

/// A counter: its value and, from the second scrape on, its rate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counter {
    /// The value in the current scrape (0 when the series does not exist yet).
    pub total: f64,
    /// Increase per second since the previous scrape; `None` on the first.
    pub per_sec: Option<f64>,
}

/// One row of the per-site table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteRow {
    /// The site id, or `(no site)` for requests whose Host named none.
    pub site: String,
    /// `edge_requests_total{site}`.
    pub requests: Counter,
    /// `edge_events_total{site,outcome="accepted"}`.
    pub events: Counter,
    /// `edge_events_total{site,outcome="rate_limited"}`.
    pub rate_limited: Counter,
    /// `edge_requests_total{site,outcome="bot_dropped"}`.
    pub bots: Counter,
    /// `edge_events_total{site,outcome="failed"}`.
    pub failed: Counter,
}

/// Answers of one status class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassRow {
    /// `2xx`, `3xx`, `4xx`, `5xx` or `other` (an outcome this version of
    /// `edge top` does not know).
    pub class: &'static str,
    /// All requests of the class.
    pub counter: Counter,
    /// The class's outcomes, largest total first.
    pub outcomes: Vec<(String, Counter)>,
}

/// One drop (or would-be drop) reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DropRow {
    /// `bot`, `bot tagged`, `rate limit`, `rate limit dry run`,
    /// `validation`, `header`.
    pub kind: &'static str,
    /// The reason (bot reason, `scope decision`, rejection kind).
    pub reason: String,
    /// How many, and how fast.
    pub counter: Counter,
}

/// Kafka and spool state.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `edge_kafka_ready`.
    pub kafka_ready: Option<bool>,
    /// `edge_spool_records`: events waiting for the broker.
    pub spool_records: Option<f64>,
    /// `edge_spool_bytes`.
    pub spool_bytes: Option<f64>,
    /// `edge_spool_oldest_record_age_seconds`: the shipper's lag.
    pub oldest_age_seconds: Option<f64>,
    /// `edge_spool_writable`.
    pub writable: Option<bool>,
    /// Records acknowledged by the broker.
    pub shipped: Counter,
    /// Deliveries that failed (retried).
    pub ship_failures: Counter,
    /// Event requests the spool refused, by outcome (`full`, `io_error`, `too_large`).
    pub refused: Vec<(String, Counter)>,
    /// Kafka client errors by kind.
    pub client_errors: Vec<(String, Counter)>,
    /// `/admin/spool`, or why it could not be read.
    pub spool: Result<SpoolStatus, String>,
}

/// Certificates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Certs {
    /// `edge_tls_certificates`: operator-provided certificates.
    pub static_certs: Option<f64>,
    /// `edge_acme_certificates`: certificates obtained over ACME and served.
    pub acme_certs: Option<f64>,
    /// Whether ACME is on (`None` when `/admin/certs` could not be read).
    pub acme_enabled: Option<bool>,
    /// Managed names by state.
    pub states: BTreeMap<String, usize>,
    /// Managed names that are not `valid`: (name, state, next attempt
    /// Unix seconds, last error).
    pub attention: Vec<(String, String, Option<i64>, Option<String>)>,
    /// Sites whose earliest certificate expires within
    /// [`EXPIRING_SOON_SECONDS`] (or has expired): (site, seconds left).
    pub expiring: Vec<(String, f64)>,
    /// Why `/admin/certs` could not be read.
    pub error: Option<String>,
}

/// Everything on the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// Seconds between the two scrapes the rates come from.
    pub interval_seconds: Option<f64>,
    /// `edge_config_info{version}`.
    pub config_version: Option<String>,
    /// `/readyz`: ready and its text, or why it could not be read.
    pub ready: Option<Result<(bool, String), String>>,
    /// Conditions an operator must see (tag pin mismatch, degraded limiter…).
    pub warnings: Vec<String>,
    /// Per site.
    pub sites: Vec<SiteRow>,
    /// Answers by status class.
    pub answers: Vec<ClassRow>,
    /// Drops per reason.
    pub drops: Vec<DropRow>,
    /// Kafka and spool.
    pub delivery: Delivery,
    /// Certificates.
    pub certs: Certs,
    /// TLS handshakes by outcome.
    pub handshakes: Vec<(String, Counter)>,
    /// Open connections by listener.
    pub connections: Vec<(String, f64)>,
}

/// The status class of an `edge_requests_total` outcome (docs/metrics.md).
pub fn class_of(outcome: &str) -> &'static str {
    match outcome {
        "accepted" | "pixel_head" | "preflight" | "tag" | "acme_challenge" | "bot_dropped" => "2xx",
        "redirect" => "3xx",
        "head_too_large"
        | "uri_too_long"
        | "invalid_header"
        | "unknown_host"
        | "not_found"
        | "method_not_allowed"
        | "payload_too_large"
        | "unsupported_media_type"
        | "malformed"
        | "body_timeout"
        | "origin_forbidden"
        | "rate_limited" => "4xx",
        "unavailable" | "internal_error" | "tag_refused" => "5xx",
        _ => "other",
    }
}

/// Counters of the current scrape against the previous one.
struct Rates<'a> {
    cur: &'a Samples,
    prev: Option<&'a Samples>,
    seconds: f64,
}

impl Rates<'_> {
    fn counter(&self, name: &str, filter: &[(&str, &str)]) -> Counter {
        let total = self.cur.sum(name, filter).unwrap_or(0.0);
        Counter {
            total,
            per_sec: self
                .prev
                .map(|p| rate(p.sum(name, filter), total, self.seconds)),
        }
    }

    fn grouped(&self, name: &str, by: &str, filter: &[(&str, &str)]) -> Vec<(String, Counter)> {
        let cur = self.cur.group(name, by, filter);
        let prev = self.prev.map(|p| p.group(name, by, filter));
        cur.into_iter()
            .map(|(key, total)| {
                let per_sec = prev
                    .as_ref()
                    .map(|p| rate(p.get(&key).copied(), total, self.seconds));
                (key, Counter { total, per_sec })
            })
            .collect()
    }
}

/// Increase per second of a counter from `prev` to `cur`. A series absent
/// before started at 0 (the edge creates a series at its first increment);
/// a smaller value means the edge restarted, and counts from 0 as well.
pub fn rate(prev: Option<f64>, cur: f64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    let prev = prev.unwrap_or(0.0);
    let increase = if cur >= prev { cur - prev } else { cur };
    increase / seconds
}

/// The view of `cur`, with rates against `prev` when there is one.
pub fn build(prev: Option<&Snapshot>, cur: &Snapshot) -> View {
    let seconds = prev.map(|p| cur.at.saturating_duration_since(p.at).as_secs_f64());
    let r = Rates {
        cur: &cur.samples,
        prev: prev.map(|p| &p.samples),
        seconds: seconds.unwrap_or(0.0),
    };
    let s = &cur.samples;
    View {
        interval_seconds: seconds,
        config_version: s.label_of("edge_config_info", "version"),
        ready: Some(cur.ready.clone()),
        warnings: warnings(s),
        sites: sites(&r),
        answers: answers(&r),
        drops: drops(&r),
        delivery: delivery(&r, &cur.spool),
        certs: certs(s, &cur.certs),
        handshakes: sorted(r.grouped("edge_tls_handshakes_total", "outcome", &[])),
        connections: s
            .group("edge_connections_open", "listener", &[])
            .into_iter()
            .collect(),
    }
}

/// Largest total first, then by name.
fn sorted(mut rows: Vec<(String, Counter)>) -> Vec<(String, Counter)> {
    rows.sort_by(|a, b| b.1.total.total_cmp(&a.1.total).then_with(|| a.0.cmp(&b.0)));
    rows
}

fn warnings(s: &Samples) -> Vec<String> {
    let mut out = Vec::new();
    if s.sum("edge_tag_integrity_mismatch", &[]).unwrap_or(0.0) > 0.0 {
        out.push("tracker refused: tag.expected_sri does not match".to_string());
    }
    for (scope, v) in s.group("edge_ratelimit_degraded", "scope", &[]) {
        if v > 0.0 {
            out.push(format!(
                "rate limit {scope} degraded (over max_tracked_keys)"
            ));
        }
    }
    if s.sum("edge_ratelimit_shared_degraded", &[]).unwrap_or(0.0) > 0.0 {
        out.push(
            "shared site limits degraded (Redis unreachable: each edge enforces its local share)"
                .to_string(),
        );
    }
    if s.sum("edge_spool_writable", &[]) == Some(0.0) {
        out.push("spool not taking events (full or not writable)".to_string());
    }
    out
}

fn sites(r: &Rates<'_>) -> Vec<SiteRow> {
    let mut ids: Vec<String> = r
        .cur
        .group("edge_requests_total", "site", &[])
        .into_keys()
        .chain(r.cur.group("edge_events_total", "site", &[]).into_keys())
        .collect();
    ids.sort();
    ids.dedup();
    // requests that matched no site last
    if let Some(i) = ids.iter().position(|id| id == "-") {
        let none = ids.remove(i);
        ids.push(none);
    }
    ids.into_iter()
        .map(|id| {
            let site = [("site", id.as_str())];
            let ev = |outcome| {
                r.counter(
                    "edge_events_total",
                    &[("site", id.as_str()), ("outcome", outcome)],
                )
            };
            SiteRow {
                requests: r.counter("edge_requests_total", &site),
                events: ev("accepted"),
                rate_limited: ev("rate_limited"),
                failed: ev("failed"),
                bots: r.counter(
                    "edge_requests_total",
                    &[("site", id.as_str()), ("outcome", "bot_dropped")],
                ),
                site: if id == "-" {
                    "(no site)".to_string()
                } else {
                    id
                },
            }
        })
        .collect()
}

fn answers(r: &Rates<'_>) -> Vec<ClassRow> {
    let mut classes: BTreeMap<&'static str, ClassRow> = BTreeMap::new();
    for (outcome, counter) in r.grouped("edge_requests_total", "outcome", &[]) {
        let class = class_of(&outcome);
        let row = classes.entry(class).or_insert_with(|| ClassRow {
            class,
            counter: Counter {
                total: 0.0,
                per_sec: counter.per_sec.map(|_| 0.0),
            },
            outcomes: Vec::new(),
        });
        row.counter.total += counter.total;
        row.counter.per_sec = match (row.counter.per_sec, counter.per_sec) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        row.outcomes.push((outcome, counter));
    }
    classes
        .into_values()
        .map(|mut row| {
            row.outcomes = sorted(std::mem::take(&mut row.outcomes));
            row
        })
        .collect()
}

fn drops(r: &Rates<'_>) -> Vec<DropRow> {
    let mut out = Vec::new();
    let mut push = |kind: &'static str, rows: Vec<(String, Counter)>| {
        out.extend(sorted(rows).into_iter().map(|(reason, counter)| DropRow {
            kind,
            reason,
            counter,
        }));
    };
    push(
        "bot",
        r.grouped(
            "edge_bot_verdicts_total",
            "reason",
            &[("action", "dropped")],
        ),
    );
    push(
        "bot tagged",
        r.grouped("edge_bot_verdicts_total", "reason", &[("action", "tagged")]),
    );
    for (kind, decisions) in [
        ("rate limit", &["limited", "over_burst"][..]),
        ("rate limit dry run", &["dry_run_limited"][..]),
    ] {
        let mut rows = Vec::new();
        for decision in decisions {
            for (scope, c) in r.grouped(
                "edge_ratelimit_decisions_total",
                "scope",
                &[("decision", decision)],
            ) {
                rows.push((format!("{scope} {decision}"), c));
            }
        }
        push(kind, rows);
    }
    push(
        "validation",
        r.grouped("edge_event_rejections_total", "reason", &[]),
    );
    push(
        "header",
        r.grouped("edge_header_rejections_total", "reason", &[]),
    );
    out
}

fn delivery(r: &Rates<'_>, spool: &Result<SpoolStatus, String>) -> Delivery {
    let s = r.cur;
    let refused = r
        .grouped("edge_spool_appends_total", "outcome", &[])
        .into_iter()
        .filter(|(outcome, _)| outcome != "accepted")
        .collect();
    Delivery {
        kafka_ready: s.sum("edge_kafka_ready", &[]).map(|v| v > 0.0),
        spool_records: s.sum("edge_spool_records", &[]),
        spool_bytes: s.sum("edge_spool_bytes", &[]),
        oldest_age_seconds: s.sum("edge_spool_oldest_record_age_seconds", &[]),
        writable: s.sum("edge_spool_writable", &[]).map(|v| v > 0.0),
        shipped: r.counter("edge_shipper_deliveries_total", &[("outcome", "acked")]),
        ship_failures: r.counter("edge_shipper_deliveries_total", &[("outcome", "failed")]),
        refused: sorted(refused),
        client_errors: sorted(r.grouped("edge_kafka_client_errors_total", "kind", &[])),
        spool: spool.clone(),
    }
}

fn certs(s: &Samples, status: &Result<CertsStatus, String>) -> Certs {
    let mut expiring: Vec<(String, f64)> = s
        .group("edge_tls_certificate_expiry_seconds", "site", &[])
        .into_iter()
        .filter(|(_, left)| *left < EXPIRING_SOON_SECONDS)
        .collect();
    expiring.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut out = Certs {
        static_certs: s.sum("edge_tls_certificates", &[]),
        acme_certs: s.sum("edge_acme_certificates", &[]),
        expiring,
        ..Certs::default()
    };
    match status {
        Ok(c) => {
            out.acme_enabled = Some(c.acme.is_some());
            for n in &c.names {
                let state = n.state.clone().unwrap_or_else(|| "served".to_string());
                *out.states.entry(state.clone()).or_insert(0) += 1;
                if state != "valid" && state != "served" {
                    out.attention.push((
                        n.name.clone(),
                        state,
                        n.next_attempt_unix,
                        n.last_error.clone(),
                    ));
                }
            }
        }
        Err(e) => out.error = Some(e.clone()),
    }
    out
}

#[cfg(test)]
#[path = "model/tests.rs"]
mod tests;
