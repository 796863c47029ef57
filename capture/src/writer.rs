//! The capture file writer: a dedicated thread behind a bounded queue.
//!
//! Request threads only `try_send` a finished record; when the queue is full
//! the record is dropped and counted, so writing never blocks or slows the
//! request path. The thread serialises records into a `BufWriter`, flushes
//! every [`FLUSH_INTERVAL`], on [`WriterHandle::flush`] (shutdown) and when
//! the last handle is dropped, and rotates the file by size:
//! `file` → `file.1` → … → `file.N` (the oldest is overwritten).
//! The file is created with mode 0600, a missing directory with mode 0700.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use crate::metrics::{CaptureMetrics, RecordOutcome};
use crate::record::CaptureRecord;

/// Records waiting for the writer before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 8_192;
/// Longest time a written record stays in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Why the writer could not start; each names the path or the thread.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The directory or file cannot be created or opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The capture file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The opened file's size cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Metadata {
        /// The capture file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The writer thread cannot be started.
    #[error("cannot start the capture writer: {0}")]
    Thread(std::io::Error),
}

/// Rotation limits, shared with the thread so a reload can change them.
#[derive(Debug)]
struct Limits {
    max_file_bytes: AtomicU64,
    max_files: AtomicU32,
}

enum Msg {
    Record(Box<CaptureRecord>),
    Flush(SyncSender<()>),
}

/// The sending side; dropping the last clone ends the thread after a flush.
#[derive(Debug)]
pub struct WriterHandle {
    tx: SyncSender<Msg>,
    limits: Arc<Limits>,
    path: PathBuf,
    metrics: CaptureMetrics,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Record(_) => "Msg::Record",
            Msg::Flush(_) => "Msg::Flush",
        })
    }
}

impl WriterHandle {
    /// Opens (creates) `path` for appending and starts the writer thread,
    /// which counts its records in `metrics`.
    ///
    /// # Errors
    ///
    /// When the directory or file cannot be created or opened, or the thread
    /// cannot be started; the error names the path.
    pub fn start(
        path: &Path,
        max_file_bytes: u64,
        max_files: u32,
        capacity: usize,
        metrics: CaptureMetrics,
    ) -> Result<Self, WriterError> {
        let file = open(path).map_err(|source| WriterError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let size = file
            .metadata()
            .map_err(|source| WriterError::Metadata {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let limits = Arc::new(Limits {
            max_file_bytes: AtomicU64::new(max_file_bytes),
            max_files: AtomicU32::new(max_files),
        });
        let (tx, rx) = mpsc::sync_channel(capacity);
        let mut thread = Thread {
            path: path.to_path_buf(),
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            size,
            dirty: false,
            limits: limits.clone(),
            failing: false,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("edge-capture".into())
            .spawn(move || thread.run(&rx))
            .map_err(WriterError::Thread)?;
        Ok(Self {
            tx,
            limits,
            path: path.to_path_buf(),
            metrics,
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies new rotation limits (a reload that kept the file).
    pub fn set_limits(&self, max_file_bytes: u64, max_files: u32) {
        self.limits
            .max_file_bytes
            .store(max_file_bytes, Ordering::Relaxed);
        self.limits.max_files.store(max_files, Ordering::Relaxed);
    }

    /// Queues a record without blocking; a full queue drops it (counted).
    pub fn submit(&self, record: CaptureRecord) {
        match self.tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.metrics.record(RecordOutcome::DroppedQueueFull),
            // The thread is gone (it only ends when every handle is dropped,
            // or by a panic): the record cannot be written.
            Err(TrySendError::Disconnected(_)) => self.metrics.record(RecordOutcome::WriteError),
        }
    }

    /// Asks the thread to write out everything queued before this call and
    /// waits up to `timeout` for it (used at shutdown). Returns whether the
    /// flush was confirmed in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let mut msg = Msg::Flush(ack_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// Creates missing directories (0700) and opens the file for appending (0600).
fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        edge_private_fs::create_dir(dir).map_err(std::io::Error::other)?;
    }
    edge_private_fs::open_append(path).map_err(std::io::Error::other)
}

/// `file.N` for rotation.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

struct Thread {
    path: PathBuf,
    /// `None` after a failed rotation until the file can be opened again.
    out: Option<BufWriter<File>>,
    size: u64,
    dirty: bool,
    limits: Arc<Limits>,
    /// Whether the last write failed (errors are logged on the transition).
    failing: bool,
    metrics: CaptureMetrics,
}

impl Thread {
    fn run(&mut self, rx: &Receiver<Msg>) {
        loop {
            match rx.recv_timeout(FLUSH_INTERVAL) {
                Ok(Msg::Record(record)) => self.write(&record),
                Ok(Msg::Flush(ack)) => {
                    self.flush();
                    let _ = ack.try_send(());
                }
                Err(RecvTimeoutError::Timeout) => self.flush(),
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
        }
    }

    fn write(&mut self, record: &CaptureRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(e) => {
                self.failed(&format!("cannot serialise a record: {e}"));
                return;
            }
        };
        line.push(b'\n');
        let len = line.len() as u64;
        let limit = self.limits.max_file_bytes.load(Ordering::Relaxed);
        if self.size > 0
            && self.size + len > limit
            && let Err(e) = self.rotate()
        {
            self.failed(&format!("cannot rotate {}: {e}", self.path.display()));
            return;
        }
        if self.out.is_none() {
            match open(&self.path) {
                Ok(f) => {
                    self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                    self.out = Some(BufWriter::with_capacity(64 * 1024, f));
                }
                Err(e) => {
                    self.failed(&format!("cannot open {}: {e}", self.path.display()));
                    return;
                }
            }
        }
        let Some(out) = self.out.as_mut() else {
            return;
        };
        match out.write_all(&line) {
            Ok(()) => {
                self.size += len;
                self.dirty = true;
                self.metrics.record(RecordOutcome::Written);
                if self.failing {
                    self.failing = false;
                    tracing::info!(file = %self.path.display(), "capture writing again");
                }
            }
            Err(e) => self.failed(&format!("cannot write {}: {e}", self.path.display())),
        }
    }

    fn failed(&mut self, message: &str) {
        self.metrics.record(RecordOutcome::WriteError);
        if !self.failing {
            self.failing = true;
            tracing::warn!(error = %message, "capture record not written");
        }
    }

    fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(out) = self.out.as_mut()
            && let Err(e) = out.flush()
        {
            tracing::warn!(file = %self.path.display(), error = %e, "flushing the capture file failed");
            return;
        }
        self.dirty = false;
    }

    /// `file` → `file.1`, `file.i` → `file.i+1` up to `max_files`, new `file`.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        self.dirty = false;
        let keep = self.limits.max_files.load(Ordering::Relaxed).max(1);
        for i in (1..keep).rev() {
            match std::fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        let file = open(&self.path)?;
        self.size = 0;
        self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn record(i: i64) -> CaptureRecord {
        CaptureRecord {
            ts_ms: i,
            method: "POST".into(),
            host: "site1.example".into(),
            path: "/api/event".into(),
            headers: BTreeMap::new(),
            body: Some("x".repeat(100)),
            client_ip: "10.0.0.1".into(),
        }
    }

    fn metrics() -> CaptureMetrics {
        CaptureMetrics::new(&prometheus::Registry::new()).unwrap()
    }

    fn lines(path: &Path) -> Vec<i64> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["ts_ms"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn file_is_0600_in_a_new_0700_directory_and_flushes_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/sub/traffic.ndjson");
        let w = WriterHandle::start(&path, 1 << 20, 3, 16, metrics()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        for i in 0..5 {
            w.submit(record(i));
        }
        assert!(w.flush(Duration::from_secs(5)));
        assert_eq!(lines(&path), vec![0, 1, 2, 3, 4]);
        // An existing file with a loose mode is tightened on open.
        drop(w);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = WriterHandle::start(&path, 1 << 20, 3, 16, metrics()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        w.submit(record(5));
        assert!(w.flush(Duration::from_secs(5)));
        assert_eq!(lines(&path).len(), 6, "appends");
    }

    #[test]
    fn rotation_keeps_max_files_and_never_splits_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.ndjson");
        let line_len = serde_json::to_vec(&record(10)).unwrap().len() as u64 + 1;
        // Two lines per file.
        let w = WriterHandle::start(&path, 2 * line_len, 2, 64, metrics()).unwrap();
        for i in 10..17 {
            w.submit(record(i));
        }
        assert!(w.flush(Duration::from_secs(5)));
        assert_eq!(lines(&path), vec![16]);
        assert_eq!(lines(&rotated(&path, 1)), vec![14, 15]);
        assert_eq!(lines(&rotated(&path, 2)), vec![12, 13]);
        assert!(
            !rotated(&path, 3).exists(),
            "only max_files rotated files are kept"
        );
        for n in [1, 2] {
            assert_eq!(
                std::fs::metadata(rotated(&path, n)).unwrap().mode() & 0o777,
                0o600
            );
        }
        // A reload may change the limits of a running writer.
        w.set_limits(1 << 20, 2);
        for i in 17..20 {
            w.submit(record(i));
        }
        assert!(w.flush(Duration::from_secs(5)));
        assert_eq!(lines(&path), vec![16, 17, 18, 19]);
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.ndjson");
        let counts = metrics();
        let w = WriterHandle::start(&path, 1 << 20, 1, 1, counts.clone()).unwrap();
        let started = Instant::now();
        for i in 0..2_000 {
            w.submit(record(i));
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(w.flush(Duration::from_secs(5)));
        let dropped = counts.count(RecordOutcome::DroppedQueueFull);
        let written = lines(&path).len() as u64;
        assert!(dropped > 0, "a queue of one must overflow");
        assert_eq!(written + dropped, 2_000);
        assert_eq!(counts.count(RecordOutcome::Written), written);
    }
}
