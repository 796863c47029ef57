//! Whether a run passed: the exit status. A run fails when no request got a
//! 2xx answer, or when connect/TLS/I/O errors and timeouts exceed
//! `--max-error-rate` of the requests sent.

use serde::Serialize;

/// Exit status of a run that finished but failed its checks (setup errors exit 1).
pub const FAILED_EXIT_CODE: u8 = 2;

/// The checks of one run; `--json` prints it as `verdict`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// True when every check passed.
    pub passed: bool,
    /// One sentence per failed check.
    pub failures: Vec<String>,
    /// (errors + timeouts) / sent; 0 when nothing was sent.
    pub error_rate: f64,
    /// The `--max-error-rate` applied.
    pub max_error_rate: f64,
}

impl Default for Verdict {
    fn default() -> Self {
        judge(0, 0, 0, 0.01)
    }
}

/// Judges a run: `failed` = errors + timeouts, out of `sent`.
pub fn judge(sent: u64, s2xx: u64, failed: u64, max_error_rate: f64) -> Verdict {
    let error_rate = if sent == 0 {
        0.0
    } else {
        failed as f64 / sent as f64
    };
    let mut failures = Vec::new();
    if sent == 0 {
        failures.push("no request was sent".to_owned());
    } else if s2xx == 0 {
        failures.push(format!(
            "no request succeeded: none of the {sent} requests got a 2xx answer"
        ));
    }
    if error_rate > max_error_rate {
        failures.push(format!(
            "errors and timeouts were {:.1} % of the requests ({failed} of {sent}), over --max-error-rate {:.1} %",
            error_rate * 100.0,
            max_error_rate * 100.0
        ));
    }
    Verdict {
        passed: failures.is_empty(),
        failures,
        error_rate,
        max_error_rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_with_answers_and_few_errors_passes() {
        let v = judge(1000, 990, 10, 0.01);
        assert!(v.passed, "{v:?}");
        assert_eq!(v.error_rate, 0.01);
        // Non-2xx answers are not errors: 10 % 4xx still passes.
        assert!(judge(100, 90, 0, 0.01).passed);
    }

    #[test]
    fn no_2xx_fails_even_without_errors() {
        let v = judge(200, 0, 0, 0.01);
        assert!(!v.passed);
        assert!(v.failures[0].contains("no request succeeded"), "{v:?}");
    }

    #[test]
    fn too_many_errors_fail() {
        let v = judge(8898, 0, 8898, 0.01);
        assert_eq!(v.failures.len(), 2, "{v:?}");
        assert!(v.failures[1].contains("100.0 %"), "{v:?}");
        let v = judge(100, 98, 2, 0.01);
        assert!(!v.passed);
        assert!(judge(100, 98, 2, 0.05).passed);
        assert!(!judge(0, 0, 0, 0.01).passed, "nothing sent");
    }
}
