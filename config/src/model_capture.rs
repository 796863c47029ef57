//! The `[capture]` table: a sampled, anonymised traffic log of event requests.
//!
//! The edge writes one NDJSON record per sampled event request in the format
//! `edge-loadtest replay` reads (see `loadtest/README.md`), so production
//! traffic can be replayed later. Absent table = no capture. Every key is
//! reloadable. The defaults and accepted ranges of this table live here,
//! next to the table, rather than in [`crate::defaults`].
//!
//! What is written is anonymised by the edge (pseudonymous client address,
//! a short header allow-list, URLs without query strings); see
//! `docs/config.md` for the exact rules.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Accepted range for `capture.max_file_bytes` (4 KiB to 1 TiB).
pub const CAPTURE_MAX_FILE_BYTES_RANGE: RangeInclusive<u64> = 4_096..=(1 << 40);
/// Accepted range for `capture.max_files`.
pub const CAPTURE_MAX_FILES_RANGE: RangeInclusive<u32> = 1..=1_000;

/// Default `capture.sample_rate`: one event request in a hundred.
pub fn capture_sample_rate() -> f64 {
    0.01
}

/// Default `capture.max_file_bytes`: 100 MiB.
pub fn capture_max_file_bytes() -> u64 {
    100 * 1024 * 1024
}

/// Default `capture.max_files`: five rotated files are kept.
pub fn capture_max_files() -> u32 {
    5
}

/// Default `capture.include_user_agent`: true.
pub fn capture_include_user_agent() -> bool {
    true
}

/// The traffic capture settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    /// The NDJSON file written (mode 0600; a missing directory is created
    /// with mode 0700). Relative paths resolve against the configuration
    /// file's directory.
    pub file: PathBuf,
    /// Fraction of event requests captured, `0 < f ≤ 1`, decided per request.
    #[serde(default = "capture_sample_rate")]
    pub sample_rate: f64,
    /// Size at which the file is rotated: `file` → `file.1` → … → `file.N`.
    #[serde(default = "capture_max_file_bytes")]
    pub max_file_bytes: u64,
    /// How many rotated files (`file.1` … `file.N`) are kept besides `file`.
    #[serde(default = "capture_max_files")]
    pub max_files: u32,
    /// Whether the `user-agent` header is recorded.
    #[serde(default = "capture_include_user_agent")]
    pub include_user_agent: bool,
}

impl Capture {
    /// A capture of `file` with every other key at its default.
    pub fn new(file: PathBuf) -> Self {
        Self {
            file,
            sample_rate: capture_sample_rate(),
            max_file_bytes: capture_max_file_bytes(),
            max_files: capture_max_files(),
            include_user_agent: capture_include_user_agent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_unknown_keys_are_refused() {
        let c: Capture = toml::from_str("file = \"t.ndjson\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c, Capture::new(PathBuf::from("t.ndjson")));
        assert_eq!(c.sample_rate, 0.01);
        assert_eq!(c.max_file_bytes, 104_857_600);
        assert_eq!(c.max_files, 5);
        assert!(c.include_user_agent);
        assert!(toml::from_str::<Capture>("").is_err(), "file is required");
        assert!(toml::from_str::<Capture>("file = \"x\"\nkeep_ips = true").is_err());
    }
}
