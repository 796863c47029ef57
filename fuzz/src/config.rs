//! The configuration loader (`edge_config::parse_str`, what `load` runs on
//! the file's text).

use std::path::Path;

use edge_config::{non_reloadable_changes, parse_str, validate};

/// Where the fuzzed text pretends to come from (relative paths resolve
/// against its directory; nothing is read from it).
const ORIGIN: &str = "/nonexistent/fuzz/edge.toml";

/// `edge_config::parse_str` on arbitrary UTF-8 (`load` refuses other bytes
/// before parsing): an accepted configuration passes `validate` again, is
/// identical to itself for the reload check and renders redacted; a refused
/// one reports at least one error, each with a line inside the file, and
/// every error renders.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_str(text, Path::new(ORIGIN)) {
        Ok(loaded) => {
            let problems = validate(&loaded.config);
            assert!(
                problems.is_empty(),
                "loaded, yet validate reports {problems:?}"
            );
            let changes = non_reloadable_changes(&loaded.config, &loaded.config);
            assert!(
                changes.is_empty(),
                "a configuration differs from itself: {changes:?}"
            );
            let _ = loaded.config.redacted();
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "refused without an error");
            // A line number may point one past the last line (end of file).
            let lines = text.lines().count() + 1;
            for error in &errors.errors {
                if let Some(line) = error.line {
                    assert!(
                        (1..=lines).contains(&line),
                        "line {line} outside a {lines}-line file: {error}"
                    );
                }
            }
            let _ = errors.to_string();
        }
    }
}
