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
//! * Records that cannot be opened go to the dead-letter topic; the batch is
//!   committed only after the broker acknowledged them.
//! * When a batch fails, the partitions are rewound to the stored offsets and
//!   read again; when it conflicts (another consumer moved an offset), the
//!   stored offsets are reloaded.
//!
//! The loop runs on a thread of its own (librdkafka's rebalance callback is
//! synchronous and reads the database through the runtime handle).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_envelope::EventRecord;
use edge_envelope::open::Opener;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::dlq::{DeadLetter, DlqProducer};
use super::metrics::Metrics;
use super::rollup::Rollup;
use super::store::{ApplyOutcome, OffsetAdvance, Store};

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
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Events committed to the rollups.
    pub events: u64,
    /// Records committed as dead letters.
    pub dead_letters: u64,
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
        let stored = self
            .handle
            .block_on(self.store.load_offsets(&self.group, &self.topic))?;
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

/// One fetched record, owned.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (the site id).
    pub key: Option<Vec<u8>>,
    /// Value (the envelope).
    pub value: Option<Vec<u8>>,
}

/// Opens one record, or says why it goes to the dead-letter topic.
pub fn open_record(
    opener: &Opener,
    topic: &str,
    f: &Fetched,
) -> Result<EventRecord, Box<DeadLetter>> {
    let letter = |reason: &'static str, error: String| {
        Box::new(DeadLetter {
            reason,
            error,
            topic: topic.to_string(),
            partition: f.partition,
            offset: f.offset,
            key: f.key.clone(),
            value: f.value.clone(),
        })
    };
    let Some(key) = f.key.as_deref() else {
        return Err(letter("missing_key", "record has no key (site id)".into()));
    };
    let Ok(site) = std::str::from_utf8(key) else {
        return Err(letter("invalid_key", "record key is not UTF-8".into()));
    };
    match opener.open(site, f.value.as_deref().unwrap_or_default()) {
        Ok(record) if record.site_id == site => Ok(record),
        Ok(record) => Err(letter(
            "site_mismatch",
            format!("key {site:?} but event of site {:?}", record.site_id),
        )),
        Err(e) => Err(letter(e.kind(), e.to_string())),
    }
}

/// What one batch turned into.
#[derive(Debug, Default)]
pub struct PreparedBatch {
    /// Rollup of the decrypted events.
    pub rollup: Rollup,
    /// Records for the dead-letter topic.
    pub letters: Vec<DeadLetter>,
    /// Offset moves per partition.
    pub advances: Vec<OffsetAdvance>,
    /// Partitions whose first record came after the stored offset although
    /// they had to start exactly there: their records were left out.
    pub gaps: Vec<i32>,
}

/// Turns fetched records into a batch, skipping records of partitions no
/// longer assigned and records below the stored offset (already applied).
///
/// A partition in `strict` must continue exactly at its stored offset: if
/// its first record is later, the broker skipped records (Tansu 0.6 answers
/// a fetch from inside a record batch with the *next* batch), so the
/// partition is reported in `gaps` and none of its records are used.
pub fn prepare_batch(
    opener: &Opener,
    topic: &str,
    positions: &HashMap<i32, Option<i64>>,
    strict: &HashSet<i32>,
    fetched: &[Fetched],
) -> PreparedBatch {
    let mut batch = PreparedBatch::default();
    let mut moves: BTreeMap<i32, (Option<i64>, i64)> = BTreeMap::new();
    for f in fetched {
        let Some(expected) = positions.get(&f.partition) else {
            continue;
        };
        if expected.is_some_and(|e| f.offset < e) || batch.gaps.contains(&f.partition) {
            continue;
        }
        if let Some(e) = expected
            && f.offset > *e
            && !moves.contains_key(&f.partition)
            && strict.contains(&f.partition)
        {
            batch.gaps.push(f.partition);
            continue;
        }
        if let Some((_, next)) = moves.get(&f.partition)
            && f.offset < *next
        {
            continue;
        }
        match open_record(opener, topic, f) {
            Ok(record) => batch.rollup.add(&record),
            Err(letter) => batch.letters.push(*letter),
        }
        moves.insert(f.partition, (*expected, f.offset + 1));
    }
    batch.advances = moves
        .into_iter()
        .map(|(partition, (expected, next))| OffsetAdvance {
            topic: topic.to_string(),
            partition,
            expected,
            next,
        })
        .collect();
    batch
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
        let batch = prepare_batch(&opener, &settings.topic, &snapshot, &strict, &fetched);
        seen.extend(fetched.iter().map(|f| f.partition));
        fetched.clear();
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
        match commit_batch(&handle, &settings.group, &store, &dlq, &batch) {
            Ok(ApplyOutcome::Committed) => {
                let mut pos = positions.lock().unwrap_or_else(PoisonError::into_inner);
                for adv in &batch.advances {
                    if let Some(slot) = pos.get_mut(&adv.partition) {
                        *slot = Some(adv.next);
                    }
                }
                drop(pos);
                summary.events += batch.rollup.events;
                summary.dead_letters += batch.letters.len() as u64;
                summary.batches += 1;
                metrics.events.inc_by(batch.rollup.events);
                metrics.batches.inc();
                for l in &batch.letters {
                    metrics.dead_letters.with_label_values(&[l.reason]).inc();
                    warn!(reason = l.reason, partition = l.partition, offset = l.offset, error = %l.error, "record sent to the dead-letter topic");
                }
                debug!(events = batch.rollup.events, advances = ?batch.advances, "batch committed");
            }
            Ok(ApplyOutcome::Conflict(parts)) => {
                metrics.conflicts.inc();
                warn!(partitions = ?parts, "stored offsets moved (another consumer?): reloading them");
                let stored =
                    handle.block_on(store.load_offsets(&settings.group, &settings.topic))?;
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
            Err(e) => {
                metrics.failures.inc();
                error!(error = format!("{e:#}"), "batch failed; reading it again");
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
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    info!(
        events = summary.events,
        dead_letters = summary.dead_letters,
        "aggregator stopped"
    );
    Ok(summary)
}

fn commit_batch(
    handle: &tokio::runtime::Handle,
    group: &str,
    store: &Store,
    dlq: &DlqProducer,
    batch: &PreparedBatch,
) -> anyhow::Result<ApplyOutcome> {
    handle.block_on(async {
        if !batch.letters.is_empty() {
            dlq.send_all(&batch.letters).await?;
        }
        store.apply(group, &batch.advances, &batch.rollup).await
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::aggregate::store::tests::event;
    use edge_envelope::keys::{Keyring, PrivateKey};
    use edge_envelope::{RotationPolicy, Sealer};

    fn keys() -> (Opener, Sealer) {
        let key = PrivateKey::generate();
        let sealer = Sealer::new(key.public_key(), RotationPolicy::default()).unwrap();
        let mut ring = Keyring::new();
        ring.insert(key);
        (Opener::new(ring), sealer)
    }

    fn fetched(sealer: &Sealer, partition: i32, offset: i64, site: &str, visitor: u8) -> Fetched {
        let rec = event(site, 1_000, "pageview", "/", visitor);
        Fetched {
            partition,
            offset,
            key: Some(site.as_bytes().to_vec()),
            value: Some(sealer.seal(site, &rec).unwrap()),
        }
    }

    #[test]
    fn skips_applied_and_unassigned_records_and_dead_letters_garbage() {
        let (opener, sealer) = keys();
        let positions = HashMap::from([(0, Some(10)), (1, None)]);
        let mut garbage = fetched(&sealer, 1, 5, "s", 9);
        garbage.value = Some(b"garbage".to_vec());
        let mut moved = fetched(&sealer, 1, 6, "s", 9);
        moved.key = Some(b"other".to_vec()); // sealed for "s", keyed as "other"
        let mut no_key = fetched(&sealer, 1, 7, "s", 9);
        no_key.key = None;
        let records = vec![
            fetched(&sealer, 0, 9, "s", 1), // below the stored offset: already applied
            fetched(&sealer, 0, 10, "s", 2), // applied now
            fetched(&sealer, 2, 0, "s", 3), // partition not assigned
            fetched(&sealer, 1, 4, "s", 4),
            garbage,
            moved,
            no_key,
            fetched(&sealer, 0, 10, "s", 2), // duplicate delivery in one batch
            fetched(&sealer, 0, 12, "s", 5),
        ];
        let b = prepare_batch(&opener, "t", &positions, &HashSet::new(), &records);
        assert_eq!(b.rollup.events, 3);
        let reasons: Vec<_> = b.letters.iter().map(|l| (l.reason, l.offset)).collect();
        assert_eq!(
            reasons,
            vec![("bad_magic", 5), ("decrypt_failed", 6), ("missing_key", 7)]
        );
        assert_eq!(b.letters[0].value.as_deref(), Some(&b"garbage"[..]));
        assert_eq!(
            b.advances,
            vec![
                OffsetAdvance {
                    topic: "t".into(),
                    partition: 0,
                    expected: Some(10),
                    next: 13
                },
                OffsetAdvance {
                    topic: "t".into(),
                    partition: 1,
                    expected: None,
                    next: 8
                },
            ]
        );
    }

    #[test]
    fn a_strict_partition_that_starts_after_its_stored_offset_is_a_gap() {
        let (opener, sealer) = keys();
        let positions = HashMap::from([(0, Some(10)), (1, Some(3))]);
        let records = vec![
            fetched(&sealer, 0, 12, "s", 1), // 10 and 11 were skipped by the broker
            fetched(&sealer, 0, 13, "s", 1),
            fetched(&sealer, 1, 3, "s", 2),
        ];
        let b = prepare_batch(&opener, "t", &positions, &HashSet::from([0, 1]), &records);
        assert_eq!(b.gaps, vec![0]);
        assert_eq!(b.rollup.events, 1);
        assert_eq!(b.advances.len(), 1);
        assert_eq!(b.advances[0].partition, 1);
        // After a rewind from the beginning the partition is lenient: 12 is next.
        let b = prepare_batch(&opener, "t", &positions, &HashSet::from([1]), &records);
        assert!(b.gaps.is_empty());
        assert_eq!(b.rollup.events, 3);
        assert_eq!(b.advances[0].next, 14);
    }

    /// Crash between batches at any point: a restarted consumer resumes from
    /// the stored offsets, so re-reading the whole partition applies each
    /// record exactly once; a batch that was never committed is applied on
    /// the re-read.
    #[tokio::test(flavor = "multi_thread")]
    async fn restart_from_stored_offsets_counts_every_record_once() {
        let (opener, sealer) = keys();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::aggregate::store::sqlite_url_in(dir.path()))
            .await
            .unwrap();
        let log: Vec<Fetched> = (0..100)
            .map(|i| fetched(&sealer, 0, i, "s", i as u8))
            .collect();
        // First run: commits batches [0,30) and [30,60), then "crashes"
        // after preparing [60,80) without committing it.
        let mut positions = HashMap::from([(0, None)]);
        for range in [0..30, 30..60] {
            let b = prepare_batch(&opener, "t", &positions, &HashSet::from([0]), &log[range]);
            assert_eq!(
                store.apply("g", &b.advances, &b.rollup).await.unwrap(),
                ApplyOutcome::Committed
            );
            positions.insert(0, Some(b.advances[0].next));
        }
        let _lost = prepare_batch(&opener, "t", &positions, &HashSet::new(), &log[60..80]);
        // Restart: positions come from the store; the broker may redeliver
        // from anywhere at or before them (here: from the beginning).
        let stored = store.load_offsets("g", "t").await.unwrap();
        assert_eq!(stored, HashMap::from([(0, 60)]));
        let positions: HashMap<i32, Option<i64>> =
            stored.into_iter().map(|(p, o)| (p, Some(o))).collect();
        let b = prepare_batch(&opener, "t", &positions, &HashSet::from([0]), &log);
        assert_eq!(b.rollup.events, 40);
        store.apply("g", &b.advances, &b.rollup).await.unwrap();
        // A stale consumer that still believes offset 60 is refused.
        assert!(matches!(
            store.apply("g", &b.advances, &b.rollup).await.unwrap(),
            ApplyOutcome::Conflict(_)
        ));
        let rows = store
            .buckets("s", crate::aggregate::rollup::BucketSize::Minute, 0, 60_000)
            .await
            .unwrap();
        assert_eq!((rows[0].pageviews, rows[0].visitors), (100, 100));
    }
}
