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
use crate::metrics::delivery_events::ShipperRound;
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
/// The longest an idle shipper waits before looking at the spool again.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// `Retry-After` seconds when the spool refuses events.
pub(crate) const SPOOL_RETRY_AFTER_SECONDS: u64 = 5;

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

/// The group-commit delay of `[spool]`.
pub(crate) fn commit_delay(cfg: &edge_config::Spool) -> edge_spool::CommitDelay {
    edge_spool::CommitDelay {
        delay: Duration::from_micros(cfg.commit_delay_us),
        min_appends: usize::try_from(cfg.commit_delay_min_appends).unwrap_or(usize::MAX),
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
                prefill_bytes: cfg.prefill_bytes,
            },
            Arc::new(CommitMetrics),
        )
        .map_err(|e| anyhow::anyhow!("opening the spool in {}: {e}", dir.display()))?;
        spool.set_commit_delay(commit_delay(cfg));
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

    /// Records a delivery (or spool read) failure for `/admin/spool`.
    pub(crate) fn set_last_error(&self, error: String) {
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
        m.prefill_failures.set(s.prefill_failures as i64);
        m.checkpoint_failures.set(s.checkpoint_failures as i64);
    }
}

/// Background service: ships spooled records to Kafka in order.
pub(crate) struct Shipper {
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

/// Drops the delivered records from `pending` (the undelivered stay, in
/// spool order) and returns the spool position that may be acknowledged:
/// everything before the first undelivered record (a failed record is
/// retried before any later one is acknowledged), or `handed_upto` when all
/// were delivered.
fn settle(pending: &mut Vec<Record>, delivered: &[bool], handed_upto: u64) -> u64 {
    let mut keep = delivered.iter().map(|d| !*d);
    pending.retain(|_| keep.next().unwrap_or(true));
    pending
        .first()
        .map_or(handed_upto, |r| r.seq.saturating_sub(1))
}

/// Makes the reader's acknowledgements durable; a failure is logged (the
/// records would be sent again after a crash, never lost) and retried at the
/// next acknowledgement.
fn sync_checkpoint(reader: &mut Reader) {
    if let Err(e) = reader.sync_checkpoint() {
        tracing::error!(error = %e, "spool checkpoint failed; records will be sent again after a crash");
    }
}

/// The pause before the next round after a failed one: [`BACKOFF_MIN`],
/// doubling while rounds keep failing, up to [`BACKOFF_MAX`]; a delivered
/// round starts over.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    /// A round failed: the pause to take now (the next one doubles).
    fn failed(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        now
    }

    /// A round delivered: the next failure pauses [`BACKOFF_MIN`] again.
    fn delivered(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

impl Shipper {
    /// One delivery round over `pending`; keeps the undelivered records in
    /// it and acknowledges the spool up to the first undelivered one.
    async fn round(&self, reader: &mut Reader, pending: &mut Vec<Record>) -> bool {
        let (delivered, error) = deliver(&self.sink, pending).await;
        let acked = delivered.iter().filter(|d| **d).count();
        let failed = pending.len() - acked;
        ShipperRound {
            acked,
            failed,
            error: error.as_deref(),
        }
        .emit();
        let upto = settle(pending, &delivered, reader.handed_upto());
        if let Err(e) = reader.ack(upto) {
            tracing::error!(error = %e, "spool acknowledgement failed; records will be sent again");
        }
        if let Some(e) = error {
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
        let mut backoff = Backoff::new();
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
                // Idle: acknowledgements not yet in the checkpoint file are
                // written once its interval is over (acks under load do so
                // themselves), so new records or that moment end the wait.
                if reader.checkpoint_due_in() == Some(Duration::ZERO) {
                    sync_checkpoint(&mut reader);
                }
                let wait = match reader.checkpoint_due_in() {
                    Some(left) => left.min(IDLE_WAIT),
                    None => IDLE_WAIT,
                };
                tokio::select! {
                    _ = shutdown.changed() => {}
                    () = reader.wait(wait) => {}
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
                backoff.delivered();
                continue;
            }
            let pause = backoff.failed();
            match stop_at {
                Some(t) => {
                    tokio::time::sleep_until(t.min(tokio::time::Instant::now() + pause)).await
                }
                None => {
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        sync_checkpoint(&mut reader);
        let stats = self.spool.spool.stats();
        tracing::info!(
            records_left = stats.records,
            bytes_left = stats.bytes,
            "shipper stopped; undelivered events stay in the spool for the next start"
        );
    }
}

#[cfg(test)]
mod tests {
    use edge_spool::RecordRef;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    use super::*;
    use crate::metrics::delivery_events::ShipperOutcome;
    use crate::test_kafka::{cluster, read_back, sink};

    /// The shipper counters are process-wide: one counting test at a time.
    static COUNTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn shipped(outcome: ShipperOutcome) -> u64 {
        METRICS
            .spool
            .shipper_deliveries
            .with_label_values(&[outcome.as_label()])
            .get()
    }

    fn record(seq: u64) -> Record {
        Record {
            seq,
            appended_at_ms: 0,
            key: b"k".to_vec(),
            header: None,
            payload: vec![],
        }
    }

    #[test]
    fn settling_keeps_the_undelivered_in_order_and_acks_before_the_first_of_them() {
        let mut pending: Vec<Record> = (5..=9).map(record).collect();
        let upto = settle(&mut pending, &[true, false, true, false, true], 9);
        assert_eq!(pending.iter().map(|r| r.seq).collect::<Vec<_>>(), [6, 8]);
        assert_eq!(upto, 5, "7 and 9 are on the broker but 6 is not");
        let upto = settle(&mut pending, &[true, true], 9);
        assert!(pending.is_empty());
        assert_eq!(upto, 9, "all delivered: everything handed out");
        let mut pending: Vec<Record> = (1..=3).map(record).collect();
        assert_eq!(settle(&mut pending, &[false, true, true], 3), 0);
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn backoff_doubles_while_rounds_fail_and_starts_over_after_a_delivery() {
        let mut b = Backoff::new();
        let pauses: Vec<u128> = (0..9).map(|_| b.failed().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.delivered();
        assert_eq!(b.failed(), BACKOFF_MIN);
        assert_eq!(b.failed(), BACKOFF_MIN * 2);
    }

    /// A spool in `dir` holding one record per `(key, payload)`, appended in order.
    async fn spool_with(dir: &std::path::Path, records: &[(&[u8], Vec<u8>)]) -> Arc<SpoolState> {
        let state = SpoolState::open(&edge_config::Spool::default(), dir).unwrap();
        for (key, payload) in records {
            let r = RecordRef {
                key,
                header: None,
                payload,
            };
            state.spool.append(&[r]).await.unwrap();
        }
        Arc::new(state)
    }

    fn take_reader(state: &SpoolState) -> Reader {
        state.reader.lock().unwrap().take().unwrap()
    }

    fn keyed(n: u8) -> Vec<(&'static [u8], Vec<u8>)> {
        (0..n)
            .map(|i| {
                let key: &[u8] = if i % 3 == 0 { b"site-a" } else { b"site-b" };
                (key, vec![i])
            })
            .collect()
    }

    /// A mock cluster of `partitions`, a spool in a temporary directory
    /// holding `input`, and a shipper from the one to the other.
    struct Fixture {
        cluster: MockCluster<'static, DefaultProducerContext>,
        brokers: String,
        dir: tempfile::TempDir,
        state: Arc<SpoolState>,
        shipper: Shipper,
    }

    async fn fixture(partitions: i32, input: &[(&[u8], Vec<u8>)]) -> Fixture {
        let cluster = cluster(partitions);
        let brokers = cluster.bootstrap_servers();
        let dir = tempfile::tempdir().unwrap();
        let state = spool_with(dir.path(), input).await;
        let shipper = Shipper {
            spool: state.clone(),
            sink: Arc::new(sink(&brokers, |_| {})),
        };
        Fixture {
            cluster,
            brokers,
            dir,
            state,
            shipper,
        }
    }

    /// Closes the fixture's spool, opens it again and checks that it has
    /// nothing left to send; returns its stats.
    fn reopened(f: Fixture) -> edge_spool::Stats {
        f.state.spool.close();
        let Fixture {
            dir,
            state,
            shipper,
            ..
        } = f;
        drop((shipper, state));
        let reopened = SpoolState::open(&edge_config::Spool::default(), dir.path()).unwrap();
        let mut reader = take_reader(&reopened);
        assert!(reader.read(BATCH_RECORDS, BATCH_BYTES).unwrap().is_empty());
        reopened.spool.stats()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_round_ships_in_spool_order_and_only_then_checkpoints() {
        let _serial = COUNTERS.lock().await;
        let input = keyed(12);
        let f = fixture(2, &input).await;
        let mut reader = take_reader(&f.state);
        let mut pending = reader.read(BATCH_RECORDS, BATCH_BYTES).unwrap();
        assert_eq!(pending.len(), 12);
        let last = pending.last().unwrap().seq;
        assert_eq!(
            f.state.spool.stats().acked_seq,
            0,
            "nothing acked before the broker"
        );
        let acked_before = shipped(ShipperOutcome::Acked);

        assert!(f.shipper.round(&mut reader, &mut pending).await);
        assert!(pending.is_empty());
        assert_eq!(shipped(ShipperOutcome::Acked), acked_before + 12);
        let stats = f.state.spool.stats();
        assert_eq!((stats.acked_seq, stats.records), (last, 0));
        assert!(f.state.last_error().is_none());

        // On the broker, each key's records are in spool order.
        let stored = read_back(&f.brokers, 2, 12);
        for key in [b"site-a".as_slice(), b"site-b".as_slice()] {
            let sent: Vec<Vec<u8>> = input
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, p)| p.clone())
                .collect();
            let got: Vec<Vec<u8>> = stored
                .iter()
                .filter(|s| s.key == key)
                .map(|s| s.payload.clone())
                .collect();
            assert_eq!(got, sent, "{}", String::from_utf8_lossy(key));
            let partitions: std::collections::BTreeSet<i32> = stored
                .iter()
                .filter(|s| s.key == key)
                .map(|s| s.partition)
                .collect();
            assert_eq!(partitions.len(), 1, "one key, one partition");
        }

        // The checkpoint is durable (a reader's first acknowledgement is
        // written at once): a restart has nothing left to send.
        drop(reader);
        assert_eq!(reopened(f).records, 0);
    }

    /// Polls (at most 30 s) until `done` holds.
    async fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn append_keyed(state: &SpoolState, n: u8) -> u64 {
        let mut last = 0;
        for (key, payload) in keyed(n) {
            let r = RecordRef {
                key,
                header: None,
                payload: &payload,
            };
            last = *state.spool.append(&[r]).await.unwrap().end();
        }
        last
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_running_shipper_checkpoints_once_idle_and_when_stopped() {
        let _serial = COUNTERS.lock().await;
        let f = fixture(1, &keyed(3)).await;
        let (stop, watch) = tokio::sync::watch::channel(false);
        let stats = || f.state.spool.stats();
        let drive = async {
            wait_until("first records shipped", || stats().acked_seq == 3).await;
            // Acknowledged within CHECKPOINT_INTERVAL of the first: kept in
            // memory by the ack, written by the idle shipper once it is due.
            let last = append_keyed(&f.state, 3).await;
            wait_until("checkpoint written while idle", || {
                stats().checkpointed_seq == last
            })
            .await;
            // Stopped right after a delivery: the stop writes what is left.
            let last = append_keyed(&f.state, 3).await;
            wait_until("last records shipped", || stats().acked_seq == last).await;
            stop.send(true).unwrap();
            last
        };
        let ((), last) = tokio::join!(f.shipper.start(watch), drive);
        assert_eq!(stats().checkpointed_seq, last);
        assert_eq!(read_back(&f.brokers, 1, 9).len(), 9);
        assert_eq!(reopened(f).acked_seq, last);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_round_keeps_records_and_checkpoint_and_the_retry_ships_them() {
        let _serial = COUNTERS.lock().await;
        let input = keyed(6);
        let Fixture {
            cluster,
            brokers,
            dir: _dir,
            state,
            shipper,
        } = fixture(1, &input).await;
        let mut reader = take_reader(&state);
        let mut pending = reader.read(BATCH_RECORDS, BATCH_BYTES).unwrap();
        let seqs: Vec<u64> = pending.iter().map(|r| r.seq).collect();
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 16],
        );
        let failed_before = shipped(ShipperOutcome::Failed);

        assert!(!shipper.round(&mut reader, &mut pending).await);
        assert_eq!(pending.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs);
        assert_eq!(shipped(ShipperOutcome::Failed), failed_before + 6);
        let stats = state.spool.stats();
        assert_eq!((stats.acked_seq, stats.records), (0, 6), "nothing acked");
        let error = state.last_error().unwrap();
        assert!(error.error.contains("kafka delivery failed"), "{error:?}");

        // The retry (the shipper's next round, after its backoff) ships them.
        cluster.clear_request_errors(RDKafkaApiKey::Produce);
        let ok = shipper.round(&mut reader, &mut pending).await;
        assert!(ok, "{:?} {}", state.last_error(), pending.len());
        assert!(pending.is_empty());
        let stats = state.spool.stats();
        assert_eq!((stats.acked_seq, stats.records), (*seqs.last().unwrap(), 0));
        let stored = read_back(&brokers, 1, 6);
        let payloads: Vec<Vec<u8>> = stored.iter().map(|s| s.payload.clone()).collect();
        assert_eq!(
            payloads,
            input.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
        );
    }
}
