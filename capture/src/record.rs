//! Building one anonymised NDJSON record from a request.
//!
//! The record has the fields `edge-loadtest replay` reads (`ts_ms`, `method`,
//! `host`, `path`, `headers`, `body`, `client_ip`). What is kept:
//!
//! * `client_ip`: a pseudonym ([`crate::pseudonym`]), never the address.
//! * `headers`: only `content-type`, `origin`, `referer` (query and fragment
//!   stripped) and, when configured, `user-agent`. Cookies, authorization
//!   and forwarding headers are never recorded.
//! * `path`: the request path. For the pixel (`/api/event.gif`) a query
//!   string rebuilt from the validated event (`n`, `u`, `r`, `p`, `w`) with
//!   its URLs sanitised; the query the client sent is never copied.
//! * `body`: for `POST /api/event`, a JSON body rebuilt from the validated
//!   events (one object, or an array for a batch; long field names, URLs
//!   sanitised, properties as strings); the body the client sent is never
//!   copied.
//!
//! Records are built only from requests whose events passed validation
//! (`edge_collector::schema`): a rejected request is never captured.
//!
//! URLs are sanitised with `edge_collector::sanitize`, the functions that
//! anonymise URLs on the way to Kafka: scheme, host, port and path survive,
//! and of the query only the `utm_*` campaign tags. A page URL that does not
//! parse becomes `""`, a referrer that is not an http(s) URL becomes `""`
//! (both mean for the edge what they meant before: invalid, and no referrer).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use edge_collector::sanitize;
use edge_collector::schema::IncomingEvent;
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
    /// The request's validated events.
    pub events: &'a [IncomingEvent],
    /// Pseudonym of the client.
    pub client: Ipv4Addr,
}

/// Builds the anonymised record of a request.
pub fn build(parts: &RequestParts<'_>, include_user_agent: bool) -> CaptureRecord {
    let path = parts.uri.path();
    let pixel = path == PIXEL_PATH;
    let (path, body) = match parts.events {
        [event] if pixel => (format!("{PIXEL_PATH}?{}", event_query(event)), None),
        _ if pixel => (PIXEL_PATH.to_owned(), None),
        events => (path.to_owned(), Some(events_json(events))),
    };
    CaptureRecord {
        ts_ms: parts.ts_ms,
        method: parts.method.as_str().to_owned(),
        host: parts.host.to_owned(),
        path,
        headers: allowed_headers(parts.headers, include_user_agent),
        body,
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

/// The pixel query of a validated event, URLs sanitised.
pub fn event_query(event: &IncomingEvent) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("n", &event.name);
    out.append_pair("u", &sanitize_page_url(&event.url));
    if let Some(r) = &event.referrer {
        out.append_pair("r", &sanitize_referrer(r));
    }
    if !event.props.is_empty() {
        out.append_pair("p", &Value::Object(props_json(event)).to_string());
    }
    if let Some(w) = event.screen_width {
        out.append_pair("w", &w.to_string());
    }
    out.finish()
}

/// The JSON body of validated events (an object for one event, an array
/// for a batch), URLs sanitised.
pub fn events_json(events: &[IncomingEvent]) -> String {
    let mut items: Vec<Value> = events.iter().map(event_json).collect();
    let value = if items.len() == 1 {
        items.swap_remove(0)
    } else {
        Value::Array(items)
    };
    value.to_string()
}

fn event_json(event: &IncomingEvent) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("name".into(), Value::String(event.name.clone()));
    fields.insert("url".into(), Value::String(sanitize_page_url(&event.url)));
    if let Some(r) = &event.referrer {
        fields.insert("referrer".into(), Value::String(sanitize_referrer(r)));
    }
    if !event.props.is_empty() {
        fields.insert("props".into(), Value::Object(props_json(event)));
    }
    if let Some(w) = event.screen_width {
        fields.insert("screen_width".into(), Value::from(w));
    }
    Value::Object(fields)
}

fn props_json(event: &IncomingEvent) -> serde_json::Map<String, Value> {
    event
        .props
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
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
                "https://u:p@shop.example/a?email=a%40b.c&utm_source=news&utm_campaign=spring_sale&utm_term=a%20b#top"
            ),
            "https://shop.example/a?utm_source=news&utm_campaign=spring_sale"
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

    fn event(name: &str, url: &str, referrer: Option<&str>) -> IncomingEvent {
        IncomingEvent {
            name: name.into(),
            url: url.into(),
            referrer: referrer.map(Into::into),
            props: Vec::new(),
            screen_width: None,
            parsed_url: Default::default(),
        }
    }

    #[test]
    fn bodies_and_pixel_queries_are_rebuilt_from_validated_events() {
        let mut first = event(
            "pageview",
            "https://s.example/?id=7&utm_medium=cpc&ref=alice%40x.com",
            Some("https://r.example/?q=x"),
        );
        first.props = vec![("plan".into(), "pro".into())];
        let second = event("signup", "https://s.example/join#frag", None);
        let out: Value = serde_json::from_str(&events_json(&[first.clone(), second])).unwrap();
        assert_eq!(out[0]["url"], "https://s.example/?utm_medium=cpc");
        assert_eq!(out[0]["referrer"], "https://r.example/");
        assert_eq!(out[0]["props"]["plan"], "pro");
        assert_eq!(out[1]["url"], "https://s.example/join");
        assert!(out[1].get("referrer").is_none());
        let one: Value = serde_json::from_str(&events_json(std::slice::from_ref(&first))).unwrap();
        assert_eq!(one["name"], "pageview", "a single event is an object");

        let mut px = event(
            "pageview",
            "https://s.example/a?email=x&utm_source=nl",
            Some("https://r.example/?q=1"),
        );
        px.screen_width = Some(390);
        let clean = event_query(&px);
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
        let events = [event("pageview", "https://site1.example/?x=1", None)];
        let rec = build(
            &RequestParts {
                ts_ms: 1_700_000_000_123,
                method: &Method::POST,
                host: "site1.example",
                uri: &uri,
                headers: &h,
                events: &events,
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

        // The pixel: the query is rebuilt from the event, never copied
        // (`secret` and the unknown parameter are gone).
        let uri: Uri = "/api/event.gif?n=pageview&u=https%3A%2F%2Fs.example%2F%3Fa%3D1&secret=x"
            .parse()
            .unwrap();
        let events = [event("pageview", "https://s.example/?a=1", None)];
        let rec = build(
            &RequestParts {
                ts_ms: 1,
                method: &Method::GET,
                host: "site1.example",
                uri: &uri,
                headers: &HeaderMap::new(),
                events: &events,
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
