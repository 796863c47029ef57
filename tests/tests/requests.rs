//! Bad requests get a specific status and reason, are counted, and never reach Kafka.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::time::Duration;

use edge_tests::*;

struct Setup {
    _dir: tempfile::TempDir,
    broker: Broker,
    config: EdgeUnderTest,
    edge: Edge,
}

const LIMITS: &str = "max_body_bytes = 4096\nmax_batch_events = 5";

async fn setup(topic: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(topic, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let config = EdgeUnderTest::new(dir.path(), &broker.addr, topic, &key)
        .cert(TestCa::new().issue(dir.path(), "a", &["a.test"]))
        .site("site-a", &["a.test"])
        .limits(LIMITS);
    let edge = config.start().await;
    Setup {
        _dir: dir,
        broker,
        config,
        edge,
    }
}

async fn post(
    s: &Setup,
    host: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let r = browser()
        .post(format!("http://{}/api/event", s.edge.ports.http))
        .header("host", host)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_inputs_get_specific_errors_and_nothing_reaches_kafka() {
    let s = setup("requests-bad").await;
    let json = "application/json";

    let (st, body) = post(
        &s,
        "nobody.test",
        json,
        r#"{"name":"pageview","url":"https://x.test/"}"#,
    )
    .await;
    assert_eq!(st, 421, "{body}");
    assert!(
        !body.contains("nobody.test"),
        "the Host is never echoed: {body}"
    );

    let (st, body) = post(&s, "a.test", json, r#"{"name":"pageview","url":"#).await;
    assert_eq!(st, 400);
    assert!(body.contains("JSON"), "{body}");

    let long_url = format!("https://a.test/{}", "p".repeat(2000));
    let (st, body) = post(
        &s,
        "a.test",
        json,
        format!(r#"{{"name":"pageview","url":"{long_url}"}}"#),
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("url") && body.contains("2000"), "{body}");

    let (st, body) = post(&s, "a.test", json, r#"{"name":"pageview"}"#).await;
    assert_eq!(st, 400);
    assert!(body.contains("url"), "{body}");

    let (st, body) = post(
        &s,
        "a.test",
        json,
        r#"{"name":"pageview","url":"https://a.test/","colour":"red"}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("colour"), "{body}");

    let batch: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"n":"e{i}","u":"https://a.test/"}}"#))
        .collect();
    let (st, body) = post(&s, "a.test", json, format!("[{}]", batch.join(","))).await;
    assert_eq!(st, 400);
    assert!(body.contains('5'), "{body}");

    let (st, body) = post(&s, "a.test", "multipart/form-data; boundary=x", "--x--").await;
    assert_eq!(st, 415, "{body}");

    // Over the 4096-byte limit with Content-Length: refused before reading.
    let (st, body) = post(&s, "a.test", json, vec![b' '; 5000]).await;
    assert_eq!(st, 413, "{body}");
    assert!(body.contains("4096"), "{body}");

    // Over the limit without Content-Length (chunked): refused while streaming.
    let mut sock = std::net::TcpStream::connect(s.edge.ports.http).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(b"POST /api/event HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for _ in 0..10 {
        let chunk = vec![b' '; 1000];
        if sock
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || sock.write_all(&chunk).is_err()
            || sock.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf);
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf)
    );

    let r = browser()
        .get(format!("http://{}/api/event", s.edge.ports.http))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST, OPTIONS");

    let r = browser()
        .get(format!("http://{}/wp-login.php", s.edge.ports.http))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = browser()
        .get(format!(
            "http://{}/api/event.gif?n=pageview",
            s.edge.ports.http
        ))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = browser()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/api/event", s.edge.ports.http),
        )
        .header("host", "a.test")
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    for (outcome, n) in [
        ("unknown_host", 1.0),
        ("malformed", 6.0),
        ("unsupported_media_type", 1.0),
        ("payload_too_large", 2.0),
        ("method_not_allowed", 1.0),
        ("not_found", 1.0),
        ("preflight", 1.0),
    ] {
        assert_eq!(
            s.edge
                .metric("edge_requests_total", &[("outcome", outcome)])
                .await,
            n,
            "edge_requests_total{{outcome={outcome}}}"
        );
    }
    assert_eq!(
        s.edge
            .metric("edge_event_rejections_total", &[("reason", "too_long")])
            .await,
        1.0
    );

    // A good event still goes through on the same edge, and it is the only record.
    let (st, _) = post(
        &s,
        "a.test",
        json,
        r#"{"name":"pageview","url":"https://a.test/ok"}"#,
    )
    .await;
    assert_eq!(st, 202);
    let records = s
        .broker
        .consume("requests-bad", 2, Duration::from_secs(5))
        .await;
    assert_eq!(records.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_live_on_the_admin_listener_only() {
    let s = setup("requests-admin").await;
    for path in ["/metrics", "/healthz", "/readyz", "/admin/config"] {
        let public = browser()
            .get(format!("http://{}{path}", s.edge.ports.http))
            .header("host", "a.test")
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), 404, "{path} must not be served publicly");
        let admin = reqwest::get(format!("http://{}{path}", s.edge.ports.admin))
            .await
            .unwrap();
        assert_eq!(admin.status(), 200, "{path} on admin");
    }
    let cfg: serde_json::Value = s.edge.admin_config().await;
    assert_eq!(cfg["config"]["sites"][0]["id"], "site-a");
    assert_eq!(cfg["version"].as_str().unwrap().len(), 12);
    let r = reqwest::get(format!("http://{}/admin/reload", s.edge.ports.admin))
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_body_times_out_with_408() {
    let s = setup("requests-slow").await;
    // Raw socket: promise 100 bytes, send 10, then stall past the body
    // timeout, shortened from its 10 s default by a reload.
    s.config
        .clone()
        .limits(&format!("{LIMITS}\nrequest_body_timeout_ms = 500"))
        .write();
    let (status, body) = s.edge.reload().await;
    assert!(status == 200, "{body}");
    let mut sock = std::net::TcpStream::connect(s.edge.ports.http).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(b"POST /api/event HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":")
        .unwrap();
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf);
    let resp = String::from_utf8_lossy(&buf);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
}
