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
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::frame::{BackupRecord, Header, Timestamp};
use super::object::seal;
use super::resume::{ResumeGuard, Verdict};
use super::store::{BackupStore, StoreConfig};
use super::window::{Batch, PushError, WindowPolicy, Windows};

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

/// First delay after a failed store write.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest delay between store write attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The shutdown future, polled until it resolves once (then remembered).
struct Stop<F> {
    fut: Pin<Box<F>>,
    done: bool,
}

impl<F: Future<Output = ()>> Stop<F> {
    fn new(fut: F) -> Self {
        Stop {
            fut: Box::pin(fut),
            done: false,
        }
    }

    /// Resolves when shutdown is asked for (at once if it already was).
    async fn wait(&mut self) {
        if !self.done {
            self.fut.as_mut().await;
            self.done = true;
        }
    }

    /// Sleeps `delay`; `true` if shutdown was asked for meanwhile.
    async fn sleep(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = self.wait() => true,
            () = tokio::time::sleep(delay) => false,
        }
    }
}

/// Records partitions revoked by a rebalance, for the loop to drop their
/// batches, and when the consumer was last without partitions.
struct BackupContext {
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    /// Set when a revoke left the consumer without partitions (unix ms),
    /// cleared by the next assignment: see [`STALL_WARN_AFTER`].
    unassigned_since: Arc<Mutex<Option<i64>>>,
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
}

/// How long after losing its partitions the backup warns (again, at this
/// interval) that the group has not assigned any: with a healthy broker a
/// rejoin takes seconds. Tansu 0.6 can keep a group from ever forming again
/// after a stall longer than the session timeout (docs/backup.md).
const STALL_WARN_AFTER: Duration = Duration::from_secs(60);

/// Warns while the consumer has had no partitions since `since` for longer
/// than [`STALL_WARN_AFTER`], at most once per that interval; returns when it
/// last warned.
fn warn_if_stalled(since: Option<i64>, warned_at: Option<i64>, now: i64) -> Option<i64> {
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
fn committed_offset(
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

fn now_ms() -> i64 {
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

struct Writer<'a> {
    consumer: &'a StreamConsumer<BackupContext>,
    store: BackupStore,
    summary: BackupSummary,
    abort_after_objects: Option<u64>,
}

impl Writer<'_> {
    /// Stores the object, then its manifest, then commits the offset after
    /// its last record. A failing store (full disk, no file descriptors, a
    /// network error) is retried with backoff (100 ms doubling to 30 s)
    /// until it works or `stop` is set (then `Err`: nothing is committed,
    /// the next run writes the same object again).
    async fn write<F: Future<Output = ()>>(
        &mut self,
        batch: Batch,
        stop: &mut Stop<F>,
    ) -> anyhow::Result<()> {
        let sealed = seal(&batch, now_ms()).with_context(|| {
            format!(
                "compressing partition {} offsets {}..={}",
                batch.partition, batch.stats.first_offset, batch.stats.last_offset
            )
        })?;
        let data_key = sealed.name.data_key();
        let bytes = sealed.data.len() as u64;
        let manifest = sealed.manifest.to_json();
        let mut delay = RETRY_MIN;
        loop {
            let stored = match self.store.put(&data_key, sealed.data.clone()).await {
                Ok(()) => {
                    self.store
                        .put(&sealed.name.manifest_key(), manifest.clone())
                        .await
                }
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => break,
                Err(e) if !stop.done => {
                    self.summary.store_errors += 1;
                    warn!(
                        error = format!("{e:#}"),
                        object = %data_key,
                        retry_in_ms = delay.as_millis() as u64,
                        "backup: cannot store the object; retrying"
                    );
                    stop.sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    return Err(e).context(
                        "stopping while the store kept failing (nothing committed for this object)",
                    );
                }
            }
        }
        self.summary.objects += 1;
        self.summary.bytes += bytes;
        if self
            .abort_after_objects
            .is_some_and(|n| self.summary.objects >= n)
        {
            warn!(object = %data_key, "backup: aborting before the commit (crash test)");
            std::process::abort();
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &batch.topic,
            batch.partition,
            Offset::Offset(batch.stats.last_offset + 1),
        )
        .context("building the offset commit")?;
        // A commit that keeps failing stops the backup (its supervisor
        // restarts it): going on would store later objects of the partition
        // uncommitted, and a rewrite from the last committed offset could then
        // cut differently and store records twice. With at most one
        // uncommitted object per partition, a rewrite replaces it by name.
        let mut attempt = 0;
        loop {
            match self.consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    warn!(error = %e, attempt, object = %data_key, "backup: offset commit failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    self.summary.commit_failures += 1;
                    return Err(e).with_context(|| {
                        format!(
                            "committing offset {} of {}/{} after storing {data_key} \
                             (the next run rewrites this object from the last committed offset)",
                            batch.stats.last_offset + 1,
                            batch.topic,
                            batch.partition
                        )
                    });
                }
            }
        }
        self.summary.stored += batch.stats.records;
        info!(
            object = %data_key,
            partition = batch.partition,
            first_offset = batch.stats.first_offset,
            last_offset = batch.stats.last_offset,
            records = batch.stats.records,
            bytes,
            cut = ?batch.cut,
            "backup: object stored and offset committed"
        );
        Ok(())
    }
}

/// Runs the backup consumer until `shutdown` resolves, then writes every
/// open batch and returns. Errors (store, commit) end the run; the next run
/// resumes from the last committed offset without duplicating objects.
pub async fn run(
    opts: BackupOptions,
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
    let mut w = Writer {
        consumer: &consumer,
        store,
        summary: BackupSummary::default(),
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
                for batch in windows.due(now_ms()) {
                    w.write(batch, &mut stop).await?;
                }
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
                        continue;
                    }
                    Verdict::Rewind { committed } => {
                        drop(m);
                        w.summary.rewinds += 1;
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
                        continue;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("buffering {}/{} offset {}", record.topic, record.partition, record.offset)
                        });
                    }
                };
                w.summary.consumed += 1;
                for batch in closed {
                    w.write(batch, &mut stop).await?;
                }
            }
        }
    }

    drop_revoked(&mut windows, &mut guard, &mut w.summary);
    let open = windows.drain();
    info!(
        batches = open.len(),
        "backup: stopping, writing open windows"
    );
    for batch in open {
        w.write(batch, &mut stop).await?;
    }
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
        let task = tokio::spawn(run(opts, async {
            let _ = stop_rx.await;
        }));
        // Nothing is written while the window is open; wait for the records
        // to be consumed, then stop.
        let store = BackupStore::open(&store_cfg).unwrap();
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(store.list("").await.unwrap().is_empty());
        stop_tx.send(()).unwrap();
        let summary = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
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
