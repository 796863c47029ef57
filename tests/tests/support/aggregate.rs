//! Shared setup of the aggregation tests: the traffic plan, the expected
//! rollups computed independently, PostgreSQL databases and the aggregator process.

pub use std::collections::{BTreeMap, BTreeSet};
pub use std::net::SocketAddr;
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, Stdio};
pub use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use edge_tests::*;
pub use rdkafka::ClientConfig;
pub use rdkafka::consumer::{Consumer, StreamConsumer};
pub use rdkafka::message::{Headers, Message};
pub use rdkafka::producer::{FutureProducer, FutureRecord};

pub use super::records::*;

pub const DLQ: &str = "edge.events.dlq";
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// === what is sent, and what must come out ===

/// One event as sent by a browser.
#[derive(Debug, Clone)]
pub struct Sent {
    pub name: &'static str,
    pub path: String,
    pub referrer: Option<&'static str>,
}

/// One request: a site, a visitor (user agent) and a batch of events.
#[derive(Debug, Clone)]
pub struct Request {
    pub site: &'static str,
    pub host: &'static str,
    pub visitor: usize,
    pub events: Vec<Sent>,
}

impl Request {
    pub fn mobile(&self) -> bool {
        self.visitor.is_multiple_of(3)
    }

    pub fn user_agent(&self) -> String {
        if self.mobile() {
            format!(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1 t{}",
                self.visitor
            )
        } else {
            format!(
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 t{}",
                self.visitor
            )
        }
    }

    pub fn body(&self) -> String {
        let events: Vec<serde_json::Value> = self
            .events
            .iter()
            .map(|e| {
                let mut v = serde_json::json!({
                    "name": e.name,
                    "url": format!("https://{}{}?utm_source=x", self.host, e.path),
                });
                if let Some(r) = e.referrer {
                    v["referrer"] = r.into();
                }
                v
            })
            .collect();
        serde_json::Value::Array(events).to_string()
    }
}

pub const SITES: [(&str, &str); 2] = [("site-a", "a.test"), ("site-b", "b.test")];

/// A deterministic mix of sites, visitors, devices, pages, referrers and custom events.
pub fn plan(requests: usize, seed: usize) -> Vec<Request> {
    (0..requests)
        .map(|i| {
            let k = i + seed;
            let (site, host) = SITES[k % 2];
            let events = (0..1 + k % 3)
                .map(|j| {
                    let x = k * 5 + j;
                    Sent {
                        name: match x % 7 {
                            3 => "signup",
                            5 => "download",
                            _ => "pageview",
                        },
                        path: format!("/p{}", (k * 3 + j) % 5),
                        referrer: match x % 3 {
                            0 => Some("https://www.Search.example/q?x=1"),
                            1 => Some("https://news.example.org/story"),
                            _ => None,
                        },
                    }
                })
                .collect();
            Request {
                site,
                host,
                visitor: (k * 7) % 11,
                events,
            }
        })
        .collect()
}

/// The rollups a site must show, computed from the requests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub pageviews: i64,
    pub custom_events: i64,
    pub visitors: BTreeSet<usize>,
    pub pages: BTreeMap<String, i64>,
    pub referrers: BTreeMap<String, i64>,
    pub devices: BTreeMap<String, i64>,
    pub browsers: BTreeMap<String, i64>,
    pub os: BTreeMap<String, i64>,
    pub events: BTreeMap<String, i64>,
}

pub fn expected(requests: &[Request], site: &str) -> Expected {
    let mut x = Expected::default();
    for r in requests.iter().filter(|r| r.site == site) {
        x.visitors.insert(r.visitor);
        for e in &r.events {
            if e.name == "pageview" {
                x.pageviews += 1;
                *x.pages.entry(e.path.clone()).or_default() += 1;
                if let Some(rf) = e.referrer {
                    let host = if rf.contains("Search.example") {
                        "search.example"
                    } else {
                        "news.example.org"
                    };
                    *x.referrers.entry(host.into()).or_default() += 1;
                }
                let (d, b, o) = if r.mobile() {
                    ("mobile", "safari", "ios")
                } else {
                    ("desktop", "firefox", "linux")
                };
                *x.devices.entry(d.into()).or_default() += 1;
                *x.browsers.entry(b.into()).or_default() += 1;
                *x.os.entry(o.into()).or_default() += 1;
            } else {
                x.custom_events += 1;
                *x.events.entry(e.name.into()).or_default() += 1;
            }
        }
    }
    x
}

pub fn counts(report: &serde_json::Value, key: &str) -> BTreeMap<String, i64> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
        .iter()
        .map(|c| {
            (
                c["value"].as_str().unwrap().to_string(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Asserts a stats report (hour buckets over the whole test) matches.
pub fn assert_report(report: &serde_json::Value, x: &Expected) {
    let t = &report["totals"];
    assert_eq!(t["pageviews"], x.pageviews, "{report:#}");
    assert_eq!(t["custom_events"], x.custom_events, "{report:#}");
    assert_eq!(t["visitors"], x.visitors.len() as i64, "{report:#}");
    assert_eq!(counts(report, "pages"), x.pages);
    assert_eq!(counts(report, "referrers"), x.referrers);
    assert_eq!(counts(report, "devices"), x.devices);
    assert_eq!(counts(report, "browsers"), x.browsers);
    assert_eq!(counts(report, "os"), x.os);
    assert_eq!(counts(report, "events"), x.events);
}

pub async fn send(edge: &Edge, requests: &[Request]) {
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/event", edge.ports.http);
    for r in requests {
        let resp = client
            .post(&url)
            .header("host", r.host)
            .header("content-type", "application/json")
            .header("user-agent", r.user_agent())
            .body(r.body())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 202, "{text}");
    }
}

pub fn total_events(requests: &[Request]) -> usize {
    requests.iter().map(|r| r.events.len()).sum()
}

/// Reads the dead-letter topic with headers: (key, value, headers).
pub async fn dead_letters(
    broker: &Broker,
    count: usize,
) -> Vec<(Option<Vec<u8>>, Vec<u8>, BTreeMap<String, String>)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", format!("dlq-reader-{}", free_port()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[DLQ]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(m) = tokio::time::timeout(left, consumer.recv()).await else {
            break;
        };
        let m = m.unwrap();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            m.key().map(<[u8]>::to_vec),
            m.payload().unwrap_or_default().to_vec(),
            headers,
        ));
    }
    out
}

// === processes and databases ===

/// A PostgreSQL database of the test's own, dropped at the end.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create(tag: &str) -> PgDb {
        let name = format!("edge_agg_{tag}_{}_{}", std::process::id(), free_port());
        let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        PgDb {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }

    pub async fn drop_db(self) {
        let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
    }
}

/// The real `edge-backend aggregate` process.
pub struct Aggregator {
    pub child: Option<ChildGuard>,
    pub http: SocketAddr,
    pub log_path: PathBuf,
    /// `bootstrap.servers` and topic it consumes.
    pub brokers: String,
    pub topic: String,
}

impl Aggregator {
    pub fn start(
        dir: &Path,
        brokers: &str,
        topic: &str,
        keys: &Path,
        db_url: &str,
        batch_size: usize,
    ) -> Aggregator {
        Self::start_env(dir, brokers, topic, keys, db_url, batch_size, &[])
    }

    /// Like [`Aggregator::start`], with `env` set for the process.
    pub fn start_env(
        dir: &Path,
        brokers: &str,
        topic: &str,
        keys: &Path,
        db_url: &str,
        batch_size: usize,
        env: &[(&str, &str)],
    ) -> Aggregator {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log_path = dir.join("aggregator.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(bin("edge-backend"))
            .args([
                "aggregate",
                "--brokers",
                brokers,
                "--topic",
                topic,
                "--keys",
            ])
            .arg(keys)
            .args(["--db", db_url, "--dlq-topic", DLQ])
            .args([
                "--batch-size",
                &batch_size.to_string(),
                "--batch-wait-ms",
                "50",
            ])
            .args(["--http", &http.to_string()])
            .args(["--property", "session.timeout.ms=6000"])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Aggregator {
            child: Some(ChildGuard(child)),
            http,
            log_path,
            brokers: brokers.to_string(),
            topic: topic.to_string(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, no chance to finish anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.0.kill().unwrap();
            c.0.wait().unwrap();
        }
    }

    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.0.try_wait().unwrap()
        {
            panic!("aggregator exited ({status}):\n{}", self.log());
        }
    }

    /// Metrics text, or `None` while the endpoint is not up yet.
    pub async fn try_metrics(&self) -> Option<String> {
        let r = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .ok()?;
        r.text().await.ok()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("http://{}{path}", self.http))
            .await
            .unwrap()
    }
}

/// `edge-backend stats` over the whole test (hour buckets).
pub fn stats_cli(db_url: &str, site: &str, from_ms: i64, bucket: &str) -> serde_json::Value {
    let to = now_ms() + 2 * 3_600_000;
    let from = from_ms - from_ms.rem_euclid(3_600_000);
    let out = Command::new(bin("edge-backend"))
        .args(["stats", "--db", db_url, "--site", site, "--bucket", bucket])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .args(["--limit", "100"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn events_in(report: &serde_json::Value) -> i64 {
    report["totals"]["pageviews"].as_i64().unwrap()
        + report["totals"]["custom_events"].as_i64().unwrap()
}

/// Waits until every site shows `want` events in total, then checks the
/// count stays there (no late double counting): once the aggregator has
/// stored offsets at the end of every partition (the positive control),
/// every record in the topic has been counted, so the count is final.
pub async fn wait_for_events(agg: &mut Aggregator, db_url: &str, from_ms: i64, want: i64) {
    let sites = SITES.map(|(site, _)| site);
    wait_for_site_events(agg, db_url, &sites, from_ms, want, Duration::from_secs(90)).await;
}

/// [`wait_for_events`] over the given `sites`, waiting up to `patience`
/// for the total.
pub async fn wait_for_site_events(
    agg: &mut Aggregator,
    db_url: &str,
    sites: &[&str],
    from_ms: i64,
    want: i64,
    patience: Duration,
) {
    let total = || -> i64 {
        sites
            .iter()
            .map(|site| events_in(&stats_cli(db_url, site, from_ms, "hour")))
            .sum()
    };
    let deadline = Instant::now() + patience;
    loop {
        agg.assert_running();
        let got = total();
        assert!(
            got <= want,
            "more events aggregated ({got}) than sent ({want})"
        );
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {want} events aggregated:\n{}",
            agg.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while !consumed_to_end(agg, db_url).await {
        agg.assert_running();
        assert!(
            Instant::now() < deadline,
            "the aggregator did not reach the end of {}:\n{}",
            agg.topic,
            agg.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(total(), want, "count moved after reaching the total");
}

/// Whether the offsets the aggregator stored (agg_offsets, written with the
/// rollups they account for) are at the end of every partition of its topic
/// (the schema must exist: call it once the aggregator has stored something).
pub async fn consumed_to_end(agg: &Aggregator, db_url: &str) -> bool {
    let ends = high_watermarks(&agg.brokers, &agg.topic);
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
    let stored: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT partition_id, next_offset FROM agg_offsets WHERE topic = '{}'",
        agg.topic
    )))
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    ends.iter().all(|(partition, end)| {
        *end == 0
            || stored
                .iter()
                .any(|(p, next)| i64::from(*partition) == *p && next >= end)
    })
}

/// `(partition, high watermark)` of every partition of `topic`.
pub fn high_watermarks(brokers: &str, topic: &str) -> Vec<(i32, i64)> {
    use rdkafka::consumer::BaseConsumer;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    partitions
        .into_iter()
        .map(|p| (p, consumer.fetch_watermarks(topic, p, timeout).unwrap().1))
        .collect()
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub keys: PathBuf,
    pub key: BackendKey,
    /// The running edge's config (change it and `write()` it to reload).
    pub config: EdgeUnderTest,
    pub edge: Edge,
    pub topic: &'static str,
}

pub async fn setup(topic: &'static str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(topic, 3).await;
    broker.create_topic(DLQ, 1).await;
    let keys = dir.path().join("keys");
    let key = BackendKey::generate(&keys);
    let cert = TestCa::new().issue(dir.path(), "sites", &["a.test", "b.test"]);
    let config = EdgeUnderTest::new(dir.path(), &broker.addr, topic, &key)
        .cert(cert)
        .site("site-a", &["a.test"])
        .site("site-b", &["b.test"]);
    let edge = config.start().await;
    Setup {
        dir,
        broker,
        keys,
        key,
        config,
        edge,
        topic,
    }
}

// === scenarios ===

pub async fn rollups_match_what_was_sent(db_url: &str) {
    let s = setup("agg-e2e").await;
    let started = now_ms();
    let mut agg = Aggregator::start(s.dir.path(), &s.broker.addr, s.topic, &s.keys, db_url, 40);
    let requests = plan(120, 0);
    send(&s.edge, &requests).await;
    let n = total_events(&requests) as i64;
    wait_for_events(&mut agg, db_url, started, n).await;
    for (site, _) in SITES {
        let x = expected(&requests, site);
        assert!(x.pageviews > 0 && x.custom_events > 0 && x.visitors.len() > 3);
        assert_report(&stats_cli(db_url, site, started, "hour"), &x);
        // Minute buckets sum to the same totals; each bucket's visitors are exact.
        let minutes = stats_cli(db_url, site, started, "minute");
        assert_eq!(minutes["totals"]["pageviews"], x.pageviews);
        assert_eq!(minutes["totals"]["custom_events"], x.custom_events);
        assert_eq!(minutes["totals"]["visitors"], x.visitors.len() as i64);
        // The HTTP endpoint answers the same document.
        let from = started - started.rem_euclid(3_600_000);
        let http: serde_json::Value = agg
            .get(&format!(
                "/stats?site={site}&from={from}&to={}&bucket=hour&limit=100",
                now_ms() + 2 * 3_600_000
            ))
            .await
            .json()
            .await
            .unwrap();
        assert_report(&http, &x);
    }
    let metrics = agg.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        parse_metric(&metrics, "edge_backend_events_aggregated_total", &[]),
        n as f64
    );
    assert_eq!(
        parse_metric(&metrics, "edge_backend_dead_letters_total", &[]),
        0.0
    );
    let r = reqwest::Client::new()
        .post(format!("http://{}/stats", agg.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "the endpoint is read-only");
}

/// The aggregator's metric, 0 while its endpoint is not up.
pub async fn agg_metric(agg: &Aggregator, name: &str, labels: &[(&str, &str)]) -> f64 {
    agg.try_metrics()
        .await
        .map_or(0.0, |m| parse_metric(&m, name, labels))
}
