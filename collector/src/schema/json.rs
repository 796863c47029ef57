//! A JSON value that keeps object members in document order, parsed with
//! bounds on how much of it is kept.
//!
//! `serde_json::Value` stores objects in a sorted map unless the crate-wide
//! `preserve_order` feature is on; properties must keep the order they were
//! sent in, and duplicate keys must be detectable, so objects here are plain
//! vectors of members. Parsing itself is done by serde_json.
//!
//! An event body is parsed with [`parse_event_body`], which never holds more
//! than the schema can use: a batch stops at `max_batch_events + 1` elements
//! (the error is returned while parsing, not after), an object keeps at most
//! one member more than it may have (the extra one makes validation fail),
//! and containers where the schema allows only scalars (inside a property
//! value, or an array where an event must be) are checked for syntax and
//! dropped, leaving an empty marker. So a 1 MiB body of tiny values costs a
//! bounded number of `JsonValue`s, not one per value.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value with ordered, possibly duplicated object members.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum JsonValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// Any JSON number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array (empty when its content was dropped, see the module doc).
    Array(Vec<JsonValue>),
    /// An object, members in document order.
    Object(Vec<(String, JsonValue)>),
}

/// Most members an event object can have: its six distinct fields. One more
/// is kept so that validation sees a duplicate or unknown field.
const EVENT_FIELDS: usize = 6;

/// Where in an event body a value sits; decides what of it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The whole body: one event object, or a batch (array of event objects).
    Body,
    /// An element of a batch: must be an event object.
    Element,
    /// The value of an event field: a scalar, or the `props` object.
    Field,
    /// The value of a property: scalars only.
    Prop,
}

/// Why parsing stopped early (reported through serde as a custom error).
#[derive(Debug, Default)]
pub(super) struct Stop {
    batch_too_large: Cell<bool>,
}

impl Stop {
    /// Whether the batch bound stopped the parse.
    pub(super) fn batch_too_large(&self) -> bool {
        self.batch_too_large.get()
    }
}

/// A serde seed producing a [`JsonValue`] bounded for its [`Role`].
#[derive(Clone, Copy)]
pub(super) struct Bounded<'a> {
    role: Role,
    max_batch: usize,
    max_props: usize,
    stop: &'a Stop,
}

impl<'a> Bounded<'a> {
    /// A seed for a value in `role`.
    pub(super) fn new(role: Role, max_batch: usize, max_props: usize, stop: &'a Stop) -> Self {
        Bounded {
            role,
            max_batch,
            max_props,
            stop,
        }
    }

    fn with_role(self, role: Role) -> Self {
        Bounded { role, ..self }
    }

    /// The role of the members of an object in this role, and how many are kept.
    fn object_members(self) -> Option<(Role, usize)> {
        match self.role {
            Role::Body | Role::Element => Some((Role::Field, EVENT_FIELDS + 1)),
            Role::Field => Some((Role::Prop, self.max_props.saturating_add(1))),
            Role::Prop => None,
        }
    }
}

/// Parses a whole event body (see the module doc for what is kept).
///
/// # Errors
///
/// serde_json's error; when `stop.batch_too_large()` is set afterwards, the
/// parse stopped because the batch had more than `max_batch` events.
pub(super) fn parse_event_body(
    body: &[u8],
    max_batch: usize,
    max_props: usize,
    stop: &Stop,
) -> Result<JsonValue, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Bounded::new(Role::Body, max_batch, max_props, stop).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses a `props` value sent as JSON text (the pixel's `p` parameter).
///
/// # Errors
///
/// serde_json's error.
pub(super) fn parse_props(text: &str, max_props: usize) -> Result<JsonValue, serde_json::Error> {
    let stop = Stop::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Bounded::new(Role::Field, 0, max_props, &stop).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = JsonValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<JsonValue, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsonValue, E> {
        Ok(JsonValue::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<JsonValue, E> {
        serde_json::Number::from_f64(v)
            .map(JsonValue::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v))
    }

    fn visit_unit<E>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_none<E>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        if self.role != Role::Body {
            // No array is valid below the top: check its syntax, keep nothing.
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(JsonValue::Array(Vec::new()));
        }
        let element = self.with_role(Role::Element);
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(element)? {
            if items.len() == self.max_batch {
                self.stop.batch_too_large.set(true);
                return Err(serde::de::Error::custom("batch too large"));
            }
            items.push(item);
        }
        Ok(JsonValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        let Some((role, keep)) = self.object_members() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(JsonValue::Object(Vec::new()));
        };
        let value = self.with_role(role);
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.len() < keep {
                members.push((key, map.next_value_seed(value)?));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(JsonValue::Object(members))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JsonValue, serde_json::Error> {
        parse_event_body(text.as_bytes(), 100, 30, &Stop::default())
    }

    #[test]
    fn objects_keep_order_and_duplicates() {
        let v = parse(r#"{"z":1,"a":true,"z":null}"#).unwrap();
        assert_eq!(
            v,
            JsonValue::Object(vec![
                ("z".into(), JsonValue::Number(1.into())),
                ("a".into(), JsonValue::Bool(true)),
                ("z".into(), JsonValue::Null),
            ])
        );
    }

    #[test]
    fn scalars_and_arrays() {
        let v = parse(r#"[-1, 1.5, "s", [7], {}]"#).unwrap();
        let JsonValue::Array(items) = v else {
            panic!("not an array")
        };
        assert_eq!(items.len(), 5);
        assert_eq!(items[0], JsonValue::Number((-1).into()));
        assert_eq!(items[2], JsonValue::String("s".into()));
        // An array where an event must be: syntax checked, content dropped.
        assert_eq!(items[3], JsonValue::Array(vec![]));
        assert_eq!(items[4], JsonValue::Object(vec![]));
    }

    #[test]
    fn syntax_errors_carry_position() {
        let e = parse("{\"a\": }").unwrap_err();
        assert!(e.to_string().contains("line 1 column 7"), "{e}");
        assert!(
            parse(r#"{"p":{"a":[1,]}}"#).is_err(),
            "dropped content is still checked"
        );
        assert!(parse("{} x").is_err(), "trailing characters");
    }

    #[test]
    fn a_batch_stops_at_one_more_than_the_bound() {
        let stop = Stop::default();
        // The syntax error after element 3 is never reached.
        let e = parse_event_body(b"[1,2,3,4,!", 2, 30, &stop).unwrap_err();
        assert!(stop.batch_too_large(), "{e}");
        let stop = Stop::default();
        assert!(parse_event_body(b"[1,2]", 2, 30, &stop).is_ok());
        assert!(!stop.batch_too_large());
    }

    #[test]
    fn objects_keep_one_member_more_than_they_may_have() {
        let many: Vec<String> = (0..1000).map(|i| format!("\"k{i}\":{i}")).collect();
        let v = parse(&format!("{{{}}}", many.join(","))).unwrap();
        let JsonValue::Object(members) = v else {
            panic!("not an object")
        };
        assert_eq!(members.len(), EVENT_FIELDS + 1);
        let v = parse(&format!(r#"{{"p":{{{}}}}}"#, many.join(","))).unwrap();
        let JsonValue::Object(members) = v else {
            panic!("not an object")
        };
        let JsonValue::Object(props) = &members[0].1 else {
            panic!("props not an object")
        };
        assert_eq!(props.len(), 31);
        // Below a property nothing but scalars is kept.
        let v = parse(r#"{"p":{"a":{"b":[1,2,3]}}}"#).unwrap();
        assert_eq!(
            v,
            JsonValue::Object(vec![(
                "p".into(),
                JsonValue::Object(vec![("a".into(), JsonValue::Object(vec![]))])
            )])
        );
        assert_eq!(
            parse_props(r#"{"a":1}"#, 30).unwrap(),
            JsonValue::Object(vec![("a".into(), JsonValue::Number(1.into()))])
        );
    }
}
