//! The durable spool end to end: a real Tansu broker, the real `edge` binary.
//! A 2xx means the event is fsync'd in the edge's spool; whatever happens to
//! the broker or the edge afterwards, every 2xx'd event reaches Kafka.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_tests::*;

struct Setup {
    dir: tempfile::TempDir,
    broker: Broker,
    key: BackendKey,
    config: EdgeUnderTest,
    topic: &'static str,
}

/// A broker and an edge serving `s1` over plain HTTP, `spool` as its `[spool]` table.
async fn setup(topic: &'static str, spool: &str) -> (Setup, Edge) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(topic, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let mut config = EdgeUnderTest::new(dir.path(), &broker.addr, topic, &key)
        .without_https()
        .site("s1", &["site1.example"]);
    if !spool.is_empty() {
        config = config.section("spool", spool);
    }
    let edge = config.start().await;
    let s = Setup {
        dir,
        broker,
        key,
        config,
        topic,
    };
    (s, edge)
}

impl Setup {
    async fn restart(&self) -> Edge {
        self.config.start().await
    }

    fn signal_broker(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.broker.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} broker");
    }

    /// Consumes until every url in `want` was seen; returns (distinct urls,
    /// records read). Duplicates are possible (at-least-once) and counted.
    async fn delivered(&self, want: &BTreeSet<String>) -> (BTreeSet<String>, usize) {
        let opener = self.key.opener();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut target = want.len();
        loop {
            let records = self
                .broker
                .consume(self.topic, target, Duration::from_secs(20))
                .await;
            let mut seen = BTreeSet::new();
            for r in &records {
                let site = String::from_utf8(r.key.clone()).unwrap();
                let event = opener.open(&site, &r.payload).unwrap();
                seen.insert(event.url);
            }
            if seen.is_superset(want) || Instant::now() > deadline {
                return (seen, records.len());
            }
            target = records.len() + want.difference(&seen).count();
        }
    }
}

/// Sends event `n` (url `https://site1.example/p/{n}`); returns the status
/// and the `Retry-After` header.
async fn send(
    client: &reqwest::Client,
    edge_http: std::net::SocketAddr,
    n: u64,
) -> (u16, Option<String>) {
    let body = format!(r#"{{"name":"pageview","url":"https://site1.example/p/{n}"}}"#);
    let r = client
        .post(format!("http://{edge_http}/api/event"))
        .header("host", "site1.example")
        .body(body)
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), retry)
}

fn url(n: u64) -> String {
    format!("https://site1.example/p/{n}")
}

fn kill(signal: &str, pid: u32) {
    assert!(
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

async fn admin_spool(edge: &Edge) -> serde_json::Value {
    reqwest::get(format!("http://{}/admin/spool", edge.ports.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn readyz(edge: &Edge) -> u16 {
    edge.readyz().await.expect("admin listener down").0
}

/// Sends events 0..count, all of which must be accepted; returns their urls.
async fn send_accepted(edge: &Edge, from: u64, count: u64) -> BTreeSet<String> {
    let client = browser();
    let mut urls = BTreeSet::new();
    for n in from..from + count {
        let (status, _) = send(&client, edge.ports.http, n).await;
        assert_eq!(status, 202, "event {n}");
        urls.insert(url(n));
    }
    urls
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_paused_ten_seconds_under_load_no_5xx_and_every_accepted_event_arrives() {
    let (s, edge) = setup("spool-pause", "").await;
    let stop = Arc::new(AtomicBool::new(false));
    let http = edge.ports.http;
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = browser();
            let mut statuses: BTreeMap<u64, u16> = BTreeMap::new();
            let mut n = 0;
            // About 100 events per second from one client loop.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (status, _) = send(&client, http, n).await;
                statuses.insert(n, status);
                n += 1;
            }
            statuses
        })
    };
    assert_eventually!(
        edge.metric("edge_events_total", &[("outcome", "accepted")])
            .await
            >= 100.0,
        Duration::from_secs(30),
        "load did not start"
    );
    s.signal_broker("-STOP");
    let paused = Instant::now();
    // The fault lasts 10 s; meanwhile events pile up in the spool.
    assert_eventually!(
        paused.elapsed() >= Duration::from_secs(10),
        Duration::from_secs(11),
        "pause"
    );
    let spooled = admin_spool(&edge).await;
    s.signal_broker("-CONT");
    let at_cont = edge
        .metric("edge_events_total", &[("outcome", "accepted")])
        .await;
    assert_eventually!(
        edge.metric("edge_events_total", &[("outcome", "accepted")])
            .await
            >= at_cont + 100.0,
        Duration::from_secs(30),
        "load did not continue after the broker came back"
    );
    stop.store(true, Ordering::Relaxed);
    let statuses = load.await.unwrap();
    let failed: Vec<_> = statuses.iter().filter(|(_, st)| **st != 202).collect();
    assert!(failed.is_empty(), "non-202 answers: {failed:?}");
    assert!(
        spooled["records"].as_u64().unwrap() > 0,
        "nothing was waiting in the spool during the pause: {spooled}"
    );
    let accepted: BTreeSet<String> = statuses.keys().map(|n| url(*n)).collect();
    let (seen, records) = s.delivered(&accepted).await;
    let missing: Vec<_> = accepted.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} accepted events missing, e.g. {:?}; spool: {}\nedge log:\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        admin_spool(&edge).await,
        edge.log()
    );
    assert_eq!(
        seen.len(),
        accepted.len(),
        "events in Kafka that were never accepted"
    );
    eprintln!(
        "accepted {} events, {} records in Kafka ({} duplicates)",
        accepted.len(),
        records,
        records - seen.len()
    );
    assert_eventually!(
        edge.metric("edge_spool_records", &[]).await == 0.0,
        Duration::from_secs(30),
        "spool not drained"
    );
    assert!(
        edge.metric("edge_shipper_deliveries_total", &[("outcome", "acked")])
            .await
            >= accepted.len() as f64
    );
    assert!(
        edge.metric("edge_spool_fsync_duration_seconds_count", &[])
            .await
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_with_events_in_the_spool_loses_nothing() {
    let (s, edge) = setup("spool-kill9", "").await;
    s.signal_broker("-STOP");
    let accepted = send_accepted(&edge, 0, 50).await;
    let spool = admin_spool(&edge).await;
    assert_eq!(spool["records"], 50, "{spool}");
    // Readiness is about accepting and keeping events, not the broker.
    assert_eq!(readyz(&edge).await, 200);
    kill("-KILL", edge.pid());
    drop(edge);
    // Back up with the broker still paused: the spool is recovered.
    let edge = s.restart().await;
    let spool = admin_spool(&edge).await;
    assert_eq!(spool["records"], 50, "{spool}");
    assert!(edge.log().contains("spool recovered"), "{}", edge.log());
    s.signal_broker("-CONT");
    let (seen, records) = s.delivered(&accepted).await;
    assert_eq!(seen, accepted);
    eprintln!(
        "{records} records for 50 events ({} duplicates)",
        records - 50
    );
    assert_eventually!(
        admin_spool(&edge).await["records"] == 0,
        Duration::from_secs(30),
        "spool not drained after restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_the_broker_down_keeps_events_for_the_next_start() {
    let (s, mut edge) = setup("spool-sigterm", "").await;
    let mut accepted = send_accepted(&edge, 0, 10).await;
    s.signal_broker("-STOP");
    accepted.extend(send_accepted(&edge, 10, 40).await);
    let started = Instant::now();
    assert!(
        edge.terminate(Duration::from_secs(20)),
        "edge did not exit cleanly"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // What waits on disk is ciphertext only, in owner-only files.
    let spool_dir = s.dir.path().join("data").join("spool");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool_dir), 0o700);
    let mut spooled_bytes = 0;
    for entry in std::fs::read_dir(&spool_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        let bytes = std::fs::read(&path).unwrap();
        spooled_bytes += bytes.len();
        for needle in [
            &b"site1.example/p/"[..],
            b"pageview",
            b"127.0.0.1",
            BROWSER_UA.as_bytes(),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds plaintext {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(spooled_bytes > 0, "nothing kept on disk");
    assert!(
        edge.log().contains("undelivered events stay in the spool"),
        "{}",
        edge.log()
    );
    s.signal_broker("-CONT");
    let edge = s.restart().await;
    let (seen, _) = s.delivered(&accepted).await;
    assert_eq!(seen, accepted);
    assert_eventually!(
        edge.metric("edge_spool_records", &[]).await == 0.0,
        Duration::from_secs(30),
        "spool not drained after restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_answers_503_with_retry_after_and_loses_nothing_accepted() {
    let (s, edge) = setup("spool-full", "max_bytes = 65536\nsegment_bytes = 16384").await;
    s.signal_broker("-STOP");
    let client = browser();
    let mut accepted = BTreeSet::new();
    let mut refused = 0u64;
    let mut n = 0;
    while refused < 5 {
        let (status, retry) = send(&client, edge.ports.http, n).await;
        match status {
            202 => {
                assert_eq!(refused, 0, "accepted after a refusal while still full");
                accepted.insert(url(n));
            }
            503 => {
                let retry: u64 = retry.expect("Retry-After on 503").parse().unwrap();
                assert!(retry >= 1);
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
        n += 1;
        assert!(n < 5_000, "the spool never filled");
    }
    assert!(accepted.len() > 50, "only {} accepted", accepted.len());
    assert_eq!(
        edge.metric("edge_spool_appends_total", &[("outcome", "full")])
            .await,
        5.0
    );
    assert_eq!(
        edge.metric("edge_requests_total", &[("outcome", "unavailable")])
            .await,
        5.0
    );
    assert_eq!(
        readyz(&edge).await,
        503,
        "readyz must say not ready while full"
    );
    // The gauges tell the same at once (the shipper is stuck retrying the
    // stopped broker, so only the scrape itself can have refreshed them).
    assert_eq!(edge.metric("edge_spool_writable", &[]).await, 0.0);
    assert_eq!(
        edge.metric("edge_spool_records", &[]).await,
        accepted.len() as f64
    );
    let spool = admin_spool(&edge).await;
    assert_eq!(spool["full"], "max_bytes", "{spool}");
    assert_eq!(spool["records"], accepted.len() as u64, "{spool}");
    assert_eq!(spool["commit_delay_us"], 1000, "the default: {spool}");
    // max_bytes reloads: a larger bound takes events again at once. So
    // does the group-commit delay.
    s.config
        .clone()
        .section(
            "spool",
            "max_bytes = 1048576\nsegment_bytes = 16384\n\
             commit_delay_us = 250\ncommit_delay_min_appends = 8",
        )
        .write();
    let (status, body) = edge.reload().await;
    assert_eq!(status, 200, "{body}");
    let spool = admin_spool(&edge).await;
    assert_eq!(
        (
            &spool["commit_delay_us"],
            &spool["commit_delay_min_appends"]
        ),
        (&serde_json::json!(250), &serde_json::json!(8)),
        "{spool}"
    );
    assert_eq!(readyz(&edge).await, 200);
    let (status, _) = send(&client, edge.ports.http, n).await;
    assert_eq!(status, 202, "not accepted after max_bytes was raised");
    accepted.insert(url(n));
    n += 1;
    s.signal_broker("-CONT");
    assert_eventually!(
        admin_spool(&edge).await["records"] == 0,
        Duration::from_secs(60),
        "spool did not drain after the broker came back: {}\n{}",
        admin_spool(&edge).await,
        edge.log()
    );
    let (status, _) = send(&client, edge.ports.http, n).await;
    assert_eq!(status, 202);
    accepted.insert(url(n));
    let (seen, _) = s.delivered(&accepted).await;
    assert_eq!(seen, accepted);
}
