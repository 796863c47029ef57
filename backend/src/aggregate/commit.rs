//! Committing one prepared batch: dead letters first (acknowledged by the
//! broker), then the store's transaction. When the store refuses the batch
//! because of what a record holds ([`ErrorClass::Content`]), the records at
//! fault are found by bisection (each half written in a transaction that is
//! rolled back), dead-lettered with reason `store_rejected`, and the batch is
//! committed without them. Any other error is returned for the caller to
//! retry the whole batch after a [`Backoff`] delay.

use std::time::Duration;

use edge_envelope::EventRecord;

use super::batch::{Fetched, PreparedBatch, dead_letter_row};
use super::dlq::{DeadLetter, DeadLetterReason, DlqError, DlqProducer};
use super::store::{ApplyOutcome, ErrorClass, Store, StoreError};

/// At most this many isolation rounds per batch (each round dead-letters at
/// least one record); then the error is retried like an infrastructure one.
const MAX_ISOLATION_ROUNDS: usize = 8;

/// Where dead letters go (the dead-letter topic; a vector in tests).
pub trait LetterSink {
    /// Publishes every letter; `Ok` once all are acknowledged.
    fn send_all(&self, letters: &[DeadLetter]) -> impl Future<Output = Result<(), DlqError>>;
}

impl LetterSink for DlqProducer {
    async fn send_all(&self, letters: &[DeadLetter]) -> Result<(), DlqError> {
        DlqProducer::send_all(self, letters).await
    }
}

/// What a batch turned into.
#[derive(Debug)]
pub struct BatchResult {
    /// The store's answer.
    pub outcome: ApplyOutcome,
    /// Every letter sent for the batch (the prepared ones plus the records
    /// the store refused).
    pub letters: Vec<DeadLetter>,
}

/// What failed in a batch commit.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The store refused or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The dead letters could not be delivered.
    #[error(transparent)]
    DeadLetters(#[from] DlqError),
}

/// A failed commit: the error and which side it is on.
#[derive(Debug)]
pub struct CommitError {
    /// Content errors that no single record reproduces are retried too.
    pub class: ErrorClass,
    /// What failed.
    pub error: BatchError,
}

/// Sends the batch's dead letters, then applies it; isolates and
/// dead-letters records the store refuses for their content.
pub async fn commit_batch(
    store: &Store,
    sink: &impl LetterSink,
    group: &str,
    topic: &str,
    batch: &PreparedBatch,
    fetched: &[Fetched],
) -> Result<BatchResult, CommitError> {
    let infra = |error: BatchError| CommitError {
        class: ErrorClass::Infrastructure,
        error,
    };
    let mut letters = batch.letters.clone();
    let mut rows: Vec<_> = letters
        .iter()
        .map(|l| dead_letter_row(l, timestamp_of(fetched, l)))
        .collect();
    let mut events: Vec<(usize, &EventRecord)> =
        batch.events.iter().map(|(i, r)| (*i, r)).collect();
    let mut sent = 0;
    let mut rounds = 0;
    loop {
        if letters.len() > sent {
            sink.send_all(&letters[sent..])
                .await
                .map_err(|e| infra(e.into()))?;
            sent = letters.len();
        }
        let records: Vec<&EventRecord> = events.iter().map(|(_, r)| *r).collect();
        let error = match store.apply(group, &batch.advances, &records, &rows).await {
            Ok(outcome) => return Ok(BatchResult { outcome, letters }),
            Err(e) => e,
        };
        let class = error.class();
        if class != ErrorClass::Content || rounds >= MAX_ISOLATION_ROUNDS {
            return Err(CommitError {
                class,
                error: error.into(),
            });
        }
        rounds += 1;
        let bad = isolate(store, &records)
            .await
            .map_err(|e| infra(e.into()))?;
        if bad.is_empty() {
            // Only the combination fails: nothing to single out.
            return Err(CommitError {
                class,
                error: error.into(),
            });
        }
        for (pos, e) in &bad {
            let f = &fetched[events[*pos].0];
            let letter = f.letter(topic, DeadLetterReason::StoreRejected, e.database_message());
            rows.push(dead_letter_row(&letter, f.timestamp_ms));
            letters.push(letter);
        }
        for (pos, _) in bad.iter().rev() {
            events.remove(*pos);
        }
    }
}

fn timestamp_of(fetched: &[Fetched], l: &DeadLetter) -> i64 {
    fetched
        .iter()
        .find(|f| f.partition == l.partition && f.offset == l.offset)
        .map_or(0, |f| f.timestamp_ms)
}

/// The positions (ascending) of the records the store refuses on their
/// own, each with its error. An infrastructure error while probing ends
/// the search (`Err`).
pub async fn isolate(
    store: &Store,
    records: &[&EventRecord],
) -> Result<Vec<(usize, StoreError)>, StoreError> {
    let mut bad = Vec::new();
    let mut ranges = vec![(0, records.len())];
    while let Some((lo, hi)) = ranges.pop() {
        if hi <= lo {
            continue;
        }
        match store.probe(&records[lo..hi]).await {
            Ok(()) => {}
            Err(e) if e.class() == ErrorClass::Content => {
                if hi - lo == 1 {
                    bad.push((lo, e));
                } else {
                    let mid = lo + (hi - lo) / 2;
                    ranges.push((mid, hi));
                    ranges.push((lo, mid));
                }
            }
            Err(e) => return Err(e),
        }
    }
    bad.sort_by_key(|(pos, _)| *pos);
    Ok(bad)
}

/// Exponential backoff for retried batches: 100 ms, doubling, at most 30 s;
/// back to the start after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// First delay.
    pub const MIN: Duration = Duration::from_millis(100);
    /// Longest delay.
    pub const MAX: Duration = Duration::from_secs(30);

    /// Starts at [`Backoff::MIN`].
    pub fn new() -> Backoff {
        Backoff { next: Self::MIN }
    }

    /// The delay to wait now; the next one is twice as long (up to the max).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use super::*;
    use crate::aggregate::batch::prepare_batch;
    use crate::aggregate::batch::tests::{fetched, keys};
    use crate::aggregate::rollup::BucketSize;
    use crate::aggregate::store::tests::PgTestDb;
    use crate::aggregate::store::{Committed, sqlite_url_in};

    #[derive(Default)]
    struct Sink(Mutex<Vec<DeadLetter>>);

    impl LetterSink for Sink {
        async fn send_all(&self, letters: &[DeadLetter]) -> Result<(), DlqError> {
            self.0.lock().unwrap().extend_from_slice(letters);
            Ok(())
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_max_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..12).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            vec![
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        b.reset();
        assert_eq!(b.next_delay(), Backoff::MIN);
    }

    /// PostgreSQL refuses a NUL in text (SQLSTATE 22021): the record is
    /// found among good ones, dead-lettered with the database's reason, and
    /// the rest of the batch is committed.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_record_postgres_refuses_is_isolated_and_the_rest_committed() {
        let db = PgTestDb::create().await;
        let store = Store::open(&db.url).await.unwrap();
        let (opener, sealer) = keys();
        let mut log: Vec<Fetched> = (0..20)
            .map(|i| fetched(&sealer, 0, i, "s", i as u8))
            .collect();
        // Bypass the aggregator's own check to reach the database's.
        let mut batch = prepare_batch(
            &opener,
            "t",
            &HashMap::from([(0, None)]),
            &HashSet::new(),
            &log,
        );
        for i in [3usize, 11] {
            batch.events[i].1.name = "evt\u{0}x".into();
        }
        log[3].timestamp_ms = 42;
        let sink = Sink::default();
        let r = commit_batch(&store, &sink, "g", "t", &batch, &log)
            .await
            .unwrap();
        assert_eq!(
            r.outcome,
            ApplyOutcome::Committed(Committed {
                events: 18,
                duplicates: 0
            })
        );
        let sent = sink.0.lock().unwrap().clone();
        assert_eq!(
            sent.iter().map(|l| l.offset).collect::<Vec<_>>(),
            vec![3, 11]
        );
        assert!(
            sent.iter()
                .all(|l| l.reason == DeadLetterReason::StoreRejected)
        );
        assert!(sent[0].error.contains("22021"), "{}", sent[0].error);
        assert_eq!(sent[0].value, log[3].value);
        let b = store
            .buckets("s", BucketSize::Hour, 0, 3_600_000)
            .await
            .unwrap();
        assert_eq!(b[0].custom_events + b[0].pageviews, 18);
        assert_eq!(store.load_offsets("g", "t").await.unwrap()[&0], 20);
        let audit = store.dead_letters_in(Some("s"), 0, 100).await.unwrap();
        assert_eq!(audit, vec![("store_rejected".to_string(), 2)]);
        store.close().await;
        db.drop_db().await;
    }

    /// Crash between batches at any point: a restarted consumer resumes from
    /// the stored offsets, so re-reading the whole partition applies each
    /// record exactly once; a batch that was never committed is applied on
    /// the re-read.
    #[tokio::test(flavor = "multi_thread")]
    async fn restart_from_stored_offsets_counts_every_record_once() {
        let (opener, sealer) = keys();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&sqlite_url_in(dir.path())).await.unwrap();
        let sink = Sink::default();
        let log: Vec<Fetched> = (0..100)
            .map(|i| fetched(&sealer, 0, i, "s", i as u8))
            .collect();
        // First run: commits batches [0,30) and [30,60), then "crashes"
        // after preparing [60,80) without committing it.
        let mut positions = HashMap::from([(0, None)]);
        for range in [0..30, 30..60] {
            let part = &log[range];
            let b = prepare_batch(&opener, "t", &positions, &HashSet::from([0]), part);
            let r = commit_batch(&store, &sink, "g", "t", &b, part)
                .await
                .unwrap();
            assert!(matches!(r.outcome, ApplyOutcome::Committed(_)));
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
        assert_eq!(b.events.len(), 40);
        commit_batch(&store, &sink, "g", "t", &b, &log)
            .await
            .unwrap();
        // A stale consumer that still believes offset 60 is refused.
        assert!(matches!(
            commit_batch(&store, &sink, "g", "t", &b, &log)
                .await
                .unwrap()
                .outcome,
            ApplyOutcome::Conflict(_)
        ));
        let rows = store
            .buckets("s", BucketSize::Minute, 0, 60_000)
            .await
            .unwrap();
        assert_eq!((rows[0].pageviews, rows[0].visitors), (100, 100));
        assert!(sink.0.lock().unwrap().is_empty());
    }
}
