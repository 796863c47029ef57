//! The error returned when an incoming event is rejected.

/// Why an event (or a whole body) was rejected.
///
/// The `Display` text names the problem and, for fields, the event index in
/// the batch (`event[0]` for a single object or a query string), e.g.
/// `event[3].url: longer than 2000 bytes`. Text that came from the client is
/// quoted and truncated so messages stay short and printable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body is not valid JSON; the text includes serde_json's line/column.
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The query string could not be decoded.
    #[error("query string is not valid: {0}")]
    MalformedQuery(String),
    /// The JSON body is neither an object nor an array.
    #[error("body must be a JSON object or an array of objects")]
    NotObjectOrArray,
    /// The JSON body is an empty array.
    #[error("batch is empty")]
    EmptyBatch,
    /// The JSON array has more events than allowed (found while parsing:
    /// the rest of the body is not read).
    #[error("batch has more than {max} events")]
    BatchTooLarge {
        /// The configured maximum.
        max: usize,
    },
    /// An element of the batch is not a JSON object.
    #[error("event[{index}]: not a JSON object")]
    NotAnObject {
        /// Position in the batch.
        index: usize,
    },
    /// A field name that is not part of the schema.
    #[error("event[{index}]: unknown field {field:?}")]
    UnknownField {
        /// Position in the batch.
        index: usize,
        /// The field name as sent (truncated to 64 bytes).
        field: String,
    },
    /// A required field is absent.
    #[error("event[{index}].{field}: missing")]
    MissingField {
        /// Position in the batch.
        index: usize,
        /// Canonical field name.
        field: &'static str,
    },
    /// A field has the wrong type or an unacceptable value.
    #[error("event[{index}].{field}: {problem}")]
    InvalidField {
        /// Position in the batch.
        index: usize,
        /// Canonical field name, or `props["key"]` for a property.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A string is longer than its bound.
    #[error("event[{index}].{field}: longer than {max} bytes")]
    TooLong {
        /// Position in the batch.
        index: usize,
        /// Canonical field name, or `props["key"]` for a property value.
        field: String,
        /// The configured maximum in bytes.
        max: usize,
    },
    /// A property key is longer than its bound.
    #[error("event[{index}].props: key longer than {max} bytes")]
    PropKeyTooLong {
        /// Position in the batch.
        index: usize,
        /// The configured maximum in bytes.
        max: usize,
    },
    /// A text field holds a control character (C0 including NUL, DEL, or C1).
    #[error("event[{index}].{field}: contains a control character")]
    ControlCharacter {
        /// Position in the batch.
        index: usize,
        /// Canonical field name, or `props["key"]` for a property.
        field: String,
    },
    /// More custom properties than allowed.
    #[error("event[{index}].props: more than {max} properties")]
    TooManyProps {
        /// Position in the batch.
        index: usize,
        /// The configured maximum.
        max: usize,
    },
}

impl EventError {
    /// Short fixed label for metrics (`edge_event_rejections_total{reason}`).
    ///
    /// One of `malformed_json`, `malformed_query`, `not_an_object`,
    /// `empty_batch`, `batch_too_large`, `unknown_field`, `missing_field`,
    /// `invalid_field`, `too_long`, `too_many_props`, `control_character`.
    pub fn kind(&self) -> &'static str {
        match self {
            EventError::MalformedJson(_) => "malformed_json",
            EventError::MalformedQuery(_) => "malformed_query",
            EventError::NotObjectOrArray | EventError::NotAnObject { .. } => "not_an_object",
            EventError::EmptyBatch => "empty_batch",
            EventError::BatchTooLarge { .. } => "batch_too_large",
            EventError::UnknownField { .. } => "unknown_field",
            EventError::MissingField { .. } => "missing_field",
            EventError::InvalidField { .. } => "invalid_field",
            EventError::TooLong { .. } | EventError::PropKeyTooLong { .. } => "too_long",
            EventError::TooManyProps { .. } => "too_many_props",
            EventError::ControlCharacter { .. } => "control_character",
        }
    }
}

/// Longest piece of client-sent text echoed back in an error message.
const MAX_ECHO_BYTES: usize = 64;

/// `text` cut to at most [`MAX_ECHO_BYTES`] on a character boundary.
pub(super) fn echo(text: &str) -> String {
    truncate(text, MAX_ECHO_BYTES).to_owned()
}

/// The longest prefix of `text` that is at most `max` bytes and ends on a
/// character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abc", 2), "ab");
        // "é" is two bytes: cutting in its middle backs off.
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
    }

    #[test]
    fn messages_name_field_and_index() {
        let e = EventError::TooLong {
            index: 3,
            field: "url".into(),
            max: 2000,
        };
        assert_eq!(e.to_string(), "event[3].url: longer than 2000 bytes");
        let e = EventError::UnknownField {
            index: 0,
            field: "foo".into(),
        };
        assert_eq!(e.to_string(), "event[0]: unknown field \"foo\"");
        assert_eq!(e.kind(), "unknown_field");
    }
}
