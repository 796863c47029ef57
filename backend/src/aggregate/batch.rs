//! Turning fetched records into a batch: which records are new for their
//! partition, decrypting them, checking what the store will be given, and
//! the offset moves. Pure (no I/O), so every rule is unit-tested.
//!
//! A record goes to the dead-letter topic when it cannot be opened (see
//! [`open_record`]) or when what it holds must not reach the store (see
//! [`check_record`]): control characters in any text field, a site id longer
//! than [`MAX_SITE_BYTES`], a receive time outside 1970..2100. Overlong
//! dimension values are cut instead ([`crate::aggregate::rollup::bounded`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use edge_envelope::EventRecord;
use edge_envelope::open::Opener;

use super::dlq::{DeadLetter, DeadLetterReason};
use super::store::{DeadLetterRow, OffsetAdvance};

/// Longest site id accepted (bytes).
pub const MAX_SITE_BYTES: usize = 256;

/// Latest receive time accepted: 2100-01-01T00:00:00Z, in ms.
pub const MAX_RECEIVED_AT_MS: i64 = 4_102_444_800_000;

/// One fetched record, owned.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (the site id).
    pub key: Option<Vec<u8>>,
    /// Value (the envelope).
    pub value: Option<Vec<u8>>,
    /// Kafka timestamp, ms (0 when the broker gave none).
    pub timestamp_ms: i64,
}

impl Fetched {
    /// A dead letter for this record.
    pub fn letter(&self, topic: &str, reason: DeadLetterReason, error: String) -> DeadLetter {
        DeadLetter {
            reason,
            error,
            topic: topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

/// The row kept in SQL for a dead letter: where, when, why; the site only
/// when it is a plain, bounded string.
pub fn dead_letter_row(letter: &DeadLetter, timestamp_ms: i64) -> DeadLetterRow {
    let site = letter
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        .filter(|s| s.len() <= MAX_SITE_BYTES && !s.chars().any(char::is_control))
        .map(str::to_string);
    DeadLetterRow {
        topic: letter.topic.clone(),
        partition: letter.partition,
        offset: letter.offset,
        site,
        timestamp_ms,
        reason: letter.reason.as_str(),
    }
}

/// Refuses a decrypted record whose content must not reach the store.
/// The error names the field, never its content.
pub fn check_record(r: &EventRecord) -> Result<(), (DeadLetterReason, String)> {
    if r.site_id.len() > MAX_SITE_BYTES {
        return Err((
            DeadLetterReason::ValueTooLong,
            format!(
                "site id of {} bytes (most {MAX_SITE_BYTES})",
                r.site_id.len()
            ),
        ));
    }
    if !(0..=MAX_RECEIVED_AT_MS).contains(&r.received_at_ms) {
        return Err((
            DeadLetterReason::BadTimestamp,
            format!("received_at_ms {} outside 1970..2100", r.received_at_ms),
        ));
    }
    let mut fields: Vec<(&str, &str)> = vec![
        ("site_id", r.site_id.as_str()),
        ("name", r.name.as_str()),
        ("url", r.url.as_str()),
    ];
    if let Some(v) = &r.referrer {
        fields.push(("referrer", v.as_str()));
    }
    for (field, v) in [
        ("utm.source", &r.utm.source),
        ("utm.medium", &r.utm.medium),
        ("utm.campaign", &r.utm.campaign),
        ("utm.term", &r.utm.term),
        ("utm.content", &r.utm.content),
    ] {
        if let Some(v) = v {
            fields.push((field, v.as_str()));
        }
    }
    for (k, v) in &r.props {
        fields.push(("props key", k.as_str()));
        fields.push(("props value", v.as_str()));
    }
    match fields.iter().find(|(_, v)| v.chars().any(char::is_control)) {
        Some((field, _)) => Err((
            DeadLetterReason::ControlCharacter,
            format!("control character in {field}"),
        )),
        None => Ok(()),
    }
}

/// Opens one record, or says why it goes to the dead-letter topic.
pub fn open_record(
    opener: &Opener,
    topic: &str,
    f: &Fetched,
) -> Result<EventRecord, Box<DeadLetter>> {
    let letter = |reason: DeadLetterReason, error: String| Box::new(f.letter(topic, reason, error));
    let Some(key) = f.key.as_deref() else {
        return Err(letter(
            DeadLetterReason::MissingKey,
            "record has no key (site id)".into(),
        ));
    };
    let Ok(site) = std::str::from_utf8(key) else {
        return Err(letter(
            DeadLetterReason::InvalidKey,
            "record key is not UTF-8".into(),
        ));
    };
    match opener.open(site, f.value.as_deref().unwrap_or_default()) {
        Ok(record) if record.site_id == site => match check_record(&record) {
            Ok(()) => Ok(record),
            Err((reason, error)) => Err(letter(reason, error)),
        },
        Ok(record) => Err(letter(
            DeadLetterReason::SiteMismatch,
            format!("key {site:?} but event of site {:?}", record.site_id),
        )),
        Err(e) => Err(letter(DeadLetterReason::unopenable(&e), e.to_string())),
    }
}

/// What one batch turned into.
#[derive(Debug, Default)]
pub struct PreparedBatch {
    /// The decrypted events, each with its index in the fetched records.
    pub events: Vec<(usize, EventRecord)>,
    /// Records for the dead-letter topic.
    pub letters: Vec<DeadLetter>,
    /// Offset moves per partition.
    pub advances: Vec<OffsetAdvance>,
    /// Partitions whose first record came after the stored offset although
    /// they had to start exactly there: their records were left out.
    pub gaps: Vec<i32>,
}

/// Turns fetched records into a batch, skipping records of partitions no
/// longer assigned and records below the stored offset (already applied).
///
/// A partition in `strict` must continue exactly at its stored offset: if
/// its first record is later, the broker skipped records (Tansu 0.6 answers
/// a fetch from inside a record batch with the *next* batch), so the
/// partition is reported in `gaps` and none of its records are used.
pub fn prepare_batch(
    opener: &Opener,
    topic: &str,
    positions: &HashMap<i32, Option<i64>>,
    strict: &HashSet<i32>,
    fetched: &[Fetched],
) -> PreparedBatch {
    let mut batch = PreparedBatch::default();
    let mut moves: BTreeMap<i32, (Option<i64>, i64)> = BTreeMap::new();
    for (index, f) in fetched.iter().enumerate() {
        let Some(expected) = positions.get(&f.partition) else {
            continue;
        };
        if expected.is_some_and(|e| f.offset < e) || batch.gaps.contains(&f.partition) {
            continue;
        }
        if let Some(e) = expected
            && f.offset > *e
            && !moves.contains_key(&f.partition)
            && strict.contains(&f.partition)
        {
            batch.gaps.push(f.partition);
            continue;
        }
        if let Some((_, next)) = moves.get(&f.partition)
            && f.offset < *next
        {
            continue;
        }
        match open_record(opener, topic, f) {
            Ok(record) => batch.events.push((index, record)),
            Err(letter) => batch.letters.push(*letter),
        }
        moves.insert(f.partition, (*expected, f.offset + 1));
    }
    batch.advances = moves
        .into_iter()
        .map(|(partition, (expected, next))| OffsetAdvance {
            topic: topic.to_string(),
            partition,
            expected,
            next,
        })
        .collect();
    batch
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::aggregate::store::tests::event;
    use edge_envelope::keys::{Keyring, PrivateKey};
    use edge_envelope::{RotationPolicy, Sealer};

    pub(crate) fn keys() -> (Opener, Sealer) {
        let key = PrivateKey::generate();
        let sealer = Sealer::new(key.public_key(), RotationPolicy::default()).unwrap();
        let mut ring = Keyring::new();
        ring.insert(key);
        (Opener::new(ring), sealer)
    }

    pub(crate) fn fetched(
        sealer: &Sealer,
        partition: i32,
        offset: i64,
        site: &str,
        visitor: u8,
    ) -> Fetched {
        let rec = event(site, 1_000, "pageview", "/", visitor);
        Fetched {
            partition,
            offset,
            key: Some(site.as_bytes().to_vec()),
            value: Some(sealer.seal(site, &rec).unwrap()),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn skips_applied_and_unassigned_records_and_dead_letters_garbage() {
        let (opener, sealer) = keys();
        let positions = HashMap::from([(0, Some(10)), (1, None)]);
        let mut garbage = fetched(&sealer, 1, 5, "s", 9);
        garbage.value = Some(b"garbage".to_vec());
        let mut moved = fetched(&sealer, 1, 6, "s", 9);
        moved.key = Some(b"other".to_vec()); // sealed for "s", keyed as "other"
        let mut no_key = fetched(&sealer, 1, 7, "s", 9);
        no_key.key = None;
        let records = vec![
            fetched(&sealer, 0, 9, "s", 1), // below the stored offset: already applied
            fetched(&sealer, 0, 10, "s", 2), // applied now
            fetched(&sealer, 2, 0, "s", 3), // partition not assigned
            fetched(&sealer, 1, 4, "s", 4),
            garbage,
            moved,
            no_key,
            fetched(&sealer, 0, 10, "s", 2), // duplicate delivery in one batch
            fetched(&sealer, 0, 12, "s", 5),
        ];
        let b = prepare_batch(&opener, "t", &positions, &HashSet::new(), &records);
        assert_eq!(b.events.len(), 3);
        let reasons: Vec<_> = b
            .letters
            .iter()
            .map(|l| (l.reason.as_str(), l.offset))
            .collect();
        assert_eq!(
            reasons,
            vec![("bad_magic", 5), ("decrypt_failed", 6), ("missing_key", 7)]
        );
        assert_eq!(b.letters[0].value.as_deref(), Some(&b"garbage"[..]));
        assert_eq!(
            b.advances,
            vec![
                OffsetAdvance {
                    topic: "t".into(),
                    partition: 0,
                    expected: Some(10),
                    next: 13
                },
                OffsetAdvance {
                    topic: "t".into(),
                    partition: 1,
                    expected: None,
                    next: 8
                },
            ]
        );
    }

    #[test]
    fn a_strict_partition_that_starts_after_its_stored_offset_is_a_gap() {
        let (opener, sealer) = keys();
        let positions = HashMap::from([(0, Some(10)), (1, Some(3))]);
        let records = vec![
            fetched(&sealer, 0, 12, "s", 1), // 10 and 11 were skipped by the broker
            fetched(&sealer, 0, 13, "s", 1),
            fetched(&sealer, 1, 3, "s", 2),
        ];
        let b = prepare_batch(&opener, "t", &positions, &HashSet::from([0, 1]), &records);
        assert_eq!(b.gaps, vec![0]);
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.advances.len(), 1);
        assert_eq!(b.advances[0].partition, 1);
        // After a rewind from the beginning the partition is lenient: 12 is next.
        let b = prepare_batch(&opener, "t", &positions, &HashSet::from([1]), &records);
        assert!(b.gaps.is_empty());
        assert_eq!(b.events.len(), 3);
        assert_eq!(b.advances[0].next, 14);
    }

    #[test]
    fn records_with_control_characters_or_bad_bounds_are_dead_lettered() {
        let (opener, sealer) = keys();
        let seal = |offset: i64, rec: EventRecord| Fetched {
            partition: 0,
            offset,
            key: Some(rec.site_id.as_bytes().to_vec()),
            value: Some(sealer.seal(&rec.site_id, &rec).unwrap()),
            timestamp_ms: 7,
        };
        let good = event("s", 1_000, "pageview", "/", 1);
        let nul = event("s", 1_000, "evt\u{0}x", "/", 2);
        let mut prop = event("s", 1_000, "signup", "/", 3);
        prop.props = vec![("pl\nan".into(), "pro".into())];
        let old = event("s", -5, "pageview", "/", 4);
        let long_site = "x".repeat(MAX_SITE_BYTES + 1);
        let records = vec![
            seal(0, good.clone()),
            seal(1, nul),
            seal(2, prop),
            seal(3, old),
            seal(4, event(&long_site, 1_000, "pageview", "/", 5)),
            seal(5, good),
        ];
        let b = prepare_batch(
            &opener,
            "t",
            &HashMap::from([(0, None)]),
            &HashSet::new(),
            &records,
        );
        let reasons: Vec<_> = b
            .letters
            .iter()
            .map(|l| (l.reason.as_str(), l.offset, l.error.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("control_character", 1, "control character in name"),
                ("control_character", 2, "control character in props key"),
                ("bad_timestamp", 3, "received_at_ms -5 outside 1970..2100"),
                ("value_too_long", 4, "site id of 257 bytes (most 256)"),
            ]
        );
        assert_eq!(b.events.iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 5]);
        assert_eq!(b.advances[0].next, 6);
        let row = dead_letter_row(&b.letters[3], 7);
        assert_eq!(
            (row.site, row.reason, row.offset),
            (None, "value_too_long", 4)
        );
        assert_eq!(dead_letter_row(&b.letters[0], 7).site.as_deref(), Some("s"));
    }
}
