//! Fleet-wide per-site limits (issue 16): three real edges on 127.0.0.2,
//! .3 and .4 share one per-site bucket through their own redis-server.
//!
//! One test, in phases over the same three processes:
//! 1. shared: even load over the three edges for 20 s; the events accepted
//!    fleet-wide are within ±5 % of R·20 + B;
//! 2. Redis killed: every edge still answers, enforces its local share
//!    (R/3, B/3) and says `edge_ratelimit_shared_degraded 1`;
//! 3. Redis back on the same port: every edge leaves degraded mode by itself;
//!    stalled (SIGSTOP), syncs time out and the edges degrade; resumed, they
//!    recover;
//! 4. control: the same config without `[rate_limits.shared]` (a reload)
//!    and the same load accept about three times as much.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_tests::*;

const TOPIC: &str = "fleet-limit-events";
/// The per-site limit: R events/s, burst B.
const RATE: f64 = 100.0;
const BURST: u64 = 100;
/// The load window.
const WINDOW: Duration = Duration::from_secs(20);
/// Offered load per edge: one batch of `BATCH` events every `PACE`
/// (150 events/s per edge, 450 fleet-wide: 4.5 R).
const BATCH: usize = 3;
const PACE: Duration = Duration::from_millis(20);
const HOST: &str = "fleet.test";

/// A redis-server of this test alone (so that it can be killed), without
/// persistence.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    fn start(dir: &Path, port: u16) -> Redis {
        let log = std::fs::File::create(dir.join(format!("redis-{port}.log"))).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(dir)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server)");
        let r = Redis {
            child: Some(child),
            port,
        };
        r.wait_up();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Waits until the server answers PING.
    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
                .unwrap_or(false);
            if pong {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `kill -SIG` to the server (`STOP`, `CONT`).
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{sig}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGKILL, no goodbye to the clients.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The same paced load on every edge for [`WINDOW`]; events accepted (2xx)
/// per edge.
async fn load(edges: &[Edge]) -> Vec<u64> {
    let mut tasks = Vec::new();
    for edge in edges {
        let http = edge.ports.http;
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut accepted = 0u64;
            let mut refused = 0u64;
            let mut tick = tokio::time::interval(PACE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let end = Instant::now() + WINDOW;
            while Instant::now() < end {
                tick.tick().await;
                let status = post(&client, http, BATCH).await;
                match status {
                    200..=299 => accepted += BATCH as u64,
                    429 => refused += BATCH as u64,
                    other => panic!("unexpected status {other}"),
                }
            }
            assert!(refused > 0, "the load never reached the limit");
            accepted
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Posts a batch of `n` events for [`HOST`] to the edge at `http`; the status.
async fn post(client: &reqwest::Client, http: std::net::SocketAddr, n: usize) -> u16 {
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"name": "pageview", "url": format!("https://{HOST}/p{i}")}))
        .collect();
    client
        .post(format!("http://{http}/api/event"))
        .header("host", HOST)
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .json(&serde_json::Value::Array(events))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until `edge`'s metric `name` equals `value`.
async fn wait_metric(edge: &Edge, name: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if edge.metric(name, &[]).await == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {value} on {}:\n{}",
            edge.ports.http,
            edge.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_site_limit_holds_fleet_wide_and_degrades_to_local_shares() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let mut redis = Redis::start(dir.path(), free_port());
    let shared = format!(
        "redis_url = {:?}\ntimeout_ms = 25\nsync_interval_ms = 100\nfleet_size = 3\nkey_prefix = \"fleet-test:{}:\"",
        redis.url(),
        std::process::id()
    );

    let mut bases = Vec::new();
    let mut edges = Vec::new();
    for last in [2u8, 3, 4] {
        let ip = IpAddr::from([127, 0, 0, last]);
        let edge_dir = dir.path().join(format!("edge-{last}"));
        std::fs::create_dir_all(&edge_dir).unwrap();
        let base = EdgeUnderTest::new(&edge_dir, &broker.addr, TOPIC, &key)
            .ports(EdgePorts::pick_on(ip))
            .without_https()
            .site("fleet", &[HOST])
            // One client per edge: only the per-site scope may limit.
            .section("rate_limits.per_ip", "enabled = false")
            .section(
                "rate_limits.per_site",
                &format!("events_per_second = {RATE}\nburst = {BURST}"),
            );
        let config = base.clone().section("rate_limits.shared", &shared);
        edges.push(config.start().await);
        bases.push(base);
    }
    for edge in &edges {
        wait_metric(edge, "edge_ratelimit_shared_degraded", 0.0).await;
        assert!(
            edge.metric("edge_ratelimit_shared_sync_total", &[("outcome", "ok")])
                .await
                >= 1.0
        );
    }

    // 1. Shared: the fleet accepts R·20 + B, ±5 %.
    let per_edge = load(&edges).await;
    let accepted: u64 = per_edge.iter().sum();
    let expected = RATE * WINDOW.as_secs_f64() + BURST as f64;
    let deviation = (accepted as f64 - expected) / expected;
    eprintln!(
        "shared: accepted {accepted} (per edge {per_edge:?}), expected {expected}, deviation {:+.2} %",
        deviation * 100.0
    );
    assert!(
        deviation.abs() <= 0.05,
        "fleet accepted {accepted}, expected {expected} ±5 % (per edge {per_edge:?})"
    );
    // Every edge got a fair part of it (the load is even).
    for n in &per_edge {
        assert!(
            (*n as f64) > expected / 3.0 * 0.7,
            "uneven shares {per_edge:?}"
        );
    }

    // 2. Redis down: every edge degrades to its local share and says so.
    redis.kill();
    for edge in &edges {
        wait_metric(edge, "edge_ratelimit_shared_degraded", 1.0).await;
    }
    let local_burst = BURST / 3;
    let client = reqwest::Client::new();
    for edge in &edges {
        let started = Instant::now();
        let mut accepted = 0u64;
        for _ in 0..40 {
            if (200..300).contains(&post(&client, edge.ports.http, 1).await) {
                accepted += 1;
            }
        }
        // The local share: its burst, plus what R/3 refills meanwhile.
        let refill = (started.elapsed().as_secs_f64() * RATE / 3.0).ceil() as u64;
        eprintln!(
            "degraded {}: accepted {accepted} of 40 (local burst {local_burst}, refill {refill})",
            edge.ports.http
        );
        assert!(
            accepted >= local_burst && accepted <= local_burst + refill + 1,
            "degraded edge {} accepted {accepted} of 40; local share {local_burst} + {refill}",
            edge.ports.http
        );
        assert!(
            edge.metric("edge_ratelimit_shared_sync_total", &[("outcome", "error")])
                .await
                + edge
                    .metric(
                        "edge_ratelimit_shared_sync_total",
                        &[("outcome", "timeout")]
                    )
                    .await
                >= 1.0
        );
    }

    // 3. Redis back: every edge reconnects by itself.
    let back = Redis::start(dir.path(), redis.port);
    for edge in &edges {
        wait_metric(edge, "edge_ratelimit_shared_degraded", 0.0).await;
    }
    // A stalled Redis (SIGSTOP) is a slow one: syncs time out, the edges
    // degrade, and recover when it runs again.
    let timeouts = |edge: &Edge| {
        let edge = edge.ports.admin;
        async move {
            let text = reqwest::get(format!("http://{edge}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            parse_metric(
                &text,
                "edge_ratelimit_shared_sync_total",
                &[("outcome", "timeout")],
            )
        }
    };
    let before = timeouts(&edges[0]).await;
    back.signal("STOP");
    wait_metric(&edges[0], "edge_ratelimit_shared_degraded", 1.0).await;
    assert!(
        timeouts(&edges[0]).await > before,
        "a stalled Redis counts as timeout"
    );
    back.signal("CONT");
    for edge in &edges {
        wait_metric(edge, "edge_ratelimit_shared_degraded", 0.0).await;
    }

    // 4. Control: without `[rate_limits.shared]` each edge has its own bucket.
    for (edge, base) in edges.iter().zip(&bases) {
        std::fs::write(&edge.config_path, base.render()).unwrap();
        let (status, body) = edge.reload().await;
        assert_eq!(status, 200, "{body}");
    }
    let per_edge_local = load(&edges).await;
    let local: u64 = per_edge_local.iter().sum();
    eprintln!(
        "control (no shared limits): accepted {local} (per edge {per_edge_local:?}), {:.2}× the shared run",
        local as f64 / accepted as f64
    );
    assert!(
        local as f64 >= 2.5 * expected,
        "control accepted {local}, expected about 3 × {expected}"
    );
}
