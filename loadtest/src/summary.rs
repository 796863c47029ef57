//! The final report: a serializable summary and its human-readable rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::admin::EdgeReport;
use crate::replay::InputReport;
use crate::stats::Stats;
use crate::verdict::{Verdict, judge};

/// The run's settings, for the report and the plot's title.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunInfo {
    /// `synth` or `replay`.
    pub command: String,
    /// `--target`.
    pub target: String,
    /// The load: `500 req/s for 30 s`, `recorded pacing x2`, `as fast as possible`.
    pub load: String,
    /// `--connections`.
    pub connections: usize,
    /// `keepalive` or `new-conn`.
    pub mode: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: String,
}

impl RunInfo {
    /// One line: `synth http://… | 500 req/s for 30 s | 64 connections, keepalive, HTTP/1.1`.
    pub fn title(&self) -> String {
        format!(
            "{} {} | {} | {} connections, {}, {}",
            self.command, self.target, self.load, self.connections, self.mode, self.protocol
        )
    }
}

/// One error message and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    /// The error (connect, TLS, I/O) or `timeout (--timeout-ms)`.
    pub error: String,
    /// How many requests ended with it.
    pub count: u64,
}

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
    /// The run's settings.
    pub run: RunInfo,
    /// Requests started.
    pub sent: u64,
    /// Requests that got a response.
    pub completed: u64,
    /// Responses by status class.
    pub status: StatusCounts,
    /// Responses by status code (`"404": 3`).
    pub status_codes: BTreeMap<String, u64>,
    /// Requests that hit `--timeout-ms`.
    pub timeouts: u64,
    /// Connect/TLS/I/O errors.
    pub errors: u64,
    /// Errors and timeouts by message, most frequent first.
    pub error_kinds: Vec<ErrorCount>,
    /// From run start to the last finished request.
    pub duration_s: f64,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Latency from intended send time, ms.
    pub latency_ms: Percentiles,
    /// TLS handshakes, or `null` for cleartext targets.
    pub tls: Option<TlsSummary>,
    /// What `replay` made of its file (`null` for `synth`).
    pub input: Option<InputReport>,
    /// What the edge counted (`--admin`; `null` without it).
    pub edge: Option<EdgeReport>,
    /// Whether the run passed (the exit status).
    pub verdict: Verdict,
}

impl Summary {
    /// Summarizes `stats`; `tls` says whether the target used TLS.
    pub fn from_stats(stats: &Stats, tls: bool) -> Self {
        let c = stats.counters;
        let duration_s = stats.elapsed.as_secs_f64();
        let p = Percentiles::of;
        Self {
            run: RunInfo::default(),
            sent: c.sent,
            completed: c.completed,
            status: StatusCounts {
                s2xx: c.s2xx,
                s429: c.s429,
                s4xx: c.s4xx,
                s5xx: c.s5xx,
                other: c.other,
            },
            status_codes: stats
                .codes
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            timeouts: c.timeouts,
            errors: c.errors,
            error_kinds: stats
                .errors_ranked()
                .into_iter()
                .map(|(error, count)| ErrorCount { error, count })
                .collect(),
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
            input: None,
            edge: None,
            verdict: judge(c.sent, c.s2xx, c.errors + c.timeouts, 0.01),
        }
    }

    /// Judges the run again with `--max-error-rate`.
    pub fn judge(&mut self, max_error_rate: f64) {
        self.verdict = judge(
            self.sent,
            self.status.s2xx,
            self.errors + self.timeouts,
            max_error_rate,
        );
    }

    /// Human-readable multi-line report.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let s2 = &self.status;
        let l = &self.latency_ms;
        // Writing to a String cannot fail.
        if !self.run.command.is_empty() {
            let _ = writeln!(s, "run        {}", self.run.title());
        }
        if let Some(input) = &self.input {
            render_input(&mut s, input);
        }
        let _ = writeln!(s, "sent       {}", self.sent);
        let _ = writeln!(s, "completed  {}", self.completed);
        let _ = writeln!(
            s,
            "status     2xx={} 429={} 4xx={} 5xx={} other={}",
            s2.s2xx, s2.s429, s2.s4xx, s2.s5xx, s2.other
        );
        let codes = |range: std::ops::RangeInclusive<u16>| {
            let v: Vec<String> = self
                .status_codes
                .iter()
                .filter(|(c, _)| c.parse::<u16>().is_ok_and(|c| range.contains(&c)))
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            v.join(" ")
        };
        for (label, range) in [("4xx codes ", 400..=499), ("5xx codes ", 500..=599)] {
            let line = codes(range);
            if !line.is_empty() {
                let _ = writeln!(s, "{label} {line}");
            }
        }
        let _ = writeln!(s, "timeouts   {}", self.timeouts);
        let _ = writeln!(s, "errors     {}", self.errors);
        for e in self.error_kinds.iter().take(10) {
            let _ = writeln!(s, "  {:>8} × {}", e.count, e.error);
        }
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
        if let Some(edge) = &self.edge {
            render_edge(&mut s, edge);
        }
        if self.verdict.passed {
            let _ = writeln!(s, "result     passed");
        } else {
            let _ = writeln!(s, "result     FAILED: {}", self.verdict.failures.join("; "));
        }
        s
    }
}

fn pairs(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    let v: Vec<String> = m.iter().map(|(k, n)| format!("{k}={n}")).collect();
    v.join(" ")
}

fn render_input(s: &mut String, i: &InputReport) {
    let _ = write!(s, "input      {} lines ({})", i.lines, i.format);
    if i.malformed > 0 {
        let first: Vec<String> = i
            .malformed_lines
            .iter()
            .map(|m| format!("line {}: {}", m.line, m.reason))
            .collect();
        let _ = write!(
            s,
            ", {} malformed skipped ({}",
            i.malformed,
            first.join("; ")
        );
        if i.malformed > i.malformed_lines.len() as u64 {
            let _ = write!(s, "; …");
        }
        let _ = write!(s, ")");
    }
    let _ = writeln!(s);
    if let Some(pv) = i.page_views {
        let _ = writeln!(
            s,
            "page views {pv} sent as events; not page views: {}",
            pairs(&i.skipped)
        );
    }
}

fn render_edge(s: &mut String, e: &EdgeReport) {
    let _ = writeln!(
        s,
        "edge       {} requests counted: {}{}",
        e.requests_counted,
        pairs(&e.requests),
        if e.complete {
            ""
        } else {
            "  (fewer than answered: still counting, or restarted)"
        }
    );
    let _ = writeln!(s, "  events        {}", pairs(&e.events));
    let _ = writeln!(s, "  bots dropped  {}", pairs(&e.bot_dropped));
    if !e.bot_tagged.is_empty() {
        let _ = writeln!(s, "  bots tagged   {}", pairs(&e.bot_tagged));
    }
    let _ = writeln!(s, "  rate limited  {}", pairs(&e.rate_limited));
    let _ = writeln!(s, "  rejected      {}", pairs(&e.rejected));
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
            "run",
            "sent",
            "completed",
            "status",
            "status_codes",
            "timeouts",
            "errors",
            "error_kinds",
            "duration_s",
            "throughput_rps",
            "latency_ms",
            "tls",
            "input",
            "edge",
            "verdict",
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
        assert_eq!(v["status_codes"]["202"], 9);
        assert_eq!(v["status_codes"]["429"], 1);
        assert_eq!(v["verdict"]["passed"], true);
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

    #[test]
    fn text_breaks_4xx_down_by_code_and_ranks_errors() {
        let mut stats = Stats::default();
        let ms = Duration::from_millis;
        for code in [202, 421, 421, 400, 429, 503] {
            stats.record_sent();
            stats.record(Outcome::Status(code), ms(1), 0, ms(2));
        }
        for msg in ["refused", "tls: UnknownIssuer", "tls: UnknownIssuer"] {
            stats.record_sent();
            stats.note_error(msg.into());
            stats.record(Outcome::Error, ms(1), 0, ms(2));
        }
        let mut summary = Summary::from_stats(&stats, false);
        summary.judge(0.5);
        let text = summary.render_text();
        assert!(text.contains("4xx codes  400=1 421=2 429=1\n"), "{text}");
        assert!(text.contains("5xx codes  503=1\n"), "{text}");
        let first = text.find("tls: UnknownIssuer").unwrap();
        let second = text.find("refused").unwrap();
        assert!(first < second, "most frequent first: {text}");
        assert!(text.contains("result     passed"), "{text}");
        assert_eq!(summary.error_kinds[0].count, 2);
        summary.judge(0.01);
        assert!(summary.render_text().contains("result     FAILED: errors"));
    }
}
