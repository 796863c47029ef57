//! The spool through its public API: persistence of records and acks across
//! reopen, torn tails at every byte, corrupt records, bounds, permissions,
//! and a property test against a simple model.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use edge_spool::{AppendError, FullReason, NoObserver, RecordRef, Spool, SpoolConfig};
use proptest::prelude::*;

/// Zeros the writer keeps ahead of the records in these tests.
const PREFILL: u64 = 4096;

fn config(dir: &Path, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        min_free_disk_bytes: 0,
        segment_bytes,
        prefill_bytes: PREFILL,
    }
}

/// Bytes of segment files on disk.
fn on_disk(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

fn open(cfg: &SpoolConfig) -> Spool {
    Spool::open(cfg, Arc::new(NoObserver)).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn payload(i: u64) -> Vec<u8> {
    format!("payload number {i} {}", "x".repeat((i % 7) as usize)).into_bytes()
}

fn append_one(rt: &tokio::runtime::Runtime, spool: &Spool, i: u64) -> u64 {
    let p = payload(i);
    let header = i.is_multiple_of(3).then_some(&b"crawler"[..]);
    *rt.block_on(spool.append(&[RecordRef {
        key: b"site",
        header,
        payload: &p,
    }]))
    .unwrap()
    .start()
}

fn read_all(spool: &Spool) -> Vec<edge_spool::Record> {
    let mut reader = spool.reader().unwrap();
    reader.read(usize::MAX, usize::MAX).unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn records_survive_reopen_in_order_with_key_header_and_payload() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20);
    let rt = rt();
    {
        let spool = open(&cfg);
        for i in 1..=10 {
            assert_eq!(append_one(&rt, &spool, i), i);
        }
    }
    let spool = open(&cfg);
    let got = read_all(&spool);
    assert_eq!(got.len(), 10);
    for (i, r) in (1..=10).zip(&got) {
        assert_eq!(r.seq, i);
        assert_eq!(r.key, b"site");
        assert_eq!(r.payload, payload(i));
        assert_eq!(
            r.header.as_deref(),
            i.is_multiple_of(3).then_some(&b"crawler"[..])
        );
    }
    assert_eq!(spool.stats().records, 10);
    assert!(spool.stats().oldest_unacked_ms.is_some());
}

#[test]
fn acked_records_are_not_read_again_after_reopen_and_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: roughly one record each.
    let cfg = config(dir.path(), 40);
    let rt = rt();
    {
        let spool = open(&cfg);
        for i in 1..=10 {
            append_one(&rt, &spool, i);
        }
        assert!(segments(dir.path()).len() >= 10);
        let mut reader = spool.reader().unwrap();
        let got = reader.read(6, usize::MAX).unwrap();
        assert_eq!(got.len(), 6);
        reader.ack(6).unwrap();
        let stats = spool.stats();
        assert_eq!(stats.records, 4);
        assert_eq!(stats.acked_seq, 6);
        // The records, and at most PREFILL zeros the writer may be writing
        // ahead of them in the active segment right now.
        let on_disk = on_disk(dir.path());
        assert!(
            (stats.bytes..=stats.bytes + PREFILL).contains(&on_disk),
            "{stats:?} {on_disk}"
        );
    }
    let spool = open(&cfg);
    let got = read_all(&spool);
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [7, 8, 9, 10]);
    // New appends continue the sequence.
    assert_eq!(append_one(&rt, &spool, 11), 11);
}

#[test]
fn a_torn_last_record_is_truncated_at_every_byte_and_earlier_records_survive() {
    let src = tempfile::tempdir().unwrap();
    let rt = rt();
    let cfg = config(src.path(), 1 << 20);
    {
        let spool = open(&cfg);
        for i in 1..=5 {
            append_one(&rt, &spool, i);
        }
    }
    let seg = segments(src.path()).pop().unwrap();
    let full = std::fs::read(&seg).unwrap();
    let last_len = edge_spool::record::encoded_len(b"site", None, &payload(5));
    let last_start = full.len() - last_len;
    for cut in last_start..full.len() {
        let dir = tempfile::tempdir().unwrap();
        let name = seg.file_name().unwrap();
        std::fs::write(dir.path().join(name), &full[..cut]).unwrap();
        let spool = open(&config(dir.path(), 1 << 20));
        let stats = spool.stats();
        // Counted up to the last non-zero byte: zeros at the end of a torn
        // record look like the zeros the writer keeps ahead.
        let torn = full[last_start..cut]
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |i| i + 1);
        assert_eq!(stats.torn_bytes_truncated, torn as u64, "cut {cut}");
        assert_eq!(stats.corrupt_skipped, 0, "cut {cut}");
        let got = read_all(&spool);
        assert_eq!(
            got.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4],
            "cut at {cut}"
        );
        assert_eq!(
            std::fs::metadata(dir.path().join(name)).unwrap().len(),
            last_start as u64
        );
        // The next append takes seq 5 again (it was never durable) and is readable.
        drop(spool);
        let spool = open(&config(dir.path(), 1 << 20));
        assert_eq!(append_one(&rt, &spool, 5), 5);
        assert_eq!(read_all(&spool).len(), 5);
    }
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail_not_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cfg = config(dir.path(), 1 << 20);
    {
        let spool = open(&cfg);
        for i in 1..=3 {
            append_one(&rt, &spool, i);
        }
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Zeroes (a power cut after the size grew) and a fake header.
    bytes.extend_from_slice(&[0u8; 100]);
    bytes.extend_from_slice(b"ESr1\x10\x00\x00\x00garbage");
    std::fs::write(&seg, &bytes).unwrap();
    let spool = open(&cfg);
    assert_eq!(spool.stats().torn_bytes_truncated, 100 + 15);
    assert_eq!(read_all(&spool).len(), 3);
}

/// Polls (at most 30 s) until `path` is `len` bytes long.
fn wait_for_file_len(path: &Path, len: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = std::fs::metadata(path).unwrap().len();
        if now == len {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} is {now} bytes, expected {len}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn records_are_written_over_the_zeros_ahead_and_closing_cuts_them() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cfg = config(dir.path(), 1 << 20);
    let one = edge_spool::record::encoded_len(b"site", None, &payload(1)) as u64;
    let seg = dir.path().join("00000000000000000001.seg");
    {
        let spool = open(&cfg);
        append_one(&rt, &spool, 1);
        // Between commits the writer writes PREFILL zeros past the record.
        wait_for_file_len(&seg, one + PREFILL);
        let mut records = one;
        for i in 2..=6 {
            append_one(&rt, &spool, i);
            records += edge_spool::record::encoded_len(
                b"site",
                i.is_multiple_of(3).then_some(&b"crawler"[..]),
                &payload(i),
            ) as u64;
        }
        // Written in place over the zeros, not after them: the file did not
        // grow (a top-up waits for at least PREFILL / 2 of room).
        assert!(records - one < PREFILL / 2);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), one + PREFILL);
        let stats = spool.stats();
        assert_eq!(stats.bytes, records);
        assert_eq!(stats.prefill_failures, 0);
        let got = read_all(&spool);
        assert_eq!(got.len(), 6);
        for r in &got {
            assert_eq!(r.payload, payload(r.seq));
        }
        assert_eq!(spool.stats().corrupt_skipped, 0);
        drop(spool);
        // Closing leaves the records only.
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), records);
    }
    let spool = open(&cfg);
    assert_eq!(spool.stats().torn_bytes_truncated, 0);
    assert_eq!(read_all(&spool).len(), 6);
}

#[test]
fn zeros_left_by_a_crash_are_cut_on_open_but_not_counted_as_torn() {
    let src = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let spool = open(&config(src.path(), 1 << 20));
        for i in 1..=3 {
            append_one(&rt, &spool, i);
        }
    }
    let seg = segments(src.path()).pop().unwrap();
    let name = seg.file_name().unwrap();
    let records = std::fs::read(&seg).unwrap();
    let torn = b"ESr1\x40\x00\x00\x00part of a record";
    for (tail, torn_bytes) in [(&b""[..], 0), (&torn[..], torn.len())] {
        // What a kill -9 leaves: the records, perhaps a torn write, and the
        // zeros written ahead (more than one read buffer of them).
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = records.clone();
        bytes.extend_from_slice(tail);
        bytes.extend_from_slice(&vec![0u8; 200_000]);
        std::fs::write(dir.path().join(name), &bytes).unwrap();
        let spool = open(&config(dir.path(), 1 << 20));
        assert_eq!(spool.stats().torn_bytes_truncated, torn_bytes as u64);
        assert_eq!(spool.stats().corrupt_skipped, 0);
        assert_eq!(read_all(&spool).len(), 3);
        assert_eq!(
            std::fs::metadata(dir.path().join(name)).unwrap().len(),
            records.len() as u64
        );
    }
}

#[test]
fn acks_after_the_checkpoint_are_read_again_after_a_crash_and_a_sync_makes_them_durable() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cfg = config(dir.path(), 1 << 20);
    let durable = {
        let spool = open(&cfg);
        for i in 1..=6 {
            append_one(&rt, &spool, i);
        }
        let mut reader = spool.reader().unwrap();
        assert_eq!(reader.read(3, usize::MAX).unwrap().len(), 3);
        // The first acknowledgement is written at once.
        reader.ack(3).unwrap();
        assert_eq!(reader.checkpointed_seq(), 3);
        assert_eq!(reader.read(3, usize::MAX).unwrap().len(), 3);
        // The next, within CHECKPOINT_INTERVAL, is kept in memory (unless
        // this machine took longer than the interval in between).
        reader.ack(6).unwrap();
        assert_eq!(spool.stats().acked_seq, 6);
        reader.checkpointed_seq()
        // Dropped without sync_checkpoint: what a crash leaves.
    };
    assert!(durable == 3 || durable == 6, "{durable}");
    {
        let spool = open(&cfg);
        assert_eq!(spool.stats().acked_seq, durable);
        let got = read_all(&spool);
        let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (durable + 1..=6).collect::<Vec<_>>());
        for r in &got {
            assert_eq!(r.payload, payload(r.seq));
        }
    }
    // Acknowledged again and synced, as the shipper does when idle and
    // before stopping: nothing is read again.
    {
        let spool = open(&cfg);
        let mut reader = spool.reader().unwrap();
        let got = reader.read(usize::MAX, usize::MAX).unwrap();
        reader.ack(got.last().map_or(durable, |r| r.seq)).unwrap();
        reader.sync_checkpoint().unwrap();
        assert_eq!(reader.checkpointed_seq(), 6);
    }
    let spool = open(&cfg);
    assert_eq!(spool.stats().acked_seq, 6);
    assert!(read_all(&spool).is_empty());
}

#[test]
fn a_failed_checkpoint_write_is_counted_keeps_the_segments_and_a_later_write_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: every append rolls to a new one.
    let cfg = config(dir.path(), 40);
    let rt = rt();
    let spool = open(&cfg);
    for i in 1..=3 {
        append_one(&rt, &spool, i);
    }
    let mut reader = spool.reader().unwrap();
    assert_eq!(reader.read(usize::MAX, usize::MAX).unwrap().len(), 3);

    // The checkpoint is written through a temporary file: a directory in
    // its place (not empty, so it cannot be removed) makes every write fail.
    let blocker = dir.path().join("acked.tmp");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), b"x").unwrap();

    // The reader's write fails: reported to the caller and counted; the
    // acknowledgement holds in memory and the finished segments stay.
    let before = segments(dir.path()).len();
    assert!(reader.ack(3).is_err());
    let stats = spool.stats();
    assert_eq!(stats.checkpoint_failures, 1, "{stats:?}");
    assert_eq!((stats.acked_seq, stats.checkpointed_seq), (3, 0));
    assert_eq!(segments(dir.path()).len(), before);

    // The writer's roll seals the acknowledged segment and tries too: the
    // append still succeeds (its record is durable), the failure is counted.
    assert_eq!(append_one(&rt, &spool, 4), 4);
    let stats = spool.stats();
    assert_eq!(stats.checkpoint_failures, 2, "{stats:?}");
    assert_eq!(stats.checkpointed_seq, 0);
    assert_eq!(segments(dir.path()).len(), before + 1);

    // Once the disk takes it again, the next write records the position and
    // deletes every segment it covers.
    std::fs::remove_dir_all(&blocker).unwrap();
    reader.sync_checkpoint().unwrap();
    let stats = spool.stats();
    assert_eq!((stats.checkpointed_seq, stats.checkpoint_failures), (3, 2));
    assert_eq!(segments(dir.path()).len(), 1, "{:?}", segments(dir.path()));
    drop(reader);
    drop(spool);
    let spool = open(&cfg);
    let seqs: Vec<u64> = read_all(&spool).iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [4]);
}

#[test]
fn a_corrupt_record_in_the_middle_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cfg = config(dir.path(), 1 << 20);
    {
        let spool = open(&cfg);
        for i in 1..=5 {
            append_one(&rt, &spool, i);
        }
    }
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let first_len = edge_spool::record::encoded_len(b"site", None, &payload(1));
    // A byte inside the second record's payload.
    bytes[first_len + 40] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let spool = open(&cfg);
    assert_eq!(spool.stats().corrupt_skipped, 1);
    assert_eq!(spool.stats().torn_bytes_truncated, 0);
    assert_eq!(
        read_all(&spool).iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 3, 4, 5]
    );
}

#[test]
fn full_by_max_bytes_refuses_at_once_and_acks_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut cfg = config(dir.path(), 1 << 20);
    cfg.max_bytes = 500;
    let spool = open(&cfg);
    let mut accepted = 0;
    let err = loop {
        let p = payload(1);
        match rt.block_on(spool.append(&[RecordRef {
            key: b"site",
            header: None,
            payload: &p,
        }])) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "never full");
    };
    assert!(
        matches!(err, AppendError::Full(FullReason::MaxBytes)),
        "{err}"
    );
    assert_eq!(err.kind(), "full");
    assert!(spool.stats().bytes <= 500);
    assert_eq!(spool.stats().full, Some(FullReason::MaxBytes));
    let mut reader = spool.reader().unwrap();
    let got = reader.read(usize::MAX, usize::MAX).unwrap();
    assert_eq!(got.len(), accepted);
    reader.ack(got[got.len() - 1].seq).unwrap();
    assert_eq!(spool.stats().full, None);
    append_one(&rt, &spool, 1);
    assert_eq!(reader.read(10, usize::MAX).unwrap().len(), 1);
}

#[test]
fn full_by_free_disk_space() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut cfg = config(dir.path(), 1 << 20);
    cfg.min_free_disk_bytes = u64::MAX / 2;
    let spool = open(&cfg);
    let err = rt
        .block_on(spool.append(&[RecordRef {
            key: b"k",
            header: None,
            payload: b"p",
        }]))
        .unwrap_err();
    assert!(matches!(err, AppendError::Full(FullReason::DiskSpace)));
    spool.set_limits(1 << 30, 0);
    assert_eq!(spool.stats().full, None);
}

#[test]
fn directory_is_0700_and_files_0600() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("spool");
    let rt = rt();
    let spool = open(&config(&dir, 1 << 20));
    append_one(&rt, &spool, 1);
    let mut reader = spool.reader().unwrap();
    reader.read(1, usize::MAX).unwrap();
    reader.ack(1).unwrap();
    append_one(&rt, &spool, 2);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

#[test]
fn only_one_reader() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&config(dir.path(), 1 << 20));
    let _r = spool.reader().unwrap();
    assert!(spool.reader().is_none());
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Read(usize),
    Ack,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 1..4).prop_map(Op::Append),
        3 => (1usize..6).prop_map(Op::Read),
        2 => Just(Op::Ack),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Model: every appended payload with a seq above the acknowledged one is
    /// read back, in order, exactly once per reader, across reopens; after a
    /// crash, from the checkpoint on (acknowledged records again, none lost).
    #[test]
    fn spool_matches_a_simple_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 150);
        let rt = rt();
        let mut spool = Some(open(&cfg));
        let mut reader = spool.as_ref().unwrap().reader().unwrap();
        let mut model: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut acked = 0u64;
        let mut handed = 0u64;
        for op in ops {
            let s = spool.as_ref().unwrap();
            match op {
                Op::Append(payloads) => {
                    let refs: Vec<RecordRef<'_>> = payloads
                        .iter()
                        .map(|p| RecordRef { key: b"k", header: None, payload: p })
                        .collect();
                    let seqs = rt.block_on(s.append(&refs)).unwrap();
                    for (seq, p) in seqs.zip(payloads) {
                        model.push((seq, p));
                    }
                }
                Op::Read(n) => {
                    let got = reader.read(n, usize::MAX).unwrap();
                    let want: Vec<_> = model.iter().filter(|(s, _)| *s > handed).take(n).cloned().collect();
                    let got: Vec<_> = got.into_iter().map(|r| (r.seq, r.payload)).collect();
                    prop_assert_eq!(&got, &want);
                    if let Some((s, _)) = got.last() {
                        handed = *s;
                    }
                }
                Op::Ack => {
                    reader.ack(handed).unwrap();
                    acked = handed;
                }
                Op::Reopen => {
                    // A clean stop makes every acknowledgement durable.
                    reader.sync_checkpoint().unwrap();
                    drop(reader);
                    drop(spool.take());
                    spool = Some(open(&cfg));
                    reader = spool.as_ref().unwrap().reader().unwrap();
                    handed = acked;
                }
                Op::Crash => {
                    // Without one, reading starts again after the checkpoint.
                    let durable = reader.checkpointed_seq();
                    prop_assert!(durable <= acked);
                    drop(reader);
                    drop(spool.take());
                    spool = Some(open(&cfg));
                    reader = spool.as_ref().unwrap().reader().unwrap();
                    prop_assert_eq!(spool.as_ref().unwrap().stats().acked_seq, durable);
                    acked = durable;
                    handed = durable;
                }
            }
            let stats = spool.as_ref().unwrap().stats();
            let unacked = model.iter().filter(|(s, _)| *s > acked).count() as u64;
            prop_assert_eq!(stats.records, unacked);
            let on_disk = on_disk(dir.path());
            prop_assert!(
                (stats.bytes..=stats.bytes + PREFILL).contains(&on_disk),
                "{:?} {}", stats, on_disk
            );
        }
    }
}
