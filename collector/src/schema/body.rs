//! Parsing of JSON event bodies (`application/json` or `text/plain`).

use super::error::EventError;
use super::fields::{Draft, Field};
use super::json::{JsonValue, Stop, parse_event_body};
use super::{Bounds, IncomingEvent};

/// Parses a request body holding one JSON event object or an array of them.
///
/// The body is the same whether it was sent as `application/json` or as
/// `text/plain` (`navigator.sendBeacon`). Arrays must hold between 1 and
/// `bounds.max_batch_events` objects; a longer batch is refused while it is
/// parsed, as soon as element `max_batch_events + 1` is read, and no more of
/// the body is kept than validation can use (see `json.rs`). Every event is
/// checked against `bounds`; the first problem found rejects the whole body.
///
/// # Errors
///
/// An [`EventError`] naming the problem and the index of the offending event.
pub fn parse_body(body: &[u8], bounds: &Bounds) -> Result<Vec<IncomingEvent>, EventError> {
    let stop = Stop::default();
    let value =
        parse_event_body(body, bounds.max_batch_events, bounds.max_props, &stop).map_err(|e| {
            if stop.batch_too_large() {
                EventError::BatchTooLarge {
                    max: bounds.max_batch_events,
                }
            } else {
                EventError::MalformedJson(e.to_string())
            }
        })?;
    match value {
        JsonValue::Object(members) => Ok(vec![event_from_members(0, members, bounds)?]),
        JsonValue::Array(items) => {
            if items.is_empty() {
                return Err(EventError::EmptyBatch);
            }
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| match item {
                    JsonValue::Object(members) => event_from_members(index, members, bounds),
                    _ => Err(EventError::NotAnObject { index }),
                })
                .collect()
        }
        _ => Err(EventError::NotObjectOrArray),
    }
}

/// Builds event `index` from the members of its JSON object.
fn event_from_members(
    index: usize,
    members: Vec<(String, JsonValue)>,
    bounds: &Bounds,
) -> Result<IncomingEvent, EventError> {
    let mut draft = Draft::new(index, bounds);
    for (key, value) in members {
        let field = draft.claim(&key)?;
        match (field, value) {
            (Field::Domain, _) => {}
            (Field::Name, JsonValue::String(s)) => draft.set_name(s)?,
            (Field::Url, JsonValue::String(s)) => draft.set_url(s)?,
            (Field::Referrer, JsonValue::String(s)) => draft.set_referrer(s)?,
            (Field::Referrer | Field::Props | Field::ScreenWidth, JsonValue::Null) => {}
            (Field::Props, JsonValue::Object(props)) => draft.set_props(props)?,
            (Field::ScreenWidth, JsonValue::Number(n)) => {
                let width = n
                    .as_u64()
                    .and_then(|w| u32::try_from(w).ok())
                    .ok_or_else(|| not_a_width(&draft))?;
                draft.set_screen_width(width);
            }
            (Field::ScreenWidth, _) => return Err(not_a_width(&draft)),
            (Field::Props, _) => {
                return Err(draft.invalid("props", "must be a JSON object".into()));
            }
            (Field::Name | Field::Url | Field::Referrer, _) => {
                return Err(draft.invalid(field.label(), "must be a string".into()));
            }
        }
    }
    draft.finish()
}

/// The error for a `screen_width` that is not a `u32`.
fn not_a_width(draft: &Draft<'_>) -> EventError {
    draft.invalid("screen_width", "must be a non-negative integer".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Vec<IncomingEvent>, EventError> {
        parse_body(body.as_bytes(), &Bounds::default())
    }

    fn err(body: &str) -> EventError {
        parse(body).unwrap_err()
    }

    /// A valid event object with one extra member spliced in.
    fn with(extra: &str) -> String {
        format!(r#"{{"n":"pageview","u":"https://example.com/"{extra}}}"#)
    }

    #[test]
    fn single_object_with_long_names() {
        let events = parse(
            r#"{"name":"signup","url":"https://example.com/a?x=1","referrer":"https://ref.example/",
                "props":{"plan":"pro"},"screen_width":1280,"domain":"example.com"}"#,
        )
        .unwrap();
        assert_eq!(
            events,
            vec![IncomingEvent {
                name: "signup".into(),
                url: "https://example.com/a?x=1".into(),
                referrer: Some("https://ref.example/".into()),
                props: vec![("plan".into(), "pro".into())],
                screen_width: Some(1280),
                parsed_url: Default::default(),
            }]
        );
    }

    #[test]
    fn short_names_and_batches() {
        let events = parse(
            r#"[{"n":"pageview","u":"http://a.example/","d":"a.example","w":390},
                {"n":"click","u":"https://b.example/x","r":null,"p":null}]"#,
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].screen_width, Some(390));
        assert_eq!(events[1].name, "click");
        assert_eq!(events[1].referrer, None);
        assert!(events[1].props.is_empty());
    }

    #[test]
    fn empty_referrer_is_none() {
        assert_eq!(parse(&with(r#","r":"""#)).unwrap()[0].referrer, None);
    }

    #[test]
    fn malformed_json_reports_position() {
        let e = err(r#"{"n": }"#);
        assert_eq!(e.kind(), "malformed_json");
        let text = e.to_string();
        assert!(text.starts_with("body is not valid JSON: "), "{text}");
        assert!(text.contains("line 1 column 7"), "{text}");
        assert_eq!(err("").kind(), "malformed_json");
        assert_eq!(err("{} trailing").kind(), "malformed_json");
        assert_eq!(
            parse_body(&[0xff, 0xfe], &Bounds::default())
                .unwrap_err()
                .kind(),
            "malformed_json"
        );
    }

    #[test]
    fn top_level_must_be_object_or_array() {
        for body in ["null", "1", "\"x\"", "true"] {
            assert_eq!(err(body), EventError::NotObjectOrArray, "{body}");
        }
        let e = err(&format!("[{}, 5]", with("")));
        assert_eq!(e.to_string(), "event[1]: not a JSON object");
        assert_eq!(e.kind(), "not_an_object");
    }

    #[test]
    fn empty_batch_is_rejected() {
        assert_eq!(err("[]"), EventError::EmptyBatch);
        assert_eq!(err("[]").kind(), "empty_batch");
    }

    #[test]
    fn batch_bound() {
        let batch = |n: usize| format!("[{}]", vec![with(""); n].join(","));
        assert_eq!(parse(&batch(100)).unwrap().len(), 100);
        let e = err(&batch(101));
        assert_eq!(e.kind(), "batch_too_large");
        assert_eq!(e.to_string(), "batch has more than 100 events");
        // Refused while parsing: a huge array of numbers stops at element 101,
        // before the syntax error at its end.
        let numbers = format!("[{}!", vec!["1"; 524_288].join(","));
        assert_eq!(err(&numbers).kind(), "batch_too_large");
    }

    #[test]
    fn unknown_field_is_named_with_index() {
        let e = err(&format!("[{},{}]", with(""), with(r#","foo":1"#)));
        assert_eq!(e.to_string(), "event[1]: unknown field \"foo\"");
        assert_eq!(e.kind(), "unknown_field");
    }

    #[test]
    fn unknown_field_echo_is_truncated_and_escaped() {
        let key = format!("{}\n", "k".repeat(100));
        let e = err(&with(&format!(
            ",{}:1",
            serde_json::to_string(&key).unwrap()
        )));
        let text = e.to_string();
        assert!(!text.contains('\n'));
        assert!(text.len() < 120, "{text}");
    }

    #[test]
    fn required_fields() {
        let e = err(r#"{"u":"https://example.com/"}"#);
        assert_eq!(e.to_string(), "event[0].name: missing");
        assert_eq!(e.kind(), "missing_field");
        let e = err(r#"{"n":"pageview"}"#);
        assert_eq!(e.to_string(), "event[0].url: missing");
        let e = err(r#"{"n":"","u":"https://example.com/"}"#);
        assert_eq!(e.to_string(), "event[0].name: must not be empty");
        assert_eq!(e.kind(), "invalid_field");
    }

    #[test]
    fn wrong_types_are_rejected() {
        let e = err(r#"{"n":1,"u":"https://example.com/"}"#);
        assert_eq!(e.to_string(), "event[0].name: must be a string");
        let e = err(r#"{"n":"x","u":null}"#);
        assert_eq!(e.to_string(), "event[0].url: must be a string");
        let e = err(&with(r#","r":5"#));
        assert_eq!(e.to_string(), "event[0].referrer: must be a string");
        let e = err(&with(r#","p":[1]"#));
        assert_eq!(e.to_string(), "event[0].props: must be a JSON object");
        for w in ["-1", "1.5", "4294967296", "\"1280\""] {
            let e = err(&with(&format!(r#","w":{w}"#)));
            assert_eq!(
                e.to_string(),
                "event[0].screen_width: must be a non-negative integer"
            );
        }
        assert_eq!(
            parse(&with(r#","w":4294967295"#)).unwrap()[0].screen_width,
            Some(u32::MAX)
        );
    }

    #[test]
    fn url_must_be_absolute_http() {
        for url in [
            "/relative",
            "example.com",
            "ftp://example.com/",
            "javascript:alert(1)",
            "https://",
            // An `xn--` label that is not valid punycode is no host.
            "http://xn--.com/",
        ] {
            let e = err(&format!(
                r#"{{"n":"x","u":{}}}"#,
                serde_json::to_string(url).unwrap()
            ));
            assert_eq!(e.kind(), "invalid_field", "{url}");
            assert!(e.to_string().starts_with("event[0].url: "), "{e}");
        }
    }

    #[test]
    fn duplicate_field_is_rejected() {
        let e = err(&with(r#","name":"again""#));
        assert_eq!(e.to_string(), "event[0].name: given more than once");
    }

    #[test]
    fn props_are_stringified_in_order() {
        let events = parse(&with(
            r#","p":{"z":"s","n":42,"f":1.5,"neg":-3,"b":true,"c":false}"#,
        ))
        .unwrap();
        assert_eq!(
            events[0].props,
            vec![
                ("z".to_owned(), "s".to_owned()),
                ("n".to_owned(), "42".to_owned()),
                ("f".to_owned(), "1.5".to_owned()),
                ("neg".to_owned(), "-3".to_owned()),
                ("b".to_owned(), "true".to_owned()),
                ("c".to_owned(), "false".to_owned()),
            ]
        );
    }

    #[test]
    fn floats_keep_their_shortest_form() {
        let events = parse(&with(
            r#","p":{"a":0.1,"b":1463273752.2795217,"c":1e300,"d":2.0}"#,
        ))
        .unwrap();
        let values: Vec<&str> = events[0].props.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["0.1", "1463273752.2795217", "1e+300", "2.0"]);
    }

    #[test]
    fn bad_prop_values_are_rejected() {
        let e = err(&with(r#","p":{"a":null}"#));
        assert_eq!(e.to_string(), r#"event[0].props["a"]: null is not allowed"#);
        assert_eq!(e.kind(), "invalid_field");
        let e = err(&with(r#","p":{"a":[1]}"#));
        assert_eq!(
            e.to_string(),
            r#"event[0].props["a"]: must be a string, number or boolean"#
        );
        let e = err(&with(r#","p":{"a":{"b":1}}"#));
        assert_eq!(e.kind(), "invalid_field");
        let e = err(&with(r#","p":{"a":1,"a":2}"#));
        assert_eq!(
            e.to_string(),
            r#"event[0].props["a"]: given more than once"#
        );
        let e = err(&with(r#","p":{"":1}"#));
        assert_eq!(e.to_string(), "event[0].props: empty property key");
    }

    /// Body with one string field of `len` bytes, built by `make`.
    fn check_bound(max: usize, make: impl Fn(usize) -> String, expected: &str) {
        assert!(parse(&make(max)).is_ok(), "exactly {max} bytes must pass");
        let e = err(&make(max + 1));
        assert_eq!(e.kind(), "too_long");
        assert_eq!(e.to_string(), expected);
    }

    #[test]
    fn name_bound() {
        check_bound(
            120,
            |len| {
                format!(
                    r#"{{"n":"{}","u":"https://example.com/"}}"#,
                    "a".repeat(len)
                )
            },
            "event[0].name: longer than 120 bytes",
        );
    }

    #[test]
    fn name_bound_counts_bytes_not_chars() {
        // 60 two-byte characters = 120 bytes passes; one more byte fails.
        let ok = format!(r#"{{"n":"{}","u":"https://example.com/"}}"#, "é".repeat(60));
        assert!(parse(&ok).is_ok());
        let over = format!(
            r#"{{"n":"{}x","u":"https://example.com/"}}"#,
            "é".repeat(60)
        );
        assert_eq!(err(&over).kind(), "too_long");
    }

    #[test]
    fn url_bound_is_checked_before_parsing() {
        let base = "https://example.com/";
        check_bound(
            2000,
            |len| {
                format!(
                    r#"{{"n":"x","u":"{base}{}"}}"#,
                    "a".repeat(len - base.len())
                )
            },
            "event[0].url: longer than 2000 bytes",
        );
        // An over-long string that is not even a URL reports the length, not the syntax.
        let e = err(&format!(r#"{{"n":"x","u":"{}"}}"#, " ".repeat(2001)));
        assert_eq!(e.kind(), "too_long");
    }

    #[test]
    fn url_bound_reports_batch_index() {
        let long = format!(
            r#"{{"n":"x","u":"https://example.com/{}"}}"#,
            "a".repeat(2000)
        );
        let body = format!("[{0},{0},{0},{long}]", with(""));
        assert_eq!(
            err(&body).to_string(),
            "event[3].url: longer than 2000 bytes"
        );
    }

    #[test]
    fn referrer_bound() {
        check_bound(
            2000,
            |len| with(&format!(r#","r":"{}""#, "r".repeat(len))),
            "event[0].referrer: longer than 2000 bytes",
        );
    }

    #[test]
    fn props_count_bound() {
        let props = |n: usize| {
            let members: Vec<String> = (0..n).map(|i| format!(r#""k{i}":"v""#)).collect();
            with(&format!(r#","p":{{{}}}"#, members.join(",")))
        };
        assert_eq!(parse(&props(30)).unwrap()[0].props.len(), 30);
        let e = err(&props(31));
        assert_eq!(e.kind(), "too_many_props");
        assert_eq!(e.to_string(), "event[0].props: more than 30 properties");
    }

    #[test]
    fn prop_key_bound() {
        check_bound(
            300,
            |len| with(&format!(r#","p":{{"{}":"v"}}"#, "k".repeat(len))),
            "event[0].props: key longer than 300 bytes",
        );
    }

    #[test]
    fn prop_value_bound() {
        check_bound(
            2000,
            |len| with(&format!(r#","p":{{"k":"{}"}}"#, "v".repeat(len))),
            r#"event[0].props["k"]: longer than 2000 bytes"#,
        );
    }

    #[test]
    fn custom_bounds_apply() {
        let bounds = Bounds {
            max_batch_events: 2,
            max_name_bytes: 4,
            ..Bounds::default()
        };
        let three = format!("[{0},{0},{0}]", with(""));
        assert_eq!(
            parse_body(three.as_bytes(), &bounds).unwrap_err().kind(),
            "batch_too_large"
        );
        let e = parse_body(with("").as_bytes(), &bounds).unwrap_err();
        assert_eq!(e.to_string(), "event[0].name: longer than 4 bytes");
    }
}
