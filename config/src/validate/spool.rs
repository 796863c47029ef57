//! Rules of the `[spool]` table.

use super::Validator;
use crate::model_spool::{
    SPOOL_COMMIT_DELAY_MIN_APPENDS_RANGE, SPOOL_COMMIT_DELAY_US_RANGE, SPOOL_MAX_BYTES_RANGE,
    SPOOL_PREFILL_BYTES_RANGE, SPOOL_SEGMENT_BYTES_RANGE, Spool,
};

impl Validator {
    pub(super) fn spool(&mut self, spool: &Spool) {
        if let Some(dir) = &spool.dir {
            self.non_empty_path("spool.dir", dir);
        }
        self.range("spool.max_bytes", spool.max_bytes, SPOOL_MAX_BYTES_RANGE);
        self.range(
            "spool.segment_bytes",
            spool.segment_bytes,
            SPOOL_SEGMENT_BYTES_RANGE,
        );
        self.range(
            "spool.prefill_bytes",
            spool.prefill_bytes,
            SPOOL_PREFILL_BYTES_RANGE,
        );
        self.range(
            "spool.commit_delay_us",
            spool.commit_delay_us,
            SPOOL_COMMIT_DELAY_US_RANGE,
        );
        self.range(
            "spool.commit_delay_min_appends",
            spool.commit_delay_min_appends,
            SPOOL_COMMIT_DELAY_MIN_APPENDS_RANGE,
        );
        if SPOOL_MAX_BYTES_RANGE.contains(&spool.max_bytes) && spool.segment_bytes > spool.max_bytes
        {
            self.err(
                "spool.segment_bytes",
                format!(
                    "{} is larger than spool.max_bytes ({})",
                    spool.segment_bytes, spool.max_bytes
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn keys(s: &Spool) -> Vec<String> {
        let mut v = Validator::default();
        v.spool(s);
        v.errors.iter().map(|p| p.error.key.clone()).collect()
    }

    #[test]
    fn every_bad_key_is_reported() {
        assert!(keys(&Spool::default()).is_empty());
        let bad = Spool {
            dir: Some(PathBuf::new()),
            max_bytes: 10,
            segment_bytes: 1,
            prefill_bytes: (64 << 20) + 1,
            commit_delay_us: 100_001,
            commit_delay_min_appends: 0,
            ..Spool::default()
        };
        assert_eq!(
            keys(&bad),
            [
                "spool.dir",
                "spool.max_bytes",
                "spool.segment_bytes",
                "spool.prefill_bytes",
                "spool.commit_delay_us",
                "spool.commit_delay_min_appends"
            ]
        );
        let bigger = Spool {
            max_bytes: 100_000,
            segment_bytes: 200_000,
            ..Spool::default()
        };
        assert_eq!(keys(&bigger), ["spool.segment_bytes"]);
    }
}
