//! A throw-away schema in the local PostgreSQL (127.0.0.1:5432, user
//! postgres, trust auth) for one test; dropped at the end.

use std::time::Duration;

use rand::Rng;

use crate::certs::NewCert;
use crate::{FleetStore, StoreOptions};

/// The PostgreSQL the tests use.
pub const URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDb {
    pub options: StoreOptions,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let suffix: u64 = rand::rng().random();
        TestDb {
            options: StoreOptions {
                url: URL.to_string(),
                schema: format!("fleetstore_test_{suffix:x}"),
                timeout: Duration::from_secs(10),
            },
        }
    }

    pub async fn store(&self) -> FleetStore {
        FleetStore::connect(self.options.clone()).await.unwrap()
    }

    pub async fn drop(self) {
        let store = self.store().await;
        let client = store.client().await.unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.options.schema))
            .await
            .unwrap();
    }
}

/// Writes a test certificate row for `name` (sealed bytes `sealed`, sealed
/// under the key with check id `key_check`) the way an edge does: under the
/// name's lease, released afterwards.
pub async fn put_test_cert(store: &FleetStore, name: &str, sealed: &[u8], key_check: &str) {
    let lease = store
        .acquire(name, "test", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let cert = NewCert {
        name,
        key_type: "ecdsa-p256",
        chain_pem: "pem",
        key_sealed: sealed,
        not_after: 1,
        key_check,
    };
    store.put_cert(&lease, cert).await.unwrap();
    store.release(&lease).await.unwrap();
}
