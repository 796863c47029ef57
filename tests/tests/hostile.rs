//! The hostile-input suite (issue 12): a table of attacks, each sent over a
//! real socket to the real `edge` binary — raw HTTP/1.1 bytes over TLS
//! (tokio-rustls), raw bytes on the plain-HTTP listener, HTTP/2 through the
//! `h2` crate, hand-made HTTP/2 frames, and bare TLS handshakes.
//!
//! Every case asserts what the client saw (a status, a close, a refused
//! handshake, an HTTP/2 GOAWAY) within a time bound AND the change of the
//! counter that recorded it. No response body may echo a planted marker.
//! The suite ends with a log check: the edge's stderr, the capture file and
//! the events in Kafka hold none of the planted markers (e-mail addresses,
//! user agents, client addresses, query strings).
//!
//! To add a case, push a [`Case`] in [`cases`]: a name, what to send
//! ([`Probe`]), what must come back ([`Expect`]) and the metric deltas.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "hostile/cases.rs"]
mod cases;
#[path = "hostile/probe.rs"]
mod probe;
#[path = "hostile/wire.rs"]
mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;

use edge_tests::{BackendKey, Broker, EdgeUnderTest, TestCa, assert_eventually, parse_metric};

use probe::{BOUND, Expect, MARKERS, Probe, event, post};
use wire::{Seen, Target, matches};

const TOPIC: &str = "hostile-events";

// === the suite ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_table() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let ca = TestCa::new();
    let edge = EdgeUnderTest::new(dir.path(), &broker.addr, TOPIC, &key)
        .cert(ca.issue(dir.path(), "sites", &["site1.example", "site2.example"]))
        .plain_http("redirect")
        .site("s1", &["site1.example"])
        .site_key("s1", "allowed_origins = [\"https://site1.example\"]")
        .site("s2", &["site2.example"])
        .section("capture", "file = \"capture.ndjson\"\nsample_rate = 1.0")
        .limits("request_body_timeout_ms = 2000")
        .start()
        .await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let target = Target {
        ports: edge.ports,
        roots: Arc::new(roots),
    };

    let table = cases::cases();
    assert!(table.len() >= 40, "{} cases", table.len());
    let markers = MARKERS;
    let mut failures = Vec::new();
    for case in &table {
        let before = edge.metrics().await;
        let started = Instant::now();
        let wait_close = matches!(case.expect, Expect::StatusThenClose(_));
        let seen = tokio::time::timeout(BOUND, target.send(&case.send, wait_close))
            .await
            .unwrap_or_else(|_| panic!("{}: no answer within {BOUND:?}", case.name));
        let took = started.elapsed();
        if !matches(case.expect, &seen) {
            failures.push(format!(
                "{}: expected {:?}, saw {seen:?} after {took:?}",
                case.name, case.expect
            ));
            continue;
        }
        if let Seen::Response { body, .. } = &seen {
            let text = String::from_utf8_lossy(body);
            for m in markers {
                if text.contains(m) {
                    failures.push(format!("{}: response echoes {m:?}: {text}", case.name));
                }
            }
        }
        for d in &case.metrics {
            let old = parse_metric(&before, d.name, &d.labels);
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut now = parse_metric(&edge.metrics().await, d.name, &d.labels);
            while now - old != d.by && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                now = parse_metric(&edge.metrics().await, d.name, &d.labels);
            }
            if now - old != d.by {
                failures.push(format!(
                    "{}: {}{:?} changed by {}, expected {}",
                    case.name,
                    d.name,
                    d.labels,
                    now - old,
                    d.by
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n\nedge log:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n"),
        edge.log()
    );

    // The edge still serves after all of it.
    let seen = target
        .send(&Probe::Tls(post(event("pageview").as_bytes(), &[])), false)
        .await;
    assert!(matches(Expect::Status(202), &seen), "{seen:?}");

    // Kafka: exactly the accepted events (3 in the table, 1 just now), and
    // none carries a marker: `ref`/`utm_source` holding an e-mail are dropped.
    let records = broker.consume(TOPIC, 4, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 4);
    let opener = key.opener();
    for rec in &records {
        let event = opener.open("s1", &rec.payload).unwrap();
        let text = format!("{event:?}");
        for m in markers {
            assert!(!text.contains(m), "{m:?} reached Kafka: {text}");
        }
        assert!(!text.contains('@'), "{text}");
        assert_eq!(event.utm.source, None, "{text}");
    }

    // The capture file: only accepted requests, sanitised; no marker.
    let capture = dir.path().join("capture.ndjson");
    assert_eventually!(
        std::fs::read_to_string(&capture)
            .unwrap_or_default()
            .lines()
            .count()
            >= 4,
        Duration::from_secs(10),
        "capture: {}",
        std::fs::read_to_string(&capture).unwrap_or_default()
    );
    let captured = std::fs::read_to_string(&capture).unwrap();
    assert_eq!(
        captured.lines().count(),
        4,
        "only the accepted requests:\n{captured}"
    );
    for m in markers {
        assert!(!captured.contains(m), "{m:?} captured:\n{captured}");
    }

    // The log check: nothing planted reached the edge's stderr.
    let log = edge.log();
    for m in markers {
        assert!(!log.contains(m), "{m:?} in the edge log:\n{log}");
    }
}
