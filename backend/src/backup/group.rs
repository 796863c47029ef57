//! The backup's membership of its consumer group: which partitions it
//! holds (revoked ones are noted for the loop to drop their open batches),
//! the warning while the group assigns none, and reading a partition's
//! committed offset.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::consumer::now_ms;
use super::metrics::BackupMetrics;

/// Records partitions revoked by a rebalance, for the loop to drop their
/// batches, and when the consumer was last without partitions.
pub(super) struct BackupContext {
    pub(super) revoked: Arc<Mutex<Vec<(String, i32)>>>,
    /// Set when a revoke left the consumer without partitions (unix ms),
    /// cleared by the next assignment: see [`STALL_WARN_AFTER`].
    pub(super) unassigned_since: Arc<Mutex<Option<i64>>>,
    /// `edge_backup_assigned_partitions` is set after every rebalance.
    pub(super) metrics: BackupMetrics,
}

impl ClientContext for BackupContext {}

impl ConsumerContext for BackupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
                for e in tpl.elements() {
                    revoked.push((e.topic().to_string(), e.partition()));
                }
                let lost = consumer.assignment_lost();
                if lost {
                    // librdkafka gave the group session up (no answer from
                    // the coordinator within session.timeout.ms) and rejoins
                    // with a new member id.
                    warn!(
                        partitions = tpl.count(),
                        "backup: consumer group session lost (broker unreachable for longer than \
                         session.timeout.ms); open batches dropped, rejoining the group"
                    );
                } else {
                    info!(partitions = tpl.count(), "backup: partitions revoked");
                }
                let mut since = self
                    .unassigned_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                since.get_or_insert(now_ms());
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(partitions = ?parts, "backup: partitions assigned");
                *self
                    .unassigned_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
            }
            Rebalance::Error(e) => warn!(error = %e, "backup: rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        // What is assigned once librdkafka applied the change (an error
        // reading it counts as none: the stall alert then looks closer).
        let assigned = consumer.assignment().map_or(0, |tpl| tpl.count());
        self.metrics.assigned.set(assigned as i64);
    }
}

/// How long after losing its partitions the backup warns (again, at this
/// interval) that the group has not assigned any: with a healthy broker a
/// rejoin takes seconds. Tansu 0.6 can keep a group from ever forming again
/// after a stall longer than the session timeout (docs/backup.md).
const STALL_WARN_AFTER: Duration = Duration::from_secs(60);

/// Warns while the consumer has had no partitions since `since` for longer
/// than [`STALL_WARN_AFTER`], at most once per that interval; returns when it
/// last warned.
pub(super) fn warn_if_stalled(since: Option<i64>, warned_at: Option<i64>, now: i64) -> Option<i64> {
    let every = STALL_WARN_AFTER.as_millis() as i64;
    let since = since?;
    if now - since < every || warned_at.is_some_and(|w| now - w < every) {
        return warned_at;
    }
    warn!(
        seconds_without_partitions = (now - since) / 1000,
        "backup: the consumer group has not assigned partitions since they were revoked; \
         nothing is being backed up (check the broker's group coordinator, docs/backup.md \
         \"Broker stalls\")"
    );
    Some(now)
}

/// The committed offset of `partition` in the backup's group (`None` when
/// nothing was committed yet).
pub(super) fn committed_offset(
    consumer: &StreamConsumer<BackupContext>,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .with_context(|| format!("reading the committed offset of {topic}/{partition}"))?;
    Ok(committed
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_warning_waits_its_interval_and_repeats_at_it() {
        let every = STALL_WARN_AFTER.as_millis() as i64;
        assert_eq!(warn_if_stalled(None, None, 5 * every), None);
        assert_eq!(warn_if_stalled(Some(0), None, every - 1), None);
        assert_eq!(warn_if_stalled(Some(0), None, every), Some(every));
        assert_eq!(
            warn_if_stalled(Some(0), Some(every), 2 * every - 1),
            Some(every)
        );
        assert_eq!(
            warn_if_stalled(Some(0), Some(every), 2 * every),
            Some(2 * every)
        );
        // Assigned again: the next loss starts over.
        assert_eq!(warn_if_stalled(None, Some(2 * every), 3 * every), None);
    }
}
