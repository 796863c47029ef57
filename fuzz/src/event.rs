//! JSON event bodies (`POST /api/event`) and pixel queries (`GET /api/event.gif`).

use edge_collector::{Bounds, EventError, IncomingEvent, parse_body, parse_query};

/// Bounds smaller than the defaults, so the fuzzer reaches every limit with
/// short inputs; the defaults are checked too.
const SMALL: Bounds = Bounds {
    max_batch_events: 3,
    max_name_bytes: 8,
    max_url_bytes: 40,
    max_referrer_bytes: 40,
    max_props: 2,
    max_prop_key_bytes: 6,
    max_prop_value_bytes: 10,
};

/// Longest `Display` text of an [`EventError`]: it is sent back to clients
/// and counted, so it must stay short whatever the input.
const MAX_ERROR_TEXT: usize = 512;

/// `edge_collector::parse_body` on arbitrary bytes, with the default and
/// with small bounds: every accepted batch is non-empty, within
/// `max_batch_events`, and each event respects the bounds; every error's
/// text is short.
pub fn check_event_body(data: &[u8]) {
    for bounds in [Bounds::default(), SMALL] {
        match parse_body(data, &bounds) {
            Ok(events) => {
                assert!(!events.is_empty(), "accepted an empty batch");
                assert!(
                    events.len() <= bounds.max_batch_events,
                    "accepted {} events, more than {}",
                    events.len(),
                    bounds.max_batch_events
                );
                for event in &events {
                    check_event(event, &bounds);
                }
            }
            Err(e) => check_error(&e),
        }
    }
}

/// `edge_collector::parse_query` on arbitrary UTF-8 (the edge hands it the
/// request's query string), with the default and with small bounds: an
/// accepted event respects the bounds, every error's text is short.
pub fn check_pixel_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    for bounds in [Bounds::default(), SMALL] {
        match parse_query(query, &bounds) {
            Ok(event) => check_event(&event, &bounds),
            Err(e) => check_error(&e),
        }
    }
}

/// What every accepted event must satisfy (see `IncomingEvent` and `Bounds`).
fn check_event(event: &IncomingEvent, bounds: &Bounds) {
    assert!(!event.name.is_empty(), "accepted an empty name");
    assert!(event.name.len() <= bounds.max_name_bytes, "name too long");
    assert!(event.url.len() <= bounds.max_url_bytes, "url too long");
    let url = url::Url::parse(&event.url);
    assert!(
        url.as_ref()
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
        "accepted url {:?} that is not absolute http(s)",
        event.url
    );
    if let Some(referrer) = &event.referrer {
        assert!(!referrer.is_empty(), "empty referrer kept instead of None");
        assert!(
            referrer.len() <= bounds.max_referrer_bytes,
            "referrer too long"
        );
    }
    assert!(event.props.len() <= bounds.max_props, "too many props");
    for (key, value) in &event.props {
        assert!(key.len() <= bounds.max_prop_key_bytes, "prop key too long");
        assert!(
            value.len() <= bounds.max_prop_value_bytes,
            "prop value too long"
        );
    }
}

/// Error texts stay short and printable, as `EventError` documents: client
/// text in them is quoted and truncated.
fn check_error(e: &EventError) {
    let text = e.to_string();
    assert!(
        text.len() <= MAX_ERROR_TEXT,
        "error text of {} bytes: {text:?}",
        text.len()
    );
    assert!(
        !text.chars().any(char::is_control),
        "control character in error text {text:?}"
    );
    assert!(!e.kind().is_empty());
}
