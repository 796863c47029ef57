//! Validation rules of `[tag]`; each error names its line and key, and the
//! table survives a TOML round trip.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

const GOOD_SRI: &str = "sha384-e+9t3jvFF+cv5q6xVujkYlBpgYldaT3utyvKObUOeoFfDMGqoPXEOfCb1obVPJ5o";

#[test]
fn absent_table_means_unpinned_with_default_caching() {
    let tag = valid(&http_only("")).config.tag;
    assert_eq!(tag.expected_sri, None);
    assert_eq!(tag.cache_max_age_seconds, 3_600);
    assert_eq!(tag.stale_while_revalidate_seconds, 86_400);
}

#[test]
fn pin_and_cache_keys_load_and_round_trip() {
    let text = http_only(&format!(
        "[tag]\nexpected_sri = \"{GOOD_SRI}\"\ncache_max_age_seconds = 600\nstale_while_revalidate_seconds = 0\n"
    ));
    let config = valid(&text).config;
    assert_eq!(config.tag.expected_sri.as_deref(), Some(GOOD_SRI));
    assert_eq!(config.tag.cache_max_age_seconds, 600);
    assert_eq!(config.tag.stale_while_revalidate_seconds, 0);
    let again = toml::to_string(&config).unwrap();
    assert_eq!(valid(&again).config.tag, config.tag);
}

#[test]
fn a_pin_that_is_not_a_sha384_sri_value_is_refused_on_its_line() {
    let text = http_only(
        "[tag]\ncache_max_age_seconds = 60\nexpected_sri = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "tag.expected_sri");
    assert_eq!(errs[0].line, Some(line_of(&text, "expected_sri")));
    assert!(
        errs[0].message.contains("not a SHA-384 SRI value"),
        "{errs:?}"
    );

    let text = http_only("[tag]\nexpected_sri = \"sha384-AAAA\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("decodes to 3 bytes"), "{errs:?}");
}

#[test]
fn cache_ages_are_range_checked_and_unknown_keys_refused() {
    let text = http_only("[tag]\ncache_max_age_seconds = 99999999\n");
    assert_single(
        &text,
        "cache_max_age_seconds",
        "tag.cache_max_age_seconds",
        "99999999 is out of range, expected 0..=31536000",
    );
    let text = http_only("[tag]\npinned = true\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(line_of(&text, "pinned")));
    assert!(errs[0].message.contains("unknown field"), "{errs:?}");
}
