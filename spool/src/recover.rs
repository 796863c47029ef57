//! Opening a spool directory: reads the checkpoint, scans every segment,
//! truncates torn tails (and the zeros the writer wrote ahead, which are not
//! counted as torn) and deletes segments that hold nothing unacknowledged.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::record::{Found, Scanner};
use crate::{OpenError, Segment, checkpoint};

/// What was found on disk.
pub(crate) struct Recovered {
    pub acked: u64,
    pub next_seq: u64,
    pub segments: BTreeMap<u64, Segment>,
    pub unacked_records: u64,
    pub oldest_unacked_ms: Option<i64>,
    pub corrupt_skipped: u64,
    pub torn_bytes: u64,
}

/// The file name of the segment whose first record has `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Scans `dir` (created 0700 if missing).
pub(crate) fn recover(dir: &Path) -> Result<Recovered, OpenError> {
    edge_private_fs::ensure_dir(dir).map_err(|e| io_err(dir)(checkpoint::into_io(e)))?;
    let acked = checkpoint::read(dir).map_err(io_err(dir))?;
    let mut names: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(first) = stem.parse::<u64>() {
            names.push((first, entry.path()));
        }
    }
    names.sort();
    let mut out = Recovered {
        acked,
        next_seq: acked + 1,
        segments: BTreeMap::new(),
        unacked_records: 0,
        oldest_unacked_ms: None,
        corrupt_skipped: 0,
        torn_bytes: 0,
    };
    let mut removed = false;
    for (first, path) in names {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        let mut scanner = Scanner::new(&file, 0, len);
        let mut last_seq = None;
        let mut keep_len = len;
        while let Some(item) = scanner.next_item().map_err(io_err(&path))? {
            match item {
                Found::Record { record, .. } => {
                    last_seq = Some(record.seq);
                    out.next_seq = out.next_seq.max(record.seq + 1);
                    if record.seq > acked {
                        out.unacked_records += 1;
                        out.oldest_unacked_ms.get_or_insert(record.appended_at_ms);
                    }
                }
                Found::Corrupt { .. } => out.corrupt_skipped += 1,
                Found::TornTail { from } => keep_len = from,
            }
        }
        if keep_len < len {
            let torn_end = end_of_nonzero(&file, keep_len, len).map_err(io_err(&path))?;
            file.set_len(keep_len).map_err(io_err(&path))?;
            file.sync_data().map_err(io_err(&path))?;
            out.torn_bytes += torn_end - keep_len;
        }
        if last_seq.is_none_or(|l| l <= acked) {
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed = true;
            continue;
        }
        out.segments.insert(
            first,
            Segment {
                path,
                len: keep_len,
                last_seq,
                sealed: true,
            },
        );
    }
    if removed {
        checkpoint::sync_dir(dir).map_err(io_err(dir))?;
    }
    Ok(out)
}

/// The end of the last non-zero byte of `file` in `[from, to)`, or `from`
/// when they are all zeros: what follows is zeros written ahead, not torn.
fn end_of_nonzero(file: &File, from: u64, to: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut end = from;
    let mut at = from;
    while at < to {
        let n = (to - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b != 0) {
            end = at + i as u64 + 1;
        }
        at += n as u64;
    }
    Ok(end)
}
