//! Field names, per-field checks and bounds shared by the body and query parsers.

use url::Url;

use super::error::{EventError, echo};
use super::json::JsonValue;
use super::{Bounds, IncomingEvent, ParsedUrl};

/// A schema field, whatever name (long or short) it was sent under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    /// `name` / `n`.
    Name,
    /// `url` / `u`.
    Url,
    /// `referrer` / `r`.
    Referrer,
    /// `props` / `p`.
    Props,
    /// `screen_width` / `w`.
    ScreenWidth,
    /// `domain` / `d`: accepted and ignored (the site comes from the config).
    Domain,
}

impl Field {
    /// The field a wire name refers to, if any.
    fn from_key(key: &str) -> Option<Field> {
        Some(match key {
            "name" | "n" => Field::Name,
            "url" | "u" => Field::Url,
            "referrer" | "r" => Field::Referrer,
            "props" | "p" => Field::Props,
            "screen_width" | "w" => Field::ScreenWidth,
            "domain" | "d" => Field::Domain,
            _ => return None,
        })
    }

    /// Canonical (long) name used in error messages.
    pub(super) fn label(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Url => "url",
            Field::Referrer => "referrer",
            Field::Props => "props",
            Field::ScreenWidth => "screen_width",
            Field::Domain => "domain",
        }
    }

    /// Bit used to detect a field sent twice (e.g. as `n` and `name`).
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// An event being assembled from fields, not yet checked for completeness.
#[derive(Debug)]
pub(super) struct Draft<'b> {
    index: usize,
    bounds: &'b Bounds,
    seen: u8,
    name: Option<String>,
    url: Option<String>,
    parsed_url: Option<Url>,
    referrer: Option<String>,
    props: Vec<(String, String)>,
    screen_width: Option<u32>,
}

impl<'b> Draft<'b> {
    /// An empty draft for event `index` of a batch.
    pub(super) fn new(index: usize, bounds: &'b Bounds) -> Self {
        Draft {
            index,
            bounds,
            seen: 0,
            name: None,
            url: None,
            parsed_url: None,
            referrer: None,
            props: Vec::new(),
            screen_width: None,
        }
    }

    /// Resolves a wire name, rejecting unknown and repeated fields.
    pub(super) fn claim(&mut self, key: &str) -> Result<Field, EventError> {
        let field = Field::from_key(key).ok_or_else(|| EventError::UnknownField {
            index: self.index,
            field: echo(key),
        })?;
        if self.seen & field.bit() != 0 {
            return Err(self.invalid(field.label(), "given more than once".into()));
        }
        self.seen |= field.bit();
        Ok(field)
    }

    /// Sets the event name, checking its length.
    pub(super) fn set_name(&mut self, name: String) -> Result<(), EventError> {
        self.check_text(&name, "name", self.bounds.max_name_bytes)?;
        if name.is_empty() {
            return Err(self.invalid("name", "must not be empty".into()));
        }
        self.name = Some(name);
        Ok(())
    }

    /// Sets the page URL: length checked on the raw string, then parsed.
    pub(super) fn set_url(&mut self, url: String) -> Result<(), EventError> {
        // Checked before parsing: the URL parser silently drops tabs and newlines.
        self.check_text(&url, "url", self.bounds.max_url_bytes)?;
        match Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                self.url = Some(url);
                // Kept for enrichment, which would otherwise parse it again.
                self.parsed_url = Some(parsed);
                Ok(())
            }
            Ok(_) => Err(self.invalid("url", "must be an http or https URL".into())),
            Err(e) => Err(self.invalid("url", format!("not an absolute URL: {e}"))),
        }
    }

    /// Sets the referrer; an empty string means no referrer.
    pub(super) fn set_referrer(&mut self, referrer: String) -> Result<(), EventError> {
        self.check_text(&referrer, "referrer", self.bounds.max_referrer_bytes)?;
        self.referrer = (!referrer.is_empty()).then_some(referrer);
        Ok(())
    }

    /// Sets the viewport width.
    pub(super) fn set_screen_width(&mut self, width: u32) {
        self.screen_width = Some(width);
    }

    /// Sets the custom properties from the members of a JSON object.
    pub(super) fn set_props(
        &mut self,
        members: Vec<(String, JsonValue)>,
    ) -> Result<(), EventError> {
        let bounds = self.bounds;
        if members.len() > bounds.max_props {
            return Err(EventError::TooManyProps {
                index: self.index,
                max: bounds.max_props,
            });
        }
        let mut props: Vec<(String, String)> = Vec::with_capacity(members.len());
        for (key, value) in members {
            if key.len() > bounds.max_prop_key_bytes {
                return Err(EventError::PropKeyTooLong {
                    index: self.index,
                    max: bounds.max_prop_key_bytes,
                });
            }
            if key.is_empty() {
                return Err(self.invalid("props", "empty property key".into()));
            }
            let label = prop_label(&key);
            if has_control(&key) {
                return Err(self.control(&label));
            }
            if props.iter().any(|(k, _)| *k == key) {
                return Err(self.invalid(&label, "given more than once".into()));
            }
            let value = match value {
                JsonValue::String(s) => s,
                JsonValue::Number(n) => n.to_string(),
                JsonValue::Bool(b) => b.to_string(),
                JsonValue::Null => {
                    return Err(self.invalid(&label, "null is not allowed".into()));
                }
                JsonValue::Array(_) | JsonValue::Object(_) => {
                    return Err(self.invalid(&label, "must be a string, number or boolean".into()));
                }
            };
            self.check_text(&value, &label, bounds.max_prop_value_bytes)?;
            props.push((key, value));
        }
        self.props = props;
        Ok(())
    }

    /// Checks required fields and returns the event.
    pub(super) fn finish(self) -> Result<IncomingEvent, EventError> {
        let missing = |field| EventError::MissingField {
            index: self.index,
            field,
        };
        let name = self.name.ok_or_else(|| missing("name"))?;
        let url = self.url.ok_or_else(|| missing("url"))?;
        Ok(IncomingEvent {
            name,
            url,
            referrer: self.referrer,
            props: self.props,
            screen_width: self.screen_width,
            parsed_url: self.parsed_url.map(ParsedUrl::new).unwrap_or_default(),
        })
    }

    /// An [`EventError::InvalidField`] for this event.
    pub(super) fn invalid(&self, field: &str, problem: String) -> EventError {
        EventError::InvalidField {
            index: self.index,
            field: field.to_owned(),
            problem,
        }
    }

    /// Rejects `value` if it is longer than `max` bytes or holds a control
    /// character (text reaching the backend must be storable and indexable:
    /// PostgreSQL refuses NUL in text, and control characters have no place
    /// in names, URLs or property values).
    fn check_text(&self, value: &str, field: &str, max: usize) -> Result<(), EventError> {
        if value.len() > max {
            return Err(EventError::TooLong {
                index: self.index,
                field: field.to_owned(),
                max,
            });
        }
        if has_control(value) {
            return Err(self.control(field));
        }
        Ok(())
    }

    /// An [`EventError::ControlCharacter`] for `field` of this event.
    fn control(&self, field: &str) -> EventError {
        EventError::ControlCharacter {
            index: self.index,
            field: field.to_owned(),
        }
    }
}

/// Whether `text` holds a C0 control (including NUL), DEL or a C1 control
/// (Unicode general category Cc).
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// `props["key"]`, with the key quoted and truncated for error messages.
fn prop_label(key: &str) -> String {
    format!("props[{:?}]", echo(key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short_names_map_to_the_same_field() {
        for (long, short) in [
            ("name", "n"),
            ("url", "u"),
            ("referrer", "r"),
            ("props", "p"),
            ("screen_width", "w"),
            ("domain", "d"),
        ] {
            assert_eq!(Field::from_key(long), Field::from_key(short));
            assert_eq!(Field::from_key(long).map(Field::label), Some(long));
        }
        assert_eq!(Field::from_key("Name"), None);
    }

    #[test]
    fn same_field_under_two_names_is_rejected() {
        let bounds = Bounds::default();
        let mut draft = Draft::new(2, &bounds);
        assert_eq!(draft.claim("n"), Ok(Field::Name));
        let err = draft.claim("name").unwrap_err();
        assert_eq!(err.to_string(), "event[2].name: given more than once");
        assert_eq!(err.kind(), "invalid_field");
    }

    #[test]
    fn control_characters_are_refused_in_every_text_field() {
        let bounds = Bounds::default();
        for bad in [
            "evt\u{0}x",
            "a\tb",
            "line\n",
            "del\u{7f}",
            "c1\u{85}",
            "c1\u{9f}",
        ] {
            let mut draft = Draft::new(0, &bounds);
            let e = draft.set_name(bad.into()).unwrap_err();
            assert_eq!(e.kind(), "control_character", "{bad:?}");
            assert_eq!(e.to_string(), "event[0].name: contains a control character");
            let url = format!("https://example.com/{bad}");
            let e = draft.set_url(url).unwrap_err();
            assert_eq!(e.to_string(), "event[0].url: contains a control character");
            let e = draft
                .set_referrer(format!("https://r.example/{bad}"))
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                "event[0].referrer: contains a control character"
            );
            let e = draft
                .set_props(vec![("k".into(), JsonValue::String(bad.into()))])
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                r#"event[0].props["k"]: contains a control character"#
            );
            let e = draft
                .set_props(vec![(bad.into(), JsonValue::Bool(true))])
                .unwrap_err();
            assert_eq!(e.kind(), "control_character");
            assert!(!e.to_string().contains(bad), "escaped: {e}");
        }
        // Other non-ASCII text is fine.
        let mut draft = Draft::new(0, &bounds);
        draft.set_name("café ☕ \u{a0}".into()).unwrap();
    }

    #[test]
    fn missing_fields_are_named() {
        let bounds = Bounds::default();
        let err = Draft::new(0, &bounds).finish().unwrap_err();
        assert_eq!(err.to_string(), "event[0].name: missing");
        let mut draft = Draft::new(1, &bounds);
        draft.set_name("pageview".into()).unwrap();
        let err = draft.finish().unwrap_err();
        assert_eq!(err.to_string(), "event[1].url: missing");
        assert_eq!(err.kind(), "missing_field");
    }
}
