//! A JSON value that keeps object members in document order.
//!
//! `serde_json::Value` stores objects in a sorted map unless the crate-wide
//! `preserve_order` feature is on; properties must keep the order they were
//! sent in, and duplicate keys must be detectable, so objects here are plain
//! vectors of members. Parsing itself is done by serde_json.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

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
    /// An array.
    Array(Vec<JsonValue>),
    /// An object, members in document order.
    Object(Vec<(String, JsonValue)>),
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonValueVisitor)
    }
}

/// Serde visitor building a [`JsonValue`].
struct JsonValueVisitor;

impl<'de> Visitor<'de> for JsonValueVisitor {
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
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, JsonValue>()? {
            members.push(member);
        }
        Ok(JsonValue::Object(members))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_order_and_duplicates() {
        let v: JsonValue = serde_json::from_str(r#"{"z":1,"a":true,"z":null}"#).unwrap();
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
        let v: JsonValue = serde_json::from_str(r#"[-1, 1.5, "s", [], {}]"#).unwrap();
        let JsonValue::Array(items) = v else {
            panic!("not an array")
        };
        assert_eq!(items.len(), 5);
        assert_eq!(items[0], JsonValue::Number((-1).into()));
        assert_eq!(items[2], JsonValue::String("s".into()));
        assert_eq!(items[4], JsonValue::Object(vec![]));
    }

    #[test]
    fn syntax_errors_carry_position() {
        let e = serde_json::from_str::<JsonValue>("{\"a\": }").unwrap_err();
        assert!(e.to_string().contains("line 1 column 7"), "{e}");
    }
}
