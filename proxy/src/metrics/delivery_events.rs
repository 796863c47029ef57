//! Observable events of the delivery path — the Kafka producer
//! (`kafka.rs`), its health (`kafka_health.rs`) and the shipper that drains
//! the spool (`shipper.rs`): one type per outcome that counts and logs (with
//! structured `tracing` fields) in one call, with label values from enums.
//! Call sites say what happened; this module says how it shows.
//!
//! The label enums live here, not beside the code that decides them, so
//! `metrics` depends on no module of the delivery path (no import cycle).

use std::fmt::Display;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::error::RDKafkaErrorCode;

use prometheus::IntCounter;

use super::METRICS;
use super::handles::Slots;

/// What became of one record handed to the producer, the `outcome` label of
/// `edge_kafka_delivery_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryOutcome {
    /// The broker acknowledged the record.
    Acked,
    /// Not enqueued (producer error) or not acknowledged in time.
    Failed,
    /// Not enqueued: the producer's local queue was full.
    QueueFull,
}

impl DeliveryOutcome {
    /// Every outcome.
    #[cfg(test)]
    pub(crate) const ALL: [DeliveryOutcome; 3] = [Self::Acked, Self::Failed, Self::QueueFull];

    /// The label value.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Acked => "acked",
            Self::Failed => "failed",
            Self::QueueFull => "queue_full",
        }
    }
}

/// Counts one record in `edge_kafka_delivery_total{outcome}`, through a
/// handle resolved once per outcome.
fn count_delivery(outcome: DeliveryOutcome) {
    static DELIVERIES: Slots<IntCounter, 3> = Slots::new();
    let resolve = || {
        METRICS
            .kafka_delivery
            .with_label_values(&[outcome.as_label()])
    };
    DELIVERIES.with(outcome as usize, resolve, IntCounter::inc);
}

/// The delivery of one record, as `KafkaSink::send_each` saw it.
#[derive(Clone, Copy)]
pub(crate) enum RecordDelivery<'a> {
    /// The broker acknowledged it, `latency` after its batch was started.
    Acked {
        /// From the start of the batch to this record's acknowledgement.
        latency: Duration,
    },
    /// The producer's queue was full; the record was not enqueued.
    QueueFull,
    /// Not enqueued, or not acknowledged in time.
    Failed {
        /// librdkafka's text or the timeout (holds no event data).
        error: &'a dyn Display,
    },
}

impl RecordDelivery<'_> {
    /// The label this delivery counts under.
    pub(crate) fn outcome(&self) -> DeliveryOutcome {
        match self {
            Self::Acked { .. } => DeliveryOutcome::Acked,
            Self::QueueFull => DeliveryOutcome::QueueFull,
            Self::Failed { .. } => DeliveryOutcome::Failed,
        }
    }

    /// Counts the record (`edge_kafka_delivery_total{outcome}`; an
    /// acknowledgement also in `edge_kafka_delivery_duration_seconds`) and
    /// logs a failure at debug level (per record; the shipper logs each
    /// failed round as a warning, see [`ShipperRound`]).
    pub(crate) fn emit(self) {
        let outcome = self.outcome();
        count_delivery(outcome);
        match self {
            Self::Acked { latency } => METRICS
                .kafka_delivery_duration
                .observe(latency.as_secs_f64()),
            Self::QueueFull => tracing::debug!(
                outcome = outcome.as_label(),
                "kafka record not enqueued: the producer queue is full"
            ),
            Self::Failed { error } => tracing::debug!(
                outcome = outcome.as_label(),
                error = %error,
                "kafka record not delivered"
            ),
        }
    }
}

/// The broker readiness a probe found (`edge_kafka_ready`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KafkaReadiness<'a> {
    /// Whether the broker was reached and the topic exists.
    pub ready: bool,
    /// Whether that differs from the previous verdict (then it is logged).
    pub changed: bool,
    /// The topic probed.
    pub topic: &'a str,
    /// The broker's last error (`KIND: TEXT`), for the log line of a loss.
    pub last_error: Option<&'a str>,
}

impl KafkaReadiness<'_> {
    /// Sets `edge_kafka_ready` and logs a change: info when ready, warning
    /// (with the broker's last error) when not.
    pub(crate) fn emit(self) {
        METRICS.kafka_ready.set(i64::from(self.ready));
        if !self.changed {
            return;
        }
        if self.ready {
            tracing::info!(topic = %self.topic, "kafka producer ready");
        } else {
            tracing::warn!(
                topic = %self.topic,
                last_error = self.last_error.unwrap_or("none"),
                "kafka not reachable, topic missing, or producer being replaced"
            );
        }
    }
}

/// A delivery failed or the producer was replaced: `edge_kafka_ready` is 0
/// until the next probe says otherwise (not logged here: the failure is).
pub(crate) fn kafka_unready() {
    METRICS.kafka_ready.set(0);
}

/// Kinds of client errors, the `kind` label of `edge_kafka_client_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// No broker connection is up.
    AllBrokersDown,
    /// A connection failed or broke (refused, reset, timed out).
    Transport,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// SASL authentication failed.
    Authentication,
    /// The broker refused an operation for lack of permission.
    Authorization,
    /// A fatal error: the producer cannot continue and is replaced.
    Fatal,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in [`ErrorKind::index`] order.
    pub(crate) const ALL: [ErrorKind; 7] = [
        Self::AllBrokersDown,
        Self::Transport,
        Self::Tls,
        Self::Authentication,
        Self::Authorization,
        Self::Fatal,
        Self::Other,
    ];

    /// How many kinds there are.
    pub(crate) const COUNT: usize = Self::ALL.len();

    /// Classifies a librdkafka error code.
    pub(crate) fn of(code: RDKafkaErrorCode) -> ErrorKind {
        use RDKafkaErrorCode as C;
        match code {
            C::AllBrokersDown => ErrorKind::AllBrokersDown,
            C::BrokerTransportFailure
            | C::Resolve
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::MessageTimedOut => ErrorKind::Transport,
            C::SSL => ErrorKind::Tls,
            C::Authentication | C::SaslAuthenticationFailed => ErrorKind::Authentication,
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed => ErrorKind::Authorization,
            c if RebuildReason::of(c).is_some() => ErrorKind::Fatal,
            _ => ErrorKind::Other,
        }
    }

    /// A distinct index below [`ErrorKind::COUNT`].
    pub(crate) fn index(self) -> usize {
        match self {
            ErrorKind::AllBrokersDown => 0,
            ErrorKind::Transport => 1,
            ErrorKind::Tls => 2,
            ErrorKind::Authentication => 3,
            ErrorKind::Authorization => 4,
            ErrorKind::Fatal => 5,
            ErrorKind::Other => 6,
        }
    }

    /// The metric label.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            ErrorKind::AllBrokersDown => "all_brokers_down",
            ErrorKind::Transport => "transport",
            ErrorKind::Tls => "tls",
            ErrorKind::Authentication => "authentication",
            ErrorKind::Authorization => "authorization",
            ErrorKind::Fatal => "fatal",
            ErrorKind::Other => "other",
        }
    }
}

/// An error librdkafka reported for the producer (its error callback, or a
/// fatal error the sink acted on).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientError<'a> {
    /// Its kind.
    pub kind: ErrorKind,
    /// librdkafka's text (broker address and cause, never credentials).
    pub text: &'a str,
    /// When it happened.
    pub at: SystemTime,
    /// Whether to log it (the caller logs each kind at most once a minute).
    pub log: bool,
}

impl ClientError<'_> {
    /// Counts it (`edge_kafka_client_errors_total{kind}`), sets
    /// `edge_kafka_last_error_timestamp_seconds`, and logs a warning when
    /// [`ClientError::log`] says so.
    pub(crate) fn emit(self) {
        METRICS
            .kafka_health
            .client_errors
            .with_label_values(&[self.kind.as_label()])
            .inc();
        let secs = self
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        METRICS.kafka_health.last_error_timestamp.set(secs);
        if self.log {
            tracing::warn!(kind = self.kind.as_label(), error = %self.text, "kafka client error");
        }
    }
}

/// Why a producer was replaced, the `reason` label of
/// `edge_kafka_producer_rebuilds_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RebuildReason {
    /// The broker fenced the idempotent producer (`ProducerFenced`, `InvalidProducerEpoch`).
    ProducerFenced,
    /// The broker saw a sequence gap (`OutOfOrderSequenceNumber`).
    OutOfOrderSequence,
    /// Any other error librdkafka raised as fatal.
    Fatal,
}

impl RebuildReason {
    /// The reason when `code` means the producer cannot continue, else `None`.
    pub(crate) fn of(code: RDKafkaErrorCode) -> Option<RebuildReason> {
        use RDKafkaErrorCode as C;
        match code {
            C::ProducerFenced | C::InvalidProducerEpoch => Some(RebuildReason::ProducerFenced),
            C::OutOfOrderSequenceNumber => Some(RebuildReason::OutOfOrderSequence),
            C::Fatal => Some(RebuildReason::Fatal),
            _ => None,
        }
    }

    /// The metric label.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            RebuildReason::ProducerFenced => "producer_fenced",
            RebuildReason::OutOfOrderSequence => "out_of_order_sequence",
            RebuildReason::Fatal => "fatal",
        }
    }
}

/// A producer that hit a fatal error was replaced by a new one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProducerRebuilt<'a> {
    /// Why.
    pub reason: RebuildReason,
    /// librdkafka's description of the fatal state.
    pub cause: &'a str,
    /// The backoff before another rebuild may happen.
    pub next_rebuild_not_before: Duration,
}

impl ProducerRebuilt<'_> {
    /// Counts it (`edge_kafka_producer_rebuilds_total{reason}`) and logs a warning.
    pub(crate) fn emit(self) {
        METRICS
            .kafka_health
            .producer_rebuilds
            .with_label_values(&[self.reason.as_label()])
            .inc();
        tracing::warn!(
            reason = self.reason.as_label(),
            cause = %self.cause,
            next_rebuild_not_before_seconds = self.next_rebuild_not_before.as_secs(),
            "kafka producer hit a fatal error; replaced it with a new producer"
        );
    }
}

/// A replacement producer could not be created (retried after backoff).
#[derive(Clone, Copy)]
pub(crate) struct ProducerRebuildFailed<'a> {
    /// Why the producer had to be replaced.
    pub reason: RebuildReason,
    /// Why the new one could not be created.
    pub error: &'a dyn Display,
}

impl ProducerRebuildFailed<'_> {
    /// Logs it as an error (not counted: the rebuild counter counts
    /// replacements that happened).
    pub(crate) fn emit(self) {
        tracing::error!(
            reason = self.reason.as_label(),
            error = %self.error,
            "cannot create a new kafka producer; retrying after backoff"
        );
    }
}

/// What became of a spooled record the shipper produced, the `outcome` label
/// of `edge_shipper_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShipperOutcome {
    /// The broker acknowledged it; its spool position may be acknowledged.
    Acked,
    /// Not delivered; it stays pending and is retried after backoff.
    Failed,
}

impl ShipperOutcome {
    /// The label value.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Acked => "acked",
            Self::Failed => "failed",
        }
    }
}

/// One delivery round of the shipper.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShipperRound<'a> {
    /// Records the broker acknowledged.
    pub acked: usize,
    /// Records not delivered (kept for the next round).
    pub failed: usize,
    /// The round's first delivery error, if any.
    pub error: Option<&'a str>,
}

impl ShipperRound<'_> {
    /// Counts the round's records by outcome and, when it failed, logs a
    /// warning (once per round; rounds after a failure are spaced by the
    /// shipper's backoff).
    pub(crate) fn emit(self) {
        let deliveries = &METRICS.spool.shipper_deliveries;
        deliveries
            .with_label_values(&[ShipperOutcome::Acked.as_label()])
            .inc_by(self.acked as u64);
        deliveries
            .with_label_values(&[ShipperOutcome::Failed.as_label()])
            .inc_by(self.failed as u64);
        if let Some(error) = self.error {
            tracing::warn!(
                error = %error,
                acked = self.acked,
                failed = self.failed,
                "kafka delivery of spooled events failed; retrying"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn labels_are_the_documented_ones() {
        assert_eq!(
            DeliveryOutcome::ALL.map(DeliveryOutcome::as_label),
            ["acked", "failed", "queue_full"]
        );
        assert_eq!(
            [ShipperOutcome::Acked, ShipperOutcome::Failed].map(ShipperOutcome::as_label),
            ["acked", "failed"]
        );
        assert_eq!(
            ErrorKind::ALL.map(ErrorKind::as_label),
            [
                "all_brokers_down",
                "transport",
                "tls",
                "authentication",
                "authorization",
                "fatal",
                "other"
            ]
        );
        for (i, k) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
        assert_eq!(
            [
                RebuildReason::ProducerFenced,
                RebuildReason::OutOfOrderSequence,
                RebuildReason::Fatal
            ]
            .map(RebuildReason::as_label),
            ["producer_fenced", "out_of_order_sequence", "fatal"]
        );
    }

    #[test]
    fn each_event_counts_under_its_label() {
        let delivery = |o: DeliveryOutcome| {
            METRICS
                .kafka_delivery
                .with_label_values(&[o.as_label()])
                .get()
        };
        let before = DeliveryOutcome::ALL.map(delivery);
        let samples = METRICS.kafka_delivery_duration.get_sample_count();
        RecordDelivery::Acked {
            latency: Duration::from_millis(3),
        }
        .emit();
        RecordDelivery::QueueFull.emit();
        RecordDelivery::Failed { error: &"timeout" }.emit();
        RecordDelivery::Failed { error: &"refused" }.emit();
        let after = DeliveryOutcome::ALL.map(delivery);
        // Other tests of this binary deliver too: at least these moved.
        assert!(after[0] > before[0] && after[1] >= before[1] + 2 && after[2] > before[2]);
        assert!(METRICS.kafka_delivery_duration.get_sample_count() > samples);

        let rebuilds = |r: RebuildReason| {
            METRICS
                .kafka_health
                .producer_rebuilds
                .with_label_values(&[r.as_label()])
                .get()
        };
        let was = rebuilds(RebuildReason::OutOfOrderSequence);
        ProducerRebuilt {
            reason: RebuildReason::OutOfOrderSequence,
            cause: "test",
            next_rebuild_not_before: Duration::from_secs(1),
        }
        .emit();
        assert!(rebuilds(RebuildReason::OutOfOrderSequence) > was);

        let errors = || {
            METRICS
                .kafka_health
                .client_errors
                .with_label_values(&["authorization"])
                .get()
        };
        let was = errors();
        ClientError {
            kind: ErrorKind::Authorization,
            text: "denied",
            at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            log: false,
        }
        .emit();
        assert!(errors() > was);
    }
}
