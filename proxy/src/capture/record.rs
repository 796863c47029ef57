//! Building one anonymised NDJSON record from a request.
//!
//! The record has the fields `edge-loadtest replay` reads (`ts_ms`, `method`,
//! `host`, `path`, `headers`, `body`, `client_ip`). What is kept:
//!
//! * `client_ip`: a pseudonym ([`super::pseudonym`]), never the address.
//! * `headers`: only `content-type`, `origin`, `referer` (query and fragment
//!   stripped) and, when configured, `user-agent`. Cookies, authorization
//!   and forwarding headers are never recorded.
//! * `path`: the request path. The query string is kept only for the pixel
//!   (`/api/event.gif`), where it is the event, with its `u`/`url` and
//!   `r`/`referrer` values sanitised.
//! * `body`: the JSON body with every event's `url`/`u` and `referrer`/`r`
//!   sanitised; no body when it is not valid JSON.
//!
//! URLs are sanitised with `edge_collector::sanitize`, the functions that
//! anonymise URLs on the way to Kafka: scheme, host, port and path survive,
//! and of the query only the `utm_*` campaign tags. A page URL that does not
//! parse becomes `""`, a referrer that is not an http(s) URL becomes `""`
//! (both mean for the edge what they meant before: invalid, and no referrer).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use edge_collector::sanitize;
use http::{HeaderMap, Method, Uri};
use serde::Serialize;
use serde_json::Value;
use url::Url;
use url::form_urlencoded;

/// The pixel endpoint, whose query string is the event.
pub const PIXEL_PATH: &str = "/api/event.gif";

/// One captured request, serialised as one NDJSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureRecord {
    /// Arrival time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// HTTP method.
    pub method: String,
    /// Host the request named (without port).
    pub host: String,
    /// Path, plus the sanitised query for the pixel.
    pub path: String,
    /// The allowed headers.
    pub headers: BTreeMap<&'static str, String>,
    /// The sanitised JSON body, if there was a valid one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Pseudonym of the client address (`10.x.y.z`).
    pub client_ip: String,
}

/// What a record is built from.
#[derive(Debug)]
pub struct RequestParts<'a> {
    /// Arrival time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Method.
    pub method: &'a Method,
    /// Host without port.
    pub host: &'a str,
    /// Request URI.
    pub uri: &'a Uri,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Body, when one was read.
    pub body: Option<&'a [u8]>,
    /// Pseudonym of the client.
    pub client: Ipv4Addr,
}

/// Builds the anonymised record of a request.
pub fn build(parts: &RequestParts<'_>, include_user_agent: bool) -> CaptureRecord {
    let path = parts.uri.path();
    let path = match parts.uri.query() {
        Some(q) if path == PIXEL_PATH => format!("{path}?{}", sanitize_event_query(q)),
        _ => path.to_owned(),
    };
    CaptureRecord {
        ts_ms: parts.ts_ms,
        method: parts.method.as_str().to_owned(),
        host: parts.host.to_owned(),
        path,
        headers: allowed_headers(parts.headers, include_user_agent),
        body: parts.body.and_then(sanitize_body),
        client_ip: parts.client.to_string(),
    }
}

/// The headers a record keeps (lower-case names).
pub fn allowed_headers(
    headers: &HeaderMap,
    include_user_agent: bool,
) -> BTreeMap<&'static str, String> {
    let mut kept = BTreeMap::new();
    let mut names = vec!["content-type", "origin", "referer"];
    if include_user_agent {
        names.push("user-agent");
    }
    for name in names {
        let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let value = if name == "referer" {
            match sanitize::referrer(value) {
                Some(v) => v,
                None => continue,
            }
        } else {
            value.to_owned()
        };
        kept.insert(name, value);
    }
    kept
}

/// A page URL without query, fragment and userinfo, with its `utm_*` tags
/// put back as the only query; `""` when it does not parse.
pub fn sanitize_page_url(raw: &str) -> String {
    let Ok(url) = Url::parse(raw.trim()) else {
        return String::new();
    };
    let (mut stripped, utm) = sanitize::page_url(&url);
    let tags = [
        ("utm_source", &utm.source),
        ("utm_medium", &utm.medium),
        ("utm_campaign", &utm.campaign),
        ("utm_term", &utm.term),
        ("utm_content", &utm.content),
    ];
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in tags {
        if let Some(value) = value {
            query.append_pair(name, value);
            any = true;
        }
    }
    if any {
        stripped.push('?');
        stripped.push_str(&query.finish());
    }
    stripped
}

/// A referrer without query, fragment and userinfo; `""` when it is not an
/// http(s) URL (the edge reads `""` as "no referrer").
pub fn sanitize_referrer(raw: &str) -> String {
    sanitize::referrer(raw).unwrap_or_default()
}

/// The pixel's query string with its URL values sanitised.
pub fn sanitize_event_query(query: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = match key.as_ref() {
            "u" | "url" => sanitize_page_url(&value),
            "r" | "referrer" => sanitize_referrer(&value),
            _ => value.into_owned(),
        };
        out.append_pair(&key, &value);
    }
    out.finish()
}

/// The JSON body with each event's URLs sanitised; `None` if it is not JSON.
pub fn sanitize_body(body: &[u8]) -> Option<String> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    match &mut value {
        Value::Array(items) => items.iter_mut().for_each(sanitize_event),
        other => sanitize_event(other),
    }
    serde_json::to_string(&value).ok()
}

fn sanitize_event(event: &mut Value) {
    let Value::Object(fields) = event else {
        return;
    };
    for (key, value) in fields.iter_mut() {
        let Value::String(s) = value else { continue };
        match key.as_str() {
            "u" | "url" => *s = sanitize_page_url(s),
            "r" | "referrer" => *s = sanitize_referrer(s),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_allowed_headers_are_kept() {
        let h = headers(&[
            ("cookie", "session=secret"),
            ("authorization", "Bearer secret"),
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.7"),
            ("x-real-ip", "198.51.100.7"),
            ("content-type", "application/json"),
            ("origin", "https://shop.example"),
            ("referer", "https://shop.example/cart?email=a%40b.c#x"),
            ("user-agent", "Mozilla/5.0 Test"),
        ]);
        let kept = allowed_headers(&h, true);
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            vec![
                ("content-type", "application/json".to_owned()),
                ("origin", "https://shop.example".to_owned()),
                ("referer", "https://shop.example/cart".to_owned()),
                ("user-agent", "Mozilla/5.0 Test".to_owned()),
            ]
        );
        assert!(!allowed_headers(&h, false).contains_key("user-agent"));
        let odd = headers(&[("referer", "android-app://com.example")]);
        assert!(allowed_headers(&odd, true).is_empty());
    }

    #[test]
    fn urls_lose_query_and_fragment_but_keep_utm() {
        assert_eq!(
            sanitize_page_url(
                "https://u:p@shop.example/a?email=a%40b.c&utm_source=news&utm_campaign=spring%20sale#top"
            ),
            "https://shop.example/a?utm_source=news&utm_campaign=spring+sale"
        );
        assert_eq!(
            sanitize_page_url("https://shop.example/x?token=1"),
            "https://shop.example/x"
        );
        assert_eq!(sanitize_page_url("not a url ?email=a@b.c"), "");
        assert_eq!(
            sanitize_referrer("https://ref.example/p?q=secret#f"),
            "https://ref.example/p"
        );
        assert_eq!(sanitize_referrer("about:blank"), "");
    }

    #[test]
    fn bodies_and_pixel_queries_are_sanitised() {
        let body = br#"[{"n":"pageview","u":"https://s.example/?id=7&utm_medium=cpc","r":"https://r.example/?q=x","p":{"plan":"pro"}},
                       {"name":"signup","url":"https://s.example/join#frag","referrer":null}]"#;
        let out: Value = serde_json::from_str(&sanitize_body(body).unwrap()).unwrap();
        assert_eq!(out[0]["u"], "https://s.example/?utm_medium=cpc");
        assert_eq!(out[0]["r"], "https://r.example/");
        assert_eq!(out[0]["p"]["plan"], "pro");
        assert_eq!(out[1]["url"], "https://s.example/join");
        assert_eq!(out[1]["referrer"], Value::Null);
        assert_eq!(sanitize_body(b"{\"name\":"), None);
        assert_eq!(sanitize_body(b"\xff\xfe"), None);

        let q = "n=pageview&u=https%3A%2F%2Fs.example%2Fa%3Femail%3Dx%26utm_source%3Dnl&r=https%3A%2F%2Fr.example%2F%3Fq%3D1&w=390";
        let clean = sanitize_event_query(q);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(clean.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("n".into(), "pageview".into()),
                ("u".into(), "https://s.example/a?utm_source=nl".into()),
                ("r".into(), "https://r.example/".into()),
                ("w".into(), "390".into()),
            ]
        );
    }

    #[test]
    fn records_keep_the_pixel_query_only_and_serialise_in_the_replay_format() {
        let h = headers(&[("user-agent", "UA"), ("cookie", "c=1")]);
        let uri: Uri = "/api/event?secret=1".parse().unwrap();
        let rec = build(
            &RequestParts {
                ts_ms: 1_700_000_000_123,
                method: &Method::POST,
                host: "site1.example",
                uri: &uri,
                headers: &h,
                body: Some(br#"{"name":"pageview","url":"https://site1.example/?x=1"}"#),
                client: Ipv4Addr::new(10, 1, 2, 3),
            },
            true,
        );
        assert_eq!(rec.path, "/api/event");
        let line = serde_json::to_string(&rec).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts_ms"], 1_700_000_000_123_i64);
        assert_eq!(v["method"], "POST");
        assert_eq!(v["host"], "site1.example");
        assert_eq!(v["client_ip"], "10.1.2.3");
        assert_eq!(v["headers"], serde_json::json!({"user-agent": "UA"}));
        let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["url"], "https://site1.example/");

        let uri: Uri = "/api/event.gif?n=pageview&u=https%3A%2F%2Fs.example%2F%3Fa%3D1"
            .parse()
            .unwrap();
        let rec = build(
            &RequestParts {
                ts_ms: 1,
                method: &Method::GET,
                host: "site1.example",
                uri: &uri,
                headers: &HeaderMap::new(),
                body: None,
                client: Ipv4Addr::new(10, 0, 0, 1),
            },
            false,
        );
        assert_eq!(
            rec.path,
            "/api/event.gif?n=pageview&u=https%3A%2F%2Fs.example%2F"
        );
        assert!(!serde_json::to_string(&rec).unwrap().contains("\"body\""));
    }
}
