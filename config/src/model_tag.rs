//! The `[tag]` table: how the tracker script (`GET /js/script.js`) is served.
//!
//! Every key is reloadable. The defaults and accepted ranges of this table
//! live here, next to the table, rather than in [`crate::defaults`].

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// Prefix of a SHA-384 Subresource Integrity value.
pub const SRI_SHA384_PREFIX: &str = "sha384-";

/// Accepted range for `tag.cache_max_age_seconds` (up to one year).
pub const TAG_CACHE_MAX_AGE_SECONDS_RANGE: RangeInclusive<u32> = 0..=31_536_000;
/// Accepted range for `tag.stale_while_revalidate_seconds` (up to one year).
pub const TAG_STALE_WHILE_REVALIDATE_SECONDS_RANGE: RangeInclusive<u32> = 0..=31_536_000;

/// Default `tag.cache_max_age_seconds`: one hour.
pub fn tag_cache_max_age_seconds() -> u32 {
    3_600
}

/// Default `tag.stale_while_revalidate_seconds`: one day.
pub fn tag_stale_while_revalidate_seconds() -> u32 {
    86_400
}

/// Serving of the tracker script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    /// The SHA-384 SRI value (`"sha384-<base64>"`) the embedded tracker must
    /// have. When set and the tracker's hash differs, the edge refuses to
    /// serve it (503) and raises `edge_tag_integrity_mismatch`. Absent = not
    /// pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sri: Option<String>,
    /// `Cache-Control: max-age` of the tracker, in seconds.
    #[serde(default = "tag_cache_max_age_seconds")]
    pub cache_max_age_seconds: u32,
    /// `Cache-Control: stale-while-revalidate` of the tracker, in seconds
    /// (0 = the directive is left out).
    #[serde(default = "tag_stale_while_revalidate_seconds")]
    pub stale_while_revalidate_seconds: u32,
}

impl Default for Tag {
    fn default() -> Self {
        Self {
            expected_sri: None,
            cache_max_age_seconds: tag_cache_max_age_seconds(),
            stale_while_revalidate_seconds: tag_stale_while_revalidate_seconds(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_an_empty_table_and_unknown_keys_are_refused() {
        let tag: Tag = toml::from_str("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tag, Tag::default());
        assert_eq!(tag.cache_max_age_seconds, 3_600);
        assert_eq!(tag.stale_while_revalidate_seconds, 86_400);
        assert!(toml::from_str::<Tag>("expected_hash = \"x\"").is_err());
    }
}
