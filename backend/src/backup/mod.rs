//! Ciphertext backup of the events topic, replay and verification.
//!
//! `backup` consumes the topic in its own group and writes the records,
//! still encrypted and byte for byte as Kafka delivered them, into one
//! compressed object per partition and time window (also cut by size), each
//! with a JSON manifest; offsets are committed only after both are stored.
//! `replay` publishes backed-up records back to Kafka; `verify` checks the
//! objects against their manifests. Format and procedures: docs/backup.md.
//!
//! Modules, one job each: [`frame`] (record framing inside an object),
//! [`window`] (cutting batches), [`naming`] (deterministic object names),
//! [`object`] (compression), [`manifest`] (manifest and object check),
//! [`store`] (local directory or S3), [`catalog`] (listing a store),
//! [`consumer`] (the backup loop), `group` (consumer-group membership),
//! `writer` (storing objects and committing offsets), [`metrics`] and
//! [`http`] (`--http`: `/metrics`, `/healthz`), [`replay`], [`verify`],
//! [`cli`].

pub mod catalog;
pub mod cli;
pub mod consumer;
pub mod frame;
mod group;
pub mod http;
pub mod manifest;
pub mod metrics;
pub mod naming;
pub mod object;
pub mod replay;
pub mod resume;
pub mod store;
pub mod verify;
pub mod window;
mod writer;

pub use consumer::{BackupOptions, BackupSummary, run, run_observed};
pub use metrics::BackupMetrics;
pub use store::{BackupStore, S3Config, StoreConfig};

#[cfg(test)]
pub(crate) mod test_support {
    use super::frame::{BackupRecord, Timestamp};

    /// An edge-like record: key = site, 300-byte value.
    pub(crate) fn record(partition: i32, offset: i64, ts: i64, site: &str) -> BackupRecord {
        BackupRecord {
            topic: "edge.events".into(),
            partition,
            offset,
            timestamp: Timestamp::CreateTime(ts),
            key: Some(site.as_bytes().to_vec()),
            value: Some(vec![0xAB; 300]),
            headers: vec![],
        }
    }
}
