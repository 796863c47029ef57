//! A closed batch becomes an object: framed records compressed with zstd,
//! plus its manifest. Also the way back (bounded decompression).

use std::io::Read;

use sha2::{Digest, Sha256};

use super::manifest::Manifest;
use super::naming::ObjectName;
use super::window::Batch;

/// zstd level used for objects (ciphertext barely compresses; the repeated
/// envelope headers and keys do).
pub const ZSTD_LEVEL: i32 = 3;

/// An object ready to be stored.
#[derive(Debug)]
pub struct SealedObject {
    /// Where it goes.
    pub name: ObjectName,
    /// The compressed object.
    pub data: Vec<u8>,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Compresses a batch and describes it.
pub fn seal(batch: &Batch, created_at_ms: i64) -> std::io::Result<SealedObject> {
    let name = ObjectName::new(
        &batch.topic,
        batch.partition,
        batch.stats.first_offset,
        batch.stats.first_timestamp_ms,
    );
    let data = zstd::bulk::compress(&batch.framed, ZSTD_LEVEL)?;
    let manifest = Manifest::describe(batch, &name, &data, created_at_ms);
    Ok(SealedObject {
        name,
        data,
        manifest,
    })
}

/// Decompresses an object, refusing to produce more than `limit` bytes.
pub fn decompress(data: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(data)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "decompresses to more than {limit} bytes"
        )));
    }
    Ok(out)
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backup::window::{WindowPolicy, Windows};

    #[test]
    fn compression_round_trips_and_is_bounded() {
        let mut w = Windows::new(WindowPolicy {
            window_ms: 1000,
            max_object_bytes: 1 << 20,
            grace_ms: 0,
        });
        for off in 0..50 {
            w.push(&crate::backup::test_support::record(1, off, 10, "a"), 0)
                .unwrap();
        }
        let batch = w.drain().pop().unwrap();
        let sealed = seal(&batch, 0).unwrap();
        assert!(sealed.data.len() < batch.framed.len());
        assert_eq!(
            decompress(&sealed.data, batch.framed.len() as u64).unwrap(),
            batch.framed
        );
        assert!(decompress(&sealed.data, batch.framed.len() as u64 - 1).is_err());
        assert_eq!(sealed.manifest.object_sha256, sha256_hex(&sealed.data));
        assert_eq!(sealed.manifest.object, sealed.name.data_key());
    }
}
