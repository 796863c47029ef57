//! The backup consumer's Prometheus metrics (`edge_backup_*`), in a
//! registry of its own, served by `backup --http` at `/metrics`.
//!
//! Besides counters of what it did, the backup exports how far behind it is:
//! the age of the oldest record it has taken from the topic but not yet
//! stored (computed when scraped, so it grows while the loop is stuck
//! retrying a store), the objects' window, and when an object was last
//! stored. The shipped alerts (deploy/prometheus/edge-alerts.yml) read them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every metric of one backup consumer.
#[derive(Clone)]
pub struct BackupMetrics {
    registry: Registry,
    /// `edge_backup_records_consumed_total`: records taken from the topic
    /// (re-deliveries not counted).
    pub consumed: IntCounter,
    /// `edge_backup_records_stored_total`: records in stored objects whose
    /// offsets were committed.
    pub stored: IntCounter,
    /// `edge_backup_objects_stored_total`: objects stored and committed.
    pub objects: IntCounter,
    /// `edge_backup_stored_bytes_total`: compressed bytes of those objects.
    pub bytes: IntCounter,
    /// `edge_backup_store_errors_total`: failed attempts to store an object
    /// (each retried after a delay).
    pub store_errors: IntCounter,
    /// `edge_backup_retry_delay_seconds`: the delay before the current store
    /// retry; 0 once an object is stored.
    pub retry_delay: Gauge,
    /// `edge_backup_commit_failures_total`: offset commits that failed after
    /// their retries (the run then stops).
    pub commit_failures: IntCounter,
    /// `edge_backup_records_redelivered_total`: records the broker delivered
    /// again, skipped.
    pub redelivered: IntCounter,
    /// `edge_backup_records_dropped_on_revoke_total`: buffered records
    /// dropped because their partition was revoked (its next owner re-reads
    /// them).
    pub dropped_on_revoke: IntCounter,
    /// `edge_backup_partition_rewinds_total`: partitions read again from the
    /// beginning because the broker resumed them after their committed offset.
    pub rewinds: IntCounter,
    /// `edge_backup_assigned_partitions`: partitions currently assigned.
    pub assigned: IntGauge,
    /// `edge_backup_pending_records`: records taken but not yet stored.
    pub pending: IntGauge,
    /// `edge_backup_window_seconds`: the time window per object (`--window-seconds`).
    pub window: Gauge,
    /// `edge_backup_last_stored_timestamp_seconds`: when an object was last
    /// stored and committed (Unix time; 0 before the first).
    pub last_stored: Gauge,
    /// `edge_backup_http_refused_total{reason}`: `--http` requests refused
    /// and connections closed at the connection limit.
    pub http_refused: IntCounterVec,
    /// `edge_backup_oldest_pending_record_age_seconds`, set from
    /// `oldest_pending_ms` when rendered.
    oldest_pending_age: Gauge,
    /// Record time (ms) of the oldest record taken but not stored; 0 for none.
    oldest_pending_ms: Arc<AtomicI64>,
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<Gauge, prometheus::Error> {
    let g = Gauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

impl BackupMetrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<BackupMetrics, prometheus::Error> {
        let r = Registry::new();
        let assigned = IntGauge::new(
            "edge_backup_assigned_partitions",
            "Partitions assigned to this backup consumer.",
        )?;
        r.register(Box::new(assigned.clone()))?;
        let pending = IntGauge::new(
            "edge_backup_pending_records",
            "Records taken from the topic and not yet stored in a committed object.",
        )?;
        r.register(Box::new(pending.clone()))?;
        let http_refused = IntCounterVec::new(
            Opts::new(
                "edge_backup_http_refused_total",
                "HTTP endpoint requests refused (foreign or missing Host, sent by a web page) and connections closed at the connection limit.",
            ),
            &["reason"],
        )?;
        for reason in crate::endpoint::REFUSAL_REASONS {
            http_refused.with_label_values(&[reason]);
        }
        r.register(Box::new(http_refused.clone()))?;
        Ok(BackupMetrics {
            consumed: counter(
                &r,
                "edge_backup_records_consumed_total",
                "Records taken from the topic (re-deliveries not counted).",
            )?,
            stored: counter(
                &r,
                "edge_backup_records_stored_total",
                "Records in objects stored with their offsets committed.",
            )?,
            objects: counter(
                &r,
                "edge_backup_objects_stored_total",
                "Objects stored with their offsets committed.",
            )?,
            bytes: counter(
                &r,
                "edge_backup_stored_bytes_total",
                "Compressed bytes of the stored objects.",
            )?,
            store_errors: counter(
                &r,
                "edge_backup_store_errors_total",
                "Failed attempts to store an object or its manifest (each retried after a delay).",
            )?,
            retry_delay: gauge(
                &r,
                "edge_backup_retry_delay_seconds",
                "Delay before the current store retry; 0 once an object is stored.",
            )?,
            commit_failures: counter(
                &r,
                "edge_backup_commit_failures_total",
                "Offset commits that failed after their retries (the run stops).",
            )?,
            redelivered: counter(
                &r,
                "edge_backup_records_redelivered_total",
                "Records the broker delivered again (at or before an offset already taken), skipped.",
            )?,
            dropped_on_revoke: counter(
                &r,
                "edge_backup_records_dropped_on_revoke_total",
                "Buffered records dropped because their partition was revoked (the next owner re-reads them).",
            )?,
            rewinds: counter(
                &r,
                "edge_backup_partition_rewinds_total",
                "Partitions read again from the beginning because the broker resumed them after their committed offset.",
            )?,
            window: gauge(
                &r,
                "edge_backup_window_seconds",
                "Time window per object (--window-seconds).",
            )?,
            last_stored: gauge(
                &r,
                "edge_backup_last_stored_timestamp_seconds",
                "Unix time when an object was last stored and committed; 0 before the first.",
            )?,
            oldest_pending_age: gauge(
                &r,
                "edge_backup_oldest_pending_record_age_seconds",
                "Age (by its Kafka timestamp) of the oldest record taken and not yet stored; 0 when none is pending.",
            )?,
            assigned,
            pending,
            http_refused,
            oldest_pending_ms: Arc::new(AtomicI64::new(0)),
            registry: r,
        })
    }

    /// Notes the record time (ms) of the oldest record taken and not yet
    /// stored, `None` when none is pending.
    pub fn set_oldest_pending(&self, record_ms: Option<i64>) {
        self.oldest_pending_ms
            .store(record_ms.unwrap_or(0), Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with the pending age as of `now_ms`.
    pub fn render_at(&self, now_ms: i64) -> Result<String, prometheus::Error> {
        let oldest = self.oldest_pending_ms.load(Ordering::Relaxed);
        let age_ms = if oldest == 0 {
            0
        } else {
            now_ms.saturating_sub(oldest).max(0)
        };
        self.oldest_pending_age.set(age_ms as f64 / 1000.0);
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }

    /// [`Self::render_at`] the current time.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        self.render_at(super::consumer::now_ms())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    }

    #[test]
    fn the_pending_age_is_computed_when_rendered_and_zero_when_nothing_is_pending() {
        let m = BackupMetrics::new().unwrap();
        let age = "edge_backup_oldest_pending_record_age_seconds";
        assert_eq!(sample(&m.render_at(50_000).unwrap(), age), 0.0);
        m.set_oldest_pending(Some(20_000));
        assert_eq!(sample(&m.render_at(50_000).unwrap(), age), 30.0);
        // Nothing stored meanwhile: the same record is older at the next scrape.
        assert_eq!(sample(&m.render_at(110_500).unwrap(), age), 90.5);
        // A record stamped in the future (producer clock ahead) is not negative.
        m.set_oldest_pending(Some(200_000));
        assert_eq!(sample(&m.render_at(110_500).unwrap(), age), 0.0);
        m.set_oldest_pending(None);
        assert_eq!(sample(&m.render_at(110_500).unwrap(), age), 0.0);
    }

    #[test]
    fn every_series_is_exported_from_the_start() {
        let text = BackupMetrics::new().unwrap().render_at(0).unwrap();
        for name in [
            "edge_backup_records_consumed_total",
            "edge_backup_records_stored_total",
            "edge_backup_objects_stored_total",
            "edge_backup_stored_bytes_total",
            "edge_backup_store_errors_total",
            "edge_backup_retry_delay_seconds",
            "edge_backup_commit_failures_total",
            "edge_backup_records_redelivered_total",
            "edge_backup_records_dropped_on_revoke_total",
            "edge_backup_partition_rewinds_total",
            "edge_backup_assigned_partitions",
            "edge_backup_pending_records",
            "edge_backup_window_seconds",
            "edge_backup_last_stored_timestamp_seconds",
            "edge_backup_oldest_pending_record_age_seconds",
        ] {
            assert_eq!(sample(&text, name), 0.0, "{name}");
        }
        assert!(
            text.contains("edge_backup_http_refused_total{reason=\"connection_limit\"} 0"),
            "{text}"
        );
    }
}
