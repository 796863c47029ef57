//! `edge-backend verify`: checks every manifest against its object
//! (checksum, decoding, counts, offsets, sites) and the objects of each
//! partition against each other (no offset stored twice).

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt as _, TryStreamExt as _};

use super::catalog;
use super::manifest::Manifest;
use super::naming::{ObjectName, manifest_key_for};
use super::store::BackupStore;

/// One problem, naming the object or manifest concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key of the object or manifest.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Result of a verification.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    /// Objects checked (with a readable manifest).
    pub objects: u64,
    /// Records decoded in objects that passed.
    pub records: u64,
    /// Mismatches; the backup is not trustworthy if any.
    pub problems: Vec<Problem>,
    /// Notable facts that are not errors (offset gaps between objects,
    /// unknown keys).
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies `topic`'s objects (every topic if `None`), reading 8 objects at a time.
pub async fn run(store: &BackupStore, topic: Option<&str>) -> anyhow::Result<VerifyReport> {
    let cat = catalog::load(store, topic).await?;
    let mut report = VerifyReport::default();
    let data_keys: BTreeSet<&str> = cat.data.iter().map(|(k, _)| k.as_str()).collect();
    let manifest_keys: BTreeSet<&str> = cat.manifests.iter().map(|(k, _)| k.as_str()).collect();

    for (key, _) in &cat.data {
        match manifest_key_for(key) {
            Some(m) if manifest_keys.contains(m.as_str()) => {}
            _ => report.problems.push(Problem {
                key: key.clone(),
                message: "object has no manifest (a write interrupted by a crash; \
                          the backup consumer replaces it when it restarts)"
                    .into(),
            }),
        }
    }
    for key in &cat.other {
        report
            .warnings
            .push(format!("{key}: not a backup object, ignored"));
    }

    let mut good: Vec<(String, Manifest)> = Vec::new();
    for (key, parsed) in cat.manifests {
        match parsed {
            Err(e) => report.problems.push(Problem { key, message: e }),
            Ok(m) => {
                let expected = ObjectName::parse(&key).map(|n| n.data_key());
                if expected.as_deref() != Some(m.object.as_str()) {
                    report.problems.push(Problem {
                        key,
                        message: format!(
                            "manifest names object {:?}, expected {:?}",
                            m.object, expected
                        ),
                    });
                } else if !data_keys.contains(m.object.as_str()) {
                    report.problems.push(Problem {
                        key: m.object.clone(),
                        message: "object is missing (its manifest exists)".into(),
                    });
                } else {
                    good.push((key, m));
                }
            }
        }
    }

    let checked: Vec<(Manifest, Result<u64, Vec<String>>)> = futures::stream::iter(good)
        .map(|(_, m)| async move {
            let bytes = store.get(&m.object).await?;
            let result = m.check_object(&bytes).map(|r| r.len() as u64);
            anyhow::Ok((m, result))
        })
        .buffered(8)
        .try_collect()
        .await?;

    // (topic, partition) → (first offset, last offset, object) of every object that passed.
    type Ranges = BTreeMap<(String, i32), Vec<(i64, i64, String)>>;
    let mut ranges = Ranges::new();
    for (m, result) in checked {
        report.objects += 1;
        match result {
            Ok(n) => {
                report.records += n;
                ranges
                    .entry((m.topic.clone(), m.partition))
                    .or_default()
                    .push((m.first_offset, m.last_offset, m.object.clone()));
            }
            Err(problems) => {
                for message in problems {
                    report.problems.push(Problem {
                        key: m.object.clone(),
                        message,
                    });
                }
            }
        }
    }

    for ((topic, partition), mut list) in ranges {
        list.sort();
        for pair in list.windows(2) {
            let (a_first, a_last, a) = &pair[0];
            let (b_first, b_last, b) = &pair[1];
            if *b_first <= *a_last {
                report.problems.push(Problem {
                    key: b.clone(),
                    message: format!(
                        "offsets {}..={} of {topic}/{partition} are also in {a} \
                         ({a_first}..={a_last}): records stored twice",
                        b_first,
                        (*a_last).min(*b_last)
                    ),
                });
            } else if *b_first > a_last + 1 {
                report.warnings.push(format!(
                    "{topic}/{partition}: offsets {}..={} are in no object (between {a} and {b})",
                    a_last + 1,
                    b_first - 1
                ));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backup::object::seal;
    use crate::backup::store::StoreConfig;
    use crate::backup::test_support::record;
    use crate::backup::window::{WindowPolicy, Windows};

    async fn store_batch(store: &BackupStore, partition: i32, offsets: std::ops::Range<i64>) {
        let mut w = Windows::new(WindowPolicy {
            window_ms: 60_000,
            max_object_bytes: 1 << 20,
            grace_ms: 0,
        });
        for off in offsets {
            w.push(&record(partition, off, 1_795_378_503_123, "site-a"), 0)
                .unwrap();
        }
        let s = seal(&w.drain().pop().unwrap(), 0).unwrap();
        store.put(&s.name.data_key(), s.data).await.unwrap();
        store
            .put(&s.name.manifest_key(), s.manifest.to_json())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_clean_store_passes_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = BackupStore::open(&StoreConfig::Local {
            data_dir: dir.path().to_path_buf(),
        })
        .unwrap();
        store_batch(&store, 0, 0..10).await;
        store_batch(&store, 0, 10..15).await;
        store_batch(&store, 1, 0..3).await;
        let report = run(&store, Some("edge.events")).await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!((report.objects, report.records), (3, 18));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);

        // A gap between objects is a warning, an overlap a problem.
        store_batch(&store, 1, 5..8).await;
        store_batch(&store, 0, 12..20).await;
        let report = run(&store, None).await.unwrap();
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].message.contains("records stored twice"));
        assert_eq!(
            report.problems[0].key,
            "edge.events/2026-11-22/p00000-00000000000000000012.records.zst"
        );

        // One flipped byte in an object: a checksum mismatch naming it.
        let victim = "edge.events/2026-11-22/p00001-00000000000000000000.records.zst";
        let path = dir.path().join("backup").join(victim);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let report = run(&store, None).await.unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.key == victim && p.message.starts_with("checksum mismatch")),
            "{:?}",
            report.problems
        );

        // An object without its manifest.
        std::fs::remove_file(
            dir.path()
                .join("backup/edge.events/2026-11-22/p00001-00000000000000000005.manifest.json"),
        )
        .unwrap();
        let report = run(&store, None).await.unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.message.starts_with("object has no manifest")),
            "{:?}",
            report.problems
        );
    }
}
