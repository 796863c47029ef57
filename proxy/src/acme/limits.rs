//! Issuance rate limits: a global GCRA (governor) and a per-name window.
//!
//! The per-name limit is checked without spending anything, and both are
//! charged only when an attempt actually starts, so a name held back by the
//! global limit (or by an unreachable CA) keeps its own budget.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

const DAY: Duration = Duration::from_secs(86_400);

/// Which limit held an attempt back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// `acme.max_orders_per_hour`.
    Global,
    /// `acme.max_orders_per_name_per_day`.
    Name,
}

impl LimitScope {
    /// Metric label of `edge_acme_rate_limited_total{scope}`.
    pub fn as_label(self) -> &'static str {
        match self {
            LimitScope::Global => "global",
            LimitScope::Name => "name",
        }
    }
}

/// Both limits for one configuration.
pub struct IssuanceLimits {
    per_hour: u32,
    per_name_per_day: u32,
    global: DefaultDirectRateLimiter,
    recent: HashMap<String, VecDeque<Instant>>,
}

impl IssuanceLimits {
    /// Limits allowing `per_hour` attempts overall (burst = the same number)
    /// and `per_name_per_day` per name in any 24 hours.
    pub fn new(per_hour: u32, per_name_per_day: u32) -> Self {
        let burst = NonZeroU32::new(per_hour.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            per_hour,
            per_name_per_day,
            global: RateLimiter::direct(Quota::per_hour(burst)),
            recent: HashMap::new(),
        }
    }

    /// Whether these limits were built from the same settings.
    pub fn matches(&self, per_hour: u32, per_name_per_day: u32) -> bool {
        self.per_hour == per_hour && self.per_name_per_day == per_name_per_day
    }

    /// The wait before `name` may start another attempt (nothing is spent).
    pub fn name_wait(&mut self, name: &str, now: Instant) -> Option<Duration> {
        let window = self.recent.get_mut(name)?;
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= DAY)
        {
            window.pop_front();
        }
        if window.len() < self.per_name_per_day as usize {
            return None;
        }
        window
            .front()
            .map(|oldest| DAY - now.duration_since(*oldest))
    }

    /// Charges the global limit for an attempt of `name` about to start, or
    /// says how long until the global limit allows one.
    pub fn start(&mut self, name: &str, now: Instant) -> Result<(), Duration> {
        if let Err(not_until) = self.global.check() {
            return Err(not_until.wait_time_from(DefaultClock::default().now()));
        }
        let window = self.recent.entry(name.to_string()).or_default();
        window.push_back(now);
        while window.len() > self.per_name_per_day as usize {
            window.pop_front();
        }
        Ok(())
    }

    /// Forgets names no longer managed.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.recent.retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_name_window_is_checked_without_spending() {
        let mut limits = IssuanceLimits::new(100, 2);
        let t0 = Instant::now();
        assert_eq!(limits.name_wait("a", t0), None);
        assert_eq!(limits.name_wait("a", t0), None, "checking spends nothing");
        limits.start("a", t0).unwrap();
        limits.start("a", t0 + Duration::from_secs(10)).unwrap();
        let wait = limits.name_wait("a", t0 + Duration::from_secs(20)).unwrap();
        assert_eq!(wait, DAY - Duration::from_secs(20));
        assert_eq!(
            limits.name_wait("b", t0),
            None,
            "other names are unaffected"
        );
        assert_eq!(limits.name_wait("a", t0 + DAY), None, "the window slides");
    }

    #[test]
    fn global_limit_refuses_once_the_burst_is_spent() {
        let mut limits = IssuanceLimits::new(3, 5);
        let now = Instant::now();
        for name in ["a", "b", "c"] {
            limits.start(name, now).unwrap();
        }
        let wait = limits.start("d", now).unwrap_err();
        assert!(wait > Duration::from_secs(1000), "{wait:?}");
        assert_eq!(
            limits.name_wait("d", now),
            None,
            "a refused start charges nothing"
        );
        assert!(limits.matches(3, 5) && !limits.matches(4, 5));
    }
}
