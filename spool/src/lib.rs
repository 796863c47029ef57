//! A durable local spool: an append-only write-ahead log of opaque records.
//!
//! * Records (key, optional small header, payload) are appended to segment
//!   files `NNNNNNNNNNNNNNNNNNNN.seg` under one directory (0700, files 0600).
//!   Each record carries a crc32c; on open a torn tail (crash mid-write) is
//!   truncated and a corrupt record in the middle is skipped and counted.
//! * [`Spool::append`] resolves only after an `fdatasync` covering its bytes.
//!   A dedicated writer thread takes every append waiting at that moment and
//!   commits them with one write and one sync (group commit). Between
//!   commits it keeps zeros written ahead in the active segment
//!   ([`SpoolConfig::prefill_bytes`]); on open an all-zero tail is unused
//!   space, cut off without counting it as torn.
//! * The spool is bounded by `max_bytes` and `min_free_disk_bytes`: when
//!   either would be crossed, `append` fails at once with
//!   [`AppendError::Full`]; nothing queues without bound in memory.
//! * One [`Reader`] hands out records in order from the oldest unacknowledged
//!   one; [`Reader::ack`] deletes segments whose records are all acknowledged
//!   and records the position durably in a checkpoint file, at most every
//!   [`CHECKPOINT_INTERVAL`] (and on [`Reader::sync_checkpoint`]). After a
//!   crash, records between the last checkpoint and the crash are read again
//!   (duplicates), never skipped.
//!
//! The crate knows nothing of Kafka or metrics: it reports [`Stats`] and
//! commit observations through [`Observer`].

mod checkpoint;
mod reader;
pub mod record;
mod recover;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use reader::{CHECKPOINT_INTERVAL, Reader};
pub use record::Record;

/// Group commit under load: after a commit of at least `min_appends`
/// appends, the writer waits `delay` before taking the next group, so one
/// `fdatasync` serves more appends (fewer syncs and less kernel time per
/// record, at most `delay` more latency). A quiet spool, whose groups are
/// smaller, commits at once. The default, `delay` zero, never waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitDelay {
    /// How long the writer waits after a large group.
    pub delay: Duration,
    /// The smallest group (in appends) that makes the writer wait.
    pub min_appends: usize,
}

/// Settings of a spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory holding the segments and the checkpoint.
    pub dir: PathBuf,
    /// Most bytes of segments on disk, acknowledged records of the active
    /// segment excluded; an append that would cross it fails with `Full`.
    pub max_bytes: u64,
    /// An append fails with `Full` when the file system would keep less free space.
    pub min_free_disk_bytes: u64,
    /// A new segment is started when the active one would grow past this.
    pub segment_bytes: u64,
    /// Bytes of zeros the writer keeps written and synced ahead of the
    /// records in the active segment (never past `segment_bytes`), so that a
    /// commit overwrites allocated blocks and its `fdatasync` flushes the
    /// data only, not a new file size. `0` appends at the end of the file.
    pub prefill_bytes: u64,
}

/// One record to append.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Opaque key, at most 65,535 bytes.
    pub key: &'a [u8],
    /// Optional opaque header, at most 65,535 bytes.
    pub header: Option<&'a [u8]>,
    /// Opaque payload.
    pub payload: &'a [u8],
}

/// Which bound a refused append would have crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullReason {
    /// `max_bytes`.
    MaxBytes,
    /// `min_free_disk_bytes`.
    DiskSpace,
}

/// Why records were not appended. Nothing of a failed append is kept.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The spool is at its bound; retry later.
    #[error("spool is full ({0:?})")]
    Full(FullReason),
    /// Writing or syncing failed.
    #[error("spool write failed: {0}")]
    Io(String),
    /// A record part is larger than the format allows.
    #[error("record too large")]
    TooLarge,
    /// The spool was closed.
    #[error("spool is closed")]
    Closed,
}

impl AppendError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Full(_) => "full",
            Self::Io(_) | Self::Closed => "io_error",
            Self::TooLarge => "too_large",
        }
    }
}

/// Why the spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// A snapshot of the spool's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of records in segment files on disk. The active segment's file
    /// also holds up to [`SpoolConfig::prefill_bytes`] of zeros past them.
    pub bytes: u64,
    /// Records appended and not yet acknowledged.
    pub records: u64,
    /// Unix milliseconds of the oldest unacknowledged record's append.
    pub oldest_unacked_ms: Option<i64>,
    /// Segment files on disk.
    pub segments: usize,
    /// Every record with a lower or equal seq is acknowledged.
    pub acked_seq: u64,
    /// The acknowledged position in the checkpoint file (at most
    /// `acked_seq`): after a crash, records above it are read again.
    pub checkpointed_seq: u64,
    /// Corrupt stretches found and skipped (on open or while reading).
    pub corrupt_skipped: u64,
    /// Bytes of torn tails truncated on open, up to their last non-zero
    /// byte: zeros at the end are the writer's prefill (or look like it).
    pub torn_bytes_truncated: u64,
    /// False after a write failure that could not be undone.
    pub writable: bool,
    /// Set while the spool is at a bound: the last refused append would
    /// still be refused (or any append would, if none was refused).
    pub full: Option<FullReason>,
    /// The group-commit delay in effect.
    pub commit_delay: CommitDelay,
    /// Times zeros could not be written ahead, or cut off a segment no longer
    /// written to (the disk is full or failing). The spool keeps working:
    /// commits then extend the file, and zeros left behind are cut on open.
    pub prefill_failures: u64,
    /// Times the checkpoint file could not be written, by the reader or by
    /// the writer rolling a segment (the disk is full or failing). The
    /// acknowledgement holds in memory and the next write retries it;
    /// finished segments stay on disk until one succeeds, and a crash
    /// meanwhile ships the records above the old checkpoint again.
    pub checkpoint_failures: u64,
}

/// What one group commit did; reported to the [`Observer`].
#[derive(Debug, Clone, Copy)]
pub struct Commit {
    /// Appends (callers) in the group.
    pub appends: usize,
    /// Records in the group.
    pub records: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Time the `fdatasync` took.
    pub fsync: Duration,
    /// Whether the write and sync succeeded.
    pub ok: bool,
}

/// Receives commit observations (the edge turns them into metrics).
pub trait Observer: Send + Sync {
    /// Called by the writer thread after every group commit.
    fn committed(&self, commit: &Commit);
}

/// An observer that ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {
    fn committed(&self, _: &Commit) {}
}

/// A segment as the shared state knows it.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Durable length: readers never read past it.
    len: u64,
    /// Seq of the last record in it.
    last_seq: Option<u64>,
    /// No more appends go to it.
    sealed: bool,
}

impl Segment {
    /// Whether every record in it is acknowledged at `acked` (true when it
    /// holds none).
    fn all_acked(&self, acked: u64) -> bool {
        self.last_seq.is_none_or(|l| l <= acked)
    }

    /// Sealed and all acknowledged: nothing is read from or written to it
    /// again, so it may go once the checkpoint covers `acked`.
    fn finished(&self, acked: u64) -> bool {
        self.sealed && self.all_acked(acked)
    }
}

/// One waiting append.
struct Pending {
    bytes: Vec<u8>,
    seqs: RangeInclusive<u64>,
    appended_at_ms: i64,
    done: tokio::sync::oneshot::Sender<Result<RangeInclusive<u64>, AppendError>>,
}

/// State shared by appenders, the writer thread and the reader.
struct State {
    queue: VecDeque<Pending>,
    queued_bytes: u64,
    next_seq: u64,
    segments: BTreeMap<u64, Segment>,
    disk_bytes: u64,
    acked: u64,
    unacked_records: u64,
    oldest_unacked_ms: Option<i64>,
    max_bytes: u64,
    min_free: u64,
    free_disk: u64,
    free_checked: Instant,
    broken: Option<String>,
    closed: bool,
    reader_taken: bool,
    corrupt_skipped: u64,
    torn_bytes: u64,
    /// Size of the last append refused as full; cleared by the next accepted one.
    refused_size: Option<u64>,
    /// The writer thread sleeps on `wake_writer`: an append must wake it.
    /// While it is committing, appends only queue (no futex call per event).
    writer_waiting: bool,
    commit_delay: CommitDelay,
    prefill_failures: u64,
}

impl State {
    /// Bytes that count against `max_bytes`: an acknowledged active segment is
    /// replaced by a new one at the next commit, so it does not count.
    fn used_bytes(&self) -> u64 {
        let reclaimable = self
            .segments
            .values()
            .next_back()
            .filter(|s| !s.sealed && s.last_seq.is_some_and(|l| l <= self.acked))
            .map_or(0, |s| s.len);
        self.disk_bytes - reclaimable + self.queued_bytes
    }

    fn full_for(&self, extra: u64) -> Option<FullReason> {
        if self.used_bytes() + extra > self.max_bytes {
            Some(FullReason::MaxBytes)
        } else if self.free_disk < self.min_free.saturating_add(self.queued_bytes + extra) {
            Some(FullReason::DiskSpace)
        } else {
            None
        }
    }
}

struct Shared {
    dir: PathBuf,
    segment_bytes: u64,
    prefill_bytes: u64,
    state: Mutex<State>,
    wake_writer: Condvar,
    new_records: tokio::sync::Notify,
    observer: Arc<dyn Observer>,
    /// Held while the checkpoint file is written: the reader and the writer
    /// thread (rolling a segment) both may. Never taken with `state` held.
    checkpoint_writing: Mutex<()>,
    /// The position in the checkpoint file (read without waiting for a
    /// write in progress).
    checkpointed: AtomicU64,
    /// Failed writes of the checkpoint file ([`Stats::checkpoint_failures`]).
    checkpoint_failures: AtomicU64,
}

impl Shared {
    /// Makes `acked` durable in the checkpoint file unless it already is.
    fn checkpoint(&self, acked: u64) -> io::Result<()> {
        let _writing = self
            .checkpoint_writing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if acked > self.checkpointed() {
            if let Err(e) = checkpoint::write(&self.dir, acked) {
                self.checkpoint_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            self.checkpointed.store(acked, Ordering::Release);
        }
        Ok(())
    }

    /// Deletes every finished segment ([`Segment::finished`]) at `acked`,
    /// which the checkpoint must already cover: a restart must never number
    /// new records below ones already shipped.
    fn delete_finished(&self, acked: u64) -> io::Result<()> {
        let mut delete = Vec::new();
        {
            let mut st = self.lock();
            let gone: Vec<u64> = st
                .segments
                .iter()
                .filter(|(_, s)| s.finished(acked))
                .map(|(k, _)| *k)
                .collect();
            for k in gone {
                if let Some(seg) = st.segments.remove(&k) {
                    st.disk_bytes -= seg.len;
                    delete.push(seg.path);
                }
            }
        }
        for path in delete {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// The position in the checkpoint file.
    fn checkpointed(&self) -> u64 {
        self.checkpointed.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent counters
        // (each update is a few assignments), so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The spool. Cheap to share behind an `Arc`; closing joins the writer thread.
pub struct Spool {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// Free bytes available to unprivileged users on the file system holding `dir`.
fn free_disk_bytes(dir: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Spool {
    /// Opens (creating if needed) the spool in `cfg.dir`: recovers every
    /// segment, truncating torn tails, and starts the writer thread.
    pub fn open(cfg: &SpoolConfig, observer: Arc<dyn Observer>) -> Result<Self, OpenError> {
        let recovered = recover::recover(&cfg.dir)?;
        let free_disk = free_disk_bytes(&cfg.dir).map_err(|source| OpenError::Io {
            path: cfg.dir.display().to_string(),
            source,
        })?;
        let active_first = recovered.next_seq;
        let disk_bytes = recovered.segments.values().map(|s| s.len).sum();
        let state = State {
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_seq: recovered.next_seq,
            segments: recovered.segments,
            disk_bytes,
            acked: recovered.acked,
            unacked_records: recovered.unacked_records,
            oldest_unacked_ms: recovered.oldest_unacked_ms,
            max_bytes: cfg.max_bytes,
            min_free: cfg.min_free_disk_bytes,
            free_disk,
            free_checked: Instant::now(),
            broken: None,
            closed: false,
            reader_taken: false,
            corrupt_skipped: recovered.corrupt_skipped,
            torn_bytes: recovered.torn_bytes,
            refused_size: None,
            writer_waiting: false,
            commit_delay: CommitDelay::default(),
            prefill_failures: 0,
        };
        let shared = Arc::new(Shared {
            dir: cfg.dir.clone(),
            segment_bytes: cfg.segment_bytes.max(1),
            prefill_bytes: cfg.prefill_bytes,
            state: Mutex::new(state),
            wake_writer: Condvar::new(),
            new_records: tokio::sync::Notify::new(),
            observer,
            checkpoint_writing: Mutex::new(()),
            checkpointed: AtomicU64::new(recovered.acked),
            checkpoint_failures: AtomicU64::new(0),
        });
        let active =
            writer::create_segment(&shared, active_first).map_err(|source| OpenError::Io {
                path: cfg.dir.display().to_string(),
                source,
            })?;
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer::run(&thread_shared, active))
            .map_err(|source| OpenError::Io {
                path: cfg.dir.display().to_string(),
                source,
            })?;
        Ok(Self {
            shared,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends `records` as one unit and resolves once they are durable (or
    /// with the error that kept them out). Refuses at once, without queueing,
    /// when the spool is full. Returns the seqs given to the records.
    pub async fn append(
        &self,
        records: &[RecordRef<'_>],
    ) -> Result<RangeInclusive<u64>, AppendError> {
        let rx = self.enqueue(records)?;
        rx.await.unwrap_or(Err(AppendError::Closed))
    }

    /// The synchronous part of [`Spool::append`]: checks and queues.
    fn enqueue(
        &self,
        records: &[RecordRef<'_>],
    ) -> Result<tokio::sync::oneshot::Receiver<Result<RangeInclusive<u64>, AppendError>>, AppendError>
    {
        let mut size = 0u64;
        for r in records {
            let body = record::encoded_len(r.key, r.header, r.payload) - record::FRAME;
            if r.key.len() > usize::from(u16::MAX)
                || r.header.is_some_and(|h| h.len() > usize::from(u16::MAX))
                || body > record::MAX_BODY
            {
                return Err(AppendError::TooLarge);
            }
            size += (body + record::FRAME) as u64;
        }
        if records.is_empty() {
            return Err(AppendError::TooLarge);
        }
        let mut st = self.shared.lock();
        if st.closed {
            return Err(AppendError::Closed);
        }
        if let Some(reason) = &st.broken {
            return Err(AppendError::Io(reason.clone()));
        }
        if st.free_checked.elapsed() > Duration::from_secs(1) {
            if let Ok(free) = free_disk_bytes(&self.shared.dir) {
                st.free_disk = free;
            }
            st.free_checked = Instant::now();
        }
        if let Some(reason) = st.full_for(size) {
            st.refused_size = Some(size);
            return Err(AppendError::Full(reason));
        }
        st.refused_size = None;
        let first = st.next_seq;
        let appended_at_ms = now_ms();
        let mut bytes = Vec::with_capacity(size as usize);
        for (i, r) in records.iter().enumerate() {
            record::encode(
                &mut bytes,
                first + i as u64,
                appended_at_ms,
                r.key,
                r.header,
                r.payload,
            );
        }
        let last = first + records.len() as u64 - 1;
        st.next_seq = last + 1;
        st.queued_bytes += size;
        let (done, rx) = tokio::sync::oneshot::channel();
        st.queue.push_back(Pending {
            bytes,
            seqs: first..=last,
            appended_at_ms,
            done,
        });
        let wake = st.writer_waiting;
        drop(st);
        if wake {
            self.shared.wake_writer.notify_one();
        }
        Ok(rx)
    }

    /// The reader, once; `None` if it was already taken.
    pub fn reader(&self) -> Option<Reader> {
        let mut st = self.shared.lock();
        if st.reader_taken {
            return None;
        }
        st.reader_taken = true;
        let acked = st.acked;
        drop(st);
        Some(Reader::new(self.shared.clone(), acked))
    }

    /// Changes the byte bound (reloadable).
    pub fn set_limits(&self, max_bytes: u64, min_free_disk_bytes: u64) {
        let mut st = self.shared.lock();
        st.max_bytes = max_bytes;
        st.min_free = min_free_disk_bytes;
    }

    /// Changes the group-commit delay (reloadable; applies at once).
    pub fn set_commit_delay(&self, commit_delay: CommitDelay) {
        self.shared.lock().commit_delay = commit_delay;
        // A writer waiting out the old delay re-reads it.
        self.shared.wake_writer.notify_all();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let st = self.shared.lock();
        Stats {
            bytes: st.disk_bytes,
            records: st.unacked_records,
            oldest_unacked_ms: st.oldest_unacked_ms,
            segments: st.segments.len(),
            acked_seq: st.acked,
            checkpointed_seq: self.shared.checkpointed(),
            corrupt_skipped: st.corrupt_skipped,
            torn_bytes_truncated: st.torn_bytes,
            writable: st.broken.is_none() && !st.closed,
            full: st.full_for(st.refused_size.unwrap_or(1)),
            commit_delay: st.commit_delay,
            prefill_failures: st.prefill_failures,
            checkpoint_failures: self.shared.checkpoint_failures.load(Ordering::Relaxed),
        }
    }

    /// Stops taking appends, commits what is queued and stops the writer thread.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake_writer.notify_all();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests;
