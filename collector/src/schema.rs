//! The accepted event formats and their bounds.
//!
//! Events arrive either as a JSON body (one object or an array of objects,
//! sent as `application/json` or as `text/plain` by `navigator.sendBeacon`)
//! or as the query string of `GET /api/event.gif`. Both paths produce the same
//! [`IncomingEvent`] after the same checks; see `docs/events.md`.

mod body;
mod error;
mod fields;
mod json;
mod query;

pub use body::parse_body;
pub use error::EventError;
pub use query::parse_query;

/// Size limits applied to incoming events.
///
/// Lengths are in bytes of UTF-8 and are checked on the raw strings, before
/// any further parsing. The defaults keep every value that the backend puts
/// into an index (page paths, referrer hosts, event names, property keys)
/// well under PostgreSQL's B-tree row limit (about 2,700 bytes for the whole
/// index row): [`Bounds::MAX_INDEXED_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most events accepted in one JSON array (default 100).
    pub max_batch_events: usize,
    /// Longest event name (default 120).
    pub max_name_bytes: usize,
    /// Longest page URL (default 2000).
    pub max_url_bytes: usize,
    /// Longest referrer (default 2000).
    pub max_referrer_bytes: usize,
    /// Most custom properties per event (default 30).
    pub max_props: usize,
    /// Longest custom property key (default 300).
    pub max_prop_key_bytes: usize,
    /// Longest custom property value, after stringifying (default 2000).
    pub max_prop_value_bytes: usize,
}

impl Bounds {
    /// The largest value a bound on an indexed text may have (2,000 bytes,
    /// like Plausible's URL limit), leaving room under PostgreSQL's B-tree
    /// limit of about 2,700 bytes for the other columns of the index row.
    pub const MAX_INDEXED_BYTES: usize = 2000;
}

// An index row holds the value plus the site id (at most 64 bytes), the
// bucket name, the bucket start, the dimension name and tuple overhead.
const _: () = assert!(Bounds::MAX_INDEXED_BYTES + 64 + 8 + 8 + 16 + 64 < 2700);

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_batch_events: 100,
            max_name_bytes: 120,
            max_url_bytes: 2000,
            max_referrer_bytes: 2000,
            max_props: 30,
            max_prop_key_bytes: 300,
            max_prop_value_bytes: 2000,
        }
    }
}

/// One validated event as sent by the browser, before enrichment.
///
/// `url` is an absolute `http`/`https` URL that still carries its query
/// string; [`crate::sanitize`] strips it during enrichment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEvent {
    /// Event name (`pageview` or a custom name), non-empty.
    pub name: String,
    /// Page URL exactly as sent (validated as absolute http/https).
    pub url: String,
    /// Referrer exactly as sent; `None` if absent, null or empty.
    pub referrer: Option<String>,
    /// Custom properties in the order sent, values stringified.
    pub props: Vec<(String, String)>,
    /// Viewport width in CSS pixels, if sent.
    pub screen_width: Option<u32>,
    /// `url` as parsed by validation, kept so that enrichment does not parse
    /// it a second time; empty ([`ParsedUrl::default`]) for events built
    /// elsewhere, whose `url` enrichment parses itself.
    pub parsed_url: ParsedUrl,
}

/// A cached parse of [`IncomingEvent::url`]. It is derived from `url`, not
/// part of the event's value: any two compare equal, so events compare by
/// what was sent.
#[derive(Debug, Clone, Default)]
pub struct ParsedUrl(Option<url::Url>);

impl ParsedUrl {
    /// The parse of an event's `url`. Only validation sets it; `url` must be
    /// exactly what `url::Url::parse` made of the event's `url` string.
    pub(crate) fn new(url: url::Url) -> Self {
        ParsedUrl(Some(url))
    }

    /// Takes the parsed URL out, leaving the cache empty.
    pub fn take(&mut self) -> Option<url::Url> {
        self.0.take()
    }
}

impl PartialEq for ParsedUrl {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ParsedUrl {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bounds_fit_a_postgresql_index_row() {
        let b = Bounds::default();
        for (what, max) in [
            ("name", b.max_name_bytes),
            ("url", b.max_url_bytes),
            ("referrer", b.max_referrer_bytes),
            ("prop key", b.max_prop_key_bytes),
            ("prop value", b.max_prop_value_bytes),
        ] {
            assert!(max <= Bounds::MAX_INDEXED_BYTES, "{what}: {max}");
        }
    }
}
