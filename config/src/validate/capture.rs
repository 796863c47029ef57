//! Rules of the `[capture]` table.

use super::Validator;
use crate::model_capture::{CAPTURE_MAX_FILE_BYTES_RANGE, CAPTURE_MAX_FILES_RANGE, Capture};

impl Validator {
    pub(super) fn capture(&mut self, capture: &Capture) {
        self.non_empty_path("capture.file", &capture.file);
        if !capture.file.as_os_str().is_empty() && capture.file.file_name().is_none() {
            self.err(
                "capture.file",
                format!("{} does not name a file", capture.file.display()),
            );
        }
        let rate = capture.sample_rate;
        if !(rate.is_finite() && rate > 0.0 && rate <= 1.0) {
            self.err(
                "capture.sample_rate",
                format!("{rate} is out of range, expected a fraction with 0 < sample_rate <= 1"),
            );
        }
        self.range(
            "capture.max_file_bytes",
            capture.max_file_bytes,
            CAPTURE_MAX_FILE_BYTES_RANGE,
        );
        self.range(
            "capture.max_files",
            capture.max_files,
            CAPTURE_MAX_FILES_RANGE,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn keys(c: &Capture) -> Vec<String> {
        let mut v = Validator::default();
        v.capture(c);
        v.errors.iter().map(|p| p.error.key.clone()).collect()
    }

    #[test]
    fn every_bad_key_is_reported() {
        assert!(keys(&Capture::new(PathBuf::from("/var/log/edge/t.ndjson"))).is_empty());
        let bad = Capture {
            file: PathBuf::from("/"),
            sample_rate: 0.0,
            max_file_bytes: 10,
            max_files: 0,
            include_user_agent: false,
        };
        assert_eq!(
            keys(&bad),
            [
                "capture.file",
                "capture.sample_rate",
                "capture.max_file_bytes",
                "capture.max_files"
            ]
        );
        for rate in [f64::NAN, -0.5, 1.5, f64::INFINITY] {
            let c = Capture {
                sample_rate: rate,
                ..Capture::new(PathBuf::from("t"))
            };
            assert_eq!(keys(&c), ["capture.sample_rate"], "{rate}");
        }
    }
}
