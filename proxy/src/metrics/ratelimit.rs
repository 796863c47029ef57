//! Counting what the rate limiters (`edge-ratelimit`) decided: the limiter
//! returns decisions, the edge counts them here.

use edge_fleetlimit::SyncOutcome;
use edge_ratelimit::{Outcome, PruneReport};

use super::AbuseMetrics;

impl AbuseMetrics {
    /// `edge_ratelimit_decisions_total{scope,decision}`: every scope decision
    /// of one request, per event.
    pub(crate) fn count_ratelimit(&self, outcome: &Outcome) {
        for d in outcome.decisions() {
            self.ratelimit_decisions
                .with_label_values(&[d.scope.as_label(), d.decision.as_label()])
                .inc_by(u64::from(d.events));
        }
    }

    /// Publishes a pruning pass: pruned keys, tracked keys, degraded flag.
    pub(crate) fn publish_prune(&self, reports: &[PruneReport]) {
        for r in reports {
            let label = [r.scope.as_label()];
            self.ratelimit_pruned_keys
                .with_label_values(&label)
                .inc_by(r.dropped as u64);
            self.ratelimit_tracked_keys
                .with_label_values(&label)
                .set(i64::try_from(r.tracked).unwrap_or(i64::MAX));
            self.ratelimit_degraded
                .with_label_values(&label)
                .set(i64::from(r.degraded));
        }
    }

    /// Counts one sync of the shared per-site limits and sets the degraded gauge.
    pub(crate) fn count_shared_sync(&self, outcome: SyncOutcome) {
        self.ratelimit_shared_sync
            .with_label_values(&[outcome.as_label()])
            .inc();
        self.ratelimit_shared_degraded
            .set(i64::from(outcome != SyncOutcome::Ok));
    }
}
