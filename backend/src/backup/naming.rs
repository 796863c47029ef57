//! Deterministic object names.
//!
//! An object holds records of one partition with contiguous offsets, and is
//! named after its first record only:
//!
//! ```text
//! <topic>/<YYYY-MM-DD>/p<partition, 5 digits>-<first offset, 20 digits>.records.zst
//! <topic>/<YYYY-MM-DD>/p<partition, 5 digits>-<first offset, 20 digits>.manifest.json
//! ```
//!
//! The date is the UTC day of the first record's Kafka timestamp
//! (`undated` if it has none). Nothing in the name depends on configuration
//! (window length, size limit) or on when the object was written, so a
//! consumer that restarts from the last committed offset produces the same
//! name for the first object it writes and overwrites what a crashed run
//! left behind instead of duplicating it.

use chrono::DateTime;

/// Suffix of data objects.
pub const DATA_SUFFIX: &str = ".records.zst";
/// Suffix of manifests.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Where an object's first record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Offset of the first record in the object.
    pub first_offset: i64,
    /// `YYYY-MM-DD` of the first record's timestamp, or `undated`.
    pub day: String,
}

impl ObjectName {
    /// The name of an object whose first record is (`partition`, `first_offset`)
    /// with Kafka timestamp `first_timestamp_ms`.
    pub fn new(
        topic: &str,
        partition: i32,
        first_offset: i64,
        first_timestamp_ms: Option<i64>,
    ) -> ObjectName {
        let day = first_timestamp_ms
            .and_then(DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "undated".to_string());
        ObjectName {
            topic: topic.to_string(),
            partition,
            first_offset,
            day,
        }
    }

    fn stem(&self) -> String {
        format!(
            "{}/{}/p{:05}-{:020}",
            self.topic, self.day, self.partition, self.first_offset
        )
    }

    /// Key of the data object (relative to the store prefix).
    pub fn data_key(&self) -> String {
        format!("{}{DATA_SUFFIX}", self.stem())
    }

    /// Key of the manifest (relative to the store prefix).
    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_SUFFIX}", self.stem())
    }

    /// Parses a data or manifest key back; `None` for any other key.
    pub fn parse(key: &str) -> Option<ObjectName> {
        let stem = key
            .strip_suffix(DATA_SUFFIX)
            .or_else(|| key.strip_suffix(MANIFEST_SUFFIX))?;
        let mut parts = stem.rsplitn(3, '/');
        let file = parts.next()?;
        let day = parts.next()?;
        let topic = parts.next()?;
        let (p, o) = file.strip_prefix('p')?.split_once('-')?;
        if p.len() < 5 || o.len() != 20 {
            return None;
        }
        Some(ObjectName {
            topic: topic.to_string(),
            partition: p.parse().ok()?,
            first_offset: o.parse().ok()?,
            day: day.to_string(),
        })
    }
}

/// Key of the manifest that belongs to a data key (and the other way round).
pub fn manifest_key_for(data_key: &str) -> Option<String> {
    data_key
        .strip_suffix(DATA_SUFFIX)
        .map(|stem| format!("{stem}{MANIFEST_SUFFIX}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_depend_only_on_the_first_record() {
        // 2026-11-22T20:15:03.123Z
        let ts = 1_795_378_503_123;
        let a = ObjectName::new("edge.events", 3, 1234, Some(ts));
        let b = ObjectName::new("edge.events", 3, 1234, Some(ts));
        assert_eq!(a, b);
        assert_eq!(
            a.data_key(),
            "edge.events/2026-11-22/p00003-00000000000000001234.records.zst"
        );
        assert_eq!(
            a.manifest_key(),
            "edge.events/2026-11-22/p00003-00000000000000001234.manifest.json"
        );
        assert_eq!(ObjectName::parse(&a.data_key()), Some(a.clone()));
        assert_eq!(ObjectName::parse(&a.manifest_key()), Some(a.clone()));
        assert_eq!(
            manifest_key_for(&a.data_key()).as_deref(),
            Some(a.manifest_key().as_str())
        );
        // Another partition or first offset is another object.
        assert_ne!(
            ObjectName::new("edge.events", 2, 1234, Some(ts)).data_key(),
            a.data_key()
        );
        assert_ne!(
            ObjectName::new("edge.events", 3, 1235, Some(ts)).data_key(),
            a.data_key()
        );
        // Keys sort by partition, then offset, within a day.
        let later = ObjectName::new("edge.events", 3, 99_999, Some(ts));
        assert!(later.data_key() > a.data_key());
    }

    #[test]
    fn records_without_timestamp_are_undated() {
        let n = ObjectName::new("t", 0, 0, None);
        assert_eq!(
            n.data_key(),
            "t/undated/p00000-00000000000000000000.records.zst"
        );
        assert_eq!(ObjectName::parse(&n.data_key()), Some(n));
    }

    #[test]
    fn other_keys_are_not_objects() {
        assert_eq!(ObjectName::parse("t/2026-01-01/notes.txt"), None);
        assert_eq!(
            ObjectName::parse("p00001-00000000000000000001.records.zst"),
            None
        );
        assert_eq!(
            ObjectName::parse("t/d/p1-00000000000000000001.records.zst"),
            None
        );
    }
}
