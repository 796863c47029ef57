//! The manifest stored next to each object, and the check of an object
//! against it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::frame::{self, BackupRecord, FRAMING_VERSION};
use super::naming::ObjectName;
use super::object::{decompress, sha256_hex};
use super::window::{Batch, BatchStats, CutReason};

/// Value of the manifest's `format` field.
pub const MANIFEST_FORMAT: &str = "edge-backup-manifest";
/// Version of the manifest layout written by this build.
pub const MANIFEST_VERSION: u32 = 1;

/// What a backup object holds (JSON, one per object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// Key of the data object, relative to the store prefix.
    pub object: String,
    /// Kafka topic of every record.
    pub topic: String,
    /// Kafka partition of every record.
    pub partition: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Number of records.
    pub records: u64,
    /// Offsets between first and last that are not in the object (0 unless
    /// Kafka itself skipped offsets).
    pub offset_gaps: u64,
    /// Start of the time window the object was cut for (ms since the epoch).
    pub window_start_ms: i64,
    /// Window length (ms) at the time of writing.
    pub window_ms: i64,
    /// Smallest Kafka timestamp of a record (ms), if any record has one.
    pub min_timestamp_ms: Option<i64>,
    /// Largest Kafka timestamp of a record (ms), if any record has one.
    pub max_timestamp_ms: Option<i64>,
    /// Records per site id (message key).
    pub sites: BTreeMap<String, u64>,
    /// Record framing version inside the object.
    pub framing_version: u8,
    /// Compression of the object (`zstd`).
    pub compression: String,
    /// Size of the framed records before compression.
    pub uncompressed_bytes: u64,
    /// Size of the stored object.
    pub object_bytes: u64,
    /// SHA-256 of the stored object, lowercase hex.
    pub object_sha256: String,
    /// Why the batch was cut.
    pub cut: CutReason,
    /// When the object was written (ms since the epoch; differs between a
    /// write and its rewrite after a crash, unlike the name).
    pub created_at_ms: i64,
}

impl Manifest {
    /// The manifest of `batch`, compressed into `object`.
    pub fn describe(batch: &Batch, name: &ObjectName, object: &[u8], created_at_ms: i64) -> Self {
        let s = &batch.stats;
        Manifest {
            format: MANIFEST_FORMAT.to_string(),
            version: MANIFEST_VERSION,
            object: name.data_key(),
            topic: batch.topic.clone(),
            partition: batch.partition,
            first_offset: s.first_offset,
            last_offset: s.last_offset,
            records: s.records,
            offset_gaps: s.offset_gaps,
            window_start_ms: batch.window_start_ms,
            window_ms: batch.window_ms,
            min_timestamp_ms: s.min_timestamp_ms,
            max_timestamp_ms: s.max_timestamp_ms,
            sites: s.sites.clone(),
            framing_version: FRAMING_VERSION,
            compression: "zstd".to_string(),
            uncompressed_bytes: batch.framed.len() as u64,
            object_bytes: object.len() as u64,
            object_sha256: sha256_hex(object),
            cut: batch.cut,
            created_at_ms,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses and checks format and version.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid: {e}"))?;
        if m.format != MANIFEST_FORMAT {
            return Err(format!("manifest format is {:?}", m.format));
        }
        if m.version != MANIFEST_VERSION {
            return Err(format!("unsupported manifest version {}", m.version));
        }
        Ok(m)
    }

    /// Checks a stored object against this manifest: size, checksum,
    /// decompression, framing, and every count, range and site total.
    /// Returns the records, or every mismatch found (first ones first).
    pub fn check_object(&self, object: &[u8]) -> Result<Vec<BackupRecord>, Vec<String>> {
        if object.len() as u64 != self.object_bytes {
            return Err(vec![format!(
                "size mismatch: manifest says {} bytes, object has {}",
                self.object_bytes,
                object.len()
            )]);
        }
        let sha = sha256_hex(object);
        if sha != self.object_sha256 {
            return Err(vec![format!(
                "checksum mismatch: manifest sha256 {}, object sha256 {sha}",
                self.object_sha256
            )]);
        }
        if self.compression != "zstd" {
            return Err(vec![format!("unknown compression {:?}", self.compression)]);
        }
        let framed = decompress(object, self.uncompressed_bytes)
            .map_err(|e| vec![format!("cannot decompress: {e}")])?;
        if framed.len() as u64 != self.uncompressed_bytes {
            return Err(vec![format!(
                "uncompressed size mismatch: manifest says {}, object has {}",
                self.uncompressed_bytes,
                framed.len()
            )]);
        }
        let records =
            frame::decode(&framed).map_err(|e| vec![format!("records do not decode: {e}")])?;
        let mut problems = Vec::new();
        if let Some(r) = records
            .iter()
            .find(|r| r.topic != self.topic || r.partition != self.partition)
        {
            problems.push(format!(
                "record at offset {} is from {}/{}, manifest says {}/{}",
                r.offset, r.topic, r.partition, self.topic, self.partition
            ));
        }
        if let Some(w) = records.windows(2).find(|w| w[1].offset <= w[0].offset) {
            problems.push(format!(
                "offsets not increasing: {} follows {}",
                w[1].offset, w[0].offset
            ));
        }
        match BatchStats::of(&records) {
            None => problems.push("object holds no record".to_string()),
            Some(s) => {
                let mut expect = |what: &str, manifest: String, found: String| {
                    if manifest != found {
                        problems.push(format!(
                            "{what} mismatch: manifest says {manifest}, object has {found}"
                        ));
                    }
                };
                expect(
                    "record count",
                    self.records.to_string(),
                    s.records.to_string(),
                );
                expect(
                    "offset range",
                    format!("{}..={}", self.first_offset, self.last_offset),
                    format!("{}..={}", s.first_offset, s.last_offset),
                );
                expect(
                    "offset gaps (offsets not contiguous)",
                    self.offset_gaps.to_string(),
                    s.offset_gaps.to_string(),
                );
                expect(
                    "time range",
                    format!("{:?}..={:?}", self.min_timestamp_ms, self.max_timestamp_ms),
                    format!("{:?}..={:?}", s.min_timestamp_ms, s.max_timestamp_ms),
                );
                expect(
                    "site counts",
                    format!("{:?}", self.sites),
                    format!("{:?}", s.sites),
                );
                let name = ObjectName::new(
                    &self.topic,
                    self.partition,
                    s.first_offset,
                    s.first_timestamp_ms,
                );
                expect("object name", self.object.clone(), name.data_key());
            }
        }
        if problems.is_empty() {
            Ok(records)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backup::object::seal;
    use crate::backup::test_support::record;
    use crate::backup::window::{WindowPolicy, Windows};

    fn sealed() -> crate::backup::object::SealedObject {
        let mut w = Windows::new(WindowPolicy {
            window_ms: 300_000,
            max_object_bytes: 1 << 20,
            grace_ms: 0,
        });
        for off in 100..110 {
            let site = if off % 2 == 0 { "site-a" } else { "site-b" };
            w.push(&record(4, off, 1_795_378_503_123 + off, site), 0)
                .unwrap();
        }
        seal(&w.drain().pop().unwrap(), 42).unwrap()
    }

    #[test]
    fn a_fresh_object_matches_its_manifest() {
        let s = sealed();
        let m = Manifest::from_json(&s.manifest.to_json()).unwrap();
        assert_eq!(m, s.manifest);
        assert_eq!(m.records, 10);
        assert_eq!((m.first_offset, m.last_offset), (100, 109));
        assert_eq!(m.sites.get("site-a"), Some(&5));
        assert_eq!(m.cut, CutReason::Shutdown);
        let records = m.check_object(&s.data).unwrap();
        assert_eq!(records.len(), 10);
    }

    #[test]
    fn any_flipped_byte_is_a_checksum_mismatch() {
        let s = sealed();
        for i in [0, s.data.len() / 2, s.data.len() - 1] {
            let mut bad = s.data.clone();
            bad[i] ^= 0x40;
            let problems = s.manifest.check_object(&bad).unwrap_err();
            assert!(
                problems[0].starts_with("checksum mismatch: manifest sha256 "),
                "{problems:?}"
            );
        }
        let problems = s.manifest.check_object(&s.data[1..]).unwrap_err();
        assert!(problems[0].starts_with("size mismatch"), "{problems:?}");
    }

    #[test]
    fn a_manifest_that_lies_about_the_content_is_caught() {
        let s = sealed();
        let mut m = s.manifest.clone();
        m.records = 11;
        m.sites.insert("site-c".into(), 1);
        let problems = m.check_object(&s.data).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("record count mismatch"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("site counts mismatch"))
        );

        let mut m = s.manifest.clone();
        m.partition = 5;
        let problems = m.check_object(&s.data).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("manifest says edge.events/5"))
        );

        let mut m = s.manifest.clone();
        m.object_sha256 = "00".repeat(32);
        assert!(m.check_object(&s.data).unwrap_err()[0].starts_with("checksum mismatch"));
    }

    #[test]
    fn unknown_fields_and_versions_are_refused() {
        let s = sealed();
        let mut v: serde_json::Value = serde_json::from_slice(&s.manifest.to_json()).unwrap();
        v["version"] = 2.into();
        assert!(Manifest::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
        v["version"] = 1.into();
        v["extra"] = true.into();
        assert!(Manifest::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
    }
}
