//! Observable events of the event path: one type per outcome that counts
//! (and, where an operator must see it, logs) in one call, with label values
//! from enums. Call sites say what happened; this module says how it shows.

use std::sync::atomic::{AtomicI64, Ordering};

use edge_collector::enrich::EnrichError;
use edge_envelope::seal::SealError;
use edge_spool::AppendError;

use prometheus::IntCounter;

use super::METRICS;
use super::handles::{SiteCounters, Slots};

/// What became of a request's events, the `outcome` label of
/// `edge_events_total{site,outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventsOutcome {
    /// Stored (fsync'd in the spool); the client got 2xx.
    Accepted,
    /// Not stored; the client got 5xx.
    Failed,
    /// Refused by a rate-limit scope; the client got 429.
    RateLimited,
}

impl EventsOutcome {
    /// The label value.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Failed => "failed",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// `count` events of `site` were spooled: `edge_spool_appends_total{accepted}`
/// and `edge_events_total{site,accepted}` (through the site's own handle).
pub(crate) fn events_spooled(site: &str, counters: &SiteCounters, count: u64) {
    static SPOOLED: Slots<IntCounter, 1> = Slots::new();
    let appends = || METRICS.spool.appends.with_label_values(&["accepted"]);
    SPOOLED.with(0, appends, IntCounter::inc);
    counters
        .accepted_events
        .get_or_init(|| {
            METRICS
                .events
                .with_label_values(&[site, EventsOutcome::Accepted.as_label()])
        })
        .inc_by(count);
}

/// `count` events of `site` were refused by a rate limit.
pub(crate) fn events_rate_limited(site: &str, count: u64) {
    count_events(site, EventsOutcome::RateLimited, count);
}

/// Why a request's events could not be stored.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StoreFailure<'a> {
    /// Enrichment failed (salt store): 500.
    Enrich(&'a EnrichError),
    /// Encryption failed: 500.
    Seal(&'a SealError),
    /// The spool refused the append (full, not writable): 503.
    Spool(&'a AppendError),
}

impl StoreFailure<'_> {
    /// Counts the `count` failed events of `site` (and the failure's own
    /// counter) and logs it: enrichment and encryption failures every time,
    /// spool failures at most once a second, a full spool never (its
    /// metrics and `/readyz` say so).
    pub(crate) fn emit(self, site: &str, count: u64) {
        match self {
            Self::Enrich(e) => {
                tracing::error!(site = %site, error = %e, "event enrichment failed");
            }
            Self::Seal(e) => {
                tracing::error!(site = %site, error = %e, "event encryption failed");
                METRICS
                    .encryption_failures
                    .with_label_values(&[e.kind()])
                    .inc();
            }
            Self::Spool(e) => {
                METRICS.spool.appends.with_label_values(&[e.kind()]).inc();
                if !matches!(e, AppendError::Full(_)) && first_this_second() {
                    // Counted per request; logged at most once a second.
                    tracing::error!(site = %site, error = %e, "spooling events failed");
                }
            }
        }
        count_events(site, EventsOutcome::Failed, count);
    }
}

fn count_events(site: &str, outcome: EventsOutcome, count: u64) {
    METRICS
        .events
        .with_label_values(&[site, outcome.as_label()])
        .inc_by(count);
}

/// True for the first call in each wall-clock second (log rate limit).
fn first_this_second() -> bool {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = edge_certs::clock::unix_millis() / 1000;
    LAST.swap(now, Ordering::Relaxed) != now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(site: &str, outcome: &str) -> u64 {
        METRICS.events.with_label_values(&[site, outcome]).get()
    }

    #[test]
    fn each_outcome_counts_its_events_under_its_label() {
        let site = "metrics-events-test";
        events_spooled(site, &SiteCounters::default(), 3);
        events_rate_limited(site, 2);
        StoreFailure::Spool(&AppendError::TooLarge).emit(site, 4);
        assert_eq!(events(site, "accepted"), 3);
        assert_eq!(events(site, "rate_limited"), 2);
        assert_eq!(events(site, "failed"), 4);
    }

    #[test]
    fn labels_are_the_documented_ones() {
        assert_eq!(
            [
                EventsOutcome::Accepted,
                EventsOutcome::Failed,
                EventsOutcome::RateLimited
            ]
            .map(EventsOutcome::as_label),
            ["accepted", "failed", "rate_limited"]
        );
    }
}
