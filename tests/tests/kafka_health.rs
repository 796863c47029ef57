//! Producer health: the real Tansu broker is frozen with SIGSTOP while
//! events keep arriving, then thawed. The spool must keep accepting every
//! event during the stall, and the shipper must deliver all of them after
//! it, without a restart, and `/readyz` must say so.
//! (Before the fix, the idempotent producer was fenced after such a pause
//! and every later delivery failed with `ProducerFenced` until a restart.)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edge_tests::*;

const TOPIC: &str = "health-events";

async fn post_event(client: &reqwest::Client, base: &str, n: u64) -> Option<u16> {
    client
        .post(format!("{base}/api/event"))
        .header("host", "site1.example")
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"name":"pageview","url":"https://site1.example/p/{n}"}}"#
        ))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_recovers_after_the_broker_was_frozen_without_a_restart() {
    let (_dir, broker, edge) = two_site_edge(tempfile::tempdir().unwrap(), TOPIC, None, "").await;
    let base = format!("http://{}", edge.ports.http);
    let client = browser();
    assert_eq!(post_event(&client, &base, 0).await, Some(202));

    // Steady traffic from four clients while the broker is frozen.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(1));
    let unavailable = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for i in 0..4u64 {
        let (stop, accepted, unavailable) = (stop.clone(), accepted.clone(), unavailable.clone());
        let client = client_from(&format!("127.0.0.{}", i + 2));
        let base = base.clone();
        senders.push(tokio::spawn(async move {
            let mut n = i * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match post_event(&client, &base, n).await {
                    Some(202) => accepted.fetch_add(1, Ordering::Relaxed),
                    Some(503) => unavailable.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected answer {other:?}"),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    broker.pause();
    // The spool keeps accepting while the broker is frozen: the events wait
    // on disk (seen in the spool gauge) instead of failing.
    assert_eventually!(
        parse_metric(&edge.metrics().await, "edge_spool_records", &[]) > 0.0,
        Duration::from_secs(30),
        "no event waited in the spool while the broker was frozen"
    );
    // The fault itself lasts 12 s (as in the issue's report: 10 s or more).
    tokio::time::sleep(Duration::from_secs(12)).await;
    broker.resume();
    let thawed_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(
        unavailable.load(Ordering::Relaxed),
        0,
        "a broker stall must not refuse events while the spool has room"
    );

    // The shipper delivers everything after SIGCONT, without a restart,
    // replacing the producer if the pause fenced it.
    assert_eventually!(
        parse_metric(&edge.metrics().await, "edge_spool_records", &[]) == 0.0,
        Duration::from_secs(60),
        "the spool did not drain after SIGCONT:\n{}",
        edge.log()
    );
    let recovered_after = thawed_at.elapsed();
    // And new events keep being accepted and delivered.
    for k in 0..20 {
        assert_eq!(
            post_event(&client, &base, 20_000_000 + k).await,
            Some(202),
            "{}",
            edge.log()
        );
        accepted.fetch_add(1, Ordering::Relaxed);
    }
    assert_eventually!(
        edge.readyz().await.is_some_and(|(s, _)| s == 200),
        Duration::from_secs(30),
        "/readyz not ready after recovery:\n{}",
        edge.log()
    );
    assert_eventually!(
        parse_metric(&edge.metrics().await, "edge_kafka_ready", &[]) == 1.0,
        Duration::from_secs(30),
        "edge_kafka_ready did not return to 1:\n{}",
        edge.log()
    );

    // What happened is visible: deliveries that timed out during the freeze
    // are counted as failed. librdkafka reports a client error only if the
    // broker fenced the producer afterwards (a produce request was in flight
    // when it froze: a timed-out request is only logged), so client errors
    // are optional but, when counted, carry a timestamp; and a fatal
    // producer error replaced the producer.
    let metrics = edge.metrics().await;
    assert!(
        parse_metric(
            &metrics,
            "edge_shipper_deliveries_total",
            &[("outcome", "failed")]
        ) > 0.0,
        "no delivery failed during a 12 s freeze:\n{metrics}"
    );
    if parse_metric(&metrics, "edge_kafka_client_errors_total", &[]) > 0.0 {
        assert!(parse_metric(&metrics, "edge_kafka_last_error_timestamp_seconds", &[]) > 0.0);
    }
    let rebuilds = parse_metric(&metrics, "edge_kafka_producer_rebuilds_total", &[]);
    let log = edge.log();
    assert_eq!(
        rebuilds > 0.0,
        log.contains("replaced it with a new producer"),
        "every rebuild is logged with its cause:\n{log}"
    );
    eprintln!(
        "spool drained {recovered_after:?} after SIGCONT; {} accepted, {} answered 503 during the pause; producer rebuilds: {rebuilds}",
        accepted.load(Ordering::Relaxed),
        unavailable.load(Ordering::Relaxed),
    );

    // Nothing that got a 202 is missing from Kafka (duplicates are possible:
    // the transport is at-least-once).
    let want = accepted.load(Ordering::Relaxed) as usize;
    let records = broker.consume(TOPIC, want, Duration::from_secs(30)).await;
    assert!(
        records.len() >= want,
        "{} records in Kafka for {want} accepted events",
        records.len()
    );
}
