//! The fleet's one ACME account: its credentials sealed in the store exactly
//! as on disk (same slot, same sealing context), the first edge to store
//! them wins, and every other edge adopts them.

use sha2::{Digest, Sha256};

use super::{Shared, store_error};
use crate::storage_key::StorageKey;

impl Shared {
    /// The fleet's credentials for `directory_url`, unsealed; `Err` when the
    /// store failed (counted), so the caller retries instead of registering.
    pub(crate) async fn account(
        &self,
        key: &StorageKey,
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, ()> {
        let slot = slot(directory_url);
        match self.store.account(&slot).await {
            Ok(Some(sealed)) => open(key, &slot, &sealed).map(Some),
            Ok(None) => Ok(None),
            Err(e) => {
                store_error("account", &e);
                Err(())
            }
        }
    }

    /// Offers this edge's credentials to the fleet. Returns the fleet's
    /// credentials when another edge stored different ones first (this edge
    /// then adopts them), `None` when this edge's are the fleet's (or the
    /// store failed: it keeps its own and tries again at the next start).
    pub(crate) async fn adopt_account(
        &self,
        key: &StorageKey,
        directory_url: &str,
        credentials: &[u8],
    ) -> Option<Vec<u8>> {
        let slot = slot(directory_url);
        let sealed = key.seal(&context(&slot), credentials).ok()?;
        let fleet = match self
            .store
            .put_account_if_absent(&slot, &sealed, &key.check_hex())
            .await
        {
            Ok(fleet) => fleet,
            Err(e) => {
                store_error("account", &e);
                return None;
            }
        };
        let fleet = open(key, &slot, &fleet).ok()?;
        (fleet != credentials).then_some(fleet)
    }
}

/// The disk store's slot: the first 8 bytes of SHA-256 of the directory URL.
fn slot(directory_url: &str) -> String {
    hex::encode(&Sha256::digest(directory_url.as_bytes())[..8])
}

/// The disk store's sealing context for that slot.
fn context(slot: &str) -> String {
    format!("acme-account:{slot}")
}

fn open(key: &StorageKey, slot: &str, sealed: &[u8]) -> Result<Vec<u8>, ()> {
    key.open(&context(slot), sealed).map_err(|e| {
        tracing::error!(error = %e, "acme: the fleet's account cannot be unsealed (another storage key?)");
    })
}
