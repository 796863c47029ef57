//! The tracker script (the "tag"): served from memory at `GET /js/script.js`,
//! with its SHA-384 Subresource Integrity value computed once and published.
//!
//! The bytes are `proxy/assets/script.min.js`, built from
//! `proxy/assets/tracker.js` by `scripts/build-tag` and embedded at compile
//! time. [`TagAsset`] holds them with their SRI value (`sha384-<base64>`) and
//! a strong ETag derived from the same digest.
//!
//! `[tag] expected_sri` pins the value: when it differs from the embedded
//! tag's, the edge answers 503 and never sends the bytes, and the gauge
//! `edge_tag_integrity_mismatch` is 1 (set whenever a configuration becomes
//! active, so the alert fires without traffic). Every tag request is counted
//! in `edge_tag_requests_total{outcome}`.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use edge_config::{Config, Tag};
use http::{HeaderName, HeaderValue, Method, header};

use crate::metrics::{METRICS, RequestOutcome};
use crate::reply::Reply;

/// Path the tracker is served at on the public listeners.
pub(crate) const TAG_PATH: &str = "/js/script.js";

/// `Content-Type` of the tracker.
pub(crate) const CONTENT_TYPE: &str = "application/javascript; charset=utf-8";

/// The served tracker, as committed (see `scripts/build-tag`).
static EMBEDDED: &[u8] = include_bytes!("../assets/script.min.js");

/// The embedded tracker and its digests, computed on first use (at startup:
/// [`publish_integrity`] runs when the first configuration is installed).
pub(crate) static TAG: LazyLock<TagAsset> =
    LazyLock::new(|| TagAsset::new(Bytes::from_static(EMBEDDED)));

/// A tracker body with its integrity values.
#[derive(Debug, Clone)]
pub(crate) struct TagAsset {
    /// The bytes served.
    pub body: Bytes,
    /// `sha384-<standard base64 of the SHA-384 digest>`, for `integrity=`.
    pub sri: String,
    /// Strong ETag: the first 16 bytes of the SHA-384 digest in hex, quoted.
    pub etag: String,
}

impl TagAsset {
    /// Computes the SRI value and ETag of `body`.
    pub(crate) fn new(body: Bytes) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA384, &body);
        let sri = format!("sha384-{}", STANDARD.encode(digest.as_ref()));
        let etag = format!("\"{}\"", hex::encode(&digest.as_ref()[..16]));
        Self { body, sri, etag }
    }
}

/// How the active configuration's pin relates to the served tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Integrity {
    /// No `tag.expected_sri`: served as is.
    Unpinned,
    /// The pin equals the tag's SRI value: served.
    Matches,
    /// The pin differs: the tag is refused.
    Mismatch,
}

impl Integrity {
    /// Compares the pin in `tag` with `asset`.
    pub(crate) fn check(tag: &Tag, asset: &TagAsset) -> Self {
        match tag.expected_sri.as_deref() {
            None => Self::Unpinned,
            Some(expected) if expected == asset.sri => Self::Matches,
            Some(_) => Self::Mismatch,
        }
    }

    /// Label for `/admin/tag`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unpinned => "unpinned",
            Self::Matches => "match",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Sets `edge_tag_integrity_mismatch` for a configuration that is becoming
/// active, and logs a mismatch. Called at startup and on every reload.
pub(crate) fn publish_integrity(config: &Config) {
    let integrity = Integrity::check(&config.tag, &TAG);
    METRICS
        .tag_integrity_mismatch
        .set(i64::from(integrity == Integrity::Mismatch));
    if integrity == Integrity::Mismatch {
        tracing::error!(
            expected = config.tag.expected_sri.as_deref().unwrap_or(""),
            served = %TAG.sri,
            "tag.expected_sri does not match the embedded tracker; {TAG_PATH} answers 503 until the pin or the binary is fixed"
        );
    }
}

/// The `Cache-Control` value for `tag`.
pub(crate) fn cache_control(tag: &Tag) -> String {
    let mut value = format!("public, max-age={}", tag.cache_max_age_seconds);
    if tag.stale_while_revalidate_seconds > 0 {
        value.push_str(&format!(
            ", stale-while-revalidate={}",
            tag.stale_while_revalidate_seconds
        ));
    }
    value
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as
/// RFC 9110 §13.1.2 prescribes for this header; `*` matches any).
pub(crate) fn none_match(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// Answers a request for [`TAG_PATH`]: `GET`/`HEAD` get the tag (or 304, or
/// 503 when the pin does not match), anything else 405. Counts the outcome.
pub(crate) fn respond(
    method: &Method,
    if_none_match: Option<&str>,
    tag: &Tag,
    asset: &TagAsset,
) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        return Reply::text(
            405,
            RequestOutcome::MethodNotAllowed,
            "method not allowed; this route accepts GET, HEAD",
        )
        .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if Integrity::check(tag, asset) == Integrity::Mismatch {
        METRICS
            .tag_requests
            .with_label_values(&["refused_integrity"])
            .inc();
        return Reply::text(
            503,
            RequestOutcome::TagRefused,
            format!(
                "the tracker is not served: its integrity value {} does not match tag.expected_sri \
                 in the edge configuration (see GET /admin/tag on the admin listener)",
                asset.sri
            ),
        )
        .with_header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("60"));
    }
    let not_modified = if_none_match.is_some_and(|v| none_match(v, &asset.etag));
    let (status, body, outcome) = if not_modified {
        (304, Bytes::new(), "not_modified")
    } else {
        (200, asset.body.clone(), "served")
    };
    METRICS.tag_requests.with_label_values(&[outcome]).inc();
    // A 304 goes out without Content-Length (see `Reply::write`).
    Reply {
        status,
        outcome: RequestOutcome::Tag,
        headers: Vec::new(),
        content_type: CONTENT_TYPE,
        body,
        close: false,
    }
    .with_built_header(header::ETAG, asset.etag.clone())
    .with_built_header(header::CACHE_CONTROL, cache_control(tag))
    .with_header(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    )
    .with_header(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    )
}

/// The `<script>` element a customer embeds for the tag served at `origin`
/// (`https://stats.example.com`).
pub(crate) fn snippet(origin: &str, sri: &str) -> String {
    format!(
        "<script defer src=\"{origin}{TAG_PATH}\" integrity=\"{sri}\" crossorigin=\"anonymous\"></script>"
    )
}

/// The body of `GET /admin/tag`: what is served, its SRI value, the pin and
/// one ready-to-paste snippet per site (first exact domain; HTTPS unless
/// only plain HTTP is configured).
pub(crate) fn admin_status(config: &Config) -> serde_json::Value {
    let asset = &*TAG;
    let integrity = Integrity::check(&config.tag, asset);
    let (scheme, port, default_port) = match (config.listeners.https, config.listeners.http) {
        (Some(https), _) => ("https", https.port(), 443),
        (None, Some(http)) => ("http", http.port(), 80),
        (None, None) => ("https", 443, 443),
    };
    let port = if port == default_port {
        String::new()
    } else {
        format!(":{port}")
    };
    let sites: Vec<serde_json::Value> = config
        .sites
        .iter()
        .filter_map(|site| {
            let domain = site.domains.iter().find(|d| !d.starts_with("*."))?;
            Some(serde_json::json!({
                "site": site.id,
                "snippet": snippet(&format!("{scheme}://{domain}{port}"), &asset.sri),
            }))
        })
        .collect();
    serde_json::json!({
        "path": TAG_PATH,
        "bytes": asset.body.len(),
        "sri": asset.sri,
        "etag": asset.etag,
        "cache_control": cache_control(&config.tag),
        "pinned": config.tag.expected_sri.is_some(),
        "expected_sri": config.tag.expected_sri,
        "integrity": integrity.as_str(),
        "serving": integrity != Integrity::Mismatch,
        "snippet": snippet("https://stats.example.com", &asset.sri),
        "sites": sites,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn sri_of_a_known_vector() {
        // SHA-384("abc"), FIPS 180-2 appendix D.1, in base64.
        let asset = TagAsset::new(Bytes::from_static(b"abc"));
        assert_eq!(
            asset.sri,
            "sha384-ywB1P0WjXou1oD1pmsZQBycsMqsO3tFjGotgWkP/W+2AhgcroefMI1i67KE0yCWn"
        );
        assert_eq!(asset.etag, "\"cb00753f45a35e8bb5a03d699ac65007\"");
    }

    #[test]
    fn sri_of_the_embedded_tag_matches_openssl() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/script.min.js");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("openssl dgst -sha384 -binary \"$1\" | openssl base64 -A")
            .arg("sh")
            .arg(file)
            .output()
            .expect("run openssl (Debian package openssl, installed by scripts/install-deps)");
        assert!(out.status.success(), "{out:?}");
        let independent = format!("sha384-{}", String::from_utf8_lossy(&out.stdout).trim());
        assert_eq!(TAG.sri, independent);
        assert_eq!(TAG.body.as_ref(), std::fs::read(file).expect("read tag"));
    }

    #[test]
    fn tag_is_small_and_talks_to_the_event_endpoint() {
        assert!(TAG.body.len() < 1536, "tag is {} bytes", TAG.body.len());
        let text = std::str::from_utf8(&TAG.body).expect("ascii");
        for needle in [
            "/api/event",
            "sendBeacon",
            "keepalive",
            "pushState",
            "popstate",
        ] {
            assert!(text.contains(needle), "{needle} missing from the tag");
        }
        for forbidden in ["cookie", "localStorage", "sessionStorage"] {
            assert!(!text.contains(forbidden), "the tag mentions {forbidden}");
        }
    }

    /// Every `sha384-` value in `text` (up to the closing quote).
    fn sri_values(text: &str) -> Vec<&str> {
        text.match_indices("\"sha384-")
            .map(|(i, _)| text[i + 1..].split('"').next().unwrap_or(""))
            .collect()
    }

    #[test]
    fn readme_snippet_and_example_pin_carry_the_served_sri_value() {
        for (file, text) in [
            ("README.md", include_str!("../../README.md")),
            (
                "config/examples/edge.toml",
                include_str!("../../config/examples/edge.toml"),
            ),
        ] {
            let values = sri_values(text);
            assert!(!values.is_empty(), "{file} has no \"sha384-…\" value");
            for value in values {
                assert_eq!(
                    value, TAG.sri,
                    "{file} is stale: run scripts/build-tag and paste the value it prints"
                );
            }
        }
    }

    #[test]
    fn served_with_caching_cors_and_corp_headers() {
        let tag = Tag::default();
        let reply = respond(&Method::GET, None, &tag, &TAG);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.outcome, RequestOutcome::Tag);
        assert_eq!(reply.content_type, "application/javascript; charset=utf-8");
        assert_eq!(reply.body, TAG.body);
        assert_eq!(header(&reply, "etag"), Some(TAG.etag.as_str()));
        assert_eq!(
            header(&reply, "cache-control"),
            Some("public, max-age=3600, stale-while-revalidate=86400")
        );
        assert_eq!(header(&reply, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            header(&reply, "cross-origin-resource-policy"),
            Some("cross-origin")
        );
        let head = respond(&Method::HEAD, None, &tag, &TAG);
        assert_eq!(head.status, 200);
        assert_eq!(head.body.len(), TAG.body.len(), "HEAD announces the length");
        let post = respond(&Method::POST, None, &tag, &TAG);
        assert_eq!(post.status, 405);
        assert_eq!(header(&post, "allow"), Some("GET, HEAD"));
    }

    #[test]
    fn etag_revalidation_answers_304_without_body() {
        let tag = Tag {
            cache_max_age_seconds: 60,
            stale_while_revalidate_seconds: 0,
            ..Tag::default()
        };
        for inm in [
            TAG.etag.clone(),
            format!("W/{}", TAG.etag),
            format!("\"other\", {}", TAG.etag),
            "*".to_string(),
        ] {
            let reply = respond(&Method::GET, Some(&inm), &tag, &TAG);
            assert_eq!(reply.status, 304, "{inm}");
            assert!(reply.body.is_empty());
            assert_eq!(header(&reply, "etag"), Some(TAG.etag.as_str()));
            assert_eq!(header(&reply, "cache-control"), Some("public, max-age=60"));
        }
        for inm in ["\"other\"", "", "\"cb00753f45a35e8bb5a03d699ac65007\""] {
            assert_eq!(
                respond(&Method::GET, Some(inm), &tag, &TAG).status,
                200,
                "{inm}"
            );
        }
    }

    #[test]
    fn a_mismatching_pin_refuses_the_tag_and_a_matching_one_serves_it() {
        let before = METRICS
            .tag_requests
            .with_label_values(&["refused_integrity"])
            .get();
        let wrong = TagAsset::new(Bytes::from_static(b"something else")).sri;
        let pinned_wrong = Tag {
            expected_sri: Some(wrong),
            ..Tag::default()
        };
        for method in [Method::GET, Method::HEAD] {
            let reply = respond(&method, None, &pinned_wrong, &TAG);
            assert_eq!(reply.status, 503);
            assert_eq!(reply.outcome, RequestOutcome::TagRefused);
            assert_ne!(reply.body, TAG.body, "never the mismatching bytes");
            assert!(
                std::str::from_utf8(&reply.body)
                    .unwrap_or("")
                    .contains("does not match tag.expected_sri")
            );
            assert_eq!(header(&reply, "etag"), None);
        }
        // Even a matching If-None-Match does not turn a refusal into a 304.
        let reply = respond(&Method::GET, Some(&TAG.etag), &pinned_wrong, &TAG);
        assert_eq!(reply.status, 503);
        let after = METRICS
            .tag_requests
            .with_label_values(&["refused_integrity"])
            .get();
        assert!(after >= before + 3);

        let pinned_right = Tag {
            expected_sri: Some(TAG.sri.clone()),
            ..Tag::default()
        };
        assert_eq!(Integrity::check(&pinned_right, &TAG), Integrity::Matches);
        assert_eq!(respond(&Method::GET, None, &pinned_right, &TAG).status, 200);

        let mut config = Config {
            tag: pinned_wrong,
            ..Config::default()
        };
        publish_integrity(&config);
        assert_eq!(METRICS.tag_integrity_mismatch.get(), 1);
        config.tag = pinned_right;
        publish_integrity(&config);
        assert_eq!(METRICS.tag_integrity_mismatch.get(), 0);
    }

    #[test]
    fn admin_status_names_value_pin_and_snippets() {
        let mut config = Config::default();
        config.listeners.https = Some(([0, 0, 0, 0], 443).into());
        config.sites.push(
            serde_json::from_value(serde_json::json!({
                "id": "shop",
                "domains": ["*.shop.example", "stats.shop.example"],
            }))
            .expect("site"),
        );
        let status = admin_status(&config);
        assert_eq!(status["path"], "/js/script.js");
        assert_eq!(status["bytes"], TAG.body.len());
        assert_eq!(status["sri"], TAG.sri.as_str());
        assert_eq!(status["pinned"], false);
        assert_eq!(status["integrity"], "unpinned");
        assert_eq!(status["serving"], true);
        assert_eq!(
            status["sites"][0]["snippet"],
            format!(
                "<script defer src=\"https://stats.shop.example/js/script.js\" integrity=\"{}\" crossorigin=\"anonymous\"></script>",
                TAG.sri
            )
        );
    }
}
