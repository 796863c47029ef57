//! The writer thread: group commit of every waiting append with one write and
//! one `fdatasync`, segment rolling, and zeros written ahead of the records.
//!
//! Why zeros ahead: on ext4 (and most journalling file systems) an
//! `fdatasync` after a write that grows the file must also commit the new
//! size through the journal; one that overwrites blocks already written only
//! flushes them. On this project's test machine that halves the kernel time
//! and the latency of a commit (BENCHMARKS.md, issue 15). The zeros are
//! written between commits, while the writer would otherwise be idle.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::recover::segment_name;
use crate::{
    AppendError, Commit, CommitDelay, Pending, Segment, Shared, checkpoint, free_disk_bytes,
};

/// The segment appends go to.
pub(crate) struct Active {
    first: u64,
    file: File,
    /// The records' length after the last durable commit: where the next
    /// group is written, and where a failed write is cut back to (kept here,
    /// so a commit needs no `statx`).
    len: u64,
    /// The file's length: `len` plus the zeros written ahead of it.
    file_len: u64,
    /// Writing zeros ahead failed in this segment: not tried again in it.
    prefill_failed: bool,
}

/// Creates an empty segment named after `first`, registers it as the active
/// one and makes its directory entry durable.
pub(crate) fn create_segment(shared: &Shared, first: u64) -> io::Result<Active> {
    let path = shared.dir.join(segment_name(first));
    let file = edge_private_fs::open_write(&path).map_err(checkpoint::into_io)?;
    let len = file.metadata()?.len();
    checkpoint::sync_dir(&shared.dir)?;
    let mut st = shared.lock();
    st.disk_bytes += len;
    st.segments.insert(
        first,
        Segment {
            path,
            len,
            last_seq: None,
            sealed: false,
        },
    );
    Ok(Active {
        first,
        file,
        len,
        file_len: len,
        prefill_failed: false,
    })
}

/// Seals the active segment and starts a new one at `first`; an old segment
/// whose records are all acknowledged is deleted at once, after the
/// checkpoint covers it. If writing the checkpoint fails, the append goes on
/// (its records are durable in the new segment): the failure is counted in
/// [`crate::Stats::checkpoint_failures`], and the reader's next checkpoint
/// deletes the old segment (or reports the error to its caller).
fn roll(shared: &Shared, active: &mut Active, first: u64) -> io::Result<()> {
    let next = create_segment(shared, first)?;
    let old = std::mem::replace(active, next);
    cut_prefill(shared, &old);
    let finished = {
        let mut st = shared.lock();
        let acked = st.acked;
        st.segments.get_mut(&old.first).and_then(|seg| {
            seg.sealed = true;
            seg.finished(acked).then_some(acked)
        })
    };
    let Some(acked) = finished else {
        return Ok(());
    };
    if shared.checkpoint(acked).is_err() {
        // Counted by `checkpoint`; the reader's next write retries it.
        return Ok(());
    }
    shared.delete_finished(acked)
}

/// Takes every waiting append, or `None` once closed and drained.
fn take_group(shared: &Shared) -> Option<Vec<Pending>> {
    let mut st = shared.lock();
    loop {
        if !st.queue.is_empty() {
            return Some(st.queue.drain(..).collect());
        }
        if st.closed {
            return None;
        }
        st.writer_waiting = true;
        st = shared
            .wake_writer
            .wait(st)
            .unwrap_or_else(|e| e.into_inner());
        st.writer_waiting = false;
    }
}

/// Group commit under load: after a group of at least
/// [`CommitDelay::min_appends`] appends, waits [`CommitDelay::delay`] (or until
/// the spool is closed) so that the next group gathers more appends and one
/// `fdatasync` serves them all. Appends arriving meanwhile only queue. A new
/// delay set meanwhile applies at once (measured from the same start).
/// The delay counts from `started`, the end of the commit: writing zeros
/// ahead in between takes part of it.
fn linger(shared: &Shared, appends: usize, started: Instant) {
    let mut st = shared.lock();
    while !st.closed {
        let CommitDelay { delay, min_appends } = st.commit_delay;
        let left = delay.saturating_sub(started.elapsed());
        if appends < min_appends || left.is_zero() {
            break;
        }
        st = shared
            .wake_writer
            .wait_timeout(st, left)
            .map_or_else(|e| e.into_inner().0, |(g, _)| g);
    }
}

/// Whether the group should start a new segment first.
fn needs_roll(shared: &Shared, active: &Active, group_bytes: u64) -> bool {
    let st = shared.lock();
    let Some(seg) = st.segments.get(&active.first) else {
        return true;
    };
    if seg.len == 0 {
        return false;
    }
    let fully_acked = seg.all_acked(st.acked);
    seg.len + group_bytes > shared.segment_bytes
        || (fully_acked && st.disk_bytes + group_bytes > st.max_bytes)
}

/// Writes and syncs `buf` after the records of the active segment (over
/// zeros written ahead, or growing the file), undoing a partial write.
fn write_group(shared: &Shared, active: &mut Active, buf: &[u8]) -> io::Result<Duration> {
    let before = active.len;
    let mut synced = Duration::ZERO;
    let result = active.file.write_all_at(buf, before).and_then(|()| {
        let started = Instant::now();
        let r = active.file.sync_data();
        synced = started.elapsed();
        r
    });
    if let Err(e) = result {
        let undo = active
            .file
            .set_len(before)
            .and_then(|()| active.file.sync_data());
        if let Err(undo) = undo {
            shared.lock().broken = Some(format!(
                "write failed ({e}) and could not be undone ({undo})"
            ));
        }
        active.file_len = before;
        return Err(e);
    }
    active.len = before + buf.len() as u64;
    active.file_len = active.file_len.max(active.len);
    Ok(synced)
}

/// Zeros written by one [`prefill`] call at most, once the active segment
/// has its first `prefill_bytes`: small enough to fit in the group-commit
/// delay that follows a commit under load.
const PREFILL_STEP: u64 = 128 << 10;

/// Keeps [`crate::SpoolConfig::prefill_bytes`] of zeros written and synced
/// past the records of the active segment, never past `segment_bytes`. Runs
/// between commits; a failure is counted, cut back, and ends the prefill of
/// this segment (commits then grow the file, as without prefill).
fn prefill(shared: &Shared, active: &mut Active) {
    let want = shared.prefill_bytes;
    if want == 0 || active.prefill_failed {
        return;
    }
    let target = (active.len + want).min(shared.segment_bytes.max(active.len));
    // The first fill of a segment writes it all; later ones top it up.
    let step = if active.file_len == active.len {
        1
    } else {
        PREFILL_STEP.min(want.div_ceil(2))
    };
    if target < active.file_len + step {
        return;
    }
    let result =
        write_zeros(&active.file, active.file_len, target).and_then(|()| active.file.sync_data());
    match result {
        Ok(()) => active.file_len = target,
        Err(_) => {
            active.prefill_failed = true;
            // Whatever part was written is zeros: cut it if possible, and
            // otherwise opening the spool again cuts it.
            if active.file.set_len(active.file_len).is_err() {
                active.file_len = target;
            }
            shared.lock().prefill_failures += 1;
        }
    }
}

/// Writes zeros over `[from, to)` of `file`.
fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Cuts the zeros written ahead off a segment no more written to, so that
/// its file holds its records only. Not synced: if a crash undoes the cut,
/// opening the spool cuts the zeros again.
fn cut_prefill(shared: &Shared, segment: &Active) {
    if segment.file_len > segment.len && segment.file.set_len(segment.len).is_err() {
        shared.lock().prefill_failures += 1;
    }
}

/// The thread body: commits groups until the spool is closed.
pub(crate) fn run(shared: &Shared, mut active: Active) {
    while let Some(group) = take_group(shared) {
        let appends = group.len();
        let bytes: u64 = group.iter().map(|p| p.bytes.len() as u64).sum();
        let records: usize = group
            .iter()
            .map(|p| (p.seqs.end() - p.seqs.start() + 1) as usize)
            .sum();
        let mut buf = Vec::with_capacity(bytes as usize);
        for p in &group {
            buf.extend_from_slice(&p.bytes);
        }
        let first_seq = *group[0].seqs.start();
        let last_seq = *group[group.len() - 1].seqs.end();
        let mut result = Ok(());
        if needs_roll(shared, &active, bytes) {
            result = roll(shared, &mut active, first_seq);
        }
        let result = result.and_then(|()| write_group(shared, &mut active, &buf));
        let fsync = result.as_ref().map_or(Duration::ZERO, |d| *d);
        let ok = result.is_ok();
        {
            let mut st = shared.lock();
            st.queued_bytes -= bytes;
            if ok {
                if st.unacked_records == 0 {
                    st.oldest_unacked_ms = Some(group[0].appended_at_ms);
                }
                st.unacked_records += records as u64;
                st.disk_bytes += bytes;
                if let Some(seg) = st.segments.get_mut(&active.first) {
                    seg.len += bytes;
                    seg.last_seq = Some(last_seq);
                }
            }
            if let Ok(free) = free_disk_bytes(&shared.dir) {
                st.free_disk = free;
                st.free_checked = Instant::now();
            }
        }
        shared.observer.committed(&Commit {
            appends: group.len(),
            records,
            bytes,
            fsync,
            ok,
        });
        if ok {
            shared.new_records.notify_one();
        }
        let error = result.err().map(|e| e.to_string());
        for p in group {
            let outcome = match &error {
                None => Ok(p.seqs),
                Some(e) => Err(AppendError::Io(e.clone())),
            };
            let _ = p.done.send(outcome);
        }
        let idle_from = Instant::now();
        if !shared.lock().closed {
            prefill(shared, &mut active);
        }
        linger(shared, appends, idle_from);
    }
    cut_prefill(shared, &active);
}
