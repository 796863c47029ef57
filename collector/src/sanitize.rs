//! URL stripping: only `scheme://host[:port]/path` (plus campaign tags) survive.
//!
//! Query strings and fragments routinely carry personal data (emails, tokens,
//! session ids) and userinfo carries credentials, so none of them are kept.
//! The only query parameters retained are the `utm_*` campaign tags of the
//! page URL (and `ref`/`source` as fallbacks for `utm_source`), and only
//! values that look like a source name or a host: see [`is_campaign_value`].
//! Anything else (`ref=alice@x.com`, free text with spaces) is dropped.

use edge_envelope::Utm;
use url::{Position, Url};

/// Longest campaign value kept; longer values are dropped.
pub const MAX_UTM_VALUE_BYTES: usize = 100;

/// Whether a campaign value (`utm_*`, `ref`, `source`) is kept: 1 to
/// [`MAX_UTM_VALUE_BYTES`] bytes of ASCII letters, digits, `.`, `-` and `_`
/// only — a source name (`newsletter`, `spring_sale`) or a host
/// (`news.ycombinator.com`). No `@`, no spaces, no `%`, `+`, `/` or `:`,
/// so e-mail addresses, names and URLs carrying tokens never pass.
pub fn is_campaign_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_UTM_VALUE_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The page URL without query, fragment or userinfo, and its campaign tags.
///
/// `utm_source` falls back to `ref`, then `source`, when absent. The first
/// occurrence of each parameter whose value passes [`is_campaign_value`] wins.
pub fn page_url(raw: &Url) -> (String, Utm) {
    (strip(raw), campaign(raw))
}

/// The referrer without query, fragment or userinfo; `None` if it is empty,
/// not a URL, or not `http`/`https` (e.g. `android-app://`, `about:blank`).
pub fn referrer(raw: &str) -> Option<String> {
    referrer_of(&parse_referrer(raw)?)
}

/// A referrer as sent, parsed the way [`referrer`] parses it (surrounding
/// white space ignored); `None` if it is not a URL. Callers that need the
/// referrer twice (the bot filter's host check, then enrichment) parse it
/// once with this and pass the result on.
pub fn parse_referrer(raw: &str) -> Option<Url> {
    Url::parse(raw.trim()).ok()
}

/// [`referrer`] of an already parsed referrer ([`parse_referrer`]).
pub fn referrer_of(url: &Url) -> Option<String> {
    matches!(url.scheme(), "http" | "https").then(|| strip(url))
}

/// `url` serialised without userinfo, query and fragment.
///
/// An `http`/`https` URL always serialises as `scheme://[userinfo@]host[:port]path…`,
/// so its stripped form is the scheme, `://` and the slice from the host to
/// the end of the path: one allocation, where [`strip_by_setters`] clones the
/// URL and rewrites its serialisation four times (the tests compare the two).
fn strip(url: &Url) -> String {
    if !matches!(url.scheme(), "http" | "https") {
        return strip_by_setters(url);
    }
    let scheme = url.scheme();
    let rest = &url[Position::BeforeHost..Position::AfterPath];
    let mut out = String::with_capacity(scheme.len() + 3 + rest.len());
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(rest);
    out
}

/// [`strip`] through `url`'s setters, for any scheme.
fn strip_by_setters(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    // Both only fail for URLs that cannot carry userinfo at all.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.into()
}

/// Campaign tags from the query string of `url`.
fn campaign(url: &Url) -> Utm {
    let mut utm = Utm::default();
    let (mut ref_fallback, mut source_fallback) = (None, None);
    for (key, value) in url.query_pairs() {
        let slot = match key.as_ref() {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_term" => &mut utm.term,
            "utm_content" => &mut utm.content,
            "ref" => &mut ref_fallback,
            "source" => &mut source_fallback,
            _ => continue,
        };
        if slot.is_none() && is_campaign_value(&value) {
            *slot = Some(value.into_owned());
        }
    }
    utm.source = utm.source.or(ref_fallback).or(source_fallback);
    utm
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn page(raw: &str) -> (String, Utm) {
        page_url(&Url::parse(raw).unwrap())
    }

    #[test]
    fn strips_query_fragment_and_userinfo() {
        let (url, utm) =
            page("https://user:secret@Example.COM:8443/a/b?email=x%40y.z&token=abc#section");
        assert_eq!(url, "https://example.com:8443/a/b");
        assert_eq!(utm, Utm::default());
        assert_eq!(page("http://example.com").0, "http://example.com/");
        assert_eq!(
            page("https://example.com:443/x?").0,
            "https://example.com/x"
        );
        assert_eq!(page("http://[::1]:8080/p#f").0, "http://[::1]:8080/p");
        assert_eq!(page("https://user@example.com/").0, "https://example.com/");
    }

    #[test]
    fn the_sliced_strip_matches_the_setters_on_awkward_urls() {
        for raw in [
            "https://user:secret@Example.COM:8443/a/b?email=x%40y.z&token=abc#section",
            "http://example.com",
            "https://example.com:443/x?",
            "http://[::1]:8080/p#f",
            "http://[::1]/p",
            "https://user@example.com/",
            "https://:pw@example.com/x",
            "http://a@b@example.com/x?y#z",
            "https://b\u{fc}cher.example/\u{e4}/%20x?q#f",
            "HTTP://EXAMPLE.com:80/./a/../b/?#",
            "https://192.168.0.1:0/",
            "https://example.com/a?b#c?d",
            "https://example.com/%3F?x=%23",
            "https://example.com#only-fragment",
        ] {
            let url = Url::parse(raw).unwrap();
            assert_eq!(strip(&url), strip_by_setters(&url), "{raw}");
        }
        // Other schemes take the setters.
        let url = Url::parse("ftp://u:p@example.com/f?x").unwrap();
        assert_eq!(strip(&url), "ftp://example.com/f");
    }

    proptest::proptest! {
        /// Whatever `url` makes of a string, the sliced strip and the setters agree.
        #[test]
        fn the_sliced_strip_matches_the_setters_on_any_parsed_url(
            scheme in "(http|https|HTTP|ftp)",
            userinfo in "([a-z:%@]{0,6}@)?",
            host in "([a-zA-Z0-9.-]{1,12}|\\[::[0-9a-f]{1,4}\\]|[0-9]{1,3}\\.[0-9]{1,3}\\.0\\.1|[a-z\u{e0}-\u{ff}]{1,6})",
            port in "(:[0-9]{0,5})?",
            rest in "[a-zA-Z0-9/?#%&=.@:; \u{e9}-]{0,24}",
        ) {
            let raw = format!("{scheme}://{userinfo}{host}{port}{rest}");
            if let Ok(url) = Url::parse(&raw) {
                proptest::prop_assert_eq!(strip(&url), strip_by_setters(&url), "{}", raw);
            }
        }
    }

    #[test]
    fn keeps_utm_parameters() {
        let (url, utm) = page(
            "https://example.com/landing?utm_source=news_letter&utm_medium=email&utm_campaign=spring-2026\
             &utm_term=shoes&utm_content=banner.v2&gclid=secret",
        );
        assert_eq!(url, "https://example.com/landing");
        assert_eq!(
            utm,
            Utm {
                source: Some("news_letter".into()),
                medium: Some("email".into()),
                campaign: Some("spring-2026".into()),
                term: Some("shoes".into()),
                content: Some("banner.v2".into()),
            }
        );
    }

    #[test]
    fn source_falls_back_to_ref_then_source() {
        assert_eq!(
            page("https://e.com/?source=b&ref=a").1.source.as_deref(),
            Some("a")
        );
        assert_eq!(
            page("https://e.com/?source=b").1.source.as_deref(),
            Some("b")
        );
        assert_eq!(
            page("https://e.com/?ref=a&utm_source=u")
                .1
                .source
                .as_deref(),
            Some("u")
        );
        assert_eq!(
            page("https://e.com/?utm_source=&ref=a").1.source.as_deref(),
            Some("a")
        );
        assert_eq!(
            page("https://e.com/?utm_source=1&utm_source=2")
                .1
                .source
                .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn utm_values_are_bounded() {
        let exact = "a".repeat(MAX_UTM_VALUE_BYTES);
        let (_, utm) = page(&format!("https://e.com/?utm_campaign={exact}"));
        assert_eq!(utm.campaign.as_deref(), Some(exact.as_str()));
        let (_, utm) = page(&format!("https://e.com/?utm_campaign={exact}b"));
        assert_eq!(utm.campaign, None, "too long: dropped, not cut");
    }

    #[test]
    fn only_source_names_and_hosts_are_kept() {
        for kept in [
            "news.ycombinator.com",
            "newsletter",
            "spring_sale-2",
            "A.b-C_9",
        ] {
            assert!(is_campaign_value(kept), "{kept}");
            let (_, utm) = page(&format!("https://e.com/?ref={kept}"));
            assert_eq!(utm.source.as_deref(), Some(kept));
        }
        for dropped in [
            "alice%40x.com",
            "alice@x.com",
            "two%20words",
            "two+words",
            "https%3A%2F%2Fa.example%2F%3Ft%3D1",
            "a/b",
            "x:y",
            "caf%C3%A9",
            "nul%00",
            "",
        ] {
            let (_, utm) = page(&format!(
                "https://e.com/?ref={dropped}&utm_medium={dropped}&utm_campaign={dropped}\
                 &utm_term={dropped}&utm_content={dropped}"
            ));
            assert_eq!(utm, Utm::default(), "{dropped}");
        }
        // A refused value does not hide a later good one.
        let (_, utm) = page("https://e.com/?utm_source=a%40b.c&utm_source=mail&ref=x");
        assert_eq!(utm.source.as_deref(), Some("mail"));
        let (_, utm) = page("https://e.com/?ref=alice%40x.com&source=blog");
        assert_eq!(utm.source.as_deref(), Some("blog"));
    }

    #[test]
    fn referrer_is_stripped() {
        assert_eq!(
            referrer("https://www.google.com/search?q=my+private+query#top").as_deref(),
            Some("https://www.google.com/search")
        );
        assert_eq!(
            referrer("  http://u:p@news.example:81/item?id=1 ").as_deref(),
            Some("http://news.example:81/item")
        );
    }

    #[test]
    fn referrer_rejects_non_http() {
        for raw in [
            "",
            "   ",
            "not a url",
            "/relative",
            "android-app://com.google/",
            "about:blank",
            "file:///etc/passwd",
        ] {
            assert_eq!(referrer(raw), None, "{raw}");
        }
    }
}
