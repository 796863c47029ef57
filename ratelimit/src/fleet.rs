//! The local side of a per-site limit shared by a fleet of edges.
//!
//! The fleet-wide bucket lives elsewhere (Redis, see `edge-fleetlimit`); an
//! edge spends tokens it already holds and never waits for the bucket. A
//! background sync asks the bucket for more ([`FleetBucket::tokens_to_request`]),
//! hands over what it got ([`FleetBucket::grant`]) or, when the bucket is
//! unreachable, switches the edge to its local share of the limit
//! ([`FleetBucket::set_degraded`]) until a sync succeeds again.
//!
//! Pure logic: atomics and a governor limiter, no I/O.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, RateLimiter};

use crate::{Check, Limit};

/// One site's share of a fleet-wide limit on this edge.
pub struct FleetBucket {
    /// The fleet-wide limit.
    limit: Limit,
    /// What this edge enforces alone while degraded: `limit / fleet_size`.
    local_share: Limit,
    /// Edges sharing the limit (sizes the idle reserve and the local share).
    fleet_size: u32,
    /// Time between syncs (sizes the reserve; the `Retry-After` of a refusal).
    sync_interval: Duration,
    /// Tokens granted by the fleet bucket and not yet spent.
    held: AtomicU64,
    /// Events asked for (spent or refused) since the last sync.
    asked: AtomicU64,
    /// `true` while the fleet bucket is unreachable.
    degraded: AtomicBool,
    /// `false` until the first sync outcome (a grant or a failure): a fresh
    /// bucket (a new edge, a changed limit) enforces the local share
    /// meanwhile, so a restarted edge does not refuse every event until its
    /// first sync.
    synced: AtomicBool,
    /// The local share's limiter, used while degraded.
    local: DefaultDirectRateLimiter,
}

impl FleetBucket {
    /// A bucket holding no tokens yet: until the first sync outcome (at most
    /// one sync interval) it enforces the local share, as when degraded, so
    /// an edge that just started or reloaded a new limit does not refuse its
    /// first events; the fleet can exceed its limit by at most one local
    /// share's burst per such edge.
    pub fn new(limit: Limit, fleet_size: u32, sync_interval: Duration) -> FleetBucket {
        let local_share = local_share(limit, fleet_size);
        FleetBucket {
            limit,
            local_share,
            fleet_size: fleet_size.max(1),
            sync_interval,
            held: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            local: RateLimiter::direct(local_share.quota()),
        }
    }

    /// The fleet-wide limit.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Whether this bucket was built for the same limit, fleet size and interval.
    pub fn same_settings(&self, limit: Limit, fleet_size: u32, sync_interval: Duration) -> bool {
        self.limit == limit
            && self.fleet_size == fleet_size.max(1)
            && self.sync_interval == sync_interval
    }

    /// The limit this edge enforces alone while degraded.
    pub fn local_share(&self) -> Limit {
        self.local_share
    }

    /// Takes `n` tokens: from the held tokens, or from the local share while
    /// degraded. Never blocks.
    pub fn check(&self, n: NonZeroU32) -> Check {
        if n.get() > self.limit.burst {
            return Check::OverBurst {
                burst: self.limit.burst,
            };
        }
        let events = u64::from(n.get());
        self.asked.fetch_add(events, Ordering::Relaxed);
        if self.degraded.load(Ordering::Relaxed) || !self.synced.load(Ordering::Relaxed) {
            return Check::from_outcome(
                self.local.check_n(n),
                || self.local.clock().now(),
                self.local_share.burst,
            );
        }
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_sub(events)
            });
        match taken {
            Ok(_) => Check::Allowed,
            Err(_) => Check::Limited {
                retry_after: self.sync_interval,
            },
        }
    }

    /// Sync, step 1: how many tokens to ask the fleet bucket for now. Resets
    /// the demand counter (call once per sync).
    pub fn tokens_to_request(&self) -> u64 {
        let asked = self.asked.swap(0, Ordering::Relaxed);
        tokens_to_request(
            asked,
            self.held.load(Ordering::Acquire),
            self.limit,
            self.fleet_size,
            self.sync_interval,
        )
    }

    /// Sync, step 2: adds the tokens the fleet bucket granted and leaves
    /// degraded mode.
    pub fn grant(&self, tokens: u64) {
        self.held.fetch_add(tokens, Ordering::AcqRel);
        self.degraded.store(false, Ordering::Relaxed);
        self.synced.store(true, Ordering::Relaxed);
    }

    /// Sync failed (`true`) or recovered without a grant (`false`).
    pub fn set_degraded(&self, degraded: bool) {
        self.degraded.store(degraded, Ordering::Relaxed);
        self.synced.store(true, Ordering::Relaxed);
    }

    /// Whether the edge enforces its local share.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Tokens held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

/// `limit / fleet_size`, at least 1 event of burst and a positive rate.
pub fn local_share(limit: Limit, fleet_size: u32) -> Limit {
    let n = fleet_size.max(1);
    Limit {
        events_per_second: limit.events_per_second / f64::from(n),
        burst: (limit.burst / n).max(1),
    }
}

/// How many tokens an edge asks for in one sync.
///
/// The target is twice the events asked in the last interval (demand may
/// grow), and at least an idle reserve of one interval's share of the
/// fleet rate (so a quiet site's first events are not refused while the
/// edge waits for a sync); never more than the bucket size. The request is
/// what the target exceeds the tokens held.
pub fn tokens_to_request(
    asked_last_interval: u64,
    held: u64,
    limit: Limit,
    fleet_size: u32,
    sync_interval: Duration,
) -> u64 {
    let per_interval = limit.events_per_second * sync_interval.as_secs_f64();
    let reserve = (per_interval.min(f64::from(limit.burst)) / f64::from(fleet_size.max(1)))
        .ceil()
        .max(1.0);
    // Float to integer: saturating; the value is in 1..=burst.
    let reserve = reserve as u64;
    let target = asked_last_interval
        .saturating_mul(2)
        .max(reserve)
        .min(u64::from(limit.burst));
    target.saturating_sub(held)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn limit(rate: f64, burst: u32) -> Limit {
        Limit {
            events_per_second: rate,
            burst,
        }
    }

    fn one() -> NonZeroU32 {
        NonZeroU32::MIN
    }

    #[test]
    fn spends_held_tokens_then_refuses_until_the_next_grant() {
        let b = FleetBucket::new(limit(100.0, 50), 3, Duration::from_millis(100));
        b.grant(0);
        assert_eq!(
            b.check(one()),
            Check::Limited {
                retry_after: Duration::from_millis(100)
            }
        );
        b.grant(2);
        assert_eq!(b.check(one()), Check::Allowed);
        assert_eq!(
            b.check(NonZeroU32::new(2).unwrap()),
            Check::Limited {
                retry_after: Duration::from_millis(100)
            }
        );
        assert_eq!(b.check(one()), Check::Allowed);
        assert_eq!(b.held(), 0);
        // 5 events asked (2 spent, 3 refused): ask for twice that.
        assert_eq!(b.tokens_to_request(), 10);
        // The demand was reset: next time only the idle reserve (ceil(10 / 3)).
        assert_eq!(b.tokens_to_request(), 4);
        assert_eq!(
            b.check(NonZeroU32::new(51).unwrap()),
            Check::OverBurst { burst: 50 }
        );
    }

    #[test]
    fn a_fresh_bucket_enforces_the_local_share_until_the_first_sync() {
        let b = FleetBucket::new(limit(0.001, 30), 3, Duration::from_millis(100));
        assert!(!b.is_degraded());
        for _ in 0..10 {
            assert_eq!(b.check(one()), Check::Allowed);
        }
        assert!(matches!(b.check(one()), Check::Limited { .. }));
        // The first sync grants nothing: from now on only held tokens count.
        b.grant(0);
        assert_eq!(
            b.check(one()),
            Check::Limited {
                retry_after: Duration::from_millis(100)
            }
        );
        b.grant(1);
        assert_eq!(b.check(one()), Check::Allowed);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn degraded_enforces_the_local_share_and_a_grant_recovers() {
        let b = FleetBucket::new(limit(0.001, 30), 3, Duration::from_millis(100));
        assert_eq!(b.local_share(), limit(0.001 / 3.0, 10));
        b.set_degraded(true);
        assert!(b.is_degraded());
        for _ in 0..10 {
            assert_eq!(b.check(one()), Check::Allowed);
        }
        assert!(matches!(b.check(one()), Check::Limited { .. }));
        b.grant(1);
        assert!(!b.is_degraded());
        assert_eq!(b.check(one()), Check::Allowed);
    }

    #[test]
    fn settings_identify_a_bucket() {
        let b = FleetBucket::new(limit(10.0, 5), 2, Duration::from_millis(100));
        assert!(b.same_settings(limit(10.0, 5), 2, Duration::from_millis(100)));
        assert!(!b.same_settings(limit(10.0, 5), 3, Duration::from_millis(100)));
        assert!(!b.same_settings(limit(10.0, 6), 2, Duration::from_millis(100)));
    }

    proptest! {
        /// The tokens held after a sync never exceed the bucket size (or
        /// what was already held), cover the idle reserve, and cover the
        /// last interval's demand when the bucket allows it.
        #[test]
        fn requests_stay_within_the_bucket(
            asked in 0u64..1_000_000,
            held in 0u64..100_000,
            rate in 0.001f64..1_000_000.0,
            burst in 1u32..10_000_000,
            fleet in 1u32..10_000,
            interval_ms in 10u64..10_000,
        ) {
            let l = limit(rate, burst);
            let want = tokens_to_request(asked, held, l, fleet, Duration::from_millis(interval_ms));
            let after = held + want;
            prop_assert!(want == 0 || after <= u64::from(burst));
            prop_assert!(after >= 1.min(u64::from(burst)));
            prop_assert!(after >= asked.min(u64::from(burst)));
        }

        /// The local share never lets the fleet exceed the limit by more
        /// than rounding: fleet_size × share ≤ limit, burst at least 1.
        #[test]
        fn local_shares_add_up_to_at_most_the_limit(
            rate in 0.001f64..1_000_000.0,
            burst in 1u32..10_000_000,
            fleet in 1u32..10_000,
        ) {
            let s = local_share(limit(rate, burst), fleet);
            prop_assert!(s.burst >= 1);
            prop_assert!(s.events_per_second * f64::from(fleet) <= rate * (1.0 + 1e-12));
            prop_assert!(u64::from(s.burst) * u64::from(fleet) <= u64::from(burst).max(u64::from(fleet)));
        }
    }
}
