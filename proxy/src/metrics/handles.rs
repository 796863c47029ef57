//! Metric children resolved once, not per request.
//!
//! `MetricVec::with_label_values` hashes the label values and takes a lock on
//! every call (about 200 instructions each, six times per accepted event:
//! BENCHMARKS.md, issue 15). The hot paths instead keep the child handles
//! they use: per value of a fixed label enum in a [`Slots`] table (here and
//! next to each counting module), and per site in its [`SiteCounters`]. Each
//! child is resolved on first use, so `/metrics` shows the same series as
//! before (none is created ahead).

use std::sync::OnceLock;

use prometheus::{Histogram, IntCounter};

use super::{METRICS, RequestOutcome};

/// One lazily resolved metric child per index of a fixed label set.
pub(crate) struct Slots<M, const N: usize> {
    slots: [OnceLock<M>; N],
}

impl<M, const N: usize> Slots<M, N> {
    /// An empty table.
    pub(crate) const fn new() -> Self {
        Self {
            slots: [const { OnceLock::new() }; N],
        }
    }

    /// Applies `count` to the child at `index`, resolved by `resolve` on
    /// first use; an `index` outside the table gets a child resolved for
    /// this call alone (counted right, at the per-call price).
    pub(crate) fn with(&self, index: usize, resolve: impl FnOnce() -> M, count: impl FnOnce(&M)) {
        match self.slots.get(index) {
            Some(slot) => count(slot.get_or_init(resolve)),
            None => count(&resolve()),
        }
    }
}

/// Slots for every [`RequestOutcome`] (checked by a test).
const OUTCOMES: usize = 24;

/// Observes `seconds` in `edge_request_duration_seconds{outcome}`.
pub(crate) fn observe_request_duration(outcome: RequestOutcome, seconds: f64) {
    static DURATIONS: Slots<Histogram, OUTCOMES> = Slots::new();
    let resolve = || {
        METRICS
            .request_duration
            .with_label_values(&[outcome.as_label()])
    };
    DURATIONS.with(outcome as usize, resolve, |h| h.observe(seconds));
}

/// The hot counters of one configured site, resolved on first use. A site
/// entry lives as long as its config version, so a reload resolves them again
/// (to the same series: every handle to a child shares its value).
#[derive(Debug, Default)]
pub(crate) struct SiteCounters {
    accepted_requests: OnceLock<IntCounter>,
    /// `edge_events_total{site,outcome="accepted"}`, resolved by
    /// [`super::events::events_spooled`].
    pub(super) accepted_events: OnceLock<IntCounter>,
}

impl SiteCounters {
    /// `edge_requests_total{site,outcome="accepted"}` of `site`.
    pub(crate) fn accepted_requests(&self, site: &str) -> &IntCounter {
        self.accepted_requests.get_or_init(|| {
            METRICS
                .requests
                .with_label_values(&[site, RequestOutcome::Accepted.as_label()])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_outcome_has_a_slot() {
        // The last variant; one added after it must raise `OUTCOMES` (or it
        // is resolved per call, which counts right but costs more).
        assert!((RequestOutcome::PixelHead as usize) < OUTCOMES);
    }

    #[test]
    fn a_slot_is_resolved_once_and_an_index_outside_every_time() {
        let slots: Slots<u32, 2> = Slots::new();
        let seen = |index, value| {
            let mut got = None;
            slots.with(index, || value, |v| got = Some(*v));
            got
        };
        assert_eq!(seen(1, 7), Some(7));
        assert_eq!(seen(1, 8), Some(7), "resolved once");
        assert_eq!(seen(2, 9), Some(9));
        assert_eq!(
            seen(2, 10),
            Some(10),
            "outside the table: resolved per call"
        );
    }

    #[test]
    fn cached_children_count_in_the_registry_series() {
        let site = "handles-test-site";
        let counters = SiteCounters::default();
        counters.accepted_requests(site).inc();
        counters.accepted_requests(site).inc();
        assert_eq!(
            METRICS
                .requests
                .with_label_values(&[site, "accepted"])
                .get(),
            2
        );
        let outcome = RequestOutcome::PixelHead;
        let histogram = METRICS
            .request_duration
            .with_label_values(&[outcome.as_label()]);
        let count = histogram.get_sample_count();
        observe_request_duration(outcome, 0.001);
        assert_eq!(histogram.get_sample_count(), count + 1);
    }
}
