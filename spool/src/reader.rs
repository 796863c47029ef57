//! The single in-order reader and its acknowledgements.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Shared;
use crate::record::{Found, Record, ScanBuffer, Scanner};

/// While records keep being acknowledged, the checkpoint file is rewritten at
/// most this often. Each write costs two `fsync`s (file and directory); once
/// per shipping round that was 1.5 µs of kernel time per event under load
/// (BENCHMARKS.md, issue 15). Acknowledgements in between are kept in memory:
/// after a crash they are sent again (duplicates, which the downstream
/// removes), never skipped.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Reads records in append order, from the oldest unacknowledged one.
pub struct Reader {
    shared: Arc<Shared>,
    /// First seq (name) of the segment being read.
    segment: u64,
    offset: u64,
    file: Option<File>,
    /// Bytes of `file` already read: the next record is usually in them.
    scan_buf: ScanBuffer,
    /// Records with a lower or equal seq were handed out (or acknowledged).
    handed_upto: u64,
    /// Handed out, not acknowledged: (seq, appended_at_ms).
    in_flight: VecDeque<(u64, i64)>,
    /// Read ahead to learn the oldest record's age, not handed out yet.
    ahead: Option<Record>,
    /// When this reader last wrote (or tried to write) the checkpoint file.
    checkpointed_at: Option<Instant>,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, acked: u64) -> Self {
        Self {
            shared,
            segment: 0,
            offset: 0,
            file: None,
            scan_buf: ScanBuffer::default(),
            handed_upto: acked,
            in_flight: VecDeque::new(),
            ahead: None,
            checkpointed_at: None,
        }
    }

    /// Up to `max_records` records (and about `max_bytes` of payload) that
    /// follow the last one handed out; empty when none is durable yet.
    pub fn read(&mut self, max_records: usize, max_bytes: usize) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records && bytes < max_bytes {
            let next = match self.ahead.take() {
                Some(r) => Some(r),
                None => self.next_record()?,
            };
            let Some(record) = next else { break };
            bytes += record.payload.len();
            self.in_flight
                .push_back((record.seq, record.appended_at_ms));
            self.handed_upto = record.seq;
            out.push(record);
        }
        Ok(out)
    }

    /// Waits until new records may be durable, at most `timeout`.
    pub async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.shared.new_records.notified()).await;
    }

    /// The next durable record after `handed_upto`, advancing through segments.
    fn next_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            let (first, len, sealed, path) = {
                let st = self.shared.lock();
                let Some((first, seg)) = st.segments.range(self.segment..).next() else {
                    return Ok(None);
                };
                (*first, seg.len, seg.sealed, seg.path.clone())
            };
            if first != self.segment || self.file.is_none() {
                if first != self.segment {
                    self.offset = 0;
                }
                self.segment = first;
                self.scan_buf = ScanBuffer::default();
                self.file = Some(File::open(&path)?);
            }
            if self.offset >= len {
                if !sealed {
                    return Ok(None);
                }
                // Sealed and read to the end: on to the next segment.
                self.segment = first + 1;
                self.offset = 0;
                self.file = None;
                self.scan_buf = ScanBuffer::default();
                continue;
            }
            let Some(file) = &self.file else {
                return Ok(None);
            };
            let buf = std::mem::take(&mut self.scan_buf);
            let mut scanner = Scanner::resume(file, self.offset, len, buf);
            let mut next = None;
            while let Some(item) = scanner.next_item()? {
                self.offset = scanner.offset();
                match item {
                    Found::Record { record, .. } => {
                        if record.seq > self.handed_upto {
                            next = Some(record);
                            break;
                        }
                    }
                    Found::Corrupt { .. } | Found::TornTail { .. } => {
                        self.shared.lock().corrupt_skipped += 1;
                    }
                }
            }
            self.scan_buf = scanner.into_buffer();
            if next.is_some() {
                return Ok(next);
            }
        }
    }

    /// Acknowledges every handed-out record with `seq <= upto`. Positions
    /// beyond the last record handed out are clamped to it. The position is
    /// made durable ([`Reader::sync_checkpoint`]) when [`CHECKPOINT_INTERVAL`]
    /// has passed since this reader last did, or when a segment holds nothing
    /// else any more. When idle, call `sync_checkpoint` once
    /// [`Reader::checkpoint_due_in`] says so, and always before stopping.
    /// An error is the checkpoint's: the acknowledgement holds in memory, and
    /// a later call writes it again.
    pub fn ack(&mut self, upto: u64) -> io::Result<()> {
        let upto = upto.min(self.handed_upto);
        if upto <= self.shared.lock().acked {
            return Ok(());
        }
        let mut done = 0u64;
        while self.in_flight.front().is_some_and(|(seq, _)| *seq <= upto) {
            self.in_flight.pop_front();
            done += 1;
        }
        let mut oldest = self.in_flight.front().map(|(_, ms)| *ms);
        let any_left = {
            let st = self.shared.lock();
            st.unacked_records > done
        };
        if oldest.is_none() && any_left {
            if self.ahead.is_none() {
                self.ahead = self.next_record()?;
            }
            oldest = self.ahead.as_ref().map(|r| r.appended_at_ms);
        }
        let segment_finished = {
            let mut st = self.shared.lock();
            st.acked = upto;
            st.unacked_records = st.unacked_records.saturating_sub(done);
            st.oldest_unacked_ms = if st.unacked_records == 0 {
                None
            } else {
                oldest
            };
            st.segments.values().any(|s| s.finished(upto))
        };
        // A segment is deleted only once the checkpoint covers it, so that a
        // restart never numbers new records below ones already shipped.
        if segment_finished || self.checkpoint_due_in() == Some(Duration::ZERO) {
            self.sync_checkpoint()?;
        }
        Ok(())
    }

    /// When the checkpoint file should next be written: `None` when it holds
    /// every acknowledgement, else the time left until [`CHECKPOINT_INTERVAL`]
    /// has passed since this reader last wrote or tried to (zero: now).
    pub fn checkpoint_due_in(&self) -> Option<Duration> {
        if self.shared.lock().acked <= self.shared.checkpointed() {
            return None;
        }
        Some(self.checkpointed_at.map_or(Duration::ZERO, |at| {
            CHECKPOINT_INTERVAL.saturating_sub(at.elapsed())
        }))
    }

    /// Writes the acknowledged position to the checkpoint file (fsync'd) if
    /// it is ahead of what the file holds, then deletes the sealed segments
    /// it covers.
    pub fn sync_checkpoint(&mut self) -> io::Result<()> {
        let acked = self.shared.lock().acked;
        // Set before the write: after a failure, the next try is an interval
        // away.
        self.checkpointed_at = Some(Instant::now());
        self.shared.checkpoint(acked)?;
        self.shared.delete_finished(acked)
    }

    /// The position in the checkpoint file: after a crash, records above it
    /// are read again.
    pub fn checkpointed_seq(&self) -> u64 {
        self.shared.checkpointed()
    }

    /// Seq of the last record handed out.
    pub fn handed_upto(&self) -> u64 {
        self.handed_upto
    }
}
