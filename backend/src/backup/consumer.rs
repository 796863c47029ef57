//! `edge-backend backup`: the consumer loop. Reads the topic in its own
//! consumer group, cuts per-partition batches ([`super::window`]), stores
//! each object and its manifest, and only then commits the offset after the
//! object's last record.
//!
//! Invariants that make a crash safe (see docs/backup.md):
//! - per partition, an object is stored, then its manifest, then its offset
//!   is committed synchronously, before the next object of that partition
//!   is stored: at most one stored-but-uncommitted object per partition;
//! - object names depend only on (topic, partition, first offset, first
//!   timestamp), so the run after a crash, which starts at the committed
//!   offset, writes its first object under that same name and replaces it;
//! - a revoked partition's open batch is dropped, never stored: its next
//!   owner re-reads it from the committed offset.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset};
use tracing::{debug, info, warn};

use super::frame::{BackupRecord, Header, Timestamp};
use super::group::{BackupContext, committed_offset, warn_if_stalled};
use super::metrics::BackupMetrics;
use super::resume::{ResumeGuard, Verdict};
use super::store::{BackupStore, StoreConfig};
use super::window::{PushError, WindowPolicy, Windows};
use super::writer::{Stop, Writer, note_pending};

/// What to back up, where, and how objects are cut.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topic to back up.
    pub topic: String,
    /// Consumer group id (its own group: `edge-backup` by default).
    pub group: String,
    /// Extra librdkafka properties (TLS, SASL…).
    pub properties: Vec<(String, String)>,
    /// Time window per object.
    pub window: Duration,
    /// Size limit per object (framed bytes before compression).
    pub max_object_bytes: usize,
    /// How long after a window's end a partition's batch still waits for records.
    pub grace: Duration,
    /// Where objects go.
    pub store: StoreConfig,
    /// Crash testing only: abort the process right after storing this many
    /// objects, before committing the last one's offset.
    pub abort_after_objects: Option<u64>,
    /// Where to serve `/metrics` and `/healthz`, if anywhere.
    pub http: Option<SocketAddr>,
    /// `Host` values the HTTP endpoint answers besides its listen address
    /// (default: the loopback names; see `edge_config::host_guard`).
    pub http_allowed_hosts: Vec<String>,
}

impl BackupOptions {
    /// Defaults: group `edge-backup`, 5 minute windows, 64 MiB objects, 10 s grace.
    pub fn new(brokers: &str, topic: &str, store: StoreConfig) -> BackupOptions {
        BackupOptions {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group: "edge-backup".to_string(),
            properties: Vec::new(),
            window: Duration::from_secs(300),
            max_object_bytes: 64 << 20,
            grace: Duration::from_secs(10),
            store,
            abort_after_objects: None,
            http: None,
            http_allowed_hosts: crate::endpoint::default_allowed_hosts(),
        }
    }
}

/// Counts of one backup run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    /// Records consumed.
    pub consumed: u64,
    /// Records stored in objects whose offsets were committed.
    pub stored: u64,
    /// Objects stored.
    pub objects: u64,
    /// Compressed bytes stored.
    pub bytes: u64,
    /// Buffered records dropped because their partition was revoked (the
    /// new owner re-reads them).
    pub dropped_on_revoke: u64,
    /// Failed attempts to store an object (each retried after a delay).
    pub store_errors: u64,
    /// Records the broker delivered again (an offset at or before one
    /// already taken from the partition), skipped.
    pub redelivered: u64,
    /// Offset commits that failed after their retries (the run then stops).
    pub commit_failures: u64,
    /// Partitions read again from the beginning because the broker resumed
    /// them after their committed offset ([`super::resume`]).
    pub rewinds: u64,
}

/// The wall clock in ms since the Unix epoch (0 before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn owned_record<M: Message>(m: &M) -> BackupRecord {
    let timestamp = match m.timestamp() {
        rdkafka::Timestamp::NotAvailable => Timestamp::None,
        rdkafka::Timestamp::CreateTime(t) => Timestamp::CreateTime(t),
        rdkafka::Timestamp::LogAppendTime(t) => Timestamp::LogAppendTime(t),
    };
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    name: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    BackupRecord {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp,
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// Runs the backup consumer until `shutdown` resolves, then writes every
/// open batch and returns. Errors (store, commit) end the run; the next run
/// resumes from the last committed offset without duplicating objects.
/// With `opts.http`, serves its metrics there while it runs.
pub async fn run(
    opts: BackupOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<BackupSummary> {
    let metrics = BackupMetrics::new().context("creating the backup metrics")?;
    run_observed(opts, metrics, shutdown).await
}

/// [`run`], counting into `metrics` (which the caller can read meanwhile).
pub async fn run_observed(
    opts: BackupOptions,
    metrics: BackupMetrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<BackupSummary> {
    let (http_stop, http_task) = match opts.http {
        Some(addr) => {
            let listener = crate::endpoint::bind(addr).await?;
            let allowed = crate::endpoint::AllowedHosts::new(&opts.http_allowed_hosts, Some(addr));
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(super::http::serve(
                listener,
                metrics.clone(),
                allowed,
                async {
                    let _ = rx.await;
                },
            ));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let result = consume(opts, metrics, shutdown).await;
    if let (Some(tx), Some(task)) = (http_stop, http_task) {
        let _ = tx.send(());
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "backup: the HTTP endpoint failed"),
            Err(e) => warn!(error = %e, "backup: the HTTP endpoint task failed"),
        }
    }
    result
}

async fn consume(
    opts: BackupOptions,
    metrics: BackupMetrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<BackupSummary> {
    anyhow::ensure!(
        opts.window >= Duration::from_millis(1),
        "the backup window must be at least 1 ms"
    );
    anyhow::ensure!(
        opts.max_object_bytes > 0,
        "max object bytes must be positive"
    );
    let store = BackupStore::open(&opts.store)?;
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let unassigned_since = Arc::new(Mutex::new(None));
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (k, v) in &opts.properties {
        cc.set(k, v);
    }
    let consumer: StreamConsumer<BackupContext> = cc
        .create_with_context(BackupContext {
            revoked: revoked.clone(),
            unassigned_since: unassigned_since.clone(),
            metrics: metrics.clone(),
        })
        .context("creating the backup consumer")?;
    consumer
        .subscribe(&[&opts.topic])
        .with_context(|| format!("subscribing to {}", opts.topic))?;
    info!(topic = %opts.topic, group = %opts.group, store = %store.describe(), "backup: started");

    let mut windows = Windows::new(WindowPolicy {
        window_ms: opts.window.as_millis().min(i64::MAX as u128) as i64,
        max_object_bytes: opts.max_object_bytes,
        grace_ms: opts.grace.as_millis().min(i64::MAX as u128) as i64,
    });
    metrics.window.set(opts.window.as_secs_f64());
    let mut w = Writer {
        consumer: &consumer,
        store,
        summary: BackupSummary::default(),
        metrics: metrics.clone(),
        abort_after_objects: opts.abort_after_objects,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_progress = (0u64, 0u64);
    let mut stall_warned_at: Option<i64> = None;
    let mut stop = Stop::new(shutdown);

    let mut guard = ResumeGuard::default();
    let drop_revoked = |windows: &mut Windows,
                        guard: &mut ResumeGuard,
                        summary: &mut BackupSummary| {
        let parts: Vec<_> = std::mem::take(&mut *revoked.lock().unwrap_or_else(|e| e.into_inner()));
        for (topic, partition) in parts {
            guard.revoked(partition);
            let n = windows.drop_partition(&topic, partition);
            if n > 0 {
                summary.dropped_on_revoke += n;
                metrics.dropped_on_revoke.inc_by(n);
                note_pending(&metrics, windows, std::iter::empty());
                info!(
                    partition,
                    records = n,
                    "backup: partition revoked, open batch dropped"
                );
            }
        }
    };

    loop {
        tokio::select! {
            biased;
            () = stop.wait() => break,
            _ = tick.tick() => {
                drop_revoked(&mut windows, &mut guard, &mut w.summary);
                let due = windows.due(now_ms());
                w.write_all(due, &windows, &mut stop).await?;
                let since = *unassigned_since.lock().unwrap_or_else(|e| e.into_inner());
                stall_warned_at = warn_if_stalled(since, stall_warned_at, now_ms());
                let progress = (w.summary.consumed, windows.buffered());
                if progress != last_progress {
                    debug!(consumed = progress.0, buffered = progress.1, stored = w.summary.stored, "backup: progress");
                    last_progress = progress;
                }
            }
            m = consumer.recv() => {
                drop_revoked(&mut windows, &mut guard, &mut w.summary);
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(error = %e, "backup: consumer error");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let (partition, offset) = (m.partition(), m.offset());
                if !guard.knows(partition) {
                    guard.assigned(partition, committed_offset(&consumer, &opts.topic, partition)?);
                }
                match guard.judge(partition, offset) {
                    Verdict::Take => {}
                    Verdict::SkipCommitted => {
                        w.summary.redelivered += 1;
                        metrics.redelivered.inc();
                        continue;
                    }
                    Verdict::Rewind { committed } => {
                        drop(m);
                        w.summary.rewinds += 1;
                        metrics.rewinds.inc();
                        warn!(
                            partition, committed, offset,
                            "backup: the broker resumed the partition after its committed offset \
                             (a fetch inside a record batch); reading it again from the beginning"
                        );
                        consumer
                            .seek(&opts.topic, partition, Offset::Beginning, Duration::from_secs(10))
                            .with_context(|| format!("rewinding {}/{partition}", opts.topic))?;
                        continue;
                    }
                    Verdict::AcceptGap { committed } => {
                        warn!(
                            partition, committed, offset,
                            "backup: records after the committed offset are no longer in the topic \
                             (retention); continuing after the gap"
                        );
                    }
                }
                let record = owned_record(&m);
                drop(m);
                let closed = match windows.push(&record, now_ms()) {
                    Ok(closed) => closed,
                    Err(PushError::OffsetNotIncreasing { .. }) => {
                        w.summary.redelivered += 1;
                        metrics.redelivered.inc();
                        continue;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("buffering {}/{} offset {}", record.topic, record.partition, record.offset)
                        });
                    }
                };
                w.summary.consumed += 1;
                metrics.consumed.inc();
                w.write_all(closed, &windows, &mut stop).await?;
            }
        }
    }

    drop_revoked(&mut windows, &mut guard, &mut w.summary);
    let open = windows.drain();
    info!(
        batches = open.len(),
        "backup: stopping, writing open windows"
    );
    w.write_all(open, &windows, &mut stop).await?;
    let summary = w.summary;
    info!(
        consumed = summary.consumed,
        stored = summary.stored,
        objects = summary.objects,
        redelivered_skipped = summary.redelivered,
        rewinds = summary.rewinds,
        "backup: stopped"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backup::{catalog, store::BackupStore};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    /// The in-process API, as `edge dev` uses it: librdkafka's mock cluster,
    /// a local directory, and a shutdown future that writes the open window.
    #[tokio::test(flavor = "multi_thread")]
    async fn runs_in_process_against_the_mock_cluster_and_writes_on_shutdown() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("events", 2, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for i in 0..20u32 {
            let key = if i % 2 == 0 { "site-a" } else { "site-b" };
            producer
                .send(
                    FutureRecord::to("events")
                        .key(key)
                        .payload(&i.to_be_bytes()[..]),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let store_cfg = StoreConfig::Local {
            data_dir: dir.path().to_path_buf(),
        };
        let mut opts = BackupOptions::new(&brokers, "events", store_cfg.clone());
        opts.window = Duration::from_secs(86_400);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let metrics = BackupMetrics::new().unwrap();
        let task = tokio::spawn(run_observed(opts, metrics.clone(), async {
            let _ = stop_rx.await;
        }));
        // Nothing is written while the window is open: wait until every
        // record is taken, then stop.
        let store = BackupStore::open(&store_cfg).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while metrics.consumed.get() < 20 {
            assert!(std::time::Instant::now() < deadline, "records not consumed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(store.list("").await.unwrap().is_empty());
        assert_eq!(metrics.pending.get(), 20);
        assert_eq!(metrics.stored.get(), 0);
        assert_eq!(metrics.assigned.get(), 2);
        stop_tx.send(()).unwrap();
        let summary = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(metrics.pending.get(), 0);
        assert_eq!(
            (metrics.stored.get(), metrics.objects.get()),
            (20, summary.objects)
        );
        assert!(metrics.last_stored.get() > 0.0);
        assert_eq!((summary.consumed, summary.stored), (20, 20));
        let cat = catalog::load(&store, Some("events")).await.unwrap();
        let mut total = 0;
        for (_, m) in cat.manifests {
            let m = m.unwrap();
            let records = m
                .check_object(&store.get(&m.object).await.unwrap())
                .unwrap();
            assert_eq!(m.cut, crate::backup::window::CutReason::Shutdown);
            total += records.len();
        }
        assert_eq!(total, 20);
    }
}
