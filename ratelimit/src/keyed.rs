//! An exact keyed GCRA limiter with a hard cap on tracked keys.
//!
//! Below the cap every key has its own exact `governor` state (about 100
//! bytes per key, see BENCHMARKS.md). When address spraying fills the cap,
//! the limiter stops adding keys and judges every request by a fixed-memory
//! count-min estimator (`pingora-limits`) over one-second windows until
//! pruning brings the exact store back under 90 % of the cap. The estimator
//! only over-counts (hash collisions add, never subtract), so degraded mode
//! can limit a legitimate client early, never let a flood through.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use pingora_limits::rate::Rate;

use super::Check;

/// Count-min sketch size of the degraded-mode estimator: 4 rows of 2^16
/// counters, two windows, 4 MiB in all, whatever the number of keys.
const ESTIMATOR_HASHES: usize = 4;
const ESTIMATOR_SLOTS: usize = 1 << 16;
/// `len()` walks every shard, so the cap is checked every this many calls.
const CAP_CHECK_EVERY: u64 = 64;

/// A sustained rate and a burst, as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Events per second.
    pub events_per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

impl Limit {
    /// The GCRA quota: one event every `1/rate` seconds, `burst` at once.
    pub fn quota(&self) -> Quota {
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs_f64(1.0 / self.events_per_second.max(1e-9));
        Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst)
    }
}

/// Exact per-key limits up to `cap` keys, a fixed-memory estimate beyond.
pub struct BoundedKeyed<K: Hash + Eq + Clone> {
    limit: Limit,
    exact: RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
    estimator: Rate,
    cap: usize,
    degraded: AtomicBool,
    calls: AtomicU64,
}

impl<K: Hash + Eq + Clone> BoundedKeyed<K> {
    /// A limiter for `limit` that tracks at most `cap` keys exactly.
    pub fn new(limit: Limit, cap: usize) -> Self {
        Self {
            limit,
            exact: RateLimiter::keyed(limit.quota()),
            estimator: Rate::new_with_estimator_config(
                Duration::from_secs(1),
                ESTIMATOR_HASHES,
                ESTIMATOR_SLOTS,
            ),
            cap,
            degraded: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// The key cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Takes `n` events for `key`.
    pub fn check(&self, key: &K, n: NonZeroU32) -> Check {
        if self
            .calls
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(CAP_CHECK_EVERY)
            && !self.degraded.load(Ordering::Relaxed)
            && self.exact.len() >= self.cap
        {
            self.degraded.store(true, Ordering::Relaxed);
        }
        if self.degraded.load(Ordering::Relaxed) {
            return self.estimate(key, n);
        }
        Check::from_outcome(
            self.exact.check_key_n(key, n),
            || self.exact.clock().now(),
            self.limit.burst,
        )
    }

    /// Degraded mode: events of this key (and its collisions) in the current
    /// one-second window against rate + burst.
    fn estimate(&self, key: &K, n: NonZeroU32) -> Check {
        if n.get() > self.limit.burst {
            return Check::OverBurst {
                burst: self.limit.burst,
            };
        }
        let allowance = self.limit.events_per_second + f64::from(self.limit.burst);
        let seen = self.estimator.observe(key, n.get() as isize);
        if seen as f64 <= allowance {
            Check::Allowed
        } else {
            Check::Limited {
                retry_after: Duration::from_secs(1),
            }
        }
    }

    /// Drops keys whose bucket is full again; leaves degraded mode when the
    /// store is back under 90 % of the cap. Returns (keys dropped, keys left).
    pub fn prune(&self) -> (usize, usize) {
        let before = self.exact.len();
        self.exact.retain_recent();
        self.exact.shrink_to_fit();
        let after = self.exact.len();
        if after.saturating_mul(10) < self.cap.saturating_mul(9) {
            self.degraded.store(false, Ordering::Relaxed);
        } else if after >= self.cap {
            self.degraded.store(true, Ordering::Relaxed);
        }
        (before.saturating_sub(after), after)
    }

    /// Whether the estimator currently decides.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Keys tracked exactly.
    pub fn tracked_keys(&self) -> usize {
        self.exact.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> NonZeroU32 {
        NonZeroU32::MIN
    }

    #[test]
    fn burst_then_limited_with_a_retry_time_from_the_rate() {
        let l = BoundedKeyed::new(
            Limit {
                events_per_second: 0.5,
                burst: 3,
            },
            1_000,
        );
        for _ in 0..3 {
            assert_eq!(l.check(&1u32, one()), Check::Allowed);
        }
        match l.check(&1u32, one()) {
            Check::Limited { retry_after } => {
                assert!(
                    retry_after > Duration::from_millis(1_500),
                    "{retry_after:?}"
                );
                assert!(retry_after <= Duration::from_secs(2), "{retry_after:?}");
            }
            other => panic!("expected limited, got {other:?}"),
        }
        // Another key has its own bucket.
        assert_eq!(l.check(&2u32, one()), Check::Allowed);
        // A batch larger than the bucket can never pass.
        assert_eq!(
            l.check(&3u32, NonZeroU32::new(4).unwrap()),
            Check::OverBurst { burst: 3 }
        );
    }

    #[test]
    fn a_full_store_degrades_to_the_estimator_and_recovers_after_pruning() {
        let l = BoundedKeyed::new(
            Limit {
                events_per_second: 1_000.0,
                burst: 2,
            },
            100,
        );
        for k in 0..(100 + 2 * CAP_CHECK_EVERY as u32) {
            let _ = l.check(&k, one());
        }
        assert!(l.is_degraded());
        let tracked = l.tracked_keys();
        assert!(
            tracked <= 100 + CAP_CHECK_EVERY as usize,
            "{tracked} keys tracked"
        );
        // New keys no longer grow the store.
        for k in 10_000..20_000u32 {
            let _ = l.check(&k, one());
        }
        assert_eq!(l.tracked_keys(), tracked);
        // The estimator still limits a flooding key: rate + burst per second.
        let flood = 7_777_777u32;
        let limited = (0..5_000)
            .filter(|_| matches!(l.check(&flood, one()), Check::Limited { .. }))
            .count();
        assert!(limited > 0);
        // At this rate every bucket refills within 2 ms: pruning empties the store.
        std::thread::sleep(Duration::from_millis(20));
        let (dropped, left) = l.prune();
        assert_eq!(left, 0, "dropped {dropped}");
        assert!(!l.is_degraded());
    }
}
