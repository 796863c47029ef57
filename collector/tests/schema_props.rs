//! Property tests for the event schema: the parsers never panic on arbitrary
//! input and accept every generated valid event unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use edge_collector::schema::{Bounds, IncomingEvent, parse_body, parse_query};
use proptest::prelude::*;

/// A custom property value as generated, with its expected string form.
#[derive(Debug, Clone)]
enum PropValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl PropValue {
    fn json(&self) -> String {
        match self {
            PropValue::Str(s) => serde_json::to_string(s).unwrap(),
            PropValue::Int(i) => i.to_string(),
            PropValue::Float(f) => serde_json::to_string(f).unwrap(),
            PropValue::Bool(b) => b.to_string(),
        }
    }

    fn expected(&self) -> String {
        match self {
            PropValue::Str(s) => s.clone(),
            PropValue::Int(i) => i.to_string(),
            PropValue::Float(f) => serde_json::Number::from_f64(*f).unwrap().to_string(),
            PropValue::Bool(b) => b.to_string(),
        }
    }
}

fn prop_value() -> impl Strategy<Value = PropValue> {
    prop_oneof![
        "\\PC{0,100}".prop_map(PropValue::Str),
        any::<i64>().prop_map(PropValue::Int),
        (-1e12f64..1e12).prop_map(PropValue::Float),
        any::<bool>().prop_map(PropValue::Bool),
    ]
}

/// Everything needed to write one valid event as JSON.
#[derive(Debug, Clone)]
struct Generated {
    short_names: bool,
    name: String,
    url: String,
    referrer: Option<String>,
    props: Vec<(String, PropValue)>,
    screen_width: Option<u32>,
    domain: Option<String>,
}

/// An absolute http(s) URL with a valid host. A host label that starts with
/// `xn--` is punycode and valid only if it decodes (`xn--` alone does not),
/// so the generator leaves that prefix out rather than reimplement IDNA.
fn valid_url() -> impl Strategy<Value = String> {
    (
        "https?",
        "[a-z0-9-]{1,20}".prop_filter("an xn-- label must be valid punycode", |label| {
            !label.starts_with("xn--")
        }),
        "\\.(com|org|example)(:[1-9][0-9]{0,3})?(/[a-zA-Z0-9_~.%-]{0,20}){0,5}(\\?[a-z_]{1,8}=[a-z0-9]{0,10})?(#[a-z]{0,5})?",
    )
        .prop_map(|(scheme, label, rest)| format!("{scheme}://{label}{rest}"))
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        any::<bool>(),
        "\\PC{1,30}",
        valid_url(),
        proptest::option::of("\\PC{0,200}"),
        proptest::collection::btree_map("\\PC{1,20}", prop_value(), 0..=30),
        proptest::option::of(any::<u32>()),
        proptest::option::of("[a-z.]{1,30}"),
    )
        .prop_map(
            |(short_names, name, url, referrer, props, screen_width, domain)| Generated {
                short_names,
                name,
                url,
                referrer,
                props: props.into_iter().collect(),
                screen_width,
                domain,
            },
        )
}

impl Generated {
    fn to_json(&self) -> String {
        let key =
            |long: &'static str, short: &'static str| if self.short_names { short } else { long };
        let string = |s: &str| serde_json::to_string(s).unwrap();
        let mut members = vec![
            format!("\"{}\":{}", key("name", "n"), string(&self.name)),
            format!("\"{}\":{}", key("url", "u"), string(&self.url)),
        ];
        if let Some(r) = &self.referrer {
            members.push(format!("\"{}\":{}", key("referrer", "r"), string(r)));
        }
        if !self.props.is_empty() {
            let props: Vec<String> = self
                .props
                .iter()
                .map(|(k, v)| format!("{}:{}", string(k), v.json()))
                .collect();
            members.push(format!("\"{}\":{{{}}}", key("props", "p"), props.join(",")));
        }
        if let Some(w) = self.screen_width {
            members.push(format!("\"{}\":{w}", key("screen_width", "w")));
        }
        if let Some(d) = &self.domain {
            members.push(format!("\"{}\":{}", key("domain", "d"), string(d)));
        }
        format!("{{{}}}", members.join(","))
    }

    fn expected(&self) -> IncomingEvent {
        IncomingEvent {
            name: self.name.clone(),
            url: self.url.clone(),
            referrer: self.referrer.clone().filter(|r| !r.is_empty()),
            props: self
                .props
                .iter()
                .map(|(k, v)| (k.clone(), v.expected()))
                .collect(),
            screen_width: self.screen_width,
            parsed_url: Default::default(),
        }
    }
}

proptest! {
    #[test]
    fn parse_body_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_body(&body, &Bounds::default());
    }

    #[test]
    fn parse_body_never_panics_on_json_like_text(body in "[\\[\\]{}\",:0-9a-z .eE+\\-\\\\é]{0,300}") {
        let _ = parse_body(body.as_bytes(), &Bounds::default());
    }

    #[test]
    fn parse_query_never_panics(query in "[a-z=&%0-9A-F+{}\":]{0,300}") {
        let _ = parse_query(&query, &Bounds::default());
    }

    #[test]
    fn every_valid_event_is_accepted(event in generated()) {
        let parsed = parse_body(event.to_json().as_bytes(), &Bounds::default());
        prop_assert_eq!(parsed, Ok(vec![event.expected()]));
    }

}

proptest! {
    // Batches are costly to generate; fewer cases still cover sizes 1..8.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_valid_batch_is_accepted(events in proptest::collection::vec(generated(), 1..8)) {
        let body = format!(
            "[{}]",
            events.iter().map(Generated::to_json).collect::<Vec<_>>().join(",")
        );
        let expected: Vec<IncomingEvent> = events.iter().map(Generated::expected).collect();
        prop_assert_eq!(parse_body(body.as_bytes(), &Bounds::default()), Ok(expected));
    }
}
