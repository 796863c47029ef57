//! What the consumer makes observable: one type per outcome, whose `emit`
//! writes the log line and moves the metrics together, so a count never
//! goes without its line or the other way round. Label values come from
//! enums ([`ErrorClass`], [`DeadLetterReason`]).
//!
//! [`DeadLetterReason`]: crate::aggregate::dlq::DeadLetterReason

use std::time::Duration;

use tracing::{debug, error, warn};

use crate::aggregate::commit::CommitError;
use crate::aggregate::dlq::DeadLetter;
use crate::aggregate::metrics::Metrics;
use crate::aggregate::store::{Committed, ErrorClass, OffsetAdvance};

/// A batch whose rollup and offsets are committed.
pub(super) struct BatchCommitted<'a> {
    pub(super) done: Committed,
    pub(super) letters: &'a [DeadLetter],
    pub(super) advances: &'a [OffsetAdvance],
}

impl BatchCommitted<'_> {
    pub(super) fn emit(&self, metrics: &Metrics) {
        metrics.retry_delay.set(0.0);
        metrics.events.inc_by(self.done.events);
        metrics.duplicates.inc_by(self.done.duplicates);
        metrics.batches.inc();
        for l in self.letters {
            metrics
                .dead_letters
                .with_label_values(&[l.reason.as_str()])
                .inc();
            warn!(reason = l.reason.as_str(), partition = l.partition, offset = l.offset, error = %l.error, "record sent to the dead-letter topic");
        }
        debug!(events = self.done.events, duplicates = self.done.duplicates, advances = ?self.advances, "batch committed");
    }
}

/// A batch that failed and is read again after `delay`.
pub(super) struct BatchFailed<'a> {
    pub(super) error: &'a CommitError,
    pub(super) delay: Duration,
}

impl BatchFailed<'_> {
    pub(super) fn emit(&self, metrics: &Metrics) {
        let class: ErrorClass = self.error.class;
        metrics.failures.inc();
        metrics
            .store_errors
            .with_label_values(&[class.as_str()])
            .inc();
        metrics.retry_delay.set(self.delay.as_secs_f64());
        error!(
            class = class.as_str(),
            error = %self.error.error,
            retry_in_ms = self.delay.as_millis() as u64,
            "batch failed; reading it again after a delay"
        );
    }
}

/// A batch refused because partitions' stored offsets had moved.
pub(super) struct OffsetsMoved<'a> {
    pub(super) partitions: &'a [(String, i32)],
}

impl OffsetsMoved<'_> {
    pub(super) fn emit(&self, metrics: &Metrics) {
        metrics.conflicts.inc();
        warn!(partitions = ?self.partitions, "stored offsets moved (another consumer?): reloading them");
    }
}

/// A partition read again from the beginning.
pub(super) enum Rewind {
    /// Silent since the assignment.
    Idle {
        /// The partition.
        partition: i32,
    },
    /// The broker skipped records after the stored offset.
    Gap {
        /// The partition.
        partition: i32,
        /// Its stored next offset.
        stored: Option<i64>,
    },
}

impl Rewind {
    pub(super) fn emit(&self, metrics: &Metrics) {
        metrics.rewinds.inc();
        match self {
            Rewind::Idle { partition } => debug!(
                partition,
                "idle since assignment: re-reading from the beginning"
            ),
            Rewind::Gap { partition, stored } => warn!(
                partition,
                stored = ?stored,
                "the broker skipped records after the stored offset; reading the partition again from the beginning (already applied records are skipped)"
            ),
        }
    }
}

/// A gap accepted as real: the records after the stored offset are gone.
pub(super) struct GapAccepted {
    pub(super) partition: i32,
    pub(super) stored: Option<i64>,
}

impl GapAccepted {
    pub(super) fn emit(&self) {
        error!(
            partition = self.partition,
            stored = ?self.stored,
            "records after the stored offset are no longer in the topic; continuing after the gap"
        );
    }
}
