//! The Kafka side of the aggregator: a consumer-group member whose positions
//! come from the SQL store, never from Kafka commits.
//!
//! * On every assignment the rebalance callback reads the stored next offsets
//!   and assigns the partitions *at* those offsets (the beginning when none
//!   is stored) ([`context`]).
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
//! * Partitions the broker skipped records of, or that stay silent after an
//!   assignment, are re-read from the beginning ([`watch`]).
//!
//! Each outcome is logged and counted together ([`report`]). The loop runs
//! on a thread of its own (librdkafka's rebalance callback is synchronous
//! and reads the database through the runtime handle).

mod context;
mod report;
mod retry;
pub mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_envelope::open::Opener;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tracing::{info, warn};

pub use context::AggregatorContext;
use context::{Positions, lock, seek_all};
use report::{BatchCommitted, BatchFailed, GapAccepted, OffsetsMoved, Rewind};
use retry::{PRUNE_EVERY, load_offsets_retrying, prune_seen, sleep_unless_stopped};
pub use watch::IDLE_REWIND_AFTER;
use watch::{GapAction, PartitionWatch};

use super::batch::{Fetched, PreparedBatch, prepare_batch};
use super::commit::{Backoff, BatchResult, commit_batch};
use super::dlq::DlqProducer;
use super::metrics::Metrics;
use super::store::{ApplyOutcome, Store, StoreError};

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

/// Why the consumer stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The consumer could not be created from the settings.
    #[error("cannot create Kafka consumer: {0}")]
    Create(KafkaError),
    /// The subscription was refused.
    #[error("cannot subscribe to {topic}: {error}")]
    Subscribe {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        error: KafkaError,
    },
    /// The stored offsets could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The group assigned a partition of another topic.
    #[error("assigned partition of unexpected topic {0}")]
    UnexpectedTopic(String),
    /// A stored offset could not be set on an assigned partition.
    #[error("cannot set offset of {partition}: {error}")]
    SetOffset {
        /// `topic/partition`.
        partition: String,
        /// librdkafka's error.
        error: KafkaError,
    },
    /// The assignment was refused.
    #[error("cannot assign partitions: {0}")]
    Assign(KafkaError),
    /// A partition could not be moved to its stored offset.
    #[error("cannot seek {partition} to {}: {error}", show_offset(*offset))]
    Seek {
        /// `topic/partition`.
        partition: String,
        /// Where to (`None`: the beginning).
        offset: Option<i64>,
        /// librdkafka's error.
        error: KafkaError,
    },
}

/// `offset N`, or `the beginning` for `None`.
fn show_offset(offset: Option<i64>) -> String {
    offset.map_or_else(|| "the beginning".to_owned(), |o| format!("offset {o}"))
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
) -> Result<RunSummary, ConsumerError> {
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
    let consumer = subscribe(&settings, context)?;
    info!(topic = %settings.topic, group = %settings.group, dlq = %dlq.topic(), "aggregator consuming");
    let summary = Aggregator {
        fetched: Vec::with_capacity(settings.max_records),
        fetched_generation: 0,
        watch: PartitionWatch::new(Instant::now()),
        backoff: Backoff::new(),
        last_prune: None,
        summary: RunSummary::default(),
        consumer,
        handle,
        settings,
        store,
        opener,
        dlq,
        metrics,
        positions,
        stop,
    }
    .run()?;
    info!(
        events = summary.events,
        dead_letters = summary.dead_letters,
        "aggregator stopped"
    );
    Ok(summary)
}

/// Creates the consumer (no auto-commit, no offset store: positions live
/// in SQL) and subscribes it to the topic.
fn subscribe(
    settings: &ConsumerSettings,
    context: AggregatorContext,
) -> Result<BaseConsumer<AggregatorContext>, ConsumerError> {
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
        .map_err(ConsumerError::Create)?;
    consumer
        .subscribe(&[&settings.topic])
        .map_err(|error| ConsumerError::Subscribe {
            topic: settings.topic.clone(),
            error,
        })?;
    Ok(consumer)
}

/// The state of one run of the loop.
struct Aggregator {
    consumer: BaseConsumer<AggregatorContext>,
    handle: tokio::runtime::Handle,
    settings: ConsumerSettings,
    store: Store,
    opener: Opener,
    dlq: DlqProducer,
    metrics: Metrics,
    positions: Positions,
    stop: Arc<AtomicBool>,
    /// Records gathered for the next batch, and the assignment generation
    /// they were fetched under.
    fetched: Vec<Fetched>,
    fetched_generation: u64,
    watch: PartitionWatch,
    backoff: Backoff,
    last_prune: Option<Instant>,
    summary: RunSummary,
}

impl Aggregator {
    fn run(mut self) -> Result<RunSummary, ConsumerError> {
        loop {
            if let Some(e) = self.consumer.context().take_fatal() {
                return Err(e);
            }
            let stopping = self.stop.load(Ordering::Relaxed);
            if stopping && self.fetched.is_empty() {
                return Ok(self.summary);
            }
            let positions = lock(&self.positions).clone();
            self.follow_assignment(&positions);
            self.rewind_idle(&positions)?;
            self.gather(stopping);
            if self.fetched.is_empty() {
                continue;
            }
            if self.fetched_generation != self.consumer.context().generation() {
                // Rebalanced after the last record: drop the batch, it is read
                // again from the offsets the new assignment starts at.
                self.fetched.clear();
                continue;
            }
            let snapshot = lock(&self.positions).clone();
            self.follow_assignment(&snapshot);
            self.watch.trim_rewound(&mut self.fetched, &snapshot);
            let records = std::mem::replace(
                &mut self.fetched,
                Vec::with_capacity(self.settings.max_records),
            );
            let batch = prepare_batch(
                &self.opener,
                &self.settings.topic,
                &snapshot,
                self.watch.strict(),
                &records,
            );
            self.watch.saw(&records);
            self.handle_gaps(&batch, &snapshot)?;
            if batch.advances.is_empty() {
                continue;
            }
            self.watch.advanced(&batch.advances);
            self.commit(&batch, &records)?;
            if self.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                self.last_prune = Some(Instant::now());
                prune_seen(&self.handle, &self.store, self.settings.dedupe_window);
            }
        }
    }

    fn follow_assignment(&mut self, positions: &HashMap<i32, Option<i64>>) {
        let generation = self.consumer.context().generation();
        self.watch.follow(generation, positions, Instant::now());
    }

    /// Re-reads partitions silent since the assignment from the beginning.
    fn rewind_idle(&mut self, positions: &HashMap<i32, Option<i64>>) -> Result<(), ConsumerError> {
        for partition in self.watch.idle_to_rewind(positions, Instant::now()) {
            Rewind::Idle { partition }.emit(&self.metrics);
            seek_all(&self.consumer, &self.settings.topic, &[(partition, None)])?;
        }
        Ok(())
    }

    /// Polls until the batch is full, `max_wait` passed since its first
    /// record, or (with no record yet) 100 ms passed, so the caller checks
    /// for a stop and fatal errors.
    fn gather(&mut self, stopping: bool) {
        let mut deadline: Option<Instant> = None;
        while !stopping && self.fetched.len() < self.settings.max_records {
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
            match self.consumer.poll(wait) {
                None => {
                    if deadline.is_none() {
                        break;
                    }
                }
                Some(Err(e)) => warn!(error = %e, "consumer error"),
                Some(Ok(m)) => {
                    let generation = self.consumer.context().generation();
                    if self.fetched_generation != generation {
                        // The assignment changed while gathering: start over.
                        self.fetched.clear();
                        self.fetched_generation = generation;
                    }
                    self.fetched.push(Fetched {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                    });
                    deadline.get_or_insert_with(|| Instant::now() + self.settings.max_wait);
                }
            }
        }
    }

    /// Rewinds the partitions the broker skipped records of, or accepts
    /// the gap after repeated rewinds.
    fn handle_gaps(
        &mut self,
        batch: &PreparedBatch,
        snapshot: &HashMap<i32, Option<i64>>,
    ) -> Result<(), ConsumerError> {
        for &partition in &batch.gaps {
            let stored = snapshot.get(&partition).copied().flatten();
            let to = match self.watch.gap(partition) {
                GapAction::Accept => {
                    // Nothing below the stored offset is left in the log either
                    // (retention): accept what the broker has.
                    GapAccepted { partition, stored }.emit();
                    stored
                }
                GapAction::Rewind => {
                    Rewind::Gap { partition, stored }.emit(&self.metrics);
                    None
                }
            };
            seek_all(&self.consumer, &self.settings.topic, &[(partition, to)])?;
        }
        Ok(())
    }

    /// Commits a batch and acts on the answer: positions forward, a retry
    /// after a backoff, or reloaded offsets after a conflict.
    fn commit(&mut self, batch: &PreparedBatch, records: &[Fetched]) -> Result<(), ConsumerError> {
        let result = self.handle.block_on(commit_batch(
            &self.store,
            &self.dlq,
            &self.settings.group,
            &self.settings.topic,
            batch,
            records,
        ));
        match result {
            Ok(BatchResult {
                outcome: ApplyOutcome::Committed(done),
                letters,
            }) => {
                self.backoff.reset();
                let mut positions = lock(&self.positions);
                for adv in &batch.advances {
                    if let Some(slot) = positions.get_mut(&adv.partition) {
                        *slot = Some(adv.next);
                    }
                }
                drop(positions);
                self.summary.events += done.events;
                self.summary.duplicates += done.duplicates;
                self.summary.dead_letters += letters.len() as u64;
                self.summary.batches += 1;
                BatchCommitted {
                    done,
                    letters: &letters,
                    advances: &batch.advances,
                }
                .emit(&self.metrics);
                Ok(())
            }
            Ok(BatchResult {
                outcome: ApplyOutcome::Conflict(partitions),
                ..
            }) => {
                OffsetsMoved {
                    partitions: &partitions,
                }
                .emit(&self.metrics);
                self.reload_offsets(&partitions)
            }
            Err(error) => {
                let delay = self.backoff.next_delay();
                BatchFailed {
                    error: &error,
                    delay,
                }
                .emit(&self.metrics);
                let positions = lock(&self.positions).clone();
                let rewind: Vec<(i32, Option<i64>)> = batch
                    .advances
                    .iter()
                    .filter_map(|a| positions.get(&a.partition).map(|n| (a.partition, *n)))
                    .collect();
                self.watch.sought(rewind.iter().map(|(p, _)| *p));
                seek_all(&self.consumer, &self.settings.topic, &rewind)?;
                sleep_unless_stopped(delay, &self.stop);
                Ok(())
            }
        }
    }

    /// After a conflict: the stored offsets of `partitions`, read again,
    /// become the positions, and the partitions are moved there.
    fn reload_offsets(&mut self, partitions: &[(String, i32)]) -> Result<(), ConsumerError> {
        let stored = load_offsets_retrying(
            &self.handle,
            &self.store,
            (&self.settings.group, &self.settings.topic),
            &self.stop,
        )?;
        let mut rewind = Vec::new();
        {
            let mut positions = lock(&self.positions);
            for (_, p) in partitions {
                if let Some(slot) = positions.get_mut(p) {
                    let next = stored.get(p).copied();
                    *slot = next;
                    rewind.push((*p, next));
                }
            }
        }
        self.watch.sought(rewind.iter().map(|(p, _)| *p));
        seek_all(&self.consumer, &self.settings.topic, &rewind)
    }
}
