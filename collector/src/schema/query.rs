//! Parsing of events sent as a query string (`GET /api/event.gif?n=...`).

use super::error::EventError;
use super::fields::{Draft, Field};
use super::json::{JsonValue, parse_props};
use super::{Bounds, IncomingEvent};

/// Parses one event from a URL query string, e.g.
/// `n=pageview&u=https%3A%2F%2Fexample.com%2F&r=...&p=%7B%22plan%22%3A%22pro%22%7D`.
///
/// Parameter names are the same as the JSON field names (long or short); a
/// leading `?` is ignored. `p`/`props` holds a JSON object; `w`/`screen_width`
/// a decimal integer. Empty `r`, `p` and `w` values count as absent. Errors
/// use the index `event[0]`.
///
/// # Errors
///
/// An [`EventError`] naming the problem, exactly as for [`super::parse_body`].
pub fn parse_query(query: &str, bounds: &Bounds) -> Result<IncomingEvent, EventError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| EventError::MalformedQuery(e.to_string()))?;
    let mut draft = Draft::new(0, bounds);
    for (key, value) in pairs {
        match draft.claim(&key)? {
            Field::Domain => {}
            Field::Name => draft.set_name(value)?,
            Field::Url => draft.set_url(value)?,
            Field::Referrer => draft.set_referrer(value)?,
            Field::Props if value.is_empty() => {}
            Field::Props => match parse_props(&value, bounds.max_props) {
                Ok(JsonValue::Object(members)) => draft.set_props(members)?,
                Ok(JsonValue::Null) => {}
                Ok(_) => return Err(draft.invalid("props", "must be a JSON object".into())),
                Err(e) => return Err(draft.invalid("props", format!("not valid JSON: {e}"))),
            },
            Field::ScreenWidth if value.is_empty() => {}
            Field::ScreenWidth => {
                let width = value.parse::<u32>().map_err(|_| {
                    draft.invalid("screen_width", "must be a non-negative integer".into())
                })?;
                draft.set_screen_width(width);
            }
        }
    }
    draft.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<IncomingEvent, EventError> {
        parse_query(query, &Bounds::default())
    }

    #[test]
    fn short_names_with_percent_encoding_and_props() {
        let event = parse(
            "n=pageview&u=https%3A%2F%2Fexample.com%2Fa%3Fx%3D1&r=https%3A%2F%2Fref.example%2F\
             &p=%7B%22plan%22%3A%22pro%22%2C%22n%22%3A3%2C%22ok%22%3Atrue%7D&w=390&d=example.com",
        )
        .unwrap();
        assert_eq!(
            event,
            IncomingEvent {
                name: "pageview".into(),
                url: "https://example.com/a?x=1".into(),
                referrer: Some("https://ref.example/".into()),
                props: vec![
                    ("plan".into(), "pro".into()),
                    ("n".into(), "3".into()),
                    ("ok".into(), "true".into())
                ],
                screen_width: Some(390),
                parsed_url: Default::default(),
            }
        );
    }

    #[test]
    fn long_names_leading_question_mark_and_plus_as_space() {
        let event =
            parse("?name=sign+up&url=https://example.com/&referrer=&props=&screen_width=").unwrap();
        assert_eq!(event.name, "sign up");
        assert_eq!(event.url, "https://example.com/");
        assert_eq!(event.referrer, None);
        assert!(event.props.is_empty());
        assert_eq!(event.screen_width, None);
    }

    #[test]
    fn non_utf8_percent_escapes_do_not_panic() {
        // form_urlencoded decodes lossily, so this is a valid (odd) name.
        let event = parse("n=%FF&u=https://example.com/").unwrap();
        assert_eq!(event.name, "\u{FFFD}");
    }

    #[test]
    fn errors_match_the_body_parser() {
        let e = parse("n=pageview&u=https://example.com/&foo=1").unwrap_err();
        assert_eq!(e.to_string(), "event[0]: unknown field \"foo\"");
        let e = parse("n=pageview").unwrap_err();
        assert_eq!(e.to_string(), "event[0].url: missing");
        let e = parse("n=a&n=b&u=https://example.com/").unwrap_err();
        assert_eq!(e.to_string(), "event[0].name: given more than once");
        let e = parse("n=x&u=https://example.com/&w=wide").unwrap_err();
        assert_eq!(
            e.to_string(),
            "event[0].screen_width: must be a non-negative integer"
        );
        let e = parse("n=x&u=/relative").unwrap_err();
        assert_eq!(e.kind(), "invalid_field");
    }

    #[test]
    fn props_json_is_validated() {
        let e = parse("n=x&u=https://example.com/&p=%7B").unwrap_err();
        assert_eq!(e.kind(), "invalid_field");
        assert!(
            e.to_string()
                .starts_with("event[0].props: not valid JSON: "),
            "{e}"
        );
        assert!(e.to_string().contains("line 1 column 1"), "{e}");
        let e = parse("n=x&u=https://example.com/&p=%5B1%5D").unwrap_err();
        assert_eq!(e.to_string(), "event[0].props: must be a JSON object");
        let e = parse("n=x&u=https://example.com/&p=%7B%22a%22%3Anull%7D").unwrap_err();
        assert_eq!(e.to_string(), r#"event[0].props["a"]: null is not allowed"#);
    }

    #[test]
    fn bounds_apply_to_decoded_values() {
        // 2000 bytes after decoding passes even though the encoded form is longer.
        let path = "%C3%A9".repeat(990); // 990 × "é" = 1980 bytes
        let url = format!("https://example.com/{}", "a".repeat(2000 - 20 - 1980));
        let q = format!(
            "n=x&u={}{}",
            url.replace(':', "%3A").replace('/', "%2F"),
            path
        );
        let event = parse(&q).unwrap();
        assert_eq!(event.url.len(), 2000);
        let e = parse(&format!("{q}a")).unwrap_err();
        assert_eq!(e.to_string(), "event[0].url: longer than 2000 bytes");
    }
}
