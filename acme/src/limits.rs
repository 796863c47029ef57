//! Issuance rate limits: a global GCRA (governor) and a per-name window,
//! plus the per-name window of operator-forced renewals.
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
/// The period of `acme.max_forced_renewals_per_name_per_week`.
pub(crate) const WEEK: Duration = Duration::from_secs(7 * 86_400);

/// At most `limit` events per name in any `period` (a sliding window).
pub(crate) struct NameWindow {
    limit: u32,
    period: Duration,
    recent: HashMap<String, VecDeque<Instant>>,
}

impl NameWindow {
    /// A window allowing `limit` events per name per `period`.
    pub(crate) fn new(limit: u32, period: Duration) -> Self {
        Self {
            limit,
            period,
            recent: HashMap::new(),
        }
    }

    /// The allowed number of events per period.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Changes the limit, keeping what was already charged.
    pub(crate) fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    /// The wait before `name` may have another event (nothing is spent);
    /// the whole period when the limit is 0.
    pub(crate) fn wait(&mut self, name: &str, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return Some(self.period);
        }
        let period = self.period;
        let window = self.recent.get_mut(name)?;
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= period)
        {
            window.pop_front();
        }
        if window.len() < self.limit as usize {
            return None;
        }
        window
            .front()
            .map(|oldest| period.saturating_sub(now.duration_since(*oldest)))
    }

    /// Records an event of `name` at `now`.
    pub(crate) fn charge(&mut self, name: &str, now: Instant) {
        let window = self.recent.entry(name.to_string()).or_default();
        window.push_back(now);
        while window.len() > (self.limit as usize).max(1) {
            window.pop_front();
        }
    }

    /// Forgets names for which `keep` is false.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.recent.retain(|name, _| keep(name));
    }
}

/// Which limit held an attempt back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitScope {
    /// `acme.max_orders_per_hour`.
    Global,
    /// `acme.max_orders_per_name_per_day`.
    Name,
}

impl LimitScope {
    /// Metric label of `edge_acme_rate_limited_total{scope}`.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            LimitScope::Global => "global",
            LimitScope::Name => "name",
        }
    }
}

/// Both limits for one configuration.
pub(crate) struct IssuanceLimits {
    per_hour: u32,
    global: DefaultDirectRateLimiter,
    per_name: NameWindow,
}

impl IssuanceLimits {
    /// Limits allowing `per_hour` attempts overall (burst = the same number)
    /// and `per_name_per_day` per name in any 24 hours.
    pub(crate) fn new(per_hour: u32, per_name_per_day: u32) -> Self {
        let burst = NonZeroU32::new(per_hour.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            per_hour,
            global: RateLimiter::direct(Quota::per_hour(burst)),
            per_name: NameWindow::new(per_name_per_day, DAY),
        }
    }

    /// Keeps the limits in `slot` when they were built from these settings
    /// (so what they charged survives a reload), else replaces them.
    pub(crate) fn ensure(slot: &mut Option<Self>, per_hour: u32, per_name_per_day: u32) {
        if !slot
            .as_ref()
            .is_some_and(|l| l.matches(per_hour, per_name_per_day))
        {
            *slot = Some(Self::new(per_hour, per_name_per_day));
        }
    }

    /// Whether these limits were built from the same settings.
    pub(crate) fn matches(&self, per_hour: u32, per_name_per_day: u32) -> bool {
        self.per_hour == per_hour && self.per_name.limit() == per_name_per_day
    }

    /// The wait before `name` may start another attempt (nothing is spent).
    pub(crate) fn name_wait(&mut self, name: &str, now: Instant) -> Option<Duration> {
        self.per_name.wait(name, now)
    }

    /// Charges the global limit for an attempt of `name` about to start, or
    /// says how long until the global limit allows one.
    pub(crate) fn start(&mut self, name: &str, now: Instant) -> Result<(), Duration> {
        if let Err(not_until) = self.global.check() {
            return Err(not_until.wait_time_from(DefaultClock::default().now()));
        }
        self.per_name.charge(name, now);
        Ok(())
    }

    /// Forgets names no longer managed.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.per_name.retain(keep);
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

    #[test]
    fn forced_renewal_window_spans_a_week_and_zero_refuses_all() {
        let mut w = NameWindow::new(2, WEEK);
        let t0 = Instant::now();
        w.charge("a", t0);
        assert_eq!(w.wait("a", t0), None);
        w.charge("a", t0 + DAY);
        assert_eq!(w.wait("a", t0 + DAY), Some(WEEK - DAY));
        assert_eq!(w.wait("a", t0 + WEEK), None, "the oldest left the window");
        w.set_limit(0);
        assert_eq!(w.wait("b", t0), Some(WEEK));
    }
}
