//! Browser → edge → encrypted Kafka record, over real HTTP and HTTPS sockets
//! and a real Kafka-protocol broker.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_envelope::{DeviceClass, EventRecord};
use edge_tests::*;

const UA_FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const UA_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

struct Setup {
    _dir: tempfile::TempDir,
    broker: Broker,
    key: BackendKey,
    ca: TestCa,
    edge: Edge,
    topic: &'static str,
}

async fn setup(topic: &'static str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(topic, 3).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let ca = TestCa::new();
    let edge = EdgeUnderTest::new(dir.path(), &broker.addr, topic, &key)
        .cert(ca.issue(dir.path(), "a", &["a.test"]))
        .cert(ca.issue(dir.path(), "b", &["*.b.test"]))
        .site("site-a", &["a.test"])
        .site("site-b", &["stats.b.test"])
        .start()
        .await;
    Setup {
        _dir: dir,
        broker,
        key,
        ca,
        edge,
        topic,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_events_arrive_once_encrypted_and_decrypt_to_what_was_sent() {
    let s = setup("events-e2e").await;
    let https = s.ca.client(&["a.test", "stats.b.test"], s.edge.ports.https);
    let http = browser();
    let started = now_ms();

    // 1. HTTPS, one JSON event with props and campaign parameters.
    let r = https
        .post(format!("https://a.test:{}/api/event", s.edge.ports.https.port()))
        .header("content-type", "application/json")
        .header("user-agent", UA_FIREFOX)
        .body(r#"{"name":"pageview","url":"https://a.test/pricing?utm_source=newsletter&email=x@y.z#top","referrer":"https://news.example.org/story?id=7","props":{"plan":"pro","seats":3,"trial":true}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["accepted"], 1);

    // 2. HTTPS to a wildcard certificate, a batch of three, sendBeacon's text/plain.
    let r = https
        .post(format!("https://stats.b.test:{}/api/event", s.edge.ports.https.port()))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("user-agent", UA_IPHONE)
        .body(r#"[{"n":"pageview","u":"https://b.test/"},{"n":"signup","u":"https://b.test/join","p":{"step":"2"}},{"n":"pageview","u":"https://b.test/docs/intro"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    // 3. Plain HTTP pixel with query parameters.
    let r = http
        .get(format!(
            "http://{}/api/event.gif?n=pageview&u=https%3A%2F%2Fa.test%2Fnoscript&r=https%3A%2F%2Fref.example%2F",
            s.edge.ports.http
        ))
        .header("host", "a.test")
        .header("user-agent", UA_FIREFOX)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert!(r.bytes().await.unwrap().starts_with(b"GIF89a"));

    // Exactly five records: wait for a sixth that must not come.
    let records = s.broker.consume(s.topic, 6, Duration::from_secs(8)).await;
    assert_eq!(
        records.len(),
        5,
        "expected exactly 5 records, got {}",
        records.len()
    );

    let opener = s.key.opener();
    let mut by_name: Vec<(String, EventRecord)> = Vec::new();
    for rec in &records {
        let site = String::from_utf8(rec.key.clone()).unwrap();
        for needle in [
            "127.0.0.1",
            UA_FIREFOX,
            UA_IPHONE,
            "Firefox",
            "a.test/pricing",
            "/docs/intro",
            "news.example.org",
            "newsletter",
            "pageview",
        ] {
            assert!(
                !contains(&rec.payload, needle.as_bytes()),
                "record {}/{} contains plaintext {needle:?}",
                rec.partition,
                rec.offset
            );
        }
        let event = opener.open(&site, &rec.payload).unwrap();
        assert_eq!(event.site_id, site);
        assert!(event.received_at_ms >= started - 1000 && event.received_at_ms <= now_ms() + 1000);
        by_name.push((format!("{}:{}", site, event.url), event));
    }
    by_name.sort_by(|a, b| a.0.cmp(&b.0));
    let get = |k: &str| {
        by_name
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| {
                panic!(
                    "no record for {k}; have {:?}",
                    by_name.iter().map(|x| &x.0).collect::<Vec<_>>()
                )
            })
    };

    let pricing = get("site-a:https://a.test/pricing");
    assert_eq!(pricing.name, "pageview");
    assert_eq!(
        pricing.referrer.as_deref(),
        Some("https://news.example.org/story")
    );
    assert_eq!(pricing.utm.source.as_deref(), Some("newsletter"));
    let mut props = pricing.props.clone();
    props.sort();
    assert_eq!(
        props,
        vec![
            ("plan".to_string(), "pro".to_string()),
            ("seats".to_string(), "3".to_string()),
            ("trial".to_string(), "true".to_string())
        ]
    );
    assert_eq!(pricing.device, DeviceClass::Desktop);
    assert_eq!(pricing.browser, edge_envelope::BrowserFamily::Firefox);

    let noscript = get("site-a:https://a.test/noscript");
    assert_eq!(noscript.referrer.as_deref(), Some("https://ref.example/"));
    // Same site, IP, user agent and day: same visitor.
    assert_eq!(noscript.visitor_id, pricing.visitor_id);

    let signup = get("site-b:https://b.test/join");
    assert_eq!(signup.name, "signup");
    assert_eq!(signup.props, vec![("step".to_string(), "2".to_string())]);
    assert_eq!(signup.device, DeviceClass::Mobile);
    assert_ne!(signup.visitor_id, pricing.visitor_id);
    get("site-b:https://b.test/");
    get("site-b:https://b.test/docs/intro");

    // Kafka key is the site id; records of one site share a partition.
    let b_partitions: std::collections::HashSet<i32> = records
        .iter()
        .filter(|r| r.key == b"site-b")
        .map(|r| r.partition)
        .collect();
    assert_eq!(b_partitions.len(), 1);

    assert_eq!(
        s.edge
            .metric(
                "edge_events_total",
                &[("site", "site-b"), ("outcome", "accepted")]
            )
            .await,
        3.0
    );
    assert_eq!(
        s.edge
            .metric("edge_kafka_delivery_total", &[("outcome", "acked")])
            .await,
        5.0
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_or_moved_records_fail_to_decrypt() {
    let s = setup("events-tamper").await;
    let r = browser()
        .post(format!("http://{}/api/event", s.edge.ports.http))
        .header("host", "a.test")
        .body(r#"{"name":"pageview","url":"https://a.test/secret"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let records = s.broker.consume(s.topic, 1, Duration::from_secs(8)).await;
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    let opener = s.key.opener();
    assert!(opener.open("site-a", &rec.payload).is_ok());
    // Moved to another site's key: the site id is bound as associated data.
    assert!(opener.open("site-b", &rec.payload).is_err());
    // Any flipped byte is detected.
    for i in 0..rec.payload.len() {
        let mut bad = rec.payload.clone();
        bad[i] ^= 0x01;
        assert!(
            opener.open("site-a", &bad).is_err(),
            "flip at byte {i} went unnoticed"
        );
    }
    // A different backend key cannot open it.
    let other_dir = tempfile::tempdir().unwrap();
    let other = BackendKey::generate(other_dir.path());
    assert!(other.opener().open("site-a", &rec.payload).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_over_tls_is_served() {
    let s = setup("events-h2").await;
    let https = s.ca.client(&["a.test"], s.edge.ports.https);
    let r = https
        .post(format!(
            "https://a.test:{}/api/event",
            s.edge.ports.https.port()
        ))
        .header("content-type", "application/json")
        .body(r#"{"name":"pageview","url":"https://a.test/h2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 202);
    let records = s.broker.consume(s.topic, 1, Duration::from_secs(8)).await;
    assert_eq!(
        s.key
            .opener()
            .open("site-a", &records[0].payload)
            .unwrap()
            .url,
        "https://a.test/h2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sni_fails_the_handshake_and_is_counted() {
    let s = setup("events-sni").await;
    let client = s.ca.client(&["unknown.test"], s.edge.ports.https);
    let err = client
        .get(format!(
            "https://unknown.test:{}/",
            s.edge.ports.https.port()
        ))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    assert_eq!(
        s.edge
            .metric("edge_tls_handshakes_total", &[("outcome", "unknown_sni")])
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_still_answers_202_and_keeps_the_event_in_the_spool() {
    let Setup {
        _dir, broker, edge, ..
    } = setup("events-outage").await;
    drop(broker); // kills the broker process
    let r = browser()
        .post(format!("http://{}/api/event", edge.ports.http))
        .header("host", "a.test")
        .body(r#"{"name":"pageview","url":"https://a.test/kept"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        202,
        "the spool keeps events while the broker is away"
    );
    assert_eq!(
        edge.metric("edge_events_total", &[("outcome", "accepted")])
            .await,
        1.0
    );
    assert_eventually!(
        edge.metric("edge_spool_records", &[]).await == 1.0,
        Duration::from_secs(5),
        "the event is not counted in the spool"
    );
    // The broker's state is visible, but readiness is about accepting events.
    assert_eventually!(
        edge.metric("edge_kafka_ready", &[]).await == 0.0,
        Duration::from_secs(10),
        "edge_kafka_ready still 1 with the broker gone"
    );
    let ready = reqwest::get(format!("http://{}/readyz", edge.ports.admin))
        .await
        .unwrap()
        .status();
    assert_eq!(ready, 200);
}

/// A body several times the edge's per-connection read buffer (16 KiB,
/// `PUBLIC_READ_BUFFER_BYTES`) arrives whole, twice per client (each client
/// keeps its connection alive, so the second request follows a long body on
/// it): over plain HTTP/1.1, HTTP/1.1 over TLS and HTTP/2 over TLS.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_several_times_the_read_buffer_arrives_whole_on_every_protocol() {
    let s = setup("events-long-body").await;
    let tls_client = |http1: bool| {
        let b = s.ca.client_builder(&["a.test"], s.edge.ports.https);
        if http1 { b.http1_only() } else { b }.build().unwrap()
    };
    let https = format!("https://a.test:{}/api/event", s.edge.ports.https.port());
    let plain = format!("http://{}/api/event", s.edge.ports.http);
    let routes = [
        ("h1", browser(), plain, reqwest::Version::HTTP_11),
        (
            "tls-h1",
            tls_client(true),
            https.clone(),
            reqwest::Version::HTTP_11,
        ),
        ("tls-h2", tls_client(false), https, reqwest::Version::HTTP_2),
    ];
    let per_batch = 40;
    let mut sent = Vec::new();
    for (label, client, url, version) in &routes {
        for round in 0..2 {
            let urls: Vec<String> = (0..per_batch)
                .map(|i| format!("https://a.test/{label}/{round}/{i}/{}", "p".repeat(1000)))
                .collect();
            let body = serde_json::to_string(
                &urls
                    .iter()
                    .map(|u| serde_json::json!({"n": "pageview", "u": u}))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            assert!(body.len() > 32 << 10, "{} bytes", body.len());
            let mut request = client.post(url);
            if *label == "h1" {
                // The TLS clients name a.test in the URL (and in :authority).
                request = request.header("host", "a.test");
            }
            let r = request
                .header("content-type", "application/json")
                .header("user-agent", UA_FIREFOX)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.version(), *version, "{label}");
            assert_eq!(r.status(), 202, "{label}: {}", r.text().await.unwrap());
            sent.extend(urls);
        }
    }
    let records = s
        .broker
        .consume(s.topic, sent.len(), Duration::from_secs(15))
        .await;
    let opener = s.key.opener();
    let mut got: Vec<String> = records
        .iter()
        .map(|r| opener.open("site-a", &r.payload).unwrap().url)
        .collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
}
