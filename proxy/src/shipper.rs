//! The durable spool on the request path and the shipper that drains it.
//!
//! Event requests append their encrypted records to the spool
//! ([`edge_spool`]) and are answered 2xx once the records are fsync'd. The
//! [`Shipper`] background service reads the spool in order, produces the
//! records to Kafka through [`KafkaSink::send_each`], and acknowledges spool
//! positions only after the broker acknowledged every record up to them.
//! Failed deliveries are retried with backoff and never dropped; a crash
//! between a broker acknowledgement and the spool checkpoint sends those
//! records again (the downstream deduplicates by event id).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use edge_spool::{Commit, Observer, Reader, Record, Spool, SpoolConfig};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::kafka::{KafkaSink, OutRecord};
use crate::metrics::METRICS;
use crate::state::unix_millis;

/// Records handed to Kafka per round.
const BATCH_RECORDS: usize = 2_000;
/// Payload bytes handed to Kafka per round.
const BATCH_BYTES: usize = 4 << 20;
/// First and longest pause between delivery attempts of failed records.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// After SIGTERM, how long the shipper keeps delivering before leaving the
/// rest on disk for the next start (Pingora's grace period is 1 s, after
/// which its runtimes stop).
const SHUTDOWN_SHIPPING: Duration = Duration::from_millis(800);
/// `Retry-After` seconds when the spool refuses events.
pub const SPOOL_RETRY_AFTER_SECONDS: u64 = 5;

/// The last delivery failure the shipper saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokerError {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The error (librdkafka's text; holds no event data).
    pub error: String,
}

/// The spool plus what the admin endpoint and readiness report about it.
pub struct SpoolState {
    /// The write-ahead log.
    pub spool: Spool,
    last_error: Mutex<Option<BrokerError>>,
    reader: Mutex<Option<Reader>>,
}

/// Turns group commits into metrics.
struct CommitMetrics;

impl Observer for CommitMetrics {
    fn committed(&self, commit: &Commit) {
        if commit.ok {
            let m = &METRICS.spool;
            m.fsync_duration.observe(commit.fsync.as_secs_f64());
            m.group_size.observe(commit.appends as f64);
        }
    }
}

impl SpoolState {
    /// Opens the spool of `[spool]` (recovering what a previous run left).
    pub fn open(cfg: &edge_config::Spool, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let dir = cfg.dir_in(data_dir);
        let spool = Spool::open(
            &SpoolConfig {
                dir: dir.clone(),
                max_bytes: cfg.max_bytes,
                min_free_disk_bytes: cfg.min_free_disk_bytes,
                segment_bytes: cfg.segment_bytes,
            },
            Arc::new(CommitMetrics),
        )
        .map_err(|e| anyhow::anyhow!("opening the spool in {}: {e}", dir.display()))?;
        let stats = spool.stats();
        if stats.records > 0 || stats.torn_bytes_truncated > 0 || stats.corrupt_skipped > 0 {
            tracing::info!(
                records = stats.records,
                bytes = stats.bytes,
                torn_bytes_truncated = stats.torn_bytes_truncated,
                corrupt_skipped = stats.corrupt_skipped,
                "spool recovered; the shipper resumes delivery"
            );
        }
        let reader = spool.reader();
        let state = Self {
            spool,
            last_error: Mutex::new(None),
            reader: Mutex::new(reader),
        };
        state.publish();
        Ok(state)
    }

    /// Whether events are being accepted and durably kept.
    pub fn is_ready(&self) -> bool {
        let stats = self.spool.stats();
        stats.writable && stats.full.is_none()
    }

    /// The last delivery failure, if any.
    pub fn last_error(&self) -> Option<BrokerError> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_last_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(BrokerError {
            at_ms: unix_millis(),
            error,
        });
    }

    /// Copies the spool's counters into the gauges.
    pub fn publish(&self) {
        let s = self.spool.stats();
        let m = &METRICS.spool;
        m.bytes.set(s.bytes as i64);
        m.records.set(s.records as i64);
        m.oldest_record_age.set(
            s.oldest_unacked_ms
                .map_or(0, |t| ((unix_millis() - t) / 1000).max(0)),
        );
        m.writable.set(i64::from(s.writable && s.full.is_none()));
        m.corrupt_records.set(s.corrupt_skipped as i64);
    }
}

/// Background service: ships spooled records to Kafka in order.
pub struct Shipper {
    /// The spool.
    pub spool: Arc<SpoolState>,
    /// The producer.
    pub sink: Arc<KafkaSink>,
}

/// Delivers `records`: every record is handed to the producer in spool
/// order before any acknowledgement is awaited (one round trip per batch,
/// not per run of equal keys), so records of one key keep their order on
/// their partition. Returns which records the broker acknowledged and the
/// first error.
async fn deliver(sink: &KafkaSink, records: &[Record]) -> (Vec<bool>, Option<String>) {
    let parts: Vec<OutRecord<'_>> = records
        .iter()
        .map(|r| (&r.key[..], &r.payload[..], r.header.as_deref()))
        .collect();
    let (delivered, error) = sink.send_each(&parts).await;
    (delivered, error.map(|e| e.to_string()))
}

impl Shipper {
    /// One delivery round over `pending`; keeps the undelivered records in
    /// it and acknowledges the spool up to the first undelivered one.
    async fn round(&self, reader: &mut Reader, pending: &mut Vec<Record>) -> bool {
        let (delivered, error) = deliver(&self.sink, pending).await;
        let acked = delivered.iter().filter(|d| **d).count();
        let failed = pending.len() - acked;
        let m = &METRICS.spool;
        m.shipper_deliveries
            .with_label_values(&["acked"])
            .inc_by(acked as u64);
        m.shipper_deliveries
            .with_label_values(&["failed"])
            .inc_by(failed as u64);
        let mut keep = delivered.iter().map(|d| !*d);
        pending.retain(|_| keep.next().unwrap_or(true));
        // Every record handed out before the first undelivered one is on the
        // broker (a failed record is retried before later ones are acked).
        let upto = pending
            .first()
            .map_or(reader.handed_upto(), |r| r.seq.saturating_sub(1));
        if let Err(e) = reader.ack(upto) {
            tracing::error!(error = %e, "spool acknowledgement failed; records will be sent again");
        }
        if let Some(e) = error {
            tracing::warn!(error = %e, failed, "kafka delivery of spooled events failed; retrying");
            self.spool.set_last_error(e);
            return false;
        }
        true
    }
}

#[async_trait]
impl BackgroundService for Shipper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self
            .spool
            .reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut reader) = taken else {
            tracing::error!("spool reader already taken; shipper not started");
            return;
        };
        let mut pending: Vec<Record> = Vec::new();
        let mut backoff = BACKOFF_MIN;
        let mut stop_at: Option<tokio::time::Instant> = None;
        loop {
            if stop_at.is_none() && *shutdown.borrow() {
                stop_at = Some(tokio::time::Instant::now() + SHUTDOWN_SHIPPING);
            }
            if stop_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
                break;
            }
            if pending.is_empty() {
                match reader.read(BATCH_RECORDS, BATCH_BYTES) {
                    Ok(batch) => pending = batch,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the spool failed");
                        self.spool.set_last_error(format!("spool read: {e}"));
                    }
                }
            }
            self.spool.publish();
            if pending.is_empty() {
                if stop_at.is_some() {
                    break;
                }
                tokio::select! {
                    _ = shutdown.changed() => {}
                    () = reader.wait(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let ok = {
                let round = self.round(&mut reader, &mut pending);
                tokio::pin!(round);
                match stop_at {
                    Some(t) => tokio::time::timeout_at(t, round).await.unwrap_or(false),
                    None => tokio::select! {
                        ok = &mut round => ok,
                        _ = shutdown.changed() => {
                            // Shutting down: this round may still finish in time.
                            let t = tokio::time::Instant::now() + SHUTDOWN_SHIPPING;
                            stop_at = Some(t);
                            tokio::time::timeout_at(t, round).await.unwrap_or(false)
                        }
                    },
                }
            };
            self.spool.publish();
            if ok {
                backoff = BACKOFF_MIN;
                continue;
            }
            match stop_at {
                Some(t) => {
                    tokio::time::sleep_until(t.min(tokio::time::Instant::now() + backoff)).await
                }
                None => {
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        let stats = self.spool.spool.stats();
        tracing::info!(
            records_left = stats.records,
            bytes_left = stats.bytes,
            "shipper stopped; undelivered events stay in the spool for the next start"
        );
    }
}
