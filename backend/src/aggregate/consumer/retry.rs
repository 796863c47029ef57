//! Waiting and store calls the consumer thread makes outside a batch:
//! sleeping without missing a stop, reloading stored offsets until the
//! store answers, pruning old event ids.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::aggregate::commit::Backoff;
use crate::aggregate::store::{Store, StoreError};

/// How often remembered event ids older than the dedupe window are deleted.
pub(super) const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Sleeps `delay`, waking early when `stop` is set.
pub(super) fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) {
    let until = Instant::now() + delay;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Deletes event ids received before now minus the window; a failure is
/// logged and tried again at the next prune.
pub(super) fn prune_seen(handle: &tokio::runtime::Handle, store: &Store, window: Duration) {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let before = chrono::Utc::now()
        .timestamp_millis()
        .saturating_sub(window_ms);
    match handle.block_on(store.prune_seen(before)) {
        Ok(n) => debug!(pruned = n, "old event ids pruned"),
        Err(e) => warn!(error = %e, "cannot prune old event ids; trying again later"),
    }
}

/// Reads the stored offsets, retrying failures with backoff until it works
/// or `stop` is set.
pub(super) fn load_offsets_retrying(
    handle: &tokio::runtime::Handle,
    store: &Store,
    (group, topic): (&str, &str),
    stop: &AtomicBool,
) -> Result<HashMap<i32, i64>, StoreError> {
    let mut backoff = Backoff::new();
    loop {
        match handle.block_on(store.load_offsets(group, topic)) {
            Ok(o) => return Ok(o),
            Err(e) if !stop.load(Ordering::Relaxed) => {
                let delay = backoff.next_delay();
                warn!(
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot read stored offsets; retrying"
                );
                sleep_unless_stopped(delay, stop);
            }
            Err(e) => return Err(e),
        }
    }
}
