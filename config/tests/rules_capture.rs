//! Validation rules of `[capture]`; each error names its line and key, the
//! file path resolves like the others, and the table survives a round trip.
#![allow(clippy::unwrap_used)]
mod common;
use std::path::Path;

use common::*;
use edge_config::non_reloadable_changes;

#[test]
fn absent_table_means_no_capture() {
    assert_eq!(valid(&http_only("")).config.capture, None);
}

#[test]
fn keys_load_with_defaults_and_relative_files_resolve_against_the_config_dir() {
    let c = valid(&http_only("[capture]\nfile = \"capture/traffic.ndjson\"\n"))
        .config
        .capture
        .unwrap();
    assert_eq!(c.file, Path::new("/etc/edge/capture/traffic.ndjson"));
    assert_eq!(c.sample_rate, 0.01);
    assert_eq!(c.max_file_bytes, 104_857_600);
    assert_eq!(c.max_files, 5);
    assert!(c.include_user_agent);

    let text = http_only(
        "[capture]\nfile = \"/var/lib/edge/t.ndjson\"\nsample_rate = 1.0\n\
         max_file_bytes = 1048576\nmax_files = 2\ninclude_user_agent = false\n",
    );
    let config = valid(&text).config;
    let c = config.capture.clone().unwrap();
    assert_eq!(c.file, Path::new("/var/lib/edge/t.ndjson"));
    assert_eq!(c.sample_rate, 1.0);
    assert_eq!(c.max_file_bytes, 1_048_576);
    assert_eq!(c.max_files, 2);
    assert!(!c.include_user_agent);
    let again = toml::to_string(&config).unwrap();
    assert_eq!(valid(&again).config.capture, config.capture);
}

#[test]
fn out_of_range_values_are_refused_on_their_lines() {
    for (value, message) in [
        (
            "0",
            "0 is out of range, expected a fraction with 0 < sample_rate <= 1",
        ),
        (
            "1.5",
            "1.5 is out of range, expected a fraction with 0 < sample_rate <= 1",
        ),
        (
            "-0.1",
            "-0.1 is out of range, expected a fraction with 0 < sample_rate <= 1",
        ),
    ] {
        let text = http_only(&format!(
            "[capture]\nfile = \"t.ndjson\"\nsample_rate = {value}\n"
        ));
        assert_single(&text, "sample_rate", "capture.sample_rate", message);
    }
    let text = http_only("[capture]\nfile = \"t.ndjson\"\nmax_file_bytes = 100\n");
    assert_single(
        &text,
        "max_file_bytes",
        "capture.max_file_bytes",
        "100 is out of range, expected 4096..=1099511627776",
    );
    let text = http_only("[capture]\nfile = \"t.ndjson\"\nmax_files = 0\n");
    assert_single(
        &text,
        "max_files",
        "capture.max_files",
        "0 is out of range, expected 1..=1000",
    );
    let text = http_only("[capture]\nfile = \"\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "capture.file");
    assert_eq!(errs[0].line, Some(line_of(&text, "file = \"\"")));
}

#[test]
fn missing_file_and_unknown_keys_are_refused() {
    let text = http_only("[capture]\nsample_rate = 0.5\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("file"), "{errs:?}");
    let text = http_only("[capture]\nfile = \"t.ndjson\"\nkeep_ips = true\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(line_of(&text, "keep_ips")));
    assert!(errs[0].message.contains("unknown field"), "{errs:?}");
}

#[test]
fn capture_is_reloadable() {
    let before = valid(&http_only("")).config;
    let after = valid(&http_only(
        "[capture]\nfile = \"t.ndjson\"\nsample_rate = 0.5\n",
    ))
    .config;
    assert!(non_reloadable_changes(&before, &after).is_empty());
    assert!(non_reloadable_changes(&after, &before).is_empty());
}
