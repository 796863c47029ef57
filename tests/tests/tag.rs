//! The tracker script: served by the real edge with its published SRI value,
//! ETag revalidation, the integrity pin across reloads, and a real headless
//! Chromium that loads a page embedding the tag with `integrity=` and whose
//! pageview arrives, encrypted, in Kafka (and a page with a wrong
//! `integrity=` whose script the browser refuses).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use edge_envelope::EventRecord;
use edge_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The site's tag host; Chromium maps `*.tag.test` to 127.0.0.1.
const TAG_HOST: &str = "stats.tag.test";
/// `--user-agent` of the browser.
const CHROME_UA: &str = "--user-agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// Host of the customer page served by the test.
const PAGE_HOST: &str = "www.tag.test";

struct Setup {
    dir: tempfile::TempDir,
    broker: Broker,
    key: BackendKey,
    ca: TestCa,
    edge: Edge,
    config: EdgeUnderTest,
    topic: &'static str,
}

async fn setup(topic: &'static str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic(topic, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let ca = TestCa::new();
    let config = EdgeUnderTest::new(dir.path(), &broker.addr, topic, &key)
        .cert(ca.issue(dir.path(), "tag", &[TAG_HOST]))
        .site("tagsite", &[TAG_HOST]);
    let edge = config.start().await;
    Setup {
        dir,
        broker,
        key,
        ca,
        edge,
        config,
        topic,
    }
}

fn tag_url(edge: &Edge) -> String {
    format!("http://{}/js/script.js", edge.ports.http)
}

async fn get_tag(edge: &Edge, if_none_match: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(tag_url(edge))
        .header("host", TAG_HOST);
    if let Some(v) = if_none_match {
        req = req.header("if-none-match", v);
    }
    req.send().await.unwrap()
}

async fn admin_tag(edge: &Edge) -> serde_json::Value {
    let r = reqwest::get(format!("http://{}/admin/tag", edge.ports.admin))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn sri_of(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA384, bytes);
    format!("sha384-{}", STANDARD.encode(digest.as_ref()))
}

#[tokio::test(flavor = "multi_thread")]
async fn served_tag_hashes_to_the_published_sri_and_revalidates_with_its_etag() {
    let s = setup("tag-serve").await;
    let info = admin_tag(&s.edge).await;
    let sri = info["sri"].as_str().unwrap().to_string();
    assert!(sri.starts_with("sha384-"), "{info}");
    assert_eq!(info["path"], "/js/script.js");
    assert_eq!(info["pinned"], false);
    assert_eq!(info["serving"], true);
    let snippet = info["sites"][0]["snippet"].as_str().unwrap();
    assert_eq!(
        snippet,
        format!(
            "<script defer src=\"https://{TAG_HOST}:{}/js/script.js\" integrity=\"{sri}\" crossorigin=\"anonymous\"></script>",
            s.edge.ports.https.port()
        )
    );

    let r = get_tag(&s.edge, None).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/javascript; charset=utf-8");
    assert_eq!(
        h["cache-control"],
        "public, max-age=3600, stale-while-revalidate=86400"
    );
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "{etag}"
    );
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len() as u64, info["bytes"].as_u64().unwrap());
    assert!(body.len() < 1536, "tag is {} bytes", body.len());
    assert_eq!(
        sri_of(&body),
        sri,
        "served bytes do not hash to /admin/tag's SRI"
    );

    // Revalidation: 304 without a body, same validators.
    let r = get_tag(&s.edge, Some(&etag)).await;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.headers().get("content-length").is_none());
    assert!(r.bytes().await.unwrap().is_empty());
    // A different ETag gets the body again.
    assert_eq!(get_tag(&s.edge, Some("\"stale\"")).await.status(), 200);

    // HEAD: headers only.
    let r = reqwest::Client::new()
        .head(tag_url(&s.edge))
        .header("host", TAG_HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        body.len().to_string().as_str()
    );

    // The tag does not need an allowed Origin and is the same for everyone.
    let r = reqwest::Client::new()
        .get(tag_url(&s.edge))
        .header("host", TAG_HOST)
        .header("origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(sri_of(&r.bytes().await.unwrap()), sri);

    // HTTPS with HTTP/2: the same bytes, and a 304 on revalidation.
    let https = s.ca.client(&[TAG_HOST], s.edge.ports.https);
    let url = format!(
        "https://{TAG_HOST}:{}/js/script.js",
        s.edge.ports.https.port()
    );
    let r = https.get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert_eq!(sri_of(&r.bytes().await.unwrap()), sri);
    let r = https
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());

    let r = reqwest::Client::new()
        .post(tag_url(&s.edge))
        .header("host", TAG_HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    let served = s
        .edge
        .metric("edge_tag_requests_total", &[("outcome", "served")])
        .await;
    assert_eq!(
        served, 5.0,
        "GET, GET (stale ETag), HEAD, GET with Origin, GET over HTTP/2"
    );
    assert_eq!(
        s.edge
            .metric("edge_tag_requests_total", &[("outcome", "not_modified")])
            .await,
        2.0
    );
    assert_eq!(s.edge.metric("edge_tag_integrity_mismatch", &[]).await, 0.0);
    // Counted in the logging phase, just after the response went out.
    assert_eventually!(
        s.edge
            .metric(
                "edge_requests_total",
                &[("site", "tagsite"), ("outcome", "tag")]
            )
            .await
            == 7.0,
        Duration::from_secs(5),
        "edge_requests_total{{outcome=\"tag\"}} is not 7 (5 served, 2 not modified)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_pin_refuses_the_tag_and_raises_the_gauge_until_a_reload_fixes_it() {
    let s = setup("tag-pin").await;
    let sri = admin_tag(&s.edge).await["sri"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = format!("sha384-{}", STANDARD.encode([0u8; 48]));

    s.config
        .clone()
        .section("tag", &format!("expected_sri = \"{wrong}\""))
        .write();
    let (status, body) = s.edge.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.edge.metric("edge_tag_integrity_mismatch", &[]).await, 1.0);

    let r = get_tag(&s.edge, None).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("etag").is_none());
    let text = r.text().await.unwrap();
    assert!(text.contains("does not match tag.expected_sri"), "{text}");
    assert!(
        !text.contains("sendBeacon"),
        "the refused tag leaked: {text}"
    );
    assert_eq!(get_tag(&s.edge, Some("*")).await.status(), 503);
    assert_eq!(
        s.edge
            .metric(
                "edge_tag_requests_total",
                &[("outcome", "refused_integrity")]
            )
            .await,
        2.0
    );
    let info = admin_tag(&s.edge).await;
    assert_eq!(info["pinned"], true);
    assert_eq!(info["integrity"], "mismatch");
    assert_eq!(info["serving"], false);
    assert_eq!(info["expected_sri"], wrong.as_str());

    // Fix the pin: served again, gauge back to 0.
    s.config
        .clone()
        .section(
            "tag",
            &format!("expected_sri = \"{sri}\"\ncache_max_age_seconds = 60"),
        )
        .write();
    let (status, body) = s.edge.reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.edge.metric("edge_tag_integrity_mismatch", &[]).await, 0.0);
    let r = get_tag(&s.edge, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=60, stale-while-revalidate=86400"
    );
    assert_eq!(sri_of(&r.bytes().await.unwrap()), sri);
    let info = admin_tag(&s.edge).await;
    assert_eq!(info["integrity"], "match");
    assert_eq!(info["serving"], true);
}

// === headless Chromium ===

/// The Chromium binary: `$CHROMIUM`, else `chromium` on PATH. Panics when
/// missing: this test must never pass without a browser.
fn chromium_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "chromium is not installed: run scripts/install-deps (Debian package `chromium`) \
         or set CHROMIUM=/path/to/chromium; this test needs a real browser"
    );
}

/// A headless Chromium showing one URL, in its own process group so the
/// whole browser (renderer and utility processes too) is stopped on drop.
struct Browser {
    child: Child,
}

impl Browser {
    fn open(profile: &Path, url: &str) -> Browser {
        let child = Command::new(chromium_bin())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP *.tag.test 127.0.0.1",
                // A desktop Chrome user agent: headless Chromium says
                // "HeadlessChrome", which bot filtering may drop.
                CHROME_UA,
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium_bin().display()));
        Browser { child }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group id is the child's pid (process_group(0)).
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A tiny HTTP/1.1 server for the customer pages: `GET /NAME.html` answers
/// the page, `GET /signal/WHAT` records WHAT (the page's script element
/// reports `load` or `error` there) and answers 204.
struct PageServer {
    port: u16,
    signals: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    async fn start(pages: Vec<(&'static str, String)>) -> PageServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let signals = Arc::new(Mutex::new(Vec::new()));
        let pages = Arc::new(pages);
        let recorded = signals.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let pages = pages.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 2048];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (status, body) = if let Some(what) = path.strip_prefix("/signal/") {
                        recorded.lock().unwrap().push(what.to_string());
                        ("204 No Content", String::new())
                    } else if let Some((_, html)) =
                        pages.iter().find(|(name, _)| path == format!("/{name}"))
                    {
                        ("200 OK", html.clone())
                    } else {
                        ("404 Not Found", String::new())
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        PageServer {
            port,
            signals,
            task,
        }
    }

    fn url(&self, page: &str) -> String {
        format!("http://{PAGE_HOST}:{}/{page}", self.port)
    }

    fn signals(&self) -> Vec<String> {
        self.signals.lock().unwrap().clone()
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A customer page embedding the tag with `integrity`; the script element
/// reports to `/signal/{name}-loaded` or `/signal/{name}-error`. After the
/// tag ran, the page navigates like a single-page app and sends a custom event.
fn page(name: &str, src: &str, integrity: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{name}</title>
<script defer src="{src}" integrity="{integrity}" crossorigin="anonymous"
  onload="history.pushState({{}}, '', '/app/next'); edge('signup', {{plan: 'pro'}}); fetch('/signal/{name}-loaded')"
  onerror="fetch('/signal/{name}-error')"></script>
</head><body><h1>{name}</h1></body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn headless_chromium_runs_the_tag_with_sri_and_its_pageview_arrives() {
    let chromium = chromium_bin();
    let s = setup("tag-browser").await;
    let sri = admin_tag(&s.edge).await["sri"]
        .as_str()
        .unwrap()
        .to_string();
    let src = format!(
        "http://{TAG_HOST}:{}/js/script.js",
        s.edge.ports.http.port()
    );
    let wrong = format!("sha384-{}", STANDARD.encode([0u8; 48]));
    let pages = PageServer::start(vec![
        ("good.html", page("good", &src, &sri)),
        ("bad.html", page("bad", &src, &wrong)),
    ])
    .await;

    // 1. Wrong integrity: the browser fetches the tag and refuses to run it.
    {
        let _browser = Browser::open(&s.dir.path().join("chromium-bad"), &pages.url("bad.html"));
        assert_eventually!(
            pages.signals().iter().any(|x| x.starts_with("bad-")),
            Duration::from_secs(60),
            "{} never reported the bad page's script (signals {:?})",
            chromium.display(),
            pages.signals()
        );
        assert_eq!(
            pages.signals(),
            vec!["bad-error".to_string()],
            "the browser ran a tag whose integrity did not match"
        );
        assert!(
            s.edge
                .metric("edge_tag_requests_total", &[("outcome", "served")])
                .await
                >= 1.0,
            "the browser never fetched the tag, so the refusal proves nothing"
        );
    }

    // 2. The published integrity: the tag runs, the pageview is sent.
    {
        let _browser = Browser::open(&s.dir.path().join("chromium-good"), &pages.url("good.html"));
        assert_eventually!(
            pages.signals().iter().any(|x| x.starts_with("good-")),
            Duration::from_secs(60),
            "{} never reported the good page's script (signals {:?})",
            chromium.display(),
            pages.signals()
        );
        assert!(
            pages.signals().contains(&"good-loaded".to_string()),
            "the browser refused the tag with the published SRI: {:?}",
            pages.signals()
        );
        // Keep the browser open until the beacons were acknowledged.
        assert_eventually!(
            s.edge
                .metric(
                    "edge_events_total",
                    &[("site", "tagsite"), ("outcome", "accepted")]
                )
                .await
                >= 3.0,
            Duration::from_secs(30),
            "the tag's events did not reach the edge:\n{}",
            s.edge.log()
        );
    }

    // Exactly three records (ask for a fourth that must not come): the
    // pageview, the SPA pageview and the custom event of the good page.
    let records = s.broker.consume(s.topic, 4, Duration::from_secs(8)).await;
    let opener = s.key.opener();
    let mut events: Vec<EventRecord> = records
        .iter()
        .map(|r| {
            assert_eq!(r.key, b"tagsite");
            opener.open("tagsite", &r.payload).unwrap()
        })
        .collect();
    events.sort_by(|a, b| (&a.url, &a.name).cmp(&(&b.url, &b.name)));
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.name.clone(), e.url.clone()))
        .collect();
    let page_origin = format!("http://{PAGE_HOST}:{}", pages.port);
    assert_eq!(
        seen,
        vec![
            ("pageview".to_string(), format!("{page_origin}/app/next")),
            ("signup".to_string(), format!("{page_origin}/app/next")),
            ("pageview".to_string(), format!("{page_origin}/good.html")),
        ],
        "events from the browser"
    );
    let signup = &events[1];
    assert_eq!(signup.props, vec![("plan".to_string(), "pro".to_string())]);
    assert!(
        events.iter().all(|e| !e.url.contains("bad.html")),
        "an event came from the page whose tag failed integrity"
    );
    assert_eq!(
        format!("{:?}", events[2].browser),
        "Chrome",
        "classified from Chromium's user agent"
    );
}
