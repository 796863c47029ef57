//! Cutting the record stream into objects: one open batch per partition,
//! closed when a record of a later time window arrives, when it reaches the
//! size limit, when its window has ended on the wall clock (plus a grace
//! period), or at shutdown.
//!
//! Pure logic: no I/O, the caller passes the wall-clock time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::frame::{BackupRecord, FrameError, FrameWriter};

/// When batches are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicy {
    /// Window length in milliseconds (> 0). Windows are aligned to the Unix epoch.
    pub window_ms: i64,
    /// A batch is cut once its framed (uncompressed) size reaches this many bytes.
    pub max_object_bytes: usize,
    /// How long after a window's end (wall clock) a batch still waits for records.
    pub grace_ms: i64,
}

/// Why a batch was cut; recorded in its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutReason {
    /// A record of a later window arrived on the partition.
    NextWindow,
    /// The wall clock passed the window's end plus the grace period.
    WindowEnd,
    /// The batch reached the size limit.
    Size,
    /// The consumer stopped (clean shutdown).
    Shutdown,
}

/// Facts about the records of a batch, kept while it is filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStats {
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Number of records.
    pub records: u64,
    /// Kafka timestamp of the first record.
    pub first_timestamp_ms: Option<i64>,
    /// Smallest record timestamp.
    pub min_timestamp_ms: Option<i64>,
    /// Largest record timestamp.
    pub max_timestamp_ms: Option<i64>,
    /// Offsets skipped between records (`last - first + 1 - records`).
    pub offset_gaps: u64,
    /// Records per message key (site id), keys read as UTF-8 (lossy).
    pub sites: BTreeMap<String, u64>,
}

impl BatchStats {
    fn new(first: &BackupRecord) -> BatchStats {
        BatchStats {
            first_offset: first.offset,
            last_offset: first.offset,
            records: 0,
            first_timestamp_ms: first.timestamp.millis(),
            min_timestamp_ms: None,
            max_timestamp_ms: None,
            offset_gaps: 0,
            sites: BTreeMap::new(),
        }
    }

    /// Adds one record (offsets must increase; the caller checks).
    pub fn add(&mut self, r: &BackupRecord) {
        if self.records > 0 {
            self.offset_gaps += (r.offset - self.last_offset - 1).max(0) as u64;
        }
        self.last_offset = r.offset;
        self.records += 1;
        if let Some(t) = r.timestamp.millis() {
            self.min_timestamp_ms = Some(self.min_timestamp_ms.map_or(t, |m| m.min(t)));
            self.max_timestamp_ms = Some(self.max_timestamp_ms.map_or(t, |m| m.max(t)));
        }
        *self.sites.entry(site_of(r)).or_default() += 1;
    }

    /// Stats of a whole record list (used by verify to recompute them).
    pub fn of(records: &[BackupRecord]) -> Option<BatchStats> {
        let mut stats = BatchStats::new(records.first()?);
        for r in records {
            stats.add(r);
        }
        Some(stats)
    }
}

/// The site a record belongs to: its key as UTF-8 (lossy), empty if none.
pub fn site_of(r: &BackupRecord) -> String {
    r.key
        .as_deref()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}

/// A closed batch, ready to be compressed and stored.
#[derive(Debug)]
pub struct Batch {
    /// Topic of every record.
    pub topic: String,
    /// Partition of every record.
    pub partition: i32,
    /// Start of the batch's window (ms since the epoch).
    pub window_start_ms: i64,
    /// Window length used (ms).
    pub window_ms: i64,
    /// The framed records (with trailer).
    pub framed: Vec<u8>,
    /// Facts about the records.
    pub stats: BatchStats,
    /// Why it was cut.
    pub cut: CutReason,
    /// The oldest record time in the batch (ms): its Kafka timestamp, or
    /// when it was taken for a record without one.
    pub oldest_ms: i64,
}

#[derive(Debug)]
struct OpenBatch {
    window_start_ms: i64,
    writer: FrameWriter,
    stats: BatchStats,
    /// See [`Batch::oldest_ms`].
    oldest_ms: i64,
}

/// Open batches, one per (topic, partition).
#[derive(Debug)]
pub struct Windows {
    policy: WindowPolicy,
    open: BTreeMap<(String, i32), OpenBatch>,
    /// Highest offset taken per partition since it was assigned, buffered or
    /// already stored: a broker that serves a fetch again from an earlier
    /// record-batch start (Tansu does after a seek) re-delivers offsets that
    /// must not open a second object.
    seen: BTreeMap<(String, i32), i64>,
}

/// A record that cannot be added to its partition's batch.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The record cannot be framed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Its offset is not after the last offset taken from its partition
    /// (a re-delivery; the caller skips it).
    #[error("offset {offset} of partition {partition} is not after {last} (already taken)")]
    OffsetNotIncreasing {
        /// Partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// Last buffered offset.
        last: i64,
    },
}

impl Windows {
    /// No open batch.
    pub fn new(policy: WindowPolicy) -> Windows {
        Windows {
            policy,
            open: BTreeMap::new(),
            seen: BTreeMap::new(),
        }
    }

    fn window_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.policy.window_ms) * self.policy.window_ms
    }

    /// Adds a record; returns the batches it closed, in the order they must
    /// be stored (at most two: the previous window's batch, then this
    /// record's batch if it reached the size limit).
    ///
    /// A record whose timestamp is before its partition's open window (a
    /// late record) joins the open batch; one at or after the window's end
    /// closes it. A record without timestamp joins the open batch, or opens
    /// a batch in the window of `now_ms`.
    pub fn push(&mut self, r: &BackupRecord, now_ms: i64) -> Result<Vec<Batch>, PushError> {
        let mut closed = Vec::new();
        let key = (r.topic.clone(), r.partition);
        let record_ms = r.timestamp.millis().unwrap_or(now_ms);
        let record_window = self.window_of(record_ms);
        if let Some(&last) = self.seen.get(&key)
            && r.offset <= last
        {
            return Err(PushError::OffsetNotIncreasing {
                partition: r.partition,
                offset: r.offset,
                last,
            });
        }
        self.seen.insert(key.clone(), r.offset);
        if let Some(open) = self.open.get(&key) {
            let window_end = open.window_start_ms + self.policy.window_ms;
            if r.timestamp.millis().is_some_and(|t| t >= window_end) {
                closed.extend(self.close(&key, CutReason::NextWindow));
            }
        }
        let window_ms = self.policy.window_ms;
        let open = self.open.entry(key.clone()).or_insert_with(|| OpenBatch {
            window_start_ms: record_window,
            writer: FrameWriter::new(),
            stats: BatchStats::new(r),
            oldest_ms: record_ms,
        });
        debug_assert!(window_ms > 0);
        open.writer.push(r)?;
        open.stats.add(r);
        open.oldest_ms = open.oldest_ms.min(record_ms);
        if open.writer.len() >= self.policy.max_object_bytes {
            closed.extend(self.close(&key, CutReason::Size));
        }
        Ok(closed)
    }

    /// Closes every batch whose window ended more than the grace period before `now_ms`.
    pub fn due(&mut self, now_ms: i64) -> Vec<Batch> {
        let limit = self.policy.window_ms + self.policy.grace_ms;
        let due: Vec<_> = self
            .open
            .iter()
            .filter(|(_, b)| now_ms >= b.window_start_ms + limit)
            .map(|(k, _)| k.clone())
            .collect();
        due.iter()
            .filter_map(|k| self.close(k, CutReason::WindowEnd))
            .collect()
    }

    /// Closes every open batch (clean shutdown).
    pub fn drain(&mut self) -> Vec<Batch> {
        let keys: Vec<_> = self.open.keys().cloned().collect();
        keys.iter()
            .filter_map(|k| self.close(k, CutReason::Shutdown))
            .collect()
    }

    /// Drops a partition's open batch without storing it (the partition was
    /// revoked: its next owner re-reads it from the committed offset).
    /// Returns how many records were dropped.
    pub fn drop_partition(&mut self, topic: &str, partition: i32) -> u64 {
        let key = (topic.to_string(), partition);
        self.seen.remove(&key);
        self.open.remove(&key).map_or(0, |b| b.stats.records)
    }

    /// Records buffered in open batches.
    pub fn buffered(&self) -> u64 {
        self.open.values().map(|b| b.stats.records).sum()
    }

    /// The oldest record time (ms) among the open batches ([`Batch::oldest_ms`]).
    pub fn oldest_ms(&self) -> Option<i64> {
        self.open.values().map(|b| b.oldest_ms).min()
    }

    fn close(&mut self, key: &(String, i32), cut: CutReason) -> Option<Batch> {
        let b = self.open.remove(key)?;
        Some(Batch {
            topic: key.0.clone(),
            partition: key.1,
            window_start_ms: b.window_start_ms,
            window_ms: self.policy.window_ms,
            framed: b.writer.finish(),
            stats: b.stats,
            cut,
            oldest_ms: b.oldest_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backup::frame::decode;
    use crate::backup::test_support::record;

    const MIN: i64 = 60_000;

    fn policy() -> WindowPolicy {
        WindowPolicy {
            window_ms: 5 * MIN,
            max_object_bytes: 1 << 20,
            grace_ms: 10_000,
        }
    }

    #[test]
    fn a_later_window_closes_the_batch() {
        let mut w = Windows::new(policy());
        let t0 = 100 * 5 * MIN; // a window start
        assert!(w.push(&record(0, 10, t0 + 1, "a"), t0).unwrap().is_empty());
        assert!(
            w.push(&record(0, 11, t0 + 4 * MIN, "b"), t0)
                .unwrap()
                .is_empty()
        );
        // A late record (earlier window) stays in the open batch.
        assert!(w.push(&record(0, 12, t0 - 1, "a"), t0).unwrap().is_empty());
        // Another partition has its own batch.
        assert!(
            w.push(&record(1, 0, t0 + 5 * MIN, "a"), t0)
                .unwrap()
                .is_empty()
        );
        // The late record is the oldest pending one.
        assert_eq!(w.oldest_ms(), Some(t0 - 1));
        let closed = w.push(&record(0, 13, t0 + 5 * MIN, "a"), t0).unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!(w.oldest_ms(), Some(t0 + 5 * MIN));
        let b = &closed[0];
        assert_eq!(b.oldest_ms, t0 - 1);
        assert_eq!(b.cut, CutReason::NextWindow);
        assert_eq!((b.partition, b.window_start_ms), (0, t0));
        assert_eq!((b.stats.first_offset, b.stats.last_offset), (10, 12));
        assert_eq!(b.stats.records, 3);
        assert_eq!(b.stats.min_timestamp_ms, Some(t0 - 1));
        assert_eq!(b.stats.max_timestamp_ms, Some(t0 + 4 * MIN));
        assert_eq!(b.stats.sites.get("a"), Some(&2));
        assert_eq!(b.stats.sites.get("b"), Some(&1));
        let records = decode(&b.framed).unwrap();
        assert_eq!(
            records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        assert_eq!(w.buffered(), 2);
    }

    #[test]
    fn the_wall_clock_closes_a_window_after_the_grace_period() {
        let mut w = Windows::new(policy());
        let t0 = 7 * 5 * MIN;
        w.push(&record(0, 0, t0 + 10, "a"), t0).unwrap();
        w.push(&record(2, 5, t0 + 6 * MIN, "a"), t0).unwrap();
        let end = t0 + 5 * MIN;
        assert!(w.due(end).is_empty());
        assert!(w.due(end + 9_999).is_empty());
        let closed = w.due(end + 10_000);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].cut, CutReason::WindowEnd);
        assert_eq!(closed[0].partition, 0);
        // Partition 2's window (the next one) is still open.
        assert_eq!(w.buffered(), 1);
        let rest = w.drain();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].cut, CutReason::Shutdown);
        assert_eq!(w.buffered(), 0);
    }

    #[test]
    fn the_size_limit_closes_a_batch_including_the_record_that_reached_it() {
        let mut w = Windows::new(WindowPolicy {
            max_object_bytes: 1_000,
            ..policy()
        });
        let t0 = 5 * MIN;
        // Each record frames to 4 + 35 + len("edge.events") + 1 + 300 = 351 bytes.
        let mut closed = Vec::new();
        for off in 0..10 {
            closed.extend(w.push(&record(0, off, t0, "a"), t0).unwrap());
        }
        // 9 header bytes + 3 × 351 ≥ 1000: every third record closes a batch.
        assert_eq!(closed.len(), 3);
        for (i, b) in closed.iter().enumerate() {
            assert_eq!(b.cut, CutReason::Size);
            assert_eq!(b.stats.records, 3);
            assert_eq!(b.stats.first_offset, 3 * i as i64);
            assert!(b.framed.len() >= 1_000 && b.framed.len() < 1_000 + 351 + 12);
        }
        assert_eq!(w.buffered(), 1);
    }

    #[test]
    fn a_record_larger_than_the_limit_gets_its_own_batch() {
        let mut w = Windows::new(WindowPolicy {
            max_object_bytes: 10,
            ..policy()
        });
        let closed = w.push(&record(0, 0, 0, "a"), 0).unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].stats.records, 1);
    }

    #[test]
    fn next_window_and_size_can_close_two_batches_at_once() {
        let mut w = Windows::new(WindowPolicy {
            max_object_bytes: 500,
            ..policy()
        });
        let t0 = 5 * MIN;
        assert!(w.push(&record(0, 0, t0, "a"), t0).unwrap().is_empty());
        let mut big = record(0, 1, t0 + 5 * MIN, "a");
        big.value = Some(vec![1; 500]);
        let closed = w.push(&big, t0).unwrap();
        let cuts: Vec<_> = closed.iter().map(|b| b.cut).collect();
        assert_eq!(cuts, [CutReason::NextWindow, CutReason::Size]);
        assert_eq!(closed[0].stats.first_offset, 0);
        assert_eq!(closed[1].stats.first_offset, 1);
        assert_eq!(closed[1].window_start_ms, t0 + 5 * MIN);
    }

    #[test]
    fn offsets_must_increase_and_revoked_partitions_are_dropped() {
        let mut w = Windows::new(policy());
        w.push(&record(0, 5, 0, "a"), 0).unwrap();
        assert!(matches!(
            w.push(&record(0, 5, 0, "a"), 0),
            Err(PushError::OffsetNotIncreasing { .. })
        ));
        w.push(&record(0, 9, 0, "a"), 0).unwrap();
        assert_eq!(w.drop_partition("edge.events", 0), 2);
        assert_eq!(w.buffered(), 0);
        // After a drop the partition starts afresh (re-read from the committed offset).
        w.push(&record(0, 5, 0, "a"), 0).unwrap();
        let b = w.drain();
        assert_eq!(b[0].stats.offset_gaps, 0);
        // A stored batch's offsets re-delivered by the broker (a fetch served
        // again from a record-batch start) never open a second object.
        assert!(matches!(
            w.push(&record(0, 5, 0, "a"), 0),
            Err(PushError::OffsetNotIncreasing { .. })
        ));
        assert_eq!(w.buffered(), 0);
    }

    #[test]
    fn gaps_are_counted() {
        let records = [
            record(0, 1, 0, "a"),
            record(0, 2, 0, "a"),
            record(0, 5, 0, "b"),
        ];
        let s = BatchStats::of(&records).unwrap();
        assert_eq!(s.offset_gaps, 2);
        assert_eq!(s.records, 3);
    }
}
