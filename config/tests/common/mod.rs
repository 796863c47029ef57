//! Helpers shared by the validation-rule test files.
#![allow(dead_code)]

use std::path::Path;

use edge_config::{ConfigError, LoadedConfig, parse_str};

pub const KEY_ID: &str = "1bf54b4d765f4db4";
pub const PUBLIC_KEY: &str = "Fswmsl9cVJDqZ2A8WRNKQGGrxuDFpocFNH1/J+67LDc=";
pub const OTHER_KEY_ID: &str = "cf29db6249ef6e86";
pub const OTHER_PUBLIC_KEY: &str = "ywyQB0o+/N/ASt0ZThPS1RkFqkxX9UyLc0EP4h1TfBQ=";

pub const ORIGIN: &str = "/etc/edge/edge.toml";

/// A valid file (HTTP only, one site, one key) followed by `extra`.
pub fn with(extra: &str) -> String {
    format!(
        "[[sites]]\nid = \"base\"\ndomains = [\"base.example.com\"]\n\n\
         [encryption]\nactive_key_id = \"{KEY_ID}\"\n\n\
         [[encryption.backend_keys]]\nid = \"{KEY_ID}\"\npublic_key = \"{PUBLIC_KEY}\"\n\n\
         {extra}"
    )
}

/// [`with`], with the HTTPS listener disabled unless `extra` sets it.
pub fn http_only(extra: &str) -> String {
    if extra.contains("[listeners]") {
        with(extra)
    } else {
        with(&format!(
            "[listeners]\nhttps = \"\"\nplain_http = \"events\"\n\n{extra}"
        ))
    }
}

pub fn errors(text: &str) -> Vec<ConfigError> {
    match parse_str(text, Path::new(ORIGIN)) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, Path::new(ORIGIN));
            e.errors
        }
    }
}

pub fn valid(text: &str) -> LoadedConfig {
    parse_str(text, Path::new(ORIGIN)).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

/// 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

/// 1-based line of the last line of `text` containing `needle`.
pub fn last_line_of(text: &str, needle: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .rposition(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

/// Asserts `text` has exactly one error, on the line containing `needle`.
pub fn assert_single(text: &str, needle: &str, key: &str, message: &str) {
    let errs = errors(text);
    assert_eq!(
        errs,
        vec![ConfigError {
            line: Some(line_of(text, needle)),
            key: key.to_owned(),
            message: message.to_owned(),
        }],
        "\n---\n{text}"
    );
}
