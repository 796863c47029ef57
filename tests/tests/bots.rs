//! Bot filtering over real sockets: each reason is dropped with the normal
//! success status and counted, a tagging site forwards with a header, and
//! list files reload when they change.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;
use std::time::Duration;

use edge_tests::*;

const TOPIC: &str = "bot-events";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// Like the harness's `client_from`, but with no default user agent: each
/// request here chooses its own (or none).
fn bare_client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `edge_bot_verdicts_total{reason,action}`.
async fn verdicts(edge: &Edge, reason: &str, action: &str) -> f64 {
    edge.metric(
        "edge_bot_verdicts_total",
        &[("reason", reason), ("action", action)],
    )
    .await
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    host: &str,
    user_agent: Option<&str>,
    referrer: Option<&str>,
) -> (u16, String) {
    let mut event = serde_json::json!({"name": "pageview", "url": format!("https://{host}/page")});
    if let Some(r) = referrer {
        event["referrer"] = serde_json::Value::String(r.to_string());
    }
    let mut req = client
        .post(format!("{base}/api/event"))
        .header("host", host)
        .json(&event);
    if let Some(ua) = user_agent {
        req = req.header("user-agent", ua);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn bots_are_dropped_quietly_counted_by_reason_or_tagged_per_site() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(TOPIC, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let ca = TestCa::new();
    let dc = dir.path().join("datacenter.cidr");
    std::fs::write(&dc, "# test data centre\n127.0.0.7/32\n").unwrap();
    let extra_ua = dir.path().join("extra-ua.txt");
    std::fs::write(&extra_ua, "# operator additions\nAcmeMonitor\n").unwrap();
    let edge = EdgeUnderTest::new(dir.path(), &broker.addr, TOPIC, &key)
        .cert(ca.issue(dir.path(), "a", &["a.test"]))
        .site("site-a", &["a.test"])
        .site("site-b", &["b.test"])
        // site-b keeps bots' events, tagged.
        .site_key("site-b", "bot_action = \"tag\"")
        .section(
            "bots",
            &format!(
                "datacenter_cidr_files = [{dc:?}]\nuser_agent_files = [{extra_ua:?}]",
                dc = dc.display().to_string(),
                extra_ua = extra_ua.display().to_string()
            ),
        )
        .start()
        .await;
    let base = format!("http://{}", edge.ports.http);
    let home = bare_client_from("127.0.0.2");

    let cases: [(&str, Option<&str>, Option<&str>, &str); 7] = [
        (
            "127.0.0.2",
            Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
            None,
            "ua_list",
        ),
        ("127.0.0.2", Some("curl/8.5.0"), None, "ua_list"),
        (
            "127.0.0.2",
            Some(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            ),
            None,
            "headless",
        ),
        ("127.0.0.2", None, None, "empty_ua"),
        ("127.0.0.2", Some("x"), None, "absurd_ua"),
        ("127.0.0.7", Some(FIREFOX), None, "datacenter_ip"),
        (
            "127.0.0.2",
            Some(FIREFOX),
            Some("https://www.1xbetcc.com/landing"),
            "referrer_spam",
        ),
    ];
    for (source, ua, referrer, reason) in cases {
        let c = bare_client_from(source);
        let (status, body) = send(&c, &base, "a.test", ua, referrer).await;
        // The same answer a browser gets: the bot learns nothing.
        assert_eq!(
            (status, body.as_str()),
            (202, "{\"accepted\":1}"),
            "{reason}"
        );
        assert!(
            verdicts(&edge, reason, "dropped").await >= 1.0,
            "{reason} not counted"
        );
    }
    // The operator's own list applies.
    assert_eq!(
        send(
            &home,
            &base,
            "a.test",
            Some("AcmeMonitor/2.0 (uptime)"),
            None
        )
        .await
        .0,
        202
    );
    assert_eq!(verdicts(&edge, "ua_list", "dropped").await, 3.0);
    // A real browser's event is forwarded; on site-b a bot's event is forwarded tagged.
    assert_eq!(
        send(
            &home,
            &base,
            "a.test",
            Some(FIREFOX),
            Some("https://news.example.org/")
        )
        .await
        .0,
        202
    );
    assert_eq!(
        send(&home, &base, "b.test", Some("curl/8.5.0"), None)
            .await
            .0,
        202
    );
    let records = broker.consume(TOPIC, 5, Duration::from_secs(5)).await;
    assert_eq!(
        records.len(),
        2,
        "only the browser's and the tagged event reach Kafka"
    );
    let tagged: Vec<_> = records.iter().filter(|r| r.key == b"site-b").collect();
    assert_eq!(tagged.len(), 1);
    assert_eq!(
        tagged[0].headers,
        vec![("edge-bot".to_string(), b"ua_list".to_vec())]
    );
    let browser: Vec<_> = records.iter().filter(|r| r.key == b"site-a").collect();
    assert!(browser[0].headers.is_empty());
    assert_eq!(verdicts(&edge, "ua_list", "tagged").await, 1.0);
    assert_eq!(
        edge.metric("edge_requests_total", &[("outcome", "bot_dropped")])
            .await,
        8.0
    );

    // Editing a list file reloads it (file watch), without touching the config.
    std::fs::write(
        &extra_ua,
        "# operator additions\nAcmeMonitor\nNightlyScraper\n",
    )
    .unwrap();
    assert_eventually!(
        edge.metric("edge_config_reloads_total", &[("outcome", "applied")])
            .await
            >= 1.0,
        Duration::from_secs(10),
        "the list change was not picked up:\n{}",
        edge.log()
    );
    assert_eq!(
        send(&home, &base, "a.test", Some("NightlyScraper/0.1"), None)
            .await
            .0,
        202
    );
    assert_eq!(verdicts(&edge, "ua_list", "dropped").await, 4.0);
    // A broken list is refused with file and line; the old filter keeps working.
    std::fs::write(&extra_ua, "AcmeMonitor\n(unclosed\n").unwrap();
    let (status, body) = edge.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("extra-ua.txt:2"), "{body}");
    assert_eq!(
        send(&home, &base, "a.test", Some("NightlyScraper/0.1"), None)
            .await
            .0,
        202
    );
    assert_eq!(verdicts(&edge, "ua_list", "dropped").await, 5.0);
    // Raw user agents and addresses are never logged.
    let log = edge.log();
    assert!(
        !log.contains("NightlyScraper") && !log.contains("127.0.0.7"),
        "{log}"
    );
}
