//! The final report: a serializable summary and its human-readable rendering.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::Stats;

/// Response counts by status class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// 2xx responses.
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    /// 429 responses.
    #[serde(rename = "429")]
    pub s429: u64,
    /// 4xx responses other than 429.
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    /// 5xx responses.
    #[serde(rename = "5xx")]
    pub s5xx: u64,
    /// Anything else (1xx, 3xx).
    pub other: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of a µs histogram, in ms (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// TLS handshake statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TlsSummary {
    /// Full handshakes.
    pub full: u64,
    /// Resumed handshakes.
    pub resumed: u64,
    /// Median full handshake time, ms.
    pub full_p50_ms: f64,
    /// 99th percentile full handshake time, ms.
    pub full_p99_ms: f64,
    /// Median resumed handshake time, ms.
    pub resumed_p50_ms: f64,
    /// 99th percentile resumed handshake time, ms.
    pub resumed_p99_ms: f64,
}

/// The run summary; `--json` prints exactly this.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Requests started.
    pub sent: u64,
    /// Requests that got a response.
    pub completed: u64,
    /// Responses by status class.
    pub status: StatusCounts,
    /// Requests that hit `--timeout-ms`.
    pub timeouts: u64,
    /// Connect/TLS/I/O errors.
    pub errors: u64,
    /// From run start to the last finished request.
    pub duration_s: f64,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Latency from intended send time, ms.
    pub latency_ms: Percentiles,
    /// TLS handshakes, or `null` for cleartext targets.
    pub tls: Option<TlsSummary>,
}

impl Summary {
    /// Summarizes `stats`; `tls` says whether the target used TLS.
    pub fn from_stats(stats: &Stats, tls: bool) -> Self {
        let c = stats.counters;
        let duration_s = stats.elapsed.as_secs_f64();
        let p = Percentiles::of;
        Self {
            sent: c.sent,
            completed: c.completed,
            status: StatusCounts {
                s2xx: c.s2xx,
                s429: c.s429,
                s4xx: c.s4xx,
                s5xx: c.s5xx,
                other: c.other,
            },
            timeouts: c.timeouts,
            errors: c.errors,
            duration_s,
            throughput_rps: if duration_s > 0.0 {
                c.completed as f64 / duration_s
            } else {
                0.0
            },
            latency_ms: p(&stats.latency),
            tls: tls.then(|| TlsSummary {
                full: stats.tls_full.len(),
                resumed: stats.tls_resumed.len(),
                full_p50_ms: p(&stats.tls_full).p50,
                full_p99_ms: p(&stats.tls_full).p99,
                resumed_p50_ms: p(&stats.tls_resumed).p50,
                resumed_p99_ms: p(&stats.tls_resumed).p99,
            }),
        }
    }

    /// Human-readable multi-line report.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let s2 = &self.status;
        let l = &self.latency_ms;
        // Writing to a String cannot fail.
        let _ = writeln!(s, "sent       {}", self.sent);
        let _ = writeln!(s, "completed  {}", self.completed);
        let _ = writeln!(
            s,
            "status     2xx={} 429={} 4xx={} 5xx={} other={}",
            s2.s2xx, s2.s429, s2.s4xx, s2.s5xx, s2.other
        );
        let _ = writeln!(s, "timeouts   {}", self.timeouts);
        let _ = writeln!(s, "errors     {}", self.errors);
        let _ = writeln!(
            s,
            "throughput {:.1} req/s over {:.2} s",
            self.throughput_rps, self.duration_s
        );
        let _ = writeln!(
            s,
            "latency ms p50={:.2} p90={:.2} p99={:.2} p99.9={:.2} max={:.2}  (from intended send time)",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        if let Some(t) = &self.tls {
            let _ = writeln!(
                s,
                "tls        full={} (p50={:.2} ms p99={:.2} ms) resumed={} (p50={:.2} ms p99={:.2} ms)",
                t.full, t.full_p50_ms, t.full_p99_ms, t.resumed, t.resumed_p50_ms, t.resumed_p99_ms
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{HandshakeKind, Outcome};

    #[test]
    fn json_field_names_are_stable() {
        let mut stats = Stats::default();
        for i in 0..10u64 {
            stats.record_sent();
            let code = if i == 9 { 429 } else { 202 };
            stats.record(
                Outcome::Status(code),
                Duration::from_millis(i + 1),
                0,
                Duration::from_secs(1),
            );
        }
        stats.record_handshake(HandshakeKind::Full, Duration::from_millis(3));
        let v = serde_json::to_value(Summary::from_stats(&stats, true)).unwrap();
        for key in [
            "sent",
            "completed",
            "status",
            "timeouts",
            "errors",
            "duration_s",
            "throughput_rps",
            "latency_ms",
            "tls",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["2xx", "429", "4xx", "5xx"] {
            assert!(v["status"].get(key).is_some(), "missing status.{key}");
        }
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_ms"][key].is_number(), "missing latency_ms.{key}");
        }
        for key in [
            "full",
            "resumed",
            "full_p50_ms",
            "full_p99_ms",
            "resumed_p50_ms",
            "resumed_p99_ms",
        ] {
            assert!(v["tls"].get(key).is_some(), "missing tls.{key}");
        }
        assert_eq!(v["status"]["2xx"], 9);
        assert_eq!(v["status"]["429"], 1);
        assert_eq!(v["tls"]["full"], 1);
        assert_eq!(v["throughput_rps"], 10.0);
        assert!((v["latency_ms"]["max"].as_f64().unwrap() - 10.0).abs() < 0.1);

        let plain = serde_json::to_value(Summary::from_stats(&stats, false)).unwrap();
        assert!(plain["tls"].is_null());
        assert!(
            Summary::from_stats(&stats, false)
                .render_text()
                .contains("429=1")
        );
    }
}
