//! Rate limits, trusted-proxy headers and PROXY protocol over real sockets.
//!
//! Distinct clients are real: each client binds its socket to its own
//! 127.0.0.x source address, so the edge sees different peers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use edge_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "abuse-events";

struct Setup {
    dir: tempfile::TempDir,
    broker: Broker,
    config: EdgeUnderTest,
    edge: Edge,
    base: String,
}

/// A broker and an edge serving `site-a` (a.test, HTTPS too) and `site-b`
/// (b.test), with `configure` applied to its config (the limits under test).
async fn setup(configure: impl FnOnce(EdgeUnderTest) -> EdgeUnderTest) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let config = configure(
        EdgeUnderTest::new(dir.path(), &broker.addr, TOPIC, &key)
            .cert(TestCa::new().issue(dir.path(), "a", &["a.test"]))
            .site("site-a", &["a.test"])
            .site("site-b", &["b.test"]),
    );
    let edge = config.start().await;
    let base = format!("http://{}", edge.ports.http);
    Setup {
        dir,
        broker,
        config,
        edge,
        base,
    }
}

/// Posts `n` events as one batch for `host`; returns (status, Retry-After).
async fn post(client: &reqwest::Client, base: &str, host: &str, n: usize) -> (u16, Option<u64>) {
    post_with(client, base, host, n, &[]).await
}

async fn post_with(
    client: &reqwest::Client,
    base: &str,
    host: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> (u16, Option<u64>) {
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"name": "pageview", "url": format!("https://{host}/p{i}")}))
        .collect();
    let body = if n == 1 {
        events[0].clone()
    } else {
        serde_json::Value::Array(events)
    };
    let mut req = client
        .post(format!("{base}/api/event"))
        .header("host", host)
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (r.status().as_u16(), retry)
}

async fn decisions(edge: &Edge, scope: &str, decision: &str) -> f64 {
    edge.metric(
        "edge_ratelimit_decisions_total",
        &[("scope", scope), ("decision", decision)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn per_ip_limit_triggers_at_the_burst_with_a_retry_after_from_the_rate() {
    // 0.1 events/s, burst 5: exactly 5 pass in a quick burst, the next token in 10 s.
    let s = setup(|c| c.section("rate_limits.per_ip", "events_per_second = 0.1\nburst = 5")).await;
    let a = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    let mut retry = Vec::new();
    for _ in 0..8 {
        let (st, ra) = post(&a, &s.base, "a.test", 1).await;
        statuses.push(st);
        retry.extend(ra);
    }
    assert_eq!(statuses, [202, 202, 202, 202, 202, 429, 429, 429]);
    assert_eq!(retry.len(), 3);
    for r in &retry {
        assert!((9..=10).contains(r), "Retry-After {r}");
    }
    // Another address is another client, with its own bucket.
    let b = client_from("127.0.0.3");
    assert_eq!(post(&b, &s.base, "a.test", 1).await.0, 202);
    // Batches count each event: 3 pass, then 3 more do not fit in the 2 left.
    let c = client_from("127.0.0.4");
    assert_eq!(post(&c, &s.base, "b.test", 3).await.0, 202);
    assert_eq!(post(&c, &s.base, "b.test", 3).await.0, 429);
    // A batch larger than the burst can never pass, and says why.
    let d = client_from("127.0.0.5");
    let r = d
        .post(format!("{}/api/event", s.base))
        .header("host", "a.test")
        .header("user-agent", BROWSER_UA)
        .json(&serde_json::json!([
            {"name":"pageview","url":"https://a.test/1"},{"name":"pageview","url":"https://a.test/2"},
            {"name":"pageview","url":"https://a.test/3"},{"name":"pageview","url":"https://a.test/4"},
            {"name":"pageview","url":"https://a.test/5"},{"name":"pageview","url":"https://a.test/6"}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("exceeds the per_ip burst of 5")
    );

    assert_eq!(
        decisions(&s.edge, "per_ip", "allowed").await,
        5.0 + 1.0 + 3.0
    );
    assert_eq!(decisions(&s.edge, "per_ip", "limited").await, 3.0 + 3.0);
    assert_eq!(decisions(&s.edge, "per_ip", "over_burst").await, 6.0);
    assert_eq!(
        s.edge
            .metric("edge_requests_total", &[("outcome", "rate_limited")])
            .await,
        5.0
    );
    // Limited events never reach Kafka: exactly the 9 accepted ones do.
    let records = s.broker.consume(TOPIC, 20, Duration::from_secs(5)).await;
    assert_eq!(records.len(), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_site_and_per_site_ip_limits_and_a_site_override() {
    let s = setup(|c| {
        c.section("rate_limits.per_ip", "enabled = false")
            .section(
                "rate_limits.per_site_ip",
                "events_per_second = 0.1\nburst = 2",
            )
            .site("site-c", &["c.test"])
            .site_key(
                "site-c",
                "[sites.rate_limits.per_site]\nevents_per_second = 0.1\nburst = 4",
            )
    })
    .await;
    // per site and IP: 2 per client and site.
    let one = client_from("127.0.0.2");
    let got: Vec<u16> = futures_statuses(&one, &s.base, "a.test", 3).await;
    assert_eq!(got, [202, 202, 429]);
    // The same client on another site has a separate site-and-IP bucket.
    assert_eq!(post(&one, &s.base, "b.test", 1).await.0, 202);
    // site-c: 4 events per site from all clients together (each client sends 1-2).
    let mut accepted = 0;
    for i in 10..16 {
        let c = client_from(&format!("127.0.0.{i}"));
        if post(&c, &s.base, "c.test", 1).await.0 == 202 {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 4);
    let (st, retry) = post(&client_from("127.0.0.20"), &s.base, "c.test", 1).await;
    assert_eq!((st, retry.is_some()), (429, true));
    assert_eq!(decisions(&s.edge, "per_site", "limited").await, 3.0);
    assert_eq!(decisions(&s.edge, "per_site_ip", "limited").await, 1.0);
}

async fn futures_statuses(c: &reqwest::Client, base: &str, host: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(post(c, base, host, 1).await.0);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_changes_a_limit_live_and_keeps_unchanged_scopes() {
    let limits = |c: EdgeUnderTest, per_ip_burst: u32| {
        c.section(
            "rate_limits.per_ip",
            &format!("events_per_second = 0.01\nburst = {per_ip_burst}"),
        )
        .section(
            "rate_limits.per_site",
            "events_per_second = 0.01\nburst = 6",
        )
    };
    let s = setup(|c| limits(c, 2)).await;
    let a = client_from("127.0.0.2");
    assert_eq!(
        futures_statuses(&a, &s.base, "a.test", 3).await,
        [202, 202, 429]
    );
    // Raise the per-IP burst: a fresh per-IP bucket; the per-site bucket keeps its 2 spent events.
    limits(s.config.clone(), 3).write();
    let (status, body) = s.edge.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        futures_statuses(&a, &s.base, "a.test", 4).await,
        [202, 202, 202, 429]
    );
    // per-site: 2 + 3 = 5 of 6 spent; one more from a new client passes, then the site is full.
    let b = client_from("127.0.0.3");
    assert_eq!(futures_statuses(&b, &s.base, "a.test", 2).await, [202, 429]);
    assert_eq!(decisions(&s.edge, "per_site", "limited").await, 1.0);
    // An invalid limit is refused by reload and the old limits stay.
    limits(s.config.clone(), 0).write();
    let (status, body) = s.edge.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("rate_limits.per_ip.burst"),
        "{body}"
    );
    assert_eq!(
        post(&client_from("127.0.0.4"), &s.base, "b.test", 1)
            .await
            .0,
        202
    );
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_counts_without_limiting() {
    let s = setup(|c| {
        c.section(
            "rate_limits.per_ip",
            "events_per_second = 0.01\nburst = 1\ndry_run = true",
        )
    })
    .await;
    let a = client_from("127.0.0.2");
    assert_eq!(futures_statuses(&a, &s.base, "a.test", 4).await, [202; 4]);
    assert_eq!(decisions(&s.edge, "per_ip", "dry_run_limited").await, 3.0);
    assert_eq!(decisions(&s.edge, "per_ip", "limited").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let s = setup(|c| {
        c.section("rate_limits.per_ip", "events_per_second = 0.01\nburst = 2")
            .section("client_ip", "trusted_proxies = [\"127.0.0.9/32\"]")
    })
    .await;
    // An untrusted peer cannot pick a fresh bucket by forging X-Forwarded-For.
    let untrusted = client_from("127.0.0.2");
    let mut got = Vec::new();
    for i in 0..3 {
        let fake = format!("198.51.100.{i}");
        got.push(
            post_with(
                &untrusted,
                &s.base,
                "a.test",
                1,
                &[("x-forwarded-for", &fake)],
            )
            .await
            .0,
        );
    }
    assert_eq!(got, [202, 202, 429]);
    // The trusted proxy's header names the client: two clients, two buckets.
    let proxy = client_from("127.0.0.9");
    let mut got = Vec::new();
    for client in [
        "203.0.113.1",
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.2",
        "203.0.113.1",
    ] {
        // The leftmost entry is client-controlled and ignored.
        let xff = format!("6.6.6.6, {client}");
        got.push(
            post_with(&proxy, &s.base, "a.test", 1, &[("x-forwarded-for", &xff)])
                .await
                .0,
        );
    }
    assert_eq!(got, [202, 202, 202, 202, 429]);
    assert_eq!(
        s.edge
            .metric(
                "edge_client_ip_source_total",
                &[("source", "x_forwarded_for")]
            )
            .await,
        5.0
    );
}

/// Sends `preamble` then one HTTP/1.1 event request on a raw connection
/// from `source`; returns the status line, or "" when the edge closed it.
async fn raw_request(source: &str, edge: std::net::SocketAddr, preamble: &[u8]) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(edge).await.unwrap();
    let body = r#"{"name":"pageview","url":"https://a.test/"}"#;
    let request = format!(
        "POST /api/event HTTP/1.1\r\nHost: a.test\r\nUser-Agent: {BROWSER_UA}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut bytes = preamble.to_vec();
    bytes.extend_from_slice(request.as_bytes());
    let _ = stream.write_all(&bytes).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_v1_and_v2_give_the_client_address() {
    let s = setup(|c| {
        c.section("rate_limits.per_ip", "events_per_second = 0.01\nburst = 1")
            .section("client_ip", "proxy_protocol = true")
    })
    .await;
    let edge = s.edge.ports.http;
    let v1 = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 40000 {}\r\n", edge.port());
    // All connections come from one load balancer (127.0.0.2); the header tells clients apart.
    assert!(
        raw_request("127.0.0.2", edge, v1("198.51.100.1").as_bytes())
            .await
            .contains("202")
    );
    assert!(
        raw_request("127.0.0.2", edge, v1("198.51.100.2").as_bytes())
            .await
            .contains("202")
    );
    assert!(
        raw_request("127.0.0.2", edge, v1("198.51.100.1").as_bytes())
            .await
            .contains("429")
    );
    // v2 (binary), IPv6 client.
    let addresses: ppp::v2::Addresses = (
        "[2001:db8::7]:5555"
            .parse::<std::net::SocketAddr>()
            .unwrap(),
        "[2001:db8::1]:443".parse::<std::net::SocketAddr>().unwrap(),
    )
        .into();
    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap();
    assert!(raw_request("127.0.0.2", edge, &v2).await.contains("202"));
    // No header: the connection is closed without an answer.
    assert_eq!(raw_request("127.0.0.3", edge, b"").await, "");
    assert_eq!(
        s.edge
            .metric("edge_proxy_protocol_total", &[("outcome", "v1")])
            .await,
        3.0
    );
    assert_eq!(
        s.edge
            .metric("edge_proxy_protocol_total", &[("outcome", "v2")])
            .await,
        1.0
    );
    assert_eq!(
        s.edge
            .metric("edge_proxy_protocol_total", &[("outcome", "invalid")])
            .await,
        1.0
    );
}
