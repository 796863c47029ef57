//! Where a partition resumes after an assignment: exactly at its committed
//! offset, never after it.
//!
//! Tansu 0.6 serves a fetch only from record-batch starts: a consumer that
//! resumes at a committed offset inside a batch is handed the *next* batch,
//! silently skipping the records in between. For the backup that meant a
//! gap (records never backed up) or, when a crashed run had stored an
//! uncommitted object starting at the committed offset, a first object under
//! another name and the overlap stored twice. The guard sees the first
//! records of every assigned partition: below the committed offset they are
//! skipped (already stored), above it the partition is read again from the
//! beginning; only after [`MAX_REWINDS`] rewinds that still start above the
//! committed offset is the gap accepted as real (records deleted by
//! retention). Pure: the consumer loop does the seeking.

use std::collections::HashMap;

/// Rewinds to the beginning after which a gap is accepted as real.
pub const MAX_REWINDS: u32 = 3;

/// What to do with a record the broker delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Back it up.
    Take,
    /// Below the committed offset: already stored by an earlier run.
    SkipCommitted,
    /// After the committed offset while the records in between were never
    /// seen: seek the partition to the beginning and drop this record (it is
    /// delivered again after the rewind).
    Rewind {
        /// Where the partition must resume.
        committed: i64,
    },
    /// The records between the committed offset and this one are gone from
    /// the log after [`MAX_REWINDS`] rewinds: back it up, and warn.
    AcceptGap {
        /// Where the partition should have resumed.
        committed: i64,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// The next record must be exactly `committed`.
    Strict { committed: i64, rewinds: u32 },
    /// The partition resumed: every record is taken.
    Flowing,
}

/// The per-partition resume state since the last assignment.
#[derive(Debug, Default)]
pub struct ResumeGuard {
    partitions: HashMap<i32, State>,
}

impl ResumeGuard {
    /// Whether the committed offset of `partition` is known since its
    /// assignment (the loop asks the broker once otherwise).
    pub fn knows(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Records the committed offset of a newly assigned partition (`None`:
    /// nothing committed, it starts wherever `auto.offset.reset` says).
    pub fn assigned(&mut self, partition: i32, committed: Option<i64>) {
        let state = match committed {
            Some(committed) => State::Strict {
                committed,
                rewinds: 0,
            },
            None => State::Flowing,
        };
        self.partitions.insert(partition, state);
    }

    /// Forgets a revoked partition: its next owner starts over.
    pub fn revoked(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Judges a record at `offset` of `partition` (a partition the guard does
    /// not know is taken as it comes).
    pub fn judge(&mut self, partition: i32, offset: i64) -> Verdict {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return Verdict::Take;
        };
        match *state {
            State::Flowing => Verdict::Take,
            State::Strict { committed, .. } if offset < committed => Verdict::SkipCommitted,
            State::Strict { committed, .. } if offset == committed => {
                *state = State::Flowing;
                Verdict::Take
            }
            State::Strict { committed, rewinds } if rewinds < MAX_REWINDS => {
                *state = State::Strict {
                    committed,
                    rewinds: rewinds + 1,
                };
                Verdict::Rewind { committed }
            }
            State::Strict { committed, .. } => {
                *state = State::Flowing;
                Verdict::AcceptGap { committed }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_exactly_at_the_committed_offset_takes_everything_after_it() {
        let mut g = ResumeGuard::default();
        g.assigned(0, Some(10));
        assert_eq!(g.judge(0, 10), Verdict::Take);
        assert_eq!(g.judge(0, 11), Verdict::Take);
    }

    #[test]
    fn a_fetch_that_skipped_records_rewinds_then_skips_what_is_committed() {
        let mut g = ResumeGuard::default();
        g.assigned(0, Some(10));
        // The broker answered from the next batch start (Tansu 0.6).
        assert_eq!(g.judge(0, 14), Verdict::Rewind { committed: 10 });
        // After the rewind: the stored records are skipped, 10 resumes.
        for o in 0..10 {
            assert_eq!(g.judge(0, o), Verdict::SkipCommitted);
        }
        assert_eq!(g.judge(0, 10), Verdict::Take);
        assert_eq!(g.judge(0, 14), Verdict::Take);
    }

    #[test]
    fn a_gap_that_rewinds_cannot_close_is_accepted_after_the_last_rewind() {
        let mut g = ResumeGuard::default();
        g.assigned(2, Some(10));
        for _ in 0..MAX_REWINDS {
            assert_eq!(g.judge(2, 20), Verdict::Rewind { committed: 10 });
        }
        assert_eq!(g.judge(2, 20), Verdict::AcceptGap { committed: 10 });
        assert_eq!(g.judge(2, 21), Verdict::Take);
    }

    #[test]
    fn nothing_committed_or_unknown_partitions_are_taken_and_revoke_forgets() {
        let mut g = ResumeGuard::default();
        g.assigned(0, None);
        assert_eq!(g.judge(0, 5), Verdict::Take);
        assert_eq!(g.judge(1, 5), Verdict::Take);
        g.assigned(1, Some(3));
        assert!(g.knows(1));
        g.revoked(1);
        assert!(!g.knows(1));
    }
}
