//! Counting what the rate limiters (`edge-ratelimit`) decided: the limiter
//! returns decisions, the edge counts them here.

use edge_fleetlimit::SyncOutcome;
use edge_ratelimit::{Outcome, PruneReport};

use edge_ratelimit::{Decision, Scope};
use prometheus::IntCounter;

use super::handles::Slots;
use super::{AbuseMetrics, METRICS};

/// `edge_ratelimit_decisions_total{scope,decision}`: every scope decision of
/// one request, per event.
pub(crate) fn count_ratelimit(outcome: &Outcome) {
    for d in outcome.decisions() {
        count_ratelimit_decision(d.scope, d.decision, u64::from(d.events));
    }
}

/// Adds `events` to `edge_ratelimit_decisions_total{scope,decision}`, through
/// a handle resolved once per label pair.
fn count_ratelimit_decision(scope: Scope, decision: Decision, events: u64) {
    /// Three scopes times four decisions.
    static DECISIONS: Slots<IntCounter, 12> = Slots::new();
    let resolve = || {
        METRICS
            .abuse
            .ratelimit_decisions
            .with_label_values(&[scope.as_label(), decision.as_label()])
    };
    let index = scope as usize * 4 + decision as usize;
    DECISIONS.with(index, resolve, |c| c.inc_by(events));
}

impl AbuseMetrics {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_pair_has_its_own_slot() {
        let scopes = [Scope::PerIp, Scope::PerSite, Scope::PerSiteIp];
        let decisions = [
            Decision::Allowed,
            Decision::DryRunLimited,
            Decision::Limited,
            Decision::OverBurst,
        ];
        let mut seen = std::collections::HashSet::new();
        for s in scopes {
            for d in decisions {
                let index = s as usize * 4 + d as usize;
                assert!(index < 12 && seen.insert(index), "{s:?} {d:?}");
            }
        }
    }

    #[test]
    fn decisions_count_in_the_registry_series() {
        let series = || {
            METRICS
                .abuse
                .ratelimit_decisions
                .with_label_values(&["per_site_ip", "over_burst"])
                .get()
        };
        let before = series();
        count_ratelimit_decision(Scope::PerSiteIp, Decision::OverBurst, 2);
        count_ratelimit_decision(Scope::PerSiteIp, Decision::OverBurst, 3);
        assert_eq!(series() - before, 5);
    }
}
