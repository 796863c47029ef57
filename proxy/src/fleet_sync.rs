//! The background task behind `[rate_limits.shared]`: syncs this edge's
//! per-site token buckets with the fleet's Redis (`edge-fleetlimit`) every
//! `sync_interval_ms`, and counts every sync.
//!
//! Requests never wait for it: they spend tokens the buckets already hold,
//! or, while Redis is unreachable, their local share.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edge_fleetlimit::{FleetSync, SyncOutcome};
use edge_ratelimit::FleetBucket;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rand::Rng;

use crate::metrics::METRICS;
use crate::state::EdgeState;

/// How often the task looks again while `[rate_limits.shared]` is absent
/// (a reload may add it).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Background service: one sync per interval, rebuilt when a reload
/// changes `[rate_limits.shared]`.
pub(crate) struct FleetLimitSync {
    /// The live state (the current runtime's limiters and config).
    pub state: Arc<EdgeState>,
}

#[async_trait]
impl BackgroundService for FleetLimitSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut sync: Option<FleetSync> = None;
        let mut last = SyncOutcome::Ok;
        loop {
            let rt = self.state.runtime();
            let shared = rt.loaded.config.rate_limits.shared.clone();
            let buckets: Vec<(String, Arc<FleetBucket>)> = rt
                .rate_limits
                .fleet_buckets()
                .map(|(site, bucket)| (site.to_owned(), bucket.clone()))
                .collect();
            drop(rt);
            let pause = match shared {
                None => {
                    sync = None;
                    METRICS.abuse.ratelimit_shared_degraded.set(0);
                    IDLE_CHECK
                }
                Some(settings) => {
                    if sync.as_ref().is_none_or(|s| *s.settings() != settings) {
                        sync = match FleetSync::new(&settings) {
                            Ok(s) => Some(s),
                            Err(e) => {
                                // Validation accepted the URL; the client did not.
                                tracing::error!(error = %e, "shared rate limits: no Redis client");
                                None
                            }
                        };
                    }
                    if let Some(s) = sync.as_mut() {
                        let outcome = s.sync(&buckets).await;
                        METRICS.abuse.count_shared_sync(outcome);
                        log_transition(last, outcome);
                        last = outcome;
                    }
                    jittered(Duration::from_millis(settings.sync_interval_ms))
                }
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// `interval` × a random factor in 0.5..1.5 (the same mean). Under
/// saturation an edge gets what the fleet bucket refilled since the
/// previous edge's sync: fixed phases would give each edge a fixed,
/// uneven part; random ones even it out over a few seconds.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.5..1.5))
}

/// Logs entering and leaving degraded mode (not every failed sync).
fn log_transition(before: SyncOutcome, now: SyncOutcome) {
    match (before == SyncOutcome::Ok, now == SyncOutcome::Ok) {
        (true, false) => tracing::warn!(
            outcome = now.as_label(),
            "shared rate limits: Redis unreachable, enforcing the local share of each per-site limit"
        ),
        (false, true) => tracing::info!("shared rate limits: Redis reachable again"),
        _ => {}
    }
}
