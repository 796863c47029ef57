//! Group commit: appends waiting while a sync runs share the next one.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::*;

/// Blocks the writer thread inside its first commit report until released,
/// so the test controls what is queued meanwhile.
struct Gate {
    entered: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
    commits: Mutex<Vec<Commit>>,
}

impl Observer for Gate {
    fn committed(&self, commit: &Commit) {
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(*commit);
        let entered = self
            .entered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(tx) = entered {
            let _ = tx.send(());
            let rx = self
                .release
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(rx) = rx {
                let _ = rx.recv();
            }
        }
    }
}

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        min_free_disk_bytes: 0,
        segment_bytes: 1 << 20,
    }
}

#[tokio::test]
async fn appends_queued_during_a_sync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        entered: Mutex::new(Some(entered_tx)),
        release: Mutex::new(Some(release_rx)),
        commits: Mutex::new(Vec::new()),
    });
    let spool = Spool::open(&config(dir.path()), gate.clone()).unwrap();
    let rec = |p: &'static [u8]| RecordRef {
        key: b"k",
        header: None,
        payload: p,
    };
    let first = spool.enqueue(&[rec(b"first")]).unwrap();
    entered_rx.recv().unwrap();
    // The writer is parked after the first commit: these 20 wait together.
    let waiting: Vec<_> = (0..20)
        .map(|_| spool.enqueue(&[rec(b"grouped"), rec(b"grouped")]).unwrap())
        .collect();
    release_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 1..=1);
    for (i, rx) in waiting.into_iter().enumerate() {
        let seqs = rx.await.unwrap().unwrap();
        let start = 2 + 2 * i as u64;
        assert_eq!(seqs, start..=start + 1);
    }
    let commits = gate.commits.lock().unwrap().clone();
    assert_eq!(commits.len(), 2, "{commits:?}");
    assert_eq!((commits[0].appends, commits[0].records), (1, 1));
    assert_eq!((commits[1].appends, commits[1].records), (20, 40));
    assert!(commits.iter().all(|c| c.ok));
    let stats = spool.stats();
    assert_eq!(stats.records, 41);
    assert_eq!(
        stats.bytes,
        std::fs::metadata(dir.path().join("00000000000000000001.seg"))
            .unwrap()
            .len()
    );
}

#[tokio::test]
async fn an_append_resolves_only_after_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        entered: Mutex::new(Some(entered_tx)),
        release: Mutex::new(Some(release_rx)),
        commits: Mutex::new(Vec::new()),
    });
    let spool = Spool::open(&config(dir.path()), gate.clone()).unwrap();
    let first = spool
        .enqueue(&[RecordRef {
            key: b"k",
            header: None,
            payload: b"a",
        }])
        .unwrap();
    entered_rx.recv().unwrap();
    let mut second = spool
        .enqueue(&[RecordRef {
            key: b"k",
            header: None,
            payload: b"b",
        }])
        .unwrap();
    // Not committed while the writer is held.
    assert!(matches!(
        second.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Empty)
    ));
    release_tx.send(()).unwrap();
    assert!(first.await.unwrap().is_ok());
    assert_eq!(second.await.unwrap().unwrap(), 2..=2);
}
