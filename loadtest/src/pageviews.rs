//! `replay --as-events`: which access-log lines are page views, and the
//! tracker request each page view stands for.
//!
//! A page view is a `GET` answered 2xx or 304 whose path does not end in an
//! asset extension. It becomes what the tracker would have sent from that
//! page: `POST /api/event` with `{"name":"pageview","url":"https://HOST/PATH",
//! "referrer":…}`, the recorded user agent, `Origin: https://HOST` and
//! `Content-Type: text/plain` (the tracker's `sendBeacon`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::records::Record;

/// Extensions that are not pages (`--asset-extensions` replaces the list):
/// styles and scripts, images, fonts, audio and video, archives and
/// packages, documents and data files the tracker never runs in.
#[rustfmt::skip]
pub const DEFAULT_ASSET_EXTENSIONS: &[&str] = &[
    // styles, scripts, source maps, web assembly
    "css", "js", "mjs", "map", "wasm",
    // images
    "png", "jpg", "jpeg", "gif", "webp", "avif", "svg", "ico", "bmp", "tif", "tiff", "heic",
    // fonts
    "woff", "woff2", "ttf", "otf", "eot",
    // audio and video
    "mp3", "mp4", "m4a", "m4v", "webm", "ogg", "ogv", "oga", "wav", "flac", "aac", "mov", "avi",
    "mkv", "m3u8", "ts",
    // archives and packages
    "zip", "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "tar", "jar", "deb", "rpm", "dmg", "iso",
    "exe", "msi", "apk",
    // documents and data
    "pdf", "txt", "xml", "json", "csv", "rss", "atom",
];

/// Why an access-log line was not sent as a page view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Not a `GET` (HEAD, POST, …).
    NotGet,
    /// Answered with something other than 2xx or 304 (or no status recorded).
    Status,
    /// The path ends in an asset extension.
    Asset,
    /// `https://HOST/PATH` is not a valid URL.
    BadUrl,
}

impl SkipReason {
    /// The reason's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotGet => "not_get",
            SkipReason::Status => "status",
            SkipReason::Asset => "asset",
            SkipReason::BadUrl => "bad_url",
        }
    }
}

/// Decides which lines are page views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classifier {
    assets: BTreeSet<String>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new(DEFAULT_ASSET_EXTENSIONS.iter().copied())
    }
}

impl Classifier {
    /// A classifier treating `extensions` (case-insensitive, a leading `.`
    /// is ignored) as assets.
    pub fn new<S: AsRef<str>>(extensions: impl IntoIterator<Item = S>) -> Self {
        Self {
            assets: extensions
                .into_iter()
                .map(|e| {
                    e.as_ref()
                        .trim()
                        .trim_start_matches('.')
                        .to_ascii_lowercase()
                })
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// From a comma-separated `--asset-extensions` list (empty: no assets).
    pub fn from_list(list: &str) -> Self {
        Self::new(list.split(','))
    }

    /// `Ok` for a page view, else why not.
    pub fn classify(&self, r: &Record) -> Result<(), SkipReason> {
        if r.method != "GET" {
            return Err(SkipReason::NotGet);
        }
        if !matches!(r.status, Some(200..=299 | 304)) {
            return Err(SkipReason::Status);
        }
        match extension(&r.path) {
            Some(ext) if self.assets.contains(&ext) => Err(SkipReason::Asset),
            _ => Ok(()),
        }
    }
}

/// The lower-cased extension of the path's last segment (query and
/// fragment ignored), if it has one.
fn extension(path: &str) -> Option<String> {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let last = path[..end].rsplit('/').next()?;
    let (stem, ext) = last.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// The tracker request a page view at `host` stands for.
///
/// # Errors
///
/// [`SkipReason::BadUrl`] when `https://{host}{path}` does not parse.
pub fn to_event(r: &Record, host: &str) -> Result<Record, SkipReason> {
    let url =
        url::Url::parse(&format!("https://{host}{}", r.path)).map_err(|_| SkipReason::BadUrl)?;
    let mut event = Map::new();
    event.insert("name".into(), Value::from("pageview"));
    event.insert("url".into(), Value::from(url.as_str()));
    if let Some(referrer) = r.headers.get("referer") {
        event.insert("referrer".into(), Value::from(referrer.as_str()));
    }
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_owned(), "text/plain".to_owned());
    headers.insert("origin".to_owned(), format!("https://{host}"));
    if let Some(ua) = r.headers.get("user-agent") {
        headers.insert("user-agent".to_owned(), ua.clone());
    }
    Ok(Record {
        ts_ms: r.ts_ms,
        method: "POST".to_owned(),
        host: Some(host.to_owned()),
        path: "/api/event".to_owned(),
        headers,
        body: Some(Value::Object(event).to_string()),
        client_ip: r.client_ip.clone(),
        status: None,
    })
}

/// Page views found in a log and the lines skipped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversion {
    /// One tracker request per page view, in log order.
    pub events: Vec<Record>,
    /// Lines that were not page views.
    pub skipped: BTreeMap<SkipReason, u64>,
}

/// Turns access-log records into page-view events. The site is `host`
/// when given, else the record's vhost, else `default_host`.
pub fn convert(
    records: &[Record],
    classifier: &Classifier,
    host: Option<&str>,
    default_host: &str,
) -> Conversion {
    let mut out = Conversion::default();
    for r in records {
        let site = host
            .or(r.host.as_deref().filter(|h| !h.is_empty()))
            .unwrap_or(default_host);
        match classifier.classify(r).and_then(|()| to_event(r, site)) {
            Ok(ev) => out.events.push(ev),
            Err(reason) => *out.skipped.entry(reason).or_default() += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combined::CombinedParser;

    fn line(method: &str, path: &str, status: u16, ua: &str) -> Record {
        CombinedParser::new()
            .unwrap()
            .parse_line(
                &format!(
                    r#"203.0.113.7 - - [10/Oct/2023:13:55:36 +0000] "{method} {path} HTTP/1.1" {status} 10 "https://ref.example/a" "{ua}""#
                ),
                1,
            )
            .unwrap()
    }

    #[test]
    fn page_views_are_gets_answered_2xx_or_304_that_are_not_assets() {
        let c = Classifier::default();
        let ok = |m, p, s| c.classify(&line(m, p, s, "Mozilla/5.0"));
        assert_eq!(ok("GET", "/", 200), Ok(()));
        assert_eq!(ok("GET", "/blog/post.html?x=1", 200), Ok(()));
        assert_eq!(ok("GET", "/about", 304), Ok(()));
        assert_eq!(ok("GET", "/index.php", 206), Ok(()));
        assert_eq!(ok("GET", "/v1.2/", 200), Ok(()), "a dot in a directory");
        assert_eq!(ok("GET", "/.well-known/x", 200), Ok(()));
        assert_eq!(ok("HEAD", "/", 200), Err(SkipReason::NotGet));
        assert_eq!(ok("POST", "/form", 200), Err(SkipReason::NotGet));
        assert_eq!(ok("GET", "/missing", 404), Err(SkipReason::Status));
        assert_eq!(ok("GET", "/old", 301), Err(SkipReason::Status));
        assert_eq!(ok("GET", "/boom", 500), Err(SkipReason::Status));
        for asset in [
            "/style.css",
            "/app.min.JS",
            "/img/logo.png?v=3",
            "/f.woff2",
            "/v.mp4#t=1",
            "/a.tar.gz",
            "/feed.xml",
        ] {
            assert_eq!(ok("GET", asset, 200), Err(SkipReason::Asset), "{asset}");
        }
    }

    #[test]
    fn the_asset_list_can_be_replaced() {
        let c = Classifier::from_list(".PDF, css");
        let r = |p| line("GET", p, 200, "Mozilla/5.0");
        assert_eq!(c.classify(&r("/doc.pdf")), Err(SkipReason::Asset));
        assert_eq!(c.classify(&r("/app.js")), Ok(()), "js is a page now");
        let none = Classifier::from_list("");
        assert_eq!(none.classify(&r("/style.css")), Ok(()));
    }

    #[test]
    fn a_page_view_becomes_the_trackers_request() {
        let r = line("GET", "/blog/post?utm_source=x", 200, "Googlebot/2.1");
        let ev = to_event(&r, "site1.example").unwrap();
        assert_eq!(ev.method, "POST");
        assert_eq!(ev.path, "/api/event");
        assert_eq!(ev.host.as_deref(), Some("site1.example"));
        assert_eq!(ev.client_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(ev.ts_ms, r.ts_ms);
        assert_eq!(
            ev.headers["user-agent"], "Googlebot/2.1",
            "bots as they are"
        );
        assert_eq!(ev.headers["origin"], "https://site1.example");
        assert_eq!(ev.headers["content-type"], "text/plain");
        let body: Value = serde_json::from_str(ev.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "name": "pageview",
                "url": "https://site1.example/blog/post?utm_source=x",
                "referrer": "https://ref.example/a",
            })
        );
    }

    #[test]
    fn convert_counts_skips_and_picks_the_site() {
        let mut vhost = line("GET", "/", 200, "Mozilla/5.0");
        vhost.host = Some("www.shop.example".into());
        let records = vec![
            line("GET", "/", 200, "Mozilla/5.0"),
            vhost.clone(),
            line("GET", "/a.css", 200, "Mozilla/5.0"),
            line("GET", "/x", 404, "Mozilla/5.0"),
            line("HEAD", "/", 200, "Mozilla/5.0"),
        ];
        let c = Classifier::default();
        let out = convert(&records, &c, None, "fallback.example");
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.events[0].host.as_deref(), Some("fallback.example"));
        assert_eq!(out.events[1].host.as_deref(), Some("www.shop.example"));
        assert_eq!(
            out.skipped,
            BTreeMap::from([
                (SkipReason::NotGet, 1),
                (SkipReason::Status, 1),
                (SkipReason::Asset, 1)
            ])
        );
        // --host wins over the vhost field.
        let out = convert(&records, &c, Some("site1.example"), "fallback.example");
        assert!(
            out.events
                .iter()
                .all(|e| e.host.as_deref() == Some("site1.example"))
        );
    }
}
