//! The process's open-file limit (`RLIMIT_NOFILE`).
//!
//! [`raise`] lifts the soft limit to the hard limit once at start (a
//! default systemd unit gives 1,024 soft); [`open_files_limit`] is what the
//! automatic connection caps are sized from.

use std::sync::OnceLock;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::metrics::METRICS;

static LIMIT: OnceLock<u64> = OnceLock::new();

/// Assumed when the limit cannot be read.
const FALLBACK: u64 = 1_024;
/// Linux's default `fs.nr_open`, used when the hard limit is unlimited.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// The open-file limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raised {
    /// Soft limit found at start.
    pub before: u64,
    /// Soft limit now in force.
    pub now: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and records it.
pub(crate) fn raise() -> Result<Raised, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    // Linux refuses an unlimited soft limit for open files (fs.nr_open).
    let target = if hard == nix::sys::resource::RLIM_INFINITY {
        NR_OPEN_DEFAULT
    } else {
        hard
    };
    let now = if soft < target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => target,
            Err(e) => {
                record(soft);
                return Err(e);
            }
        }
    } else {
        soft
    };
    record(now);
    Ok(Raised {
        before: soft,
        now,
        hard,
    })
}

fn record(limit: u64) {
    let _ = LIMIT.set(limit);
    METRICS
        .connections
        .open_files_limit
        .set(i64::try_from(limit).unwrap_or(i64::MAX));
}

/// The soft open-file limit in force (read once if [`raise`] was not called).
pub(crate) fn open_files_limit() -> u64 {
    *LIMIT.get_or_init(|| {
        getrlimit(Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(FALLBACK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_reaches_the_hard_limit() {
        let r = raise().unwrap();
        assert!(r.now == r.hard || r.now == NR_OPEN_DEFAULT);
        assert_eq!(open_files_limit(), r.now);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap().0, r.now);
    }
}
