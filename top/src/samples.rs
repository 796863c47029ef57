//! One `/metrics` scrape as a flat list of series, parsed with the
//! `prometheus-parse` crate, and the lookups the view needs (sum of the
//! series matching some labels, grouped by a label).
//!
//! Histograms and summaries are left out: the view reads counters and
//! gauges only. `prometheus-parse` splits label pairs on `,` and `=`, which
//! is exact for the edge's labels (fixed enums and site ids of `a-z0-9_-`).

use std::collections::BTreeMap;

/// One counter, gauge or untyped sample.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The counters and gauges of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    series: Vec<Series>,
}

impl Samples {
    /// Parses Prometheus text. Fails when the text holds no `edge_*` sample,
    /// so that a wrong URL (another service, an HTML page) is named as such.
    pub fn parse(text: &str) -> Result<Samples, String> {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines)
            .map_err(|e| format!("unreadable Prometheus text: {e}"))?;
        let series: Vec<Series> = scrape
            .samples
            .into_iter()
            .filter_map(|s| {
                let value = match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => {
                        return None;
                    }
                };
                let labels = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Some(Series {
                    name: s.metric,
                    labels,
                    value,
                })
            })
            .collect();
        if !series.iter().any(|s| s.name.starts_with("edge_")) {
            return Err("no edge_* metrics in the answer: is this an edge admin listener?".into());
        }
        Ok(Samples { series })
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| {
            s.name == name
                && filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
    }

    /// Sum of the series of `name` whose labels include every `filter`
    /// pair; `None` when no series matches (never incremented, or not
    /// exported by this edge).
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, filter)
            .map(|s| s.value)
            .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }

    /// Sums of the series of `name` matching `filter`, by the value of
    /// label `by` (series without it are left out).
    pub fn group(&self, name: &str, by: &str, filter: &[(&str, &str)]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.matching(name, filter) {
            if let Some(key) = s.labels.get(by) {
                *out.entry(key.clone()).or_insert(0.0) += s.value;
            }
        }
        out
    }

    /// The value of label `label` on the first series of `name` (e.g. the
    /// `version` of `edge_config_info`).
    pub fn label_of(&self, name: &str, label: &str) -> Option<String> {
        self.matching(name, &[])
            .find_map(|s| s.labels.get(label).cloned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TEXT: &str = "\
# HELP edge_requests_total Public requests.
# TYPE edge_requests_total counter
edge_requests_total{outcome=\"accepted\",site=\"s1\"} 5
edge_requests_total{outcome=\"bot_dropped\",site=\"s1\"} 2
edge_requests_total{outcome=\"accepted\",site=\"s2\"} 1
# TYPE edge_kafka_ready gauge
edge_kafka_ready 1
# TYPE edge_request_duration_seconds histogram
edge_request_duration_seconds_bucket{outcome=\"accepted\",le=\"0.1\"} 3
edge_request_duration_seconds_bucket{outcome=\"accepted\",le=\"+Inf\"} 6
edge_request_duration_seconds_sum{outcome=\"accepted\"} 0.2
edge_request_duration_seconds_count{outcome=\"accepted\"} 6
# TYPE edge_config_info gauge
edge_config_info{version=\"3f2a9c0d1b7e\"} 1
";

    #[test]
    fn sums_groups_and_labels() {
        let s = Samples::parse(TEXT).unwrap();
        assert_eq!(s.sum("edge_requests_total", &[]), Some(8.0));
        assert_eq!(s.sum("edge_requests_total", &[("site", "s1")]), Some(7.0));
        assert_eq!(
            s.sum(
                "edge_requests_total",
                &[("site", "s1"), ("outcome", "accepted")]
            ),
            Some(5.0)
        );
        assert_eq!(s.sum("edge_requests_total", &[("site", "s9")]), None);
        assert_eq!(s.sum("edge_kafka_ready", &[]), Some(1.0));
        let by_site = s.group("edge_requests_total", "site", &[("outcome", "accepted")]);
        assert_eq!(
            by_site.into_iter().collect::<Vec<_>>(),
            vec![("s1".to_string(), 5.0), ("s2".to_string(), 1.0)]
        );
        assert_eq!(
            s.label_of("edge_config_info", "version").as_deref(),
            Some("3f2a9c0d1b7e")
        );
        // histogram buckets are not counters; _count is an untyped sample
        assert_eq!(s.sum("edge_request_duration_seconds", &[]), None);
        assert_eq!(s.sum("edge_request_duration_seconds_count", &[]), Some(6.0));
    }

    #[test]
    fn text_without_edge_metrics_is_refused() {
        let err = Samples::parse("<html><body>hello</body></html>\n").unwrap_err();
        assert!(err.contains("no edge_* metrics"), "{err}");
        let err = Samples::parse("# TYPE up gauge\nup 1\n").unwrap_err();
        assert!(err.contains("edge admin listener"), "{err}");
    }
}
