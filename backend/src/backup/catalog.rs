//! What a store holds: every manifest (parsed) and data object under a topic.

use futures::{StreamExt as _, TryStreamExt as _};

use super::manifest::Manifest;
use super::naming::{DATA_SUFFIX, MANIFEST_SUFFIX};
use super::store::BackupStore;

/// Manifests and objects found in a store.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Every manifest key with its parsed manifest (or why it is unreadable).
    pub manifests: Vec<(String, Result<Manifest, String>)>,
    /// Every data object key with its size.
    pub data: Vec<(String, u64)>,
    /// Keys that are neither.
    pub other: Vec<String>,
}

/// Lists `topic`'s objects (every topic if `None`) and reads all manifests
/// (16 at a time).
pub async fn load(store: &BackupStore, topic: Option<&str>) -> anyhow::Result<Catalog> {
    let keys = store.list(topic.unwrap_or("")).await?;
    let mut catalog = Catalog::default();
    let mut manifest_keys = Vec::new();
    for (key, size) in keys {
        if key.ends_with(MANIFEST_SUFFIX) {
            manifest_keys.push(key);
        } else if key.ends_with(DATA_SUFFIX) {
            catalog.data.push((key, size));
        } else {
            catalog.other.push(key);
        }
    }
    catalog.manifests = futures::stream::iter(manifest_keys)
        .map(|key| async move {
            let bytes = store.get(&key).await?;
            let parsed = Manifest::from_json(&bytes);
            anyhow::Ok((key, parsed))
        })
        .buffered(16)
        .try_collect()
        .await?;
    Ok(catalog)
}
