//! Writing zeros ahead fails on a full disk: the failure is counted, cut back,
//! not retried in that segment, and commits go on growing the file until the
//! disk itself refuses them; nothing committed is lost.
//!
//! A full disk is made with `RLIMIT_FSIZE` (a write past the limit fails with
//! `EFBIG`, the same `write` error path as `ENOSPC`). The limit holds for the
//! whole process, so this file has one test and nothing else (every file in
//! `tests/` is its own process), and the limit is lifted when it ends.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_spool::{AppendError, NoObserver, RecordRef, Spool, SpoolConfig};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, Signal};

/// No file of this process may grow past this.
const FILE_SIZE_LIMIT: u64 = 32 << 10;
/// More zeros ahead than the limit allows.
const PREFILL: u64 = 256 << 10;

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        min_free_disk_bytes: 0,
        segment_bytes: 1 << 20,
        prefill_bytes: PREFILL,
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record {i} {}", "p".repeat(400)).into_bytes()
}

fn append(rt: &tokio::runtime::Runtime, spool: &Spool, i: u64) -> Result<u64, AppendError> {
    let p = payload(i);
    rt.block_on(spool.append(&[RecordRef {
        key: b"site",
        header: None,
        payload: &p,
    }]))
    .map(|seqs| *seqs.start())
}

/// Polls (at most 30 s) until the spool has counted `n` prefill failures.
fn wait_for_prefill_failures(spool: &Spool, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while spool.stats().prefill_failures < n {
        assert!(Instant::now() < deadline, "{:?}", spool.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Limits the size of files this process writes until dropped (also when
/// the test fails, before the harness writes its report, perhaps to a file).
struct FileSizeLimit {
    soft: u64,
    hard: u64,
}

impl FileSizeLimit {
    fn set(limit: u64) -> Self {
        let (soft, hard) = getrlimit(Resource::RLIMIT_FSIZE).unwrap();
        setrlimit(Resource::RLIMIT_FSIZE, limit, hard).unwrap();
        Self { soft, hard }
    }
}

impl Drop for FileSizeLimit {
    fn drop(&mut self) {
        setrlimit(Resource::RLIMIT_FSIZE, self.soft, self.hard).unwrap();
    }
}

#[test]
fn a_failed_prefill_is_counted_and_cut_and_commits_go_on_until_the_disk_is_full() {
    // A write past the limit raises SIGXFSZ, which kills by default. Blocked
    // in this thread, and so in the spool's writer thread it starts, the
    // signal stays pending and the write fails with EFBIG instead.
    let mut xfsz = SigSet::empty();
    xfsz.add(Signal::SIGXFSZ);
    xfsz.thread_block().unwrap();
    let _limit = FileSizeLimit::set(FILE_SIZE_LIMIT);

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seg = dir.path().join("00000000000000000001.seg");
    let one = edge_spool::record::encoded_len(b"site", None, &payload(1)) as u64;

    let mut committed = Vec::new();
    {
        let spool = Spool::open(&config(dir.path()), Arc::new(NoObserver)).unwrap();
        committed.push(append(&rt, &spool, 1).unwrap());
        // The zeros after the first commit do not fit: counted, and what
        // part of them was written is cut off again.
        wait_for_prefill_failures(&spool, 1);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), one);

        // Commits grow the file as without prefill, and prefill is not
        // tried again in this segment.
        let mut refused = None;
        for i in 2..1_000 {
            match append(&rt, &spool, i) {
                Ok(seq) => committed.push(seq),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let refused = refused.expect("the file size limit never refused a commit");
        assert!(matches!(refused, AppendError::Io(_)), "{refused:?}");
        let stats = spool.stats();
        assert_eq!(stats.prefill_failures, 1, "{stats:?}");
        assert!(committed.len() > 10, "only {} commits", committed.len());
        // The refused group was cut back: the file holds the committed
        // records, whole.
        let len = std::fs::metadata(&seg).unwrap().len();
        let records: u64 = committed
            .iter()
            .map(|i| edge_spool::record::encoded_len(b"site", None, &payload(*i)) as u64)
            .sum();
        assert_eq!(len, records);
        assert!(len <= FILE_SIZE_LIMIT);
        assert_eq!(stats.bytes, len);

        let mut reader = spool.reader().unwrap();
        let read = reader.read(usize::MAX, usize::MAX).unwrap();
        let seqs: Vec<u64> = read.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, committed);
        for r in &read {
            assert_eq!(r.payload, payload(r.seq));
        }
    }

    // Opened again (the limit still holds): every committed record, no torn
    // bytes, nothing corrupt.
    let spool = Spool::open(&config(dir.path()), Arc::new(NoObserver)).unwrap();
    let stats = spool.stats();
    assert_eq!(stats.torn_bytes_truncated, 0, "{stats:?}");
    assert_eq!(stats.corrupt_skipped, 0, "{stats:?}");
    let read = spool
        .reader()
        .unwrap()
        .read(usize::MAX, usize::MAX)
        .unwrap();
    assert_eq!(read.len(), committed.len());
}
