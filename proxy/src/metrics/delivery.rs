//! Metrics of the delivery path: the durable spool, its shipper, and the
//! Kafka producer's health.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Registry};

use super::{counter, gauge, register};

/// Metrics of the Kafka producer's health.
pub(crate) struct KafkaHealthMetrics {
    /// `edge_kafka_producer_rebuilds_total{reason}`: producers replaced after a fatal error.
    pub producer_rebuilds: IntCounterVec,
    /// `edge_kafka_client_errors_total{kind}`: errors librdkafka reported for the producer.
    pub client_errors: IntCounterVec,
    /// `edge_kafka_last_error_timestamp_seconds`: Unix time of the last client error (0 = none yet).
    pub last_error_timestamp: IntGauge,
}

impl KafkaHealthMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            producer_rebuilds: counter(
                registry,
                "edge_kafka_producer_rebuilds_total",
                "Kafka producers replaced by a new one after a fatal error, by reason (producer_fenced, out_of_order_sequence, fatal).",
                &["reason"],
            ),
            client_errors: counter(
                registry,
                "edge_kafka_client_errors_total",
                "Errors the Kafka client reported, by kind (all_brokers_down, transport, tls, authentication, authorization, fatal, other).",
                &["kind"],
            ),
            last_error_timestamp: gauge(
                registry,
                "edge_kafka_last_error_timestamp_seconds",
                "Unix time of the Kafka client's last error; 0 when there was none.",
            ),
        }
    }
}

/// Metrics of the durable spool and the shipper that drains it to Kafka.
pub(crate) struct SpoolMetrics {
    /// `edge_spool_bytes`: bytes of records in spool segment files on disk
    /// (zeros written ahead in the active segment not counted).
    pub bytes: IntGauge,
    /// `edge_spool_records`: records spooled and not yet acknowledged by the broker.
    pub records: IntGauge,
    /// `edge_spool_oldest_record_age_seconds`: age of the oldest unacknowledged record (0 when empty).
    pub oldest_record_age: IntGauge,
    /// `edge_spool_fsync_duration_seconds`: one group commit's `fdatasync`.
    pub fsync_duration: Histogram,
    /// `edge_spool_group_size`: requests (appends) sharing one group commit.
    pub group_size: Histogram,
    /// `edge_spool_appends_total{outcome}`: request appends (accepted, full, io_error, too_large).
    pub appends: IntCounterVec,
    /// `edge_spool_writable`: 1 while the spool takes appends (writable and not full).
    pub writable: IntGauge,
    /// `edge_spool_corrupt_records`: corrupt stretches skipped in the spool since start.
    pub corrupt_records: IntGauge,
    /// `edge_spool_prefill_failures`: zeros the spool writer could not write
    /// ahead (or cut off a finished segment) since start.
    pub prefill_failures: IntGauge,
    /// `edge_spool_checkpoint_failures`: failed writes of the spool's
    /// checkpoint file since start.
    pub checkpoint_failures: IntGauge,
    /// `edge_shipper_deliveries_total{outcome}`: records the shipper produced (acked, failed).
    pub shipper_deliveries: IntCounterVec,
}

impl SpoolMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                registry,
                name,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
            )
        };
        Self {
            bytes: gauge(
                registry,
                "edge_spool_bytes",
                "Bytes of records in spool segment files on disk (zeros written ahead not counted).",
            ),
            records: gauge(
                registry,
                "edge_spool_records",
                "Events in the spool not yet acknowledged by the broker.",
            ),
            oldest_record_age: gauge(
                registry,
                "edge_spool_oldest_record_age_seconds",
                "Age of the oldest event in the spool not yet acknowledged by the broker (0 when none).",
            ),
            fsync_duration: histogram(
                "edge_spool_fsync_duration_seconds",
                "Duration of one group commit's fdatasync.",
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
                ],
            ),
            group_size: histogram(
                "edge_spool_group_size",
                "Requests sharing one group commit (one fdatasync).",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
            ),
            appends: counter(
                registry,
                "edge_spool_appends_total",
                "Event requests appended to the spool by outcome (accepted, full, io_error, too_large).",
                &["outcome"],
            ),
            writable: gauge(
                registry,
                "edge_spool_writable",
                "1 while the spool accepts events (writable and below its bounds).",
            ),
            corrupt_records: gauge(
                registry,
                "edge_spool_corrupt_records",
                "Corrupt stretches found and skipped in the spool since start.",
            ),
            prefill_failures: gauge(
                registry,
                "edge_spool_prefill_failures",
                "Times since start the spool writer could not write zeros ahead of the records (or cut them off a finished segment).",
            ),
            checkpoint_failures: gauge(
                registry,
                "edge_spool_checkpoint_failures",
                "Times since start the spool's checkpoint file could not be written (acknowledged segments stay on disk until a write succeeds).",
            ),
            shipper_deliveries: counter(
                registry,
                "edge_shipper_deliveries_total",
                "Spooled records the shipper produced to Kafka, by outcome (acked, failed).",
                &["outcome"],
            ),
        }
    }
}
