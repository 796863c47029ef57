//! A storage-key rotation across the fleet: re-sealing the shared rows.
//!
//! When a reload changes an edge's storage key, that edge briefly holds the
//! old and the new key. Besides re-keying its disk store (`manager/setup.rs`)
//! it then re-seals the shared rows sealed under the old key: certificate
//! keys in batches of [`BATCH`], then the account, each with a
//! compare-and-set (`edge_fleetstore::rekey`), so a row written meanwhile is
//! never overwritten. Rows it cannot open with the old key are left alone
//! (sealed under yet another key). A rolling reload of the fleet thus
//! converts everything: the last edge to switch re-seals what the edges
//! still on the old key wrote meanwhile.

use std::sync::Arc;

use edge_fleetstore::FleetStore;

use super::store_error;
use crate::metrics::METRICS;
use crate::storage_key::StorageKey;

/// Certificates read and re-sealed per round trip.
pub(crate) const BATCH: i64 = 200;

/// What a re-seal pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resealed {
    /// Rows re-sealed under the new key.
    pub resealed: usize,
    /// Rows changed by someone else between read and write (left as they are).
    pub raced: usize,
    /// Rows the old key cannot open (another key sealed them).
    pub unreadable: usize,
}

/// Re-seals every shared row sealed under `old` with `new`; stops at the
/// first store failure (counted as `operation="reseal"`; the rows left are
/// re-sealed by the next edge that re-keys, and stay readable by edges
/// still holding the old key).
pub(crate) async fn reseal(store: &FleetStore, old: &StorageKey, new: &StorageKey) -> Resealed {
    let (old_check, new_check) = (old.check_hex(), new.check_hex());
    let mut done = Resealed::default();
    let mut after = String::new();
    loop {
        let batch = match store.certs_sealed_with(&old_check, &after, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                store_error("reseal", &e);
                return count(done);
            }
        };
        let Some(last) = batch.last() else { break };
        after = last.name.clone();
        for row in batch {
            let context = format!("cert-key:{}", row.name);
            let Some(sealed) = convert(old, new, &context, &row.key_sealed) else {
                done.unreadable += 1;
                continue;
            };
            match store.reseal_cert(&row, &sealed, &new_check).await {
                Ok(true) => done.resealed += 1,
                Ok(false) => done.raced += 1,
                Err(e) => {
                    store_error("reseal", &e);
                    return count(done);
                }
            }
        }
    }
    let accounts = match store.accounts_sealed_with(&old_check).await {
        Ok(rows) => rows,
        Err(e) => {
            store_error("reseal", &e);
            return count(done);
        }
    };
    for row in accounts {
        let context = format!("acme-account:{}", row.slot);
        let Some(sealed) = convert(old, new, &context, &row.sealed) else {
            done.unreadable += 1;
            continue;
        };
        match store.reseal_account(&row, &sealed, &new_check).await {
            Ok(true) => done.resealed += 1,
            Ok(false) => done.raced += 1,
            Err(e) => {
                store_error("reseal", &e);
                break;
            }
        }
    }
    count(done)
}

/// Runs [`reseal`] in the background and logs what it did.
pub(crate) fn spawn(store: Arc<FleetStore>, old: Arc<StorageKey>, new: Arc<StorageKey>) {
    tokio::spawn(async move {
        let done = reseal(&store, &old, &new).await;
        tracing::info!(
            resealed = done.resealed,
            raced = done.raced,
            unreadable = done.unreadable,
            "acme: storage key changed; shared rows re-sealed"
        );
    });
}

fn convert(old: &StorageKey, new: &StorageKey, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    let plain = old.open(context, sealed).ok()?;
    new.seal(context, &plain).ok()
}

fn count(done: Resealed) -> Resealed {
    for (outcome, n) in [
        ("resealed", done.resealed),
        ("raced", done.raced),
        ("unreadable", done.unreadable),
    ] {
        METRICS
            .acme_shared
            .resealed
            .with_label_values(&[outcome])
            .inc_by(n as u64);
    }
    done
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use edge_fleetstore::StoreOptions;
    use edge_fleetstore::certs::NewCert;

    use super::*;

    /// A throw-away schema in the local PostgreSQL (dropped at the end).
    async fn store() -> FleetStore {
        FleetStore::connect(StoreOptions {
            url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            schema: format!("acme_rekey_test_{:x}", rand::random::<u64>()),
            timeout: Duration::from_secs(10),
        })
        .await
        .unwrap()
    }

    async fn put(store: &FleetStore, name: &str, key: &StorageKey, key_check: &str) {
        let lease = store
            .acquire(name, "t", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let sealed = key
            .seal(&format!("cert-key:{name}"), name.as_bytes())
            .unwrap();
        let cert = NewCert {
            name,
            key_type: "ecdsa-p256",
            chain_pem: "pem",
            key_sealed: &sealed,
            not_after: 1,
            key_check,
        };
        store.put_cert(&lease, cert).await.unwrap();
        store.release(&lease).await.unwrap();
    }

    #[tokio::test]
    async fn old_key_rows_are_resealed_in_batches_others_left_alone() {
        let store = store().await;
        let old = StorageKey::from_bytes(&[1; 32]).unwrap();
        let new = StorageKey::from_bytes(&[2; 32]).unwrap();
        let third = StorageKey::from_bytes(&[3; 32]).unwrap();
        // More than one batch under the old key, one row of unknown key
        // sealed by the old key (written before key checks existed), one
        // of unknown key sealed by a third key, one already on the new key.
        let n = BATCH as usize + 3;
        for i in 0..n {
            put(&store, &format!("c{i:04}.example"), &old, &old.check_hex()).await;
        }
        put(&store, "legacy.example", &old, "").await;
        put(&store, "third.example", &third, "").await;
        put(&store, "new.example", &new, &new.check_hex()).await;
        let slot = "0123456789abcdef";
        let account = old.seal(&format!("acme-account:{slot}"), b"creds").unwrap();
        store
            .put_account_if_absent(slot, &account, &old.check_hex())
            .await
            .unwrap();

        let done = reseal(&store, &old, &new).await;
        assert_eq!(
            done,
            Resealed {
                resealed: n + 2,
                raced: 0,
                unreadable: 1
            }
        );
        for name in [
            "c0000.example",
            "c0202.example",
            "legacy.example",
            "new.example",
        ] {
            let row = store.get_cert(name).await.unwrap().unwrap();
            assert_eq!(row.key_check, new.check_hex(), "{name}");
            let plain = new
                .open(&format!("cert-key:{name}"), &row.key_sealed)
                .unwrap();
            assert_eq!(plain, name.as_bytes());
        }
        let third_row = store.get_cert("third.example").await.unwrap().unwrap();
        assert_eq!(third_row.key_check, "", "left as it was");
        let creds = store.account(slot).await.unwrap().unwrap();
        assert_eq!(
            new.open(&format!("acme-account:{slot}"), &creds).unwrap(),
            b"creds"
        );
        // A second edge re-keying later finds nothing left to do.
        let again = reseal(&store, &old, &new).await;
        assert_eq!((again.resealed, again.raced), (0, 0));
        store.drop_schema().await.unwrap();
    }
}
