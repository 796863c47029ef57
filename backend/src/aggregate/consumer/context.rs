//! The consumer's librdkafka context: on every assignment the rebalance
//! callback reads the stored next offsets and assigns the partitions *at*
//! them; every revocation clears the positions. Also the one way the
//! consumer moves a partition ([`seek_all`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::ConsumerError;
use crate::aggregate::commit::Backoff;
use crate::aggregate::metrics::Metrics;
use crate::aggregate::store::Store;

/// Assigned partitions of the topic and the stored next offset of each
/// (`None`: none stored).
pub(super) type Positions = Arc<Mutex<HashMap<i32, Option<i64>>>>;

/// Locks a mutex, going on with the data after a panic elsewhere (the
/// positions stay consistent: every writer replaces whole entries).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Consumer context: assigns partitions at the offsets stored in SQL.
pub struct AggregatorContext {
    pub(super) handle: tokio::runtime::Handle,
    pub(super) store: Store,
    pub(super) group: String,
    pub(super) topic: String,
    pub(super) positions: Positions,
    /// Bumped on every assignment change; records fetched under an older
    /// generation are dropped (they are fetched again from the stored offsets).
    pub(super) generation: AtomicU64,
    /// An assignment that could not be made; the loop stops with it.
    pub(super) fatal: Mutex<Option<ConsumerError>>,
    pub(super) metrics: Metrics,
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
                    error!(error = %e, "cannot assign partitions at stored offsets");
                    let _ = consumer.unassign();
                    lock(&self.positions).clear();
                    *lock(&self.fatal) = Some(e);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(partitions = tpl.count(), "partitions revoked");
                lock(&self.positions).clear();
                self.metrics.assigned.set(0);
                if let Err(e) = consumer.unassign() {
                    warn!(error = %e, "unassign failed");
                }
            }
            other => {
                warn!(error = ?other, "rebalance error");
                lock(&self.positions).clear();
                self.metrics.assigned.set(0);
                let _ = consumer.unassign();
            }
        }
    }
}

impl AggregatorContext {
    /// The current assignment generation.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The error an assignment left for the loop, taken.
    pub(super) fn take_fatal(&self) -> Option<ConsumerError> {
        lock(&self.fatal).take()
    }

    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), ConsumerError> {
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
                        error = %e,
                        attempt, "cannot read stored offsets for the assignment; retrying"
                    );
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut positions = HashMap::new();
        for (topic, partition) in &partitions {
            if topic != &self.topic {
                return Err(ConsumerError::UnexpectedTopic(topic.clone()));
            }
            let next = stored.get(partition).copied();
            let offset = next.map_or(Offset::Beginning, Offset::Offset);
            tpl.set_partition_offset(topic, *partition, offset)
                .map_err(|error| ConsumerError::SetOffset {
                    partition: format!("{topic}/{partition}"),
                    error,
                })?;
            positions.insert(*partition, next);
        }
        consumer.assign(tpl).map_err(ConsumerError::Assign)?;
        info!(assigned = ?positions, "partitions assigned at stored offsets");
        self.metrics.assigned.set(positions.len() as i64);
        *lock(&self.positions) = positions;
        Ok(())
    }
}

/// Moves partitions to their stored offsets (`None`: the beginning). A
/// failure is fatal: the consumer's position would otherwise be past
/// records not yet applied.
pub(super) fn seek_all(
    consumer: &BaseConsumer<AggregatorContext>,
    topic: &str,
    to: &[(i32, Option<i64>)],
) -> Result<(), ConsumerError> {
    for (partition, next) in to {
        let offset = next.map_or(Offset::Beginning, Offset::Offset);
        consumer
            .seek(topic, *partition, offset, Duration::from_secs(10))
            .map_err(|error| ConsumerError::Seek {
                partition: format!("{topic}/{partition}"),
                offset: *next,
                error,
            })?;
    }
    Ok(())
}
