//! The broker's answers for one batch of records handed to the producer.
//!
//! librdkafka reports each record's outcome through the producer context's
//! delivery callback, on the producer's polling thread. Instead of one
//! future (a channel, an allocation and a wake-up of the awaiting task) per
//! record, every record of a batch carries a [`DeliverySlot`] naming its
//! [`DeliveryBatch`] and its position; the callback files the outcome there
//! and wakes the waiting shipper once, when the last record is answered.

use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::error::KafkaError;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One record's outcome: `None` while the broker has not answered (or the
/// record was never handed to the producer).
pub(crate) type Outcome = Option<Result<(), KafkaError>>;

/// Outcomes of the records of one batch, in the order they were handed over.
pub(crate) struct DeliveryBatch {
    state: Mutex<BatchState>,
    answered: Notify,
}

struct BatchState {
    outcomes: Vec<Outcome>,
    /// Records whose outcome is still awaited.
    awaited: usize,
}

/// The delivery opaque of one record: its batch and its position in it.
pub(crate) struct DeliverySlot {
    batch: Arc<DeliveryBatch>,
    index: usize,
}

impl DeliverySlot {
    /// Files the broker's answer for this record (called by the producer
    /// context's delivery callback).
    pub(crate) fn settle(self, outcome: Result<(), KafkaError>) {
        self.batch.settle(self.index, outcome);
    }
}

impl DeliveryBatch {
    /// A batch of `len` records, all awaited until [`DeliveryBatch::truncate`]
    /// says some were never handed to the producer.
    pub(crate) fn new(len: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(BatchState {
                outcomes: vec![None; len],
                awaited: len,
            }),
            answered: Notify::new(),
        })
    }

    /// The delivery opaque for the record at `index`.
    pub(crate) fn slot(self: &Arc<Self>, index: usize) -> Box<DeliverySlot> {
        Box::new(DeliverySlot {
            batch: self.clone(),
            index,
        })
    }

    fn lock(&self) -> MutexGuard<'_, BatchState> {
        // A poisoned lock only means a callback panicked mid-update; the
        // outcomes filed so far are still right.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, index: usize, outcome: Result<(), KafkaError>) {
        let mut state = self.lock();
        let Some(slot) = state.outcomes.get_mut(index) else {
            return;
        };
        if slot.replace(outcome).is_none() {
            state.awaited = state.awaited.saturating_sub(1);
            if state.awaited == 0 {
                self.answered.notify_one();
            }
        }
    }

    /// Only the first `handed_over` records were handed to the producer:
    /// the rest leave the batch (no answer is awaited for them, and
    /// [`DeliveryBatch::outcomes`] returns `handed_over` outcomes).
    pub(crate) fn truncate(&self, handed_over: usize) {
        let mut state = self.lock();
        state.outcomes.truncate(handed_over);
        state.awaited = state.outcomes.iter().filter(|o| o.is_none()).count();
        if state.awaited == 0 {
            self.answered.notify_one();
        }
    }

    /// Waits until every handed-over record is answered or `deadline`
    /// passes, then returns their outcomes in batch order (`None` for a
    /// record without an answer by then). An answer that comes later is
    /// dropped.
    pub(crate) async fn outcomes(&self, deadline: Instant) -> Vec<Outcome> {
        loop {
            {
                let mut state = self.lock();
                if state.awaited == 0 {
                    return std::mem::take(&mut state.outcomes);
                }
            }
            // A notification sent between the check and here is kept as a
            // permit, so it is not missed.
            if tokio::time::timeout_at(deadline, self.answered.notified())
                .await
                .is_err()
            {
                let mut state = self.lock();
                state.awaited = 0;
                return std::mem::take(&mut state.outcomes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    fn failure() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    }

    #[tokio::test]
    async fn outcomes_come_back_in_batch_order_once_every_record_is_answered() {
        let batch = DeliveryBatch::new(3);
        let slots: Vec<_> = (0..3).map(|i| batch.slot(i)).collect();
        let waiter = tokio::spawn({
            let batch = batch.clone();
            async move {
                batch
                    .outcomes(Instant::now() + Duration::from_secs(30))
                    .await
            }
        });
        // Answered out of order, from another thread, like librdkafka does.
        std::thread::spawn(move || {
            let mut slots = slots.into_iter();
            let (a, b, c) = (slots.next(), slots.next(), slots.next());
            c.unwrap().settle(Ok(()));
            a.unwrap().settle(Err(failure()));
            b.unwrap().settle(Ok(()));
        })
        .join()
        .unwrap();
        let outcomes = waiter.await.unwrap();
        assert!(matches!(outcomes[0], Some(Err(_))), "{outcomes:?}");
        assert!(matches!(outcomes[1], Some(Ok(()))), "{outcomes:?}");
        assert!(matches!(outcomes[2], Some(Ok(()))), "{outcomes:?}");
    }

    #[tokio::test]
    async fn records_never_handed_over_are_not_awaited() {
        let batch = DeliveryBatch::new(4);
        batch.slot(0).settle(Ok(()));
        batch.truncate(1);
        let outcomes = batch
            .outcomes(Instant::now() + Duration::from_secs(30))
            .await;
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert!(matches!(outcomes[0], Some(Ok(()))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_without_an_answer_by_the_deadline_stays_none_and_a_late_answer_is_dropped() {
        let batch = DeliveryBatch::new(2);
        let late = batch.slot(1);
        batch.slot(0).settle(Ok(()));
        let outcomes = batch
            .outcomes(Instant::now() + Duration::from_secs(5))
            .await;
        assert!(matches!(outcomes[0], Some(Ok(()))));
        assert!(outcomes[1].is_none());
        // The producer answers after the shipper gave up: nothing to file.
        late.settle(Ok(()));
    }
}
