//! A throw-away schema in the local PostgreSQL (127.0.0.1:5432, user
//! postgres, trust auth) for one test; dropped at the end.

use std::time::Duration;

use rand::Rng;

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
