#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::*;
use crate::scrape::{BrokerStatus, CertName, LastError};

fn snapshot(at: Instant, text: &str) -> Snapshot {
    Snapshot {
        at,
        samples: Samples::parse(text).unwrap(),
        ready: Ok((true, "ready".into())),
        spool: Ok(SpoolStatus::default()),
        certs: Ok(CertsStatus::default()),
    }
}

const FIRST: &str = "\
# TYPE edge_requests_total counter
edge_requests_total{outcome=\"accepted\",site=\"s1\"} 10
edge_requests_total{outcome=\"bot_dropped\",site=\"s1\"} 1
edge_requests_total{outcome=\"unknown_host\",site=\"-\"} 4
# TYPE edge_events_total counter
edge_events_total{outcome=\"accepted\",site=\"s1\"} 12
# TYPE edge_bot_verdicts_total counter
edge_bot_verdicts_total{action=\"dropped\",reason=\"ua_list\"} 1
# TYPE edge_shipper_deliveries_total counter
edge_shipper_deliveries_total{outcome=\"acked\"} 12
# TYPE edge_spool_records gauge
edge_spool_records 0
# TYPE edge_kafka_ready gauge
edge_kafka_ready 1
# TYPE edge_tls_handshakes_total counter
edge_tls_handshakes_total{outcome=\"ok\"} 3
";

/// Two seconds later: s1 took 6 more requests (8 more events), s2 appeared
/// with 2 requests, a 429, a second bot reason, a validation rejection.
const SECOND: &str = "\
# TYPE edge_requests_total counter
edge_requests_total{outcome=\"accepted\",site=\"s1\"} 14
edge_requests_total{outcome=\"bot_dropped\",site=\"s1\"} 2
edge_requests_total{outcome=\"rate_limited\",site=\"s1\"} 1
edge_requests_total{outcome=\"accepted\",site=\"s2\"} 2
edge_requests_total{outcome=\"unknown_host\",site=\"-\"} 4
edge_requests_total{outcome=\"malformed\",site=\"s2\"} 1
edge_requests_total{outcome=\"teapot\",site=\"s2\"} 1
# TYPE edge_events_total counter
edge_events_total{outcome=\"accepted\",site=\"s1\"} 20
edge_events_total{outcome=\"rate_limited\",site=\"s1\"} 3
edge_events_total{outcome=\"accepted\",site=\"s2\"} 2
# TYPE edge_bot_verdicts_total counter
edge_bot_verdicts_total{action=\"dropped\",reason=\"ua_list\"} 1
edge_bot_verdicts_total{action=\"dropped\",reason=\"headless\"} 1
# TYPE edge_ratelimit_decisions_total counter
edge_ratelimit_decisions_total{decision=\"allowed\",scope=\"per_ip\"} 30
edge_ratelimit_decisions_total{decision=\"limited\",scope=\"per_ip\"} 3
# TYPE edge_event_rejections_total counter
edge_event_rejections_total{reason=\"missing_field\"} 1
# TYPE edge_shipper_deliveries_total counter
edge_shipper_deliveries_total{outcome=\"acked\"} 18
edge_shipper_deliveries_total{outcome=\"failed\"} 2
# TYPE edge_spool_records gauge
edge_spool_records 4
# TYPE edge_spool_oldest_record_age_seconds gauge
edge_spool_oldest_record_age_seconds 1.5
# TYPE edge_kafka_ready gauge
edge_kafka_ready 0
# TYPE edge_tls_handshakes_total counter
edge_tls_handshakes_total{outcome=\"ok\"} 7
edge_tls_handshakes_total{outcome=\"unknown_sni\"} 2
# TYPE edge_tls_certificate_expiry_seconds gauge
edge_tls_certificate_expiry_seconds{site=\"s1\"} 86400
edge_tls_certificate_expiry_seconds{site=\"s2\"} 7776000
# TYPE edge_config_info gauge
edge_config_info{version=\"3f2a9c0d1b7e\"} 1
";

fn c(total: f64, per_sec: f64) -> Counter {
    Counter {
        total,
        per_sec: Some(per_sec),
    }
}

#[test]
fn first_scrape_has_totals_and_no_rates() {
    let view = build(None, &snapshot(Instant::now(), FIRST));
    assert_eq!(view.interval_seconds, None);
    assert_eq!(view.sites.len(), 2);
    let s1 = &view.sites[0];
    assert_eq!(s1.site, "s1");
    assert_eq!(
        s1.requests,
        Counter {
            total: 11.0,
            per_sec: None
        }
    );
    assert_eq!(s1.events.total, 12.0);
    assert_eq!(s1.bots.total, 1.0);
    assert_eq!(view.sites[1].site, "(no site)");
    assert!(view.answers.iter().all(|a| a.counter.per_sec.is_none()));
}

#[test]
fn rates_are_deltas_over_the_scrape_interval() {
    let t0 = Instant::now();
    let prev = snapshot(t0, FIRST);
    let cur = snapshot(t0 + Duration::from_secs(2), SECOND);
    let view = build(Some(&prev), &cur);
    assert_eq!(view.interval_seconds, Some(2.0));
    assert_eq!(view.config_version.as_deref(), Some("3f2a9c0d1b7e"));

    // sites: sorted by id, "(no site)" last; a series new since the last
    // scrape counts from 0
    let names: Vec<&str> = view.sites.iter().map(|r| r.site.as_str()).collect();
    assert_eq!(names, ["s1", "s2", "(no site)"]);
    let s1 = &view.sites[0];
    assert_eq!(s1.requests, c(17.0, 3.0)); // 11 → 17
    assert_eq!(s1.events, c(20.0, 4.0)); // 12 → 20
    assert_eq!(s1.rate_limited, c(3.0, 1.5));
    assert_eq!(s1.bots, c(2.0, 0.5));
    assert_eq!(s1.failed, c(0.0, 0.0));
    let s2 = &view.sites[1];
    assert_eq!(s2.requests, c(4.0, 2.0));
    assert_eq!(s2.events, c(2.0, 1.0));
    assert_eq!(view.sites[2].requests, c(4.0, 0.0));

    // answers by class; an unknown outcome is shown, not hidden
    let classes: Vec<(&str, Counter)> = view.answers.iter().map(|a| (a.class, a.counter)).collect();
    assert_eq!(
        classes,
        [
            ("2xx", c(18.0, 3.5)),
            ("4xx", c(6.0, 1.0)),
            ("other", c(1.0, 0.5)),
        ]
    );
    let four = &view.answers[1];
    assert_eq!(
        four.outcomes,
        vec![
            ("unknown_host".to_string(), c(4.0, 0.0)),
            ("malformed".to_string(), c(1.0, 0.5)),
            ("rate_limited".to_string(), c(1.0, 0.5)),
        ]
    );

    // drops: bot reasons, rate-limit scope + decision (allowed is no drop), validation
    let drops: Vec<(&str, &str, Counter)> = view
        .drops
        .iter()
        .map(|d| (d.kind, d.reason.as_str(), d.counter))
        .collect();
    assert_eq!(
        drops,
        [
            ("bot", "headless", c(1.0, 0.5)),
            ("bot", "ua_list", c(1.0, 0.0)),
            ("rate limit", "per_ip limited", c(3.0, 1.5)),
            ("validation", "missing_field", c(1.0, 0.5)),
        ]
    );

    // delivery
    let d = &view.delivery;
    assert_eq!(d.kafka_ready, Some(false));
    assert_eq!(d.spool_records, Some(4.0));
    assert_eq!(d.oldest_age_seconds, Some(1.5));
    assert_eq!(d.shipped, c(18.0, 3.0));
    assert_eq!(d.ship_failures, c(2.0, 1.0));

    // certificates: s1 expires in a day, s2 in 90 days
    assert_eq!(view.certs.expiring, vec![("s1".to_string(), 86_400.0)]);

    // TLS handshakes, largest first
    assert_eq!(
        view.handshakes,
        vec![
            ("ok".to_string(), c(7.0, 2.0)),
            ("unknown_sni".to_string(), c(2.0, 1.0)),
        ]
    );
}

#[test]
fn a_restarted_edge_counts_from_zero() {
    let t0 = Instant::now();
    let prev = snapshot(t0, SECOND);
    let cur = snapshot(t0 + Duration::from_secs(1), FIRST);
    let view = build(Some(&prev), &cur);
    // s1 requests 17 → 11: a reset, so 11 new requests in 1 s
    assert_eq!(view.sites[0].requests, c(11.0, 11.0));
    assert_eq!(rate(Some(5.0), 5.0, 0.0), 0.0);
    assert_eq!(rate(None, 3.0, 1.5), 2.0);
}

#[test]
fn certificate_states_and_spool_errors_are_carried() {
    let mut snap = snapshot(Instant::now(), FIRST);
    snap.certs = Ok(CertsStatus {
        acme: Some(serde_json::json!({})),
        names: vec![
            CertName {
                name: "a.test".into(),
                state: Some("valid".into()),
                ..CertName::default()
            },
            CertName {
                name: "b.test".into(),
                state: Some("backoff".into()),
                next_attempt_unix: Some(1_900_000_000),
                last_error: Some("challenge failed".into()),
                ..CertName::default()
            },
            CertName {
                name: "c.test".into(),
                state: Some("issuing".into()),
                ..CertName::default()
            },
        ],
    });
    snap.spool = Ok(SpoolStatus {
        full: None,
        segments: 1,
        broker: BrokerStatus {
            topic: "t".into(),
            last_error: Some(LastError {
                at_ms: 1,
                error: "Broker: Leader not available".into(),
            }),
        },
    });
    let view = build(None, &snap);
    assert_eq!(view.certs.acme_enabled, Some(true));
    assert_eq!(
        view.certs.states.clone().into_iter().collect::<Vec<_>>(),
        vec![
            ("backoff".to_string(), 1),
            ("issuing".to_string(), 1),
            ("valid".to_string(), 1)
        ]
    );
    let names: Vec<&str> = view.certs.attention.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(names, ["b.test", "c.test"]);
    assert_eq!(view.certs.attention[0].2, Some(1_900_000_000));
    assert_eq!(
        view.delivery
            .spool
            .as_ref()
            .unwrap()
            .broker
            .last_error
            .as_ref()
            .unwrap()
            .error,
        "Broker: Leader not available"
    );

    snap.certs = Err("/admin/certs: HTTP 401 admin token required".into());
    let view = build(None, &snap);
    assert_eq!(view.certs.acme_enabled, None);
    assert!(view.certs.error.as_deref().unwrap().contains("401"));
}

#[test]
fn every_documented_outcome_has_its_class() {
    // docs/metrics.md lists each outcome with its status; the class
    // mapping must agree with it.
    let doc = include_str!("../../../docs/metrics.md");
    let start = doc.find("### `outcome` of `edge_requests_total`").unwrap();
    let table = &doc[start..];
    let end = table[4..].find("###").unwrap() + 4;
    let mut checked = 0;
    for line in table[..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let outcome = cells[1].trim_matches('`');
        let status = cells[2].trim_start().chars().next().unwrap();
        let class = class_of(outcome);
        assert_eq!(
            class.chars().next().unwrap(),
            status,
            "{outcome}: documented status {} but class {class}",
            cells[2]
        );
        checked += 1;
    }
    assert!(
        checked >= 20,
        "only {checked} outcomes found in docs/metrics.md"
    );
}

#[test]
fn degraded_limits_and_a_stopped_spool_are_warned() {
    let healthy = "edge_ratelimit_shared_degraded 0\nedge_spool_writable 1\n";
    let view = build(None, &snapshot(Instant::now(), healthy));
    assert!(view.warnings.is_empty(), "{:?}", view.warnings);

    let degraded = "edge_ratelimit_shared_degraded 1\n\
                    edge_ratelimit_degraded{scope=\"per_ip\"} 1\n\
                    edge_spool_writable 0\n";
    let view = build(None, &snapshot(Instant::now(), degraded));
    assert_eq!(view.warnings.len(), 3, "{:?}", view.warnings);
    assert!(
        view.warnings
            .iter()
            .any(|w| w.starts_with("shared site limits degraded"))
    );
    assert!(view.warnings.iter().any(|w| w.contains("per_ip")));
}
