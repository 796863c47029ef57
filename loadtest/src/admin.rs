//! `--admin URL`: read the edge's `/metrics` (Prometheus text, parsed by
//! `prometheus-parse`) before and after a run, and report what the edge did
//! with the traffic: requests by outcome, events by fate, bot verdicts by
//! reason, rate-limit refusals by scope, validation rejections by reason.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// Longest wait for one `/metrics` answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `/metrics` from an edge's admin listener (plain HTTP).
#[derive(Debug, Clone)]
pub struct AdminClient {
    url: url::Url,
    token: Option<String>,
}

impl AdminClient {
    /// `base` is the admin listener (`http://127.0.0.1:9901`) or its full
    /// `/metrics` URL; `token_file` holds the admin token, if one is needed.
    pub fn new(base: &str, token_file: Option<&Path>) -> Result<Self> {
        let mut url = url::Url::parse(base).with_context(|| format!("invalid --admin {base:?}"))?;
        if url.scheme() != "http" {
            bail!("--admin must be an http:// URL (the admin listener speaks plain HTTP)");
        }
        if !url.path().ends_with("/metrics") {
            let path = format!("{}/metrics", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        let token = match token_file {
            None => None,
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading --admin-token-file {}", p.display()))?
                    .trim()
                    .to_owned(),
            ),
        };
        Ok(Self { url, token })
    }

    /// The `/metrics` URL read.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// One scrape of the counters the report uses.
    pub async fn scrape(&self) -> Result<EdgeCounters> {
        let text = tokio::time::timeout(SCRAPE_TIMEOUT, self.get())
            .await
            .with_context(|| format!("GET {}: no answer within {SCRAPE_TIMEOUT:?}", self.url))??;
        EdgeCounters::from_text(&text)
    }

    async fn get(&self) -> Result<String> {
        let host = self.url.host_str().context("--admin has no host")?;
        let port = self.url.port_or_known_default().unwrap_or(80);
        let authority = match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .with_context(|| format!("connecting to --admin {}", self.url))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("admin HTTP handshake")?;
        tokio::spawn(conn);
        let mut req = http::Request::get(self.url.path()).header(HOST, authority);
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(req.body(Empty::<Bytes>::new())?)
            .await
            .with_context(|| format!("GET {}", self.url))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            let first = text.lines().next().unwrap_or_default();
            bail!("GET {}: {status} {first}", self.url);
        }
        Ok(text)
    }
}

/// A group of counters in the report, and the metric it sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    /// `edge_requests_total` by `outcome`.
    Requests,
    /// `edge_events_total` by `outcome`.
    Events,
    /// `edge_bot_verdicts_total{action="dropped"}` by `reason`.
    BotDropped,
    /// `edge_bot_verdicts_total{action="tagged"}` by `reason`.
    BotTagged,
    /// `edge_ratelimit_decisions_total{decision="limited"|"over_burst"}` by `scope`.
    RateLimited,
    /// `edge_event_rejections_total` by `reason`.
    Rejected,
}

impl Group {
    /// The group and label value of a sample, if the report uses it.
    fn of(sample: &prometheus_parse::Sample) -> Option<(Group, String)> {
        let label = |name: &str| sample.labels.get(name).map(str::to_owned);
        match sample.metric.as_str() {
            "edge_requests_total" => Some((Group::Requests, label("outcome")?)),
            "edge_events_total" => Some((Group::Events, label("outcome")?)),
            "edge_bot_verdicts_total" => match sample.labels.get("action")? {
                "dropped" => Some((Group::BotDropped, label("reason")?)),
                "tagged" => Some((Group::BotTagged, label("reason")?)),
                _ => None,
            },
            "edge_ratelimit_decisions_total" => match sample.labels.get("decision")? {
                "limited" | "over_burst" => Some((Group::RateLimited, label("scope")?)),
                _ => None,
            },
            "edge_event_rejections_total" => Some((Group::Rejected, label("reason")?)),
            _ => None,
        }
    }
}

/// The counters the report uses, summed over sites, from one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeCounters {
    values: BTreeMap<(Group, String), f64>,
}

impl EdgeCounters {
    /// Reads Prometheus text.
    pub fn from_text(text: &str) -> Result<Self> {
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .context("parsing the edge's /metrics")?;
        let mut values = BTreeMap::new();
        for s in &scrape.samples {
            let v = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            if let Some(key) = Group::of(s) {
                *values.entry(key).or_insert(0.0) += v;
            }
        }
        if !scrape.samples.iter().any(|s| s.metric.starts_with("edge_")) {
            bail!(
                "the /metrics answer has no edge_* metrics: is --admin the edge's admin listener?"
            );
        }
        Ok(Self { values })
    }

    /// Requests the edge has counted (all outcomes).
    pub fn requests(&self) -> f64 {
        self.values
            .iter()
            .filter(|((g, _), _)| *g == Group::Requests)
            .map(|(_, v)| v)
            .sum()
    }
}

/// What the edge did between two scrapes; `--json` prints it as `edge`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EdgeReport {
    /// The `/metrics` URL read.
    pub metrics_url: String,
    /// Requests by outcome (`edge_requests_total`), e.g. `accepted`, `unknown_host`.
    pub requests: BTreeMap<String, u64>,
    /// Events by fate (`edge_events_total`): `accepted`, `rate_limited`, `failed`.
    pub events: BTreeMap<String, u64>,
    /// Bot verdicts that dropped the request, by reason.
    pub bot_dropped: BTreeMap<String, u64>,
    /// Bot verdicts that forwarded the events tagged, by reason.
    pub bot_tagged: BTreeMap<String, u64>,
    /// Events refused by a rate-limit scope (`limited` and `over_burst`), by scope.
    pub rate_limited: BTreeMap<String, u64>,
    /// Requests whose body or query failed validation, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Requests the edge counted during the run.
    pub requests_counted: u64,
    /// False when the edge counted fewer requests than got an answer
    /// (it counts after answering; the report waited a few seconds).
    pub complete: bool,
}

impl EdgeReport {
    /// The difference `after - before` (only non-zero entries; a counter
    /// that went down, as after a restart, counts from zero).
    pub fn between(url: &str, before: &EdgeCounters, after: &EdgeCounters, answered: u64) -> Self {
        let mut r = EdgeReport {
            metrics_url: url.to_owned(),
            ..Self::default()
        };
        for ((group, label), &v) in &after.values {
            let was = before
                .values
                .get(&(*group, label.clone()))
                .copied()
                .unwrap_or(0.0);
            let delta = if v >= was { v - was } else { v };
            let n = delta.round() as u64;
            if n == 0 {
                continue;
            }
            let map = match group {
                Group::Requests => &mut r.requests,
                Group::Events => &mut r.events,
                Group::BotDropped => &mut r.bot_dropped,
                Group::BotTagged => &mut r.bot_tagged,
                Group::RateLimited => &mut r.rate_limited,
                Group::Rejected => &mut r.rejected,
            };
            *map.entry(label.clone()).or_default() += n;
        }
        r.requests_counted = r.requests.values().sum();
        r.complete = r.requests_counted >= answered;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP edge_requests_total Public HTTP requests.
# TYPE edge_requests_total counter
edge_requests_total{outcome="accepted",site="s1"} 3
edge_requests_total{outcome="unknown_host",site="-"} 1
# TYPE edge_bot_verdicts_total counter
edge_bot_verdicts_total{action="dropped",reason="ua_list"} 2
# TYPE edge_request_duration_seconds histogram
edge_request_duration_seconds_bucket{outcome="accepted",le="0.001"} 3
edge_request_duration_seconds_bucket{outcome="accepted",le="+Inf"} 3
edge_request_duration_seconds_sum{outcome="accepted"} 0.002
edge_request_duration_seconds_count{outcome="accepted"} 3
"#;

    const AFTER: &str = r#"# TYPE edge_requests_total counter
edge_requests_total{outcome="accepted",site="s1"} 8
edge_requests_total{outcome="accepted",site="s2"} 2
edge_requests_total{outcome="unknown_host",site="-"} 1
edge_requests_total{outcome="malformed",site="s1"} 1
# TYPE edge_events_total counter
edge_events_total{outcome="accepted",site="s1"} 6
edge_events_total{outcome="rate_limited",site="s2"} 2
# TYPE edge_bot_verdicts_total counter
edge_bot_verdicts_total{action="dropped",reason="ua_list"} 3
edge_bot_verdicts_total{action="tagged",reason="headless"} 1
# TYPE edge_ratelimit_decisions_total counter
edge_ratelimit_decisions_total{decision="allowed",scope="per_ip"} 6
edge_ratelimit_decisions_total{decision="limited",scope="per_ip"} 1
edge_ratelimit_decisions_total{decision="over_burst",scope="per_ip"} 1
# TYPE edge_event_rejections_total counter
edge_event_rejections_total{reason="malformed_json"} 1
"#;

    #[test]
    fn the_report_is_the_difference_by_group_and_label() {
        let before = EdgeCounters::from_text(BEFORE).unwrap();
        let after = EdgeCounters::from_text(AFTER).unwrap();
        assert_eq!(before.requests(), 4.0);
        let r = EdgeReport::between("u", &before, &after, 8);
        let m = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(r.requests, m(&[("accepted", 7), ("malformed", 1)]));
        assert_eq!(r.events, m(&[("accepted", 6), ("rate_limited", 2)]));
        assert_eq!(r.bot_dropped, m(&[("ua_list", 1)]));
        assert_eq!(r.bot_tagged, m(&[("headless", 1)]));
        assert_eq!(r.rate_limited, m(&[("per_ip", 2)]));
        assert_eq!(r.rejected, m(&[("malformed_json", 1)]));
        assert_eq!(r.requests_counted, 8);
        assert!(r.complete);
        assert!(!EdgeReport::between("u", &before, &after, 9).complete);
    }

    #[test]
    fn not_an_edge_is_an_error() {
        let e = EdgeCounters::from_text("# nothing\nfoo_total 1\n").unwrap_err();
        assert!(e.to_string().contains("edge_"), "{e}");
    }

    #[test]
    fn admin_urls() {
        let c = AdminClient::new("http://127.0.0.1:9901", None).unwrap();
        assert_eq!(c.url().as_str(), "http://127.0.0.1:9901/metrics");
        let c = AdminClient::new("http://127.0.0.1:9901/metrics", None).unwrap();
        assert_eq!(c.url().as_str(), "http://127.0.0.1:9901/metrics");
        assert!(AdminClient::new("https://127.0.0.1:9901", None).is_err());
    }
}
