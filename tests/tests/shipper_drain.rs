//! Benchmark (ignored; BENCHMARKS.md "Spool"): how fast the edge's shipper
//! drains a pre-filled spool into a real Tansu broker when the records of
//! several sites interleave.
//!
//! The spool is filled with the broker frozen (SIGSTOP) by `edge-loadtest
//! synth` (4 sites, chosen at random per event, so consecutive records
//! rarely share a key), the edge is `kill -9`ed with everything spooled, the
//! broker thawed, and the edge started again: the time from its readiness
//! until `edge_spool_records` reaches 0 gives records/s.
//!
//! ```sh
//! EDGE_DRAIN_EVENTS=6000 [EDGE_DRAIN_LINGER_MS=1] \
//!   cargo test -p edge-tests --test shipper_drain -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use edge_tests::*;

const TOPIC: &str = "drain-events";
const SITES: usize = 4;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by hand, see BENCHMARKS.md"]
async fn spool_drain_rate_with_interleaved_sites() {
    let events: u64 = std::env::var("EDGE_DRAIN_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6_000);
    let linger: u32 = std::env::var("EDGE_DRAIN_LINGER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 3).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let hosts: Vec<String> = (1..=SITES).map(|i| format!("site{i}.example")).collect();
    let mut config = EdgeUnderTest::new(dir.path(), &broker.addr, TOPIC, &key)
        .without_https()
        .linger_ms(linger);
    for (i, host) in hosts.iter().enumerate() {
        config = config.site(&format!("s{}", i + 1), &[host]);
    }
    let ports = config.ports;
    let edge = config.start().await;

    broker.pause();
    let rate = 1_000;
    let out = Command::new(bin("edge-loadtest"))
        .args(["synth", "--target", &format!("http://{}", ports.http)])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &events.div_ceil(rate).to_string()])
        .args(["--sites", &SITES.to_string(), "--ips", "50"])
        .args(["--connections", "32", "--seed", "7", "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"]["5xx"], 0, "{summary}");
    let spooled = edge.metric("edge_spool_records", &[]).await;
    assert!(spooled > 0.0, "nothing spooled: {summary}");
    // Everything stays on disk; the next start drains it.
    Command::new("kill")
        .args(["-KILL", &edge.pid().to_string()])
        .status()
        .unwrap();
    drop(edge);
    broker.resume();
    broker.create_topic("drain-probe", 1).await; // the broker answers again

    let edge = config.start().await;
    let started = Instant::now();
    let at_start = edge.metric("edge_spool_records", &[]).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = edge.metric("edge_spool_records", &[]).await;
        if left == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: {left} left\n{}",
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let failed = edge
        .metric("edge_shipper_deliveries_total", &[("outcome", "failed")])
        .await;
    eprintln!(
        "drained {at_start} records ({SITES} interleaved sites, 3 partitions, linger {linger} ms) \
         in {took:?}: {:.0} records/s; {failed} failed deliveries",
        at_start / took.as_secs_f64()
    );
}
