//! The capture's own metric, registered into the edge's registry:
//! `edge_capture_records_total{outcome}`, with label values from
//! [`RecordOutcome`].

use prometheus::{IntCounterVec, Opts, Registry};

/// What became of one captured record, the `outcome` label of
/// `edge_capture_records_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Written to the capture file.
    Written,
    /// Dropped because the writer's queue was full (the request path never waits).
    DroppedQueueFull,
    /// Not written: serialising, rotating, opening or writing failed, or the
    /// writer thread is gone.
    WriteError,
}

impl RecordOutcome {
    /// Every outcome, in label order.
    pub const ALL: [RecordOutcome; 3] = [Self::Written, Self::DroppedQueueFull, Self::WriteError];

    /// The label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Written => "written",
            Self::DroppedQueueFull => "dropped_queue_full",
            Self::WriteError => "write_error",
        }
    }
}

/// The capture's counters; cheap to clone (the writer thread holds one).
#[derive(Debug, Clone)]
pub struct CaptureMetrics {
    records: IntCounterVec,
}

impl CaptureMetrics {
    /// Creates `edge_capture_records_total` and registers it into `registry`.
    ///
    /// # Errors
    ///
    /// When the registry already holds a metric of that name.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let records = IntCounterVec::new(
            Opts::new(
                "edge_capture_records_total",
                "Traffic capture records by outcome (written, dropped_queue_full, write_error).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(records.clone()))?;
        Ok(Self { records })
    }

    /// Counts one record with `outcome`.
    pub fn record(&self, outcome: RecordOutcome) {
        self.records.with_label_values(&[outcome.as_label()]).inc();
    }

    /// The records counted with `outcome` so far.
    pub fn count(&self, outcome: RecordOutcome) -> u64 {
        self.records.with_label_values(&[outcome.as_label()]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_documented_ones_and_a_second_registration_fails() {
        assert_eq!(
            RecordOutcome::ALL.map(RecordOutcome::as_label),
            ["written", "dropped_queue_full", "write_error"]
        );
        let registry = Registry::new();
        let m = CaptureMetrics::new(&registry).unwrap();
        m.record(RecordOutcome::WriteError);
        assert_eq!(m.count(RecordOutcome::WriteError), 1);
        assert_eq!(m.count(RecordOutcome::Written), 0);
        assert!(CaptureMetrics::new(&registry).is_err());
    }
}
