//! The Kafka side of the aggregator: a consumer-group member whose positions
//! come from the SQL store, never from Kafka commits.
//!
//! * On every assignment the rebalance callback reads the stored next offsets
//!   and assigns the partitions *at* those offsets (the beginning when none
//!   is stored).
//! * A batch is up to `max_records` records or `max_wait` after its first
//!   record; its rollup and the partitions' next offsets are written in one
//!   transaction, conditional on the stored offsets still being the ones the
//!   batch started from (see [`Store::apply`]).
//! * Records that cannot be opened or fail the content checks go to the
//!   dead-letter topic; the batch is committed only after the broker
//!   acknowledged them ([`super::commit`], which also isolates records the
//!   store refuses).
//! * When a batch fails (an infrastructure error), the partitions are
//!   rewound to the stored offsets and read again after an exponential
//!   backoff (100 ms doubling to 30 s); when it conflicts (another consumer
//!   moved an offset), the stored offsets are reloaded.
//!
//! The loop runs on a thread of its own (librdkafka's rebalance callback is
//! synchronous and reads the database through the runtime handle).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_envelope::open::Opener;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::batch::{Fetched, prepare_batch};
use super::commit::{Backoff, BatchResult, CommitError, commit_batch};
use super::dlq::DlqProducer;
use super::metrics::Metrics;
use super::store::{ApplyOutcome, Store};

/// Kafka settings of the aggregator.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Events topic.
    pub topic: String,
    /// Consumer group id (also the key of the stored offsets).
    pub group: String,
    /// Extra librdkafka properties (TLS, SASL, timeouts), also used by the dead-letter producer.
    pub properties: Vec<(String, String)>,
    /// Most records per batch.
    pub max_records: usize,
    /// Longest wait for a batch to fill after its first record.
    pub max_wait: Duration,
    /// How long event ids are remembered for dedupe (by receive time).
    pub dedupe_window: Duration,
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Events committed to the rollups.
    pub events: u64,
    /// Records committed as dead letters.
    pub dead_letters: u64,
    /// Events dropped because their id had already been counted.
    pub duplicates: u64,
    /// Batches committed.
    pub batches: u64,
}

/// Assigned partitions of the topic and the stored next offset of each (`None`: none stored).
type Positions = Arc<Mutex<HashMap<i32, Option<i64>>>>;

/// Consumer context: assigns partitions at the offsets stored in SQL.
pub struct AggregatorContext {
    handle: tokio::runtime::Handle,
    store: Store,
    group: String,
    topic: String,
    positions: Positions,
    /// Bumped on every assignment change; records fetched under an older
    /// generation are dropped (they are fetched again from the stored offsets).
    generation: AtomicU64,
    fatal: Mutex<Option<anyhow::Error>>,
    metrics: Metrics,
}

impl ClientContext for AggregatorContext {}

impl ConsumerContext for AggregatorContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.assign(consumer, tpl) {
                    error!(
                        error = format!("{e:#}"),
                        "cannot assign partitions at stored offsets"
                    );
                    let _ = consumer.unassign();
                    self.lock_positions().clear();
                    *self.fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(partitions = tpl.count(), "partitions revoked");
                self.lock_positions().clear();
                self.metrics.assigned.set(0);
                if let Err(e) = consumer.unassign() {
                    warn!(error = %e, "unassign failed");
                }
            }
            other => {
                warn!(error = ?other, "rebalance error");
                self.lock_positions().clear();
                self.metrics.assigned.set(0);
                let _ = consumer.unassign();
            }
        }
    }
}

impl AggregatorContext {
    fn lock_positions(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Option<i64>>> {
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> anyhow::Result<()> {
        // A lost database connection is retried a few times here (the
        // callback cannot wait long); after that the error is fatal.
        let mut backoff = Backoff::new();
        let mut attempt = 1;
        let stored = loop {
            match self
                .handle
                .block_on(self.store.load_offsets(&self.group, &self.topic))
            {
                Ok(stored) => break stored,
                Err(e) if attempt < 6 => {
                    let delay = backoff.next_delay();
                    warn!(
                        error = format!("{e:#}"),
                        attempt, "cannot read stored offsets for the assignment; retrying"
                    );
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut positions = HashMap::new();
        for (topic, partition) in &partitions {
            anyhow::ensure!(
                topic == &self.topic,
                "assigned partition of unexpected topic {topic}"
            );
            let next = stored.get(partition).copied();
            let offset = next.map_or(Offset::Beginning, Offset::Offset);
            tpl.set_partition_offset(topic, *partition, offset)
                .with_context(|| format!("cannot set offset of {topic}/{partition}"))?;
            positions.insert(*partition, next);
        }
        consumer.assign(tpl).context("cannot assign partitions")?;
        info!(assigned = ?positions, "partitions assigned at stored offsets");
        self.metrics.assigned.set(positions.len() as i64);
        *self.lock_positions() = positions;
        Ok(())
    }
}

/// How long a partition with a stored offset may stay silent after an
/// assignment before it is read once from the beginning (see `consume_loop`).
pub const IDLE_REWIND_AFTER: Duration = Duration::from_secs(3);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the consume → roll up → commit loop until `stop` is set; blocking
/// (call it on a thread of its own, with a handle on the runtime that owns
/// the store's pool).
pub fn consume_loop(
    handle: tokio::runtime::Handle,
    settings: ConsumerSettings,
    store: Store,
    opener: Opener,
    dlq: DlqProducer,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<RunSummary> {
    let positions: Positions = Arc::default();
    let context = AggregatorContext {
        handle: handle.clone(),
        store: store.clone(),
        group: settings.group.clone(),
        topic: settings.topic.clone(),
        positions: positions.clone(),
        generation: AtomicU64::new(0),
        fatal: Mutex::new(None),
        metrics: metrics.clone(),
    };
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    for (k, v) in &settings.properties {
        cc.set(k, v);
    }
    let consumer: BaseConsumer<AggregatorContext> = cc
        .create_with_context(context)
        .context("cannot create Kafka consumer")?;
    consumer
        .subscribe(&[&settings.topic])
        .with_context(|| format!("cannot subscribe to {}", settings.topic))?;
    info!(topic = %settings.topic, group = %settings.group, dlq = %dlq.topic(), "aggregator consuming");

    let mut summary = RunSummary::default();
    let mut fetched: Vec<Fetched> = Vec::with_capacity(settings.max_records);
    let mut fetched_generation = 0;
    // Partitions that must continue exactly at their stored offset (all of
    // them after an assignment or a seek; not right after a rewind to the
    // beginning, which proves there is nothing in between).
    let mut strict: HashSet<i32> = HashSet::new();
    let mut strict_generation = u64::MAX;
    // Partitions being re-read from the beginning after a gap, with the
    // number of rewinds without progress.
    let mut rewound: HashMap<i32, u32> = HashMap::new();
    // Partitions that delivered a record since the last assignment, when
    // that assignment happened, and whether idle partitions were probed.
    let mut seen: HashSet<i32> = HashSet::new();
    let mut assigned_at = Instant::now();
    let mut probed = false;
    let mut backoff = Backoff::new();
    let mut last_prune: Option<Instant> = None;
    loop {
        if let Some(e) = consumer
            .context()
            .fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && fetched.is_empty() {
            break;
        }
        let generation = consumer.context().generation.load(Ordering::SeqCst);
        if strict_generation != generation {
            strict = lock(&positions).keys().copied().collect();
            strict_generation = generation;
            rewound.clear();
            seen.clear();
            assigned_at = Instant::now();
            probed = false;
        }
        if !probed && assigned_at.elapsed() >= IDLE_REWIND_AFTER {
            // A broker that answers a fetch from inside a record batch with
            // the next batch (Tansu 0.6) delivers nothing at all when the
            // stored offset lies inside the *last* batch. A partition with a
            // stored offset that stayed silent since the assignment is
            // therefore read once from the beginning (records below the
            // stored offset are skipped, not applied).
            probed = true;
            let idle: Vec<i32> = lock(&positions)
                .iter()
                .filter(|(p, stored)| {
                    stored.is_some() && !seen.contains(p) && !rewound.contains_key(p)
                })
                .map(|(p, _)| *p)
                .collect();
            for p in idle {
                debug!(
                    partition = p,
                    "idle since assignment: re-reading from the beginning"
                );
                metrics.rewinds.inc();
                rewound.insert(p, 0);
                seek_all(&consumer, &settings.topic, &[(p, None)])?;
            }
        }
        // Gather a batch.
        let mut deadline: Option<Instant> = None;
        while !stopping && fetched.len() < settings.max_records {
            let wait = match deadline {
                None => Duration::from_millis(100),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    left
                }
            };
            match consumer.poll(wait) {
                None => {
                    if deadline.is_none() {
                        break; // idle: check stop and fatal errors
                    }
                }
                Some(Err(e)) => warn!(error = %e, "consumer error"),
                Some(Ok(m)) => {
                    let generation = consumer.context().generation.load(Ordering::SeqCst);
                    if fetched_generation != generation {
                        // The assignment changed while gathering: start over.
                        fetched.clear();
                        fetched_generation = generation;
                    }
                    fetched.push(Fetched {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                    });
                    deadline.get_or_insert_with(|| Instant::now() + settings.max_wait);
                }
            }
        }
        if fetched.is_empty() {
            continue;
        }
        if fetched_generation != consumer.context().generation.load(Ordering::SeqCst) {
            // Rebalanced after the last record: drop the batch, it is read
            // again from the offsets the new assignment starts at.
            fetched.clear();
            continue;
        }
        let snapshot = positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let generation = consumer.context().generation.load(Ordering::SeqCst);
        if strict_generation != generation {
            strict = snapshot.keys().copied().collect();
            strict_generation = generation;
            rewound.clear();
            seen.clear();
            assigned_at = Instant::now();
            probed = false;
        }
        for (p, _) in rewound.clone() {
            let Some(Some(stored)) = snapshot.get(&p) else {
                rewound.remove(&p);
                continue;
            };
            // The re-read has arrived once a record below the stored offset
            // shows up: records of the partition before it are stale, and
            // from there on whatever follows the stored offset is what the
            // log holds (a gap after it is real).
            if let Some(first) = fetched
                .iter()
                .position(|f| f.partition == p && f.offset < *stored)
            {
                let mut index = 0;
                fetched.retain(|f| {
                    let keep = f.partition != p || index >= first;
                    index += 1;
                    keep
                });
                strict.remove(&p);
                rewound.remove(&p);
            }
        }
        let records = std::mem::replace(&mut fetched, Vec::with_capacity(settings.max_records));
        let batch = prepare_batch(&opener, &settings.topic, &snapshot, &strict, &records);
        seen.extend(records.iter().map(|f| f.partition));
        for p in &batch.gaps {
            let tries = rewound.entry(*p).or_default();
            *tries += 1;
            if *tries > 3 {
                // Nothing below the stored offset is left in the log either
                // (retention): accept what the broker has.
                error!(
                    partition = p,
                    stored = ?snapshot.get(p),
                    "records after the stored offset are no longer in the topic; continuing after the gap"
                );
                strict.remove(p);
                rewound.remove(p);
                seek_all(
                    &consumer,
                    &settings.topic,
                    &[(*p, snapshot.get(p).copied().flatten())],
                )?;
                continue;
            }
            metrics.rewinds.inc();
            warn!(
                partition = p,
                stored = ?snapshot.get(p),
                "the broker skipped records after the stored offset; reading the partition again from the beginning (already applied records are skipped)"
            );
            seek_all(&consumer, &settings.topic, &[(*p, None)])?;
        }
        if batch.advances.is_empty() {
            continue;
        }
        strict.extend(batch.advances.iter().map(|a| a.partition));
        for a in &batch.advances {
            rewound.remove(&a.partition);
        }
        let result = handle.block_on(commit_batch(
            &store,
            &dlq,
            &settings.group,
            &settings.topic,
            &batch,
            &records,
        ));
        let conflict = match result {
            Ok(BatchResult {
                outcome: ApplyOutcome::Committed(done),
                letters,
            }) => {
                backoff.reset();
                metrics.retry_delay.set(0.0);
                let mut pos = positions.lock().unwrap_or_else(PoisonError::into_inner);
                for adv in &batch.advances {
                    if let Some(slot) = pos.get_mut(&adv.partition) {
                        *slot = Some(adv.next);
                    }
                }
                drop(pos);
                summary.events += done.events;
                summary.duplicates += done.duplicates;
                summary.dead_letters += letters.len() as u64;
                summary.batches += 1;
                metrics.events.inc_by(done.events);
                metrics.duplicates.inc_by(done.duplicates);
                metrics.batches.inc();
                for l in &letters {
                    metrics.dead_letters.with_label_values(&[l.reason]).inc();
                    warn!(reason = l.reason, partition = l.partition, offset = l.offset, error = %l.error, "record sent to the dead-letter topic");
                }
                debug!(events = done.events, duplicates = done.duplicates, advances = ?batch.advances, "batch committed");
                None
            }
            Ok(BatchResult {
                outcome: ApplyOutcome::Conflict(parts),
                ..
            }) => Some(parts),
            Err(CommitError { class, error }) => {
                metrics.failures.inc();
                metrics
                    .store_errors
                    .with_label_values(&[class.as_str()])
                    .inc();
                let delay = backoff.next_delay();
                metrics.retry_delay.set(delay.as_secs_f64());
                error!(
                    class = class.as_str(),
                    error = format!("{error:#}"),
                    retry_in_ms = delay.as_millis() as u64,
                    "batch failed; reading it again after a delay"
                );
                let pos = positions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let rewind: Vec<(i32, Option<i64>)> = batch
                    .advances
                    .iter()
                    .filter_map(|a| pos.get(&a.partition).map(|n| (a.partition, *n)))
                    .collect();
                strict.extend(rewind.iter().map(|(p, _)| *p));
                seek_all(&consumer, &settings.topic, &rewind)?;
                sleep_unless_stopped(delay, &stop);
                None
            }
        };
        if let Some(parts) = conflict {
            metrics.conflicts.inc();
            warn!(partitions = ?parts, "stored offsets moved (another consumer?): reloading them");
            let stored = load_offsets_retrying(&handle, &store, &settings, &stop)?;
            let mut rewind = Vec::new();
            {
                let mut pos = positions.lock().unwrap_or_else(PoisonError::into_inner);
                for (_, p) in parts {
                    if let Some(slot) = pos.get_mut(&p) {
                        let next = stored.get(&p).copied();
                        *slot = next;
                        rewind.push((p, next));
                        strict.insert(p);
                    }
                }
            }
            seek_all(&consumer, &settings.topic, &rewind)?;
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            prune_seen(&handle, &store, settings.dedupe_window);
        }
    }
    info!(
        events = summary.events,
        dead_letters = summary.dead_letters,
        "aggregator stopped"
    );
    Ok(summary)
}

/// How often remembered event ids older than the dedupe window are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Sleeps `delay`, waking early when `stop` is set.
fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) {
    let until = Instant::now() + delay;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Deletes event ids received before now minus the window; a failure is
/// logged and tried again at the next prune.
fn prune_seen(handle: &tokio::runtime::Handle, store: &Store, window: Duration) {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let before = chrono::Utc::now()
        .timestamp_millis()
        .saturating_sub(window_ms);
    match handle.block_on(store.prune_seen(before)) {
        Ok(n) => debug!(pruned = n, "old event ids pruned"),
        Err(e) => warn!(
            error = format!("{e:#}"),
            "cannot prune old event ids; trying again later"
        ),
    }
}

/// Reads the stored offsets, retrying infrastructure errors with backoff
/// until it works or `stop` is set.
fn load_offsets_retrying(
    handle: &tokio::runtime::Handle,
    store: &Store,
    settings: &ConsumerSettings,
    stop: &AtomicBool,
) -> anyhow::Result<HashMap<i32, i64>> {
    let mut backoff = Backoff::new();
    loop {
        match handle.block_on(store.load_offsets(&settings.group, &settings.topic)) {
            Ok(o) => return Ok(o),
            Err(e) if !stop.load(Ordering::Relaxed) => {
                let delay = backoff.next_delay();
                warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot read stored offsets; retrying"
                );
                sleep_unless_stopped(delay, stop);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Moves partitions back to their stored offsets. A failure is fatal: the
/// consumer's position would otherwise be past records not yet applied.
fn seek_all(
    consumer: &BaseConsumer<AggregatorContext>,
    topic: &str,
    to: &[(i32, Option<i64>)],
) -> anyhow::Result<()> {
    for (partition, next) in to {
        let offset = next.map_or(Offset::Beginning, Offset::Offset);
        consumer
            .seek(topic, *partition, offset, Duration::from_secs(10))
            .with_context(|| format!("cannot seek {topic}/{partition} to {offset:?}"))?;
    }
    Ok(())
}
