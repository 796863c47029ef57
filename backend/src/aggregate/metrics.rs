//! The aggregator's Prometheus metrics (`edge_backend_*`), in a registry of
//! its own, served by the HTTP endpoint at `/metrics`.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use super::store::ErrorClass;

/// Every metric of one aggregator.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `edge_backend_events_aggregated_total`: events added to rollups (committed).
    pub events: IntCounter,
    /// `edge_backend_dead_letters_total{reason}`: records sent to the dead-letter topic.
    pub dead_letters: IntCounterVec,
    /// `edge_backend_batches_total`: batches committed.
    pub batches: IntCounter,
    /// `edge_backend_batch_conflicts_total`: batches refused because another
    /// consumer had moved a partition's stored offset.
    pub conflicts: IntCounter,
    /// `edge_backend_batch_failures_total`: batches that failed (store or DLQ) and were retried.
    pub failures: IntCounter,
    /// `edge_backend_assigned_partitions`: partitions currently assigned.
    pub assigned: IntGauge,
    /// `edge_backend_partition_rewinds_total`: partitions read again from the
    /// beginning because the broker skipped records after a seek.
    pub rewinds: IntCounter,
    /// `edge_backend_store_errors_total{class}`: failed batch commits by
    /// class (`content`: isolated records were dead-lettered or the batch
    /// retried; `infrastructure`: retried after a backoff delay).
    pub store_errors: IntCounterVec,
    /// `edge_backend_retry_delay_seconds`: the backoff delay before the
    /// current retry (0 when the last batch succeeded).
    pub retry_delay: Gauge,
    /// `edge_backend_duplicate_events_total`: events not counted because
    /// their event id had already been counted.
    pub duplicates: IntCounter,
    /// `edge_backend_http_refused_total{reason}`: HTTP requests refused for
    /// their `Host` or as sent by a web page.
    pub http_refused: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let events = IntCounter::new(
            "edge_backend_events_aggregated_total",
            "Events added to rollups (committed with their offsets).",
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "edge_backend_dead_letters_total",
                "Records sent to the dead-letter topic, by reason.",
            ),
            &["reason"],
        )?;
        let batches = IntCounter::new("edge_backend_batches_total", "Batches committed.")?;
        let conflicts = IntCounter::new(
            "edge_backend_batch_conflicts_total",
            "Batches refused because a partition's stored offset had moved (another consumer).",
        )?;
        let failures = IntCounter::new(
            "edge_backend_batch_failures_total",
            "Batches that failed (store or dead-letter produce) and were read again.",
        )?;
        let assigned = IntGauge::new(
            "edge_backend_assigned_partitions",
            "Partitions assigned to this aggregator.",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(batches.clone()))?;
        registry.register(Box::new(conflicts.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        let rewinds = IntCounter::new(
            "edge_backend_partition_rewinds_total",
            "Partitions read again from the beginning because the broker skipped records after a seek.",
        )?;
        registry.register(Box::new(assigned.clone()))?;
        registry.register(Box::new(rewinds.clone()))?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "edge_backend_store_errors_total",
                "Failed batch commits, by class: content (records isolated and dead-lettered) or infrastructure (retried with backoff).",
            ),
            &["class"],
        )?;
        let retry_delay = Gauge::new(
            "edge_backend_retry_delay_seconds",
            "Backoff delay before the current batch retry; 0 after a success.",
        )?;
        let duplicates = IntCounter::new(
            "edge_backend_duplicate_events_total",
            "Events not counted because their event id had already been counted.",
        )?;
        for class in ErrorClass::ALL {
            store_errors.with_label_values(&[class.as_str()]);
        }
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(retry_delay.clone()))?;
        registry.register(Box::new(duplicates.clone()))?;
        let http_refused = IntCounterVec::new(
            Opts::new(
                "edge_backend_http_refused_total",
                "HTTP endpoint requests refused (foreign or missing Host, sent by a web page) and connections closed at the connection limit.",
            ),
            &["reason"],
        )?;
        for reason in crate::endpoint::REFUSAL_REASONS {
            http_refused.with_label_values(&[reason]);
        }
        registry.register(Box::new(http_refused.clone()))?;
        Ok(Metrics {
            store_errors,
            retry_delay,
            duplicates,
            http_refused,
            registry,
            events,
            dead_letters,
            batches,
            conflicts,
            failures,
            assigned,
            rewinds,
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}
