//! Which partitions must continue exactly at their stored offset, which are
//! being re-read from the beginning, and which stayed silent: the
//! bookkeeping that makes the consumer correct against a broker that skips
//! records after a seek (Tansu 0.6 serves fetches only from record-batch
//! starts). Pure: no Kafka, no clock of its own, so every rule is tested.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::aggregate::batch::Fetched;
use crate::aggregate::store::OffsetAdvance;

/// How long a partition with a stored offset may stay silent after an
/// assignment before it is read once from the beginning.
pub const IDLE_REWIND_AFTER: Duration = Duration::from_secs(3);

/// Rewinds without progress after which a gap is accepted as real (the
/// records were deleted by retention).
const MAX_GAP_REWINDS: u32 = 3;

/// What to do about a partition whose first record came after its stored
/// offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapAction {
    /// Read it again from the beginning (records below the stored offset
    /// are skipped, not applied).
    Rewind,
    /// Rewinding did not help: continue after the gap.
    Accept,
}

/// The per-assignment state of the partitions.
#[derive(Debug)]
pub struct PartitionWatch {
    /// The assignment generation the sets below belong to.
    generation: u64,
    /// Partitions that must continue exactly at their stored offset (all of
    /// them after an assignment or a seek; not right after a rewind to the
    /// beginning, which proves there is nothing in between).
    strict: HashSet<i32>,
    /// Partitions being re-read from the beginning after a gap, with the
    /// number of rewinds without progress.
    rewound: HashMap<i32, u32>,
    /// Partitions that delivered a record since the assignment.
    seen: HashSet<i32>,
    /// When the assignment happened.
    assigned_at: Instant,
    /// Whether idle partitions were looked for since the assignment.
    probed: bool,
}

impl PartitionWatch {
    /// A watch that takes the first generation it is shown as new.
    pub fn new(now: Instant) -> PartitionWatch {
        PartitionWatch {
            generation: u64::MAX,
            strict: HashSet::new(),
            rewound: HashMap::new(),
            seen: HashSet::new(),
            assigned_at: now,
            probed: false,
        }
    }

    /// Starts over when the assignment changed: every assigned partition
    /// strict, none rewound or seen.
    pub fn follow(&mut self, generation: u64, positions: &HashMap<i32, Option<i64>>, now: Instant) {
        if self.generation != generation {
            self.strict = positions.keys().copied().collect();
            self.generation = generation;
            self.rewound.clear();
            self.seen.clear();
            self.assigned_at = now;
            self.probed = false;
        }
    }

    /// Once per assignment, [`IDLE_REWIND_AFTER`] after it: the partitions
    /// with a stored offset that delivered nothing (a broker that answers a
    /// fetch from inside a record batch with the next batch delivers nothing
    /// at all when the stored offset lies inside the *last* batch). They
    /// count as rewound; the caller seeks them to the beginning.
    pub fn idle_to_rewind(
        &mut self,
        positions: &HashMap<i32, Option<i64>>,
        now: Instant,
    ) -> Vec<i32> {
        if self.probed || now.duration_since(self.assigned_at) < IDLE_REWIND_AFTER {
            return Vec::new();
        }
        self.probed = true;
        let mut idle: Vec<i32> = positions
            .iter()
            .filter(|(p, stored)| {
                stored.is_some() && !self.seen.contains(p) && !self.rewound.contains_key(p)
            })
            .map(|(p, _)| *p)
            .collect();
        idle.sort_unstable();
        for p in &idle {
            self.rewound.insert(*p, 0);
        }
        idle
    }

    /// Drops the records of a rewound partition fetched before its re-read
    /// arrived. The re-read has arrived once a record below the stored
    /// offset shows up: from there on whatever follows the stored offset is
    /// what the log holds (a gap after it is real), so the partition is no
    /// longer strict.
    pub fn trim_rewound(
        &mut self,
        fetched: &mut Vec<Fetched>,
        positions: &HashMap<i32, Option<i64>>,
    ) {
        let mut rewound: Vec<i32> = self.rewound.keys().copied().collect();
        rewound.sort_unstable();
        for p in rewound {
            let Some(Some(stored)) = positions.get(&p) else {
                self.rewound.remove(&p);
                continue;
            };
            if let Some(first) = fetched
                .iter()
                .position(|f| f.partition == p && f.offset < *stored)
            {
                let mut index = 0;
                fetched.retain(|f| {
                    let keep = f.partition != p || index >= first;
                    index += 1;
                    keep
                });
                self.strict.remove(&p);
                self.rewound.remove(&p);
            }
        }
    }

    /// Notes the partitions that delivered records.
    pub fn saw(&mut self, records: &[Fetched]) {
        self.seen.extend(records.iter().map(|f| f.partition));
    }

    /// Decides about a gap in `partition`: rewind, or accept it after
    /// [`MAX_GAP_REWINDS`] rewinds without progress.
    pub fn gap(&mut self, partition: i32) -> GapAction {
        let tries = self.rewound.entry(partition).or_default();
        *tries += 1;
        if *tries > MAX_GAP_REWINDS {
            self.strict.remove(&partition);
            self.rewound.remove(&partition);
            GapAction::Accept
        } else {
            GapAction::Rewind
        }
    }

    /// The partitions a batch moved continue exactly where it ended.
    pub fn advanced(&mut self, advances: &[OffsetAdvance]) {
        for a in advances {
            self.strict.insert(a.partition);
            self.rewound.remove(&a.partition);
        }
    }

    /// After a seek to a stored offset the partition must continue exactly there.
    pub fn sought(&mut self, partitions: impl IntoIterator<Item = i32>) {
        self.strict.extend(partitions);
    }

    /// Partitions that must continue exactly at their stored offset.
    pub fn strict(&self) -> &HashSet<i32> {
        &self.strict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> Fetched {
        Fetched {
            partition,
            offset,
            key: None,
            value: None,
            timestamp_ms: 0,
        }
    }

    #[test]
    fn a_new_assignment_makes_every_partition_strict_and_forgets_the_rest() {
        let t0 = Instant::now();
        let mut w = PartitionWatch::new(t0);
        let positions = HashMap::from([(0, Some(5)), (1, None)]);
        w.follow(1, &positions, t0);
        assert_eq!(w.strict(), &HashSet::from([0, 1]));
        assert_eq!(w.gap(0), GapAction::Rewind);
        w.follow(1, &positions, t0); // same generation: nothing changes
        assert_eq!(w.rewound.get(&0), Some(&1));
        w.follow(2, &HashMap::from([(1, None)]), t0);
        assert_eq!(w.strict(), &HashSet::from([1]));
        assert!(w.rewound.is_empty());
    }

    #[test]
    fn silent_partitions_with_a_stored_offset_are_rewound_once_after_the_delay() {
        let t0 = Instant::now();
        let mut w = PartitionWatch::new(t0);
        let positions = HashMap::from([(0, Some(5)), (1, None), (2, Some(9)), (3, Some(1))]);
        w.follow(1, &positions, t0);
        w.saw(&[record(2, 9)]);
        assert!(
            w.idle_to_rewind(&positions, t0 + Duration::from_secs(1))
                .is_empty()
        );
        let later = t0 + IDLE_REWIND_AFTER;
        // 1 has no stored offset (read from the beginning anyway), 2 delivered.
        assert_eq!(w.idle_to_rewind(&positions, later), vec![0, 3]);
        assert!(
            w.idle_to_rewind(&positions, later).is_empty(),
            "once per assignment"
        );
    }

    #[test]
    fn a_rewound_partition_drops_stale_records_until_its_re_read_arrives() {
        let t0 = Instant::now();
        let mut w = PartitionWatch::new(t0);
        let positions = HashMap::from([(0, Some(10)), (1, Some(3))]);
        w.follow(1, &positions, t0);
        assert_eq!(w.gap(0), GapAction::Rewind);
        // Still the stale fetch (after the gap): kept, the partition stays rewound.
        let mut fetched = vec![record(0, 12), record(1, 3)];
        w.trim_rewound(&mut fetched, &positions);
        assert_eq!(fetched.len(), 2);
        assert!(w.strict().contains(&0));
        // The re-read arrives (offset 0 < 10): what came before it is dropped.
        let mut fetched = vec![record(0, 13), record(1, 4), record(0, 0), record(0, 1)];
        w.trim_rewound(&mut fetched, &positions);
        let kept: Vec<(i32, i64)> = fetched.iter().map(|f| (f.partition, f.offset)).collect();
        assert_eq!(kept, vec![(1, 4), (0, 0), (0, 1)]);
        assert!(!w.strict().contains(&0));
        assert!(w.rewound.is_empty());
    }

    #[test]
    fn a_gap_is_accepted_after_three_rewinds_without_progress() {
        let t0 = Instant::now();
        let mut w = PartitionWatch::new(t0);
        w.follow(1, &HashMap::from([(0, Some(10))]), t0);
        for _ in 0..3 {
            assert_eq!(w.gap(0), GapAction::Rewind);
        }
        assert_eq!(w.gap(0), GapAction::Accept);
        assert!(!w.strict().contains(&0));
        // Progress resets the count.
        w.follow(2, &HashMap::from([(0, Some(10))]), t0);
        assert_eq!(w.gap(0), GapAction::Rewind);
        w.advanced(&[OffsetAdvance {
            topic: "t".into(),
            partition: 0,
            expected: Some(10),
            next: 11,
        }]);
        assert!(w.strict().contains(&0));
        assert!(w.rewound.is_empty());
    }
}
