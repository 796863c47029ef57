//! The `[spool]` table: the durable local spool every accepted event is
//! written to (and fsync'd) before the edge answers 2xx.
//!
//! The defaults and accepted ranges of this table live here, next to the
//! table. `max_bytes`, `min_free_disk_bytes` and the group-commit delay
//! (`commit_delay_us`, `commit_delay_min_appends`) are reloadable; `dir`,
//! `fsync`, `segment_bytes` and `prefill_bytes` need a restart (see
//! [`crate::diff`]).

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Accepted range for `spool.max_bytes` (64 KiB to 16 TiB).
pub const SPOOL_MAX_BYTES_RANGE: RangeInclusive<u64> = 65_536..=(1 << 44);
/// Accepted range for `spool.segment_bytes` (4 KiB to 1 GiB).
pub const SPOOL_SEGMENT_BYTES_RANGE: RangeInclusive<u64> = 4_096..=(1 << 30);

/// Accepted range for `spool.prefill_bytes` (0 = off, up to 64 MiB).
pub const SPOOL_PREFILL_BYTES_RANGE: RangeInclusive<u64> = 0..=(64 << 20);

/// Accepted range for `spool.commit_delay_us` (0 = never wait, up to 100 ms).
pub const SPOOL_COMMIT_DELAY_US_RANGE: RangeInclusive<u64> = 0..=100_000;
/// Accepted range for `spool.commit_delay_min_appends`.
pub const SPOOL_COMMIT_DELAY_MIN_APPENDS_RANGE: RangeInclusive<u64> = 1..=100_000;

/// Default `spool.commit_delay_us`: 1 ms (BENCHMARKS.md, issue 15: at
/// saturation on one core, 0.7x the CPU per event of committing at once).
pub fn spool_commit_delay_us() -> u64 {
    1_000
}

/// Default `spool.commit_delay_min_appends`: 4.
pub fn spool_commit_delay_min_appends() -> u64 {
    4
}

/// Default `spool.max_bytes`: 1 GiB.
pub fn spool_max_bytes() -> u64 {
    1 << 30
}

/// Default `spool.min_free_disk_bytes`: 256 MiB.
pub fn spool_min_free_disk_bytes() -> u64 {
    256 << 20
}

/// Default `spool.segment_bytes`: 16 MiB.
pub fn spool_segment_bytes() -> u64 {
    16 << 20
}

/// Default `spool.prefill_bytes`: 1 MiB (BENCHMARKS.md, issue 15: half the
/// kernel time and latency of a commit's `fdatasync` on ext4).
pub fn spool_prefill_bytes() -> u64 {
    1 << 20
}

/// When appended records are synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFsync {
    /// Every commit group is `fdatasync`'d before its requests are answered
    /// (group commit: concurrent requests share one sync). Nothing answered
    /// 2xx is lost on a crash or power cut.
    #[default]
    Always,
}

impl SpoolFsync {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
        }
    }
}

/// The durable spool's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spool {
    /// Directory of the segment files (created 0700). Absent = `data_dir/spool`.
    /// Relative paths resolve against the configuration file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Most bytes the spool keeps on disk; when reached, event requests get
    /// 503 with `Retry-After` until the shipper has delivered some.
    #[serde(default = "spool_max_bytes")]
    pub max_bytes: u64,
    /// Event requests get 503 when the spool's file system would keep less
    /// free space than this.
    #[serde(default = "spool_min_free_disk_bytes")]
    pub min_free_disk_bytes: u64,
    /// Sync policy; only `always` exists.
    #[serde(default)]
    pub fsync: SpoolFsync,
    /// Size at which a new segment file is started; a segment is deleted once
    /// every record in it reached the broker.
    #[serde(default = "spool_segment_bytes")]
    pub segment_bytes: u64,
    /// Bytes of zeros the spool writer keeps written and synced ahead of the
    /// records in the active segment, between commits, so that a commit's
    /// `fdatasync` flushes data only and not a new file size. `0` turns it
    /// off (for copy-on-write file systems, where it does not help).
    #[serde(default = "spool_prefill_bytes")]
    pub prefill_bytes: u64,
    /// Group commit under load: after a commit that served at least
    /// `commit_delay_min_appends` event requests, the spool writer waits this
    /// many microseconds before the next commit, so one `fdatasync` serves
    /// more requests. `0` commits at once, always.
    #[serde(default = "spool_commit_delay_us")]
    pub commit_delay_us: u64,
    /// The smallest commit (in event requests) after which the writer waits
    /// `commit_delay_us`; smaller commits, as on a quiet edge, never wait.
    #[serde(default = "spool_commit_delay_min_appends")]
    pub commit_delay_min_appends: u64,
}

impl Default for Spool {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: spool_max_bytes(),
            min_free_disk_bytes: spool_min_free_disk_bytes(),
            fsync: SpoolFsync::Always,
            segment_bytes: spool_segment_bytes(),
            prefill_bytes: spool_prefill_bytes(),
            commit_delay_us: spool_commit_delay_us(),
            commit_delay_min_appends: spool_commit_delay_min_appends(),
        }
    }
}

impl Spool {
    /// The directory in use: `dir`, or `data_dir/spool`.
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("spool"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_unknown_keys_are_refused() {
        let s: Spool = toml::from_str("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, Spool::default());
        assert_eq!(s.max_bytes, 1_073_741_824);
        assert_eq!(s.segment_bytes, 16_777_216);
        assert_eq!(s.prefill_bytes, 1_048_576);
        assert_eq!(s.dir_in(Path::new("/d")), PathBuf::from("/d/spool"));
        let s: Spool =
            toml::from_str("dir = \"/s\"\nfsync = \"always\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.dir_in(Path::new("/d")), PathBuf::from("/s"));
        assert!(toml::from_str::<Spool>("fsync = \"never\"").is_err());
        assert!(toml::from_str::<Spool>("max_size = 1").is_err());
    }
}
