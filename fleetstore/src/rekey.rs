//! Re-sealing rows after a storage-key rotation.
//!
//! Every sealed row records the check id of the key that sealed it
//! (`key_check`). An edge that holds the old and the new key at once (the
//! moment a reload changes its key) reads the rows sealed under the old one
//! (or under an unknown key, `''`) in batches ([`FleetStore::certs_sealed_with`],
//! [`FleetStore::accounts_sealed_with`]) and replaces each one's sealed bytes
//! with a compare-and-set ([`FleetStore::reseal_cert`],
//! [`FleetStore::reseal_account`]): the row is only changed when it is still
//! exactly as read, so a certificate written meanwhile (a renewal, another
//! edge's re-seal) is never overwritten.

use crate::{FleetStore, Result};

/// A certificate row as the re-sealing edge reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCert {
    /// The name.
    pub name: String,
    /// The row's version when read.
    pub version: i64,
    /// The sealed private key when read.
    pub key_sealed: Vec<u8>,
    /// Who sealed it (`''` = unknown).
    pub key_check: String,
}

/// An account row as the re-sealing edge reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedAccount {
    /// The slot (one per directory URL).
    pub slot: String,
    /// The sealed credentials when read.
    pub sealed: Vec<u8>,
}

impl FleetStore {
    /// Up to `limit` certificates sealed under `key_check` or under an
    /// unknown key, whose names sort after `after` (`""` = from the start),
    /// by name: one batch of a re-seal pass.
    pub async fn certs_sealed_with(
        &self,
        key_check: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<SealedCert>> {
        let client = self.client().await?;
        let rows = self
            .timed(client.query(
                "SELECT name, version, key_sealed, key_check FROM certificates \
                 WHERE key_check IN ($1, '') AND name > $2 ORDER BY name LIMIT $3",
                &[&key_check, &after, &limit],
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| SealedCert {
                name: r.get(0),
                version: r.get(1),
                key_sealed: r.get(2),
                key_check: r.get(3),
            })
            .collect())
    }

    /// Replaces `row`'s sealed key with `sealed` (sealed under the key whose
    /// check id is `key_check`) if the row is still exactly as read (same
    /// version, same sealed bytes); bumps its version and NOTIFYs like a
    /// write, so edges holding only the new key pick it up. Returns whether
    /// the row was replaced (false: it changed meanwhile, or is gone).
    pub async fn reseal_cert(
        &self,
        row: &SealedCert,
        sealed: &[u8],
        key_check: &str,
    ) -> Result<bool> {
        let client = self.client().await?;
        let channel = self.channel();
        let done = self
            .timed(client.query(
                "WITH up AS (UPDATE certificates \
                   SET key_sealed = $4, key_check = $5, version = nextval('certificate_versions') \
                   WHERE name = $1 AND version = $2 AND key_sealed = $3 RETURNING name) \
                 SELECT pg_notify($6, 'cert:' || name) FROM up",
                &[
                    &row.name,
                    &row.version,
                    &row.key_sealed,
                    &sealed,
                    &key_check,
                    &channel,
                ],
            ))
            .await?;
        Ok(done.len() == 1)
    }

    /// Every account sealed under `key_check` or under an unknown key.
    pub async fn accounts_sealed_with(&self, key_check: &str) -> Result<Vec<SealedAccount>> {
        let client = self.client().await?;
        let rows = self
            .timed(client.query(
                "SELECT slot, credentials_sealed FROM accounts WHERE key_check IN ($1, '')",
                &[&key_check],
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| SealedAccount {
                slot: r.get(0),
                sealed: r.get(1),
            })
            .collect())
    }

    /// Replaces an account's sealed credentials if they are still exactly as
    /// read; returns whether they were replaced.
    pub async fn reseal_account(
        &self,
        row: &SealedAccount,
        sealed: &[u8],
        key_check: &str,
    ) -> Result<bool> {
        let client = self.client().await?;
        let n = self
            .timed(client.execute(
                "UPDATE accounts SET credentials_sealed = $3, key_check = $4 \
                 WHERE slot = $1 AND credentials_sealed = $2",
                &[&row.slot, &row.sealed, &sealed, &key_check],
            ))
            .await?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::testdb::{TestDb, put_test_cert};

    #[tokio::test]
    async fn batches_select_the_old_key_and_reseal_never_overwrites_a_newer_row() {
        let db = TestDb::new().await;
        let store = db.store().await;
        for i in 0..5 {
            put_test_cert(&store, &format!("n{i}.example"), b"old", "old").await;
        }
        put_test_cert(&store, "new.example", b"new", "new").await;

        // Batches of 2 in name order cover exactly the five old-key rows.
        let mut after = String::new();
        let mut seen = Vec::new();
        loop {
            let batch = store.certs_sealed_with("old", &after, 2).await.unwrap();
            let Some(last) = batch.last() else { break };
            assert!(batch.len() <= 2);
            after = last.name.clone();
            seen.extend(batch);
        }
        let names: Vec<&str> = seen.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "n0.example",
                "n1.example",
                "n2.example",
                "n3.example",
                "n4.example"
            ]
        );

        // n1 is renewed (under the new key) after it was read: the re-seal
        // of the stale read is refused and the renewal stays.
        put_test_cert(&store, "n1.example", b"renewed", "new").await;
        let mut resealed = 0;
        for row in &seen {
            if store.reseal_cert(row, b"resealed", "new").await.unwrap() {
                resealed += 1;
            }
        }
        assert_eq!(resealed, 4);
        let n1 = store.get_cert("n1.example").await.unwrap().unwrap();
        assert_eq!(
            (n1.key_sealed.as_slice(), n1.key_check.as_str()),
            (&b"renewed"[..], "new")
        );
        let n0 = store.get_cert("n0.example").await.unwrap().unwrap();
        assert_eq!(
            (n0.key_sealed.as_slice(), n0.key_check.as_str()),
            (&b"resealed"[..], "new")
        );
        assert!(n0.version > seen[0].version, "a re-seal is a new version");
        // A second pass (another edge re-keying too) finds nothing left,
        // and replaying a stale read changes nothing.
        assert!(
            store
                .certs_sealed_with("old", "", 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(!store.reseal_cert(&seen[0], b"again", "new").await.unwrap());

        // Accounts: compare-and-set on the sealed bytes.
        store
            .put_account_if_absent("slot", b"acct-old", "old")
            .await
            .unwrap();
        let accounts = store.accounts_sealed_with("old").await.unwrap();
        assert_eq!(accounts.len(), 1);
        assert!(
            store
                .reseal_account(&accounts[0], b"acct-new", "new")
                .await
                .unwrap()
        );
        assert!(
            !store
                .reseal_account(&accounts[0], b"acct-x", "new")
                .await
                .unwrap()
        );
        assert_eq!(store.account("slot").await.unwrap().unwrap(), b"acct-new");
        assert!(store.accounts_sealed_with("old").await.unwrap().is_empty());
        db.drop().await;
    }

    #[tokio::test]
    async fn the_migration_upgrades_a_schema_without_key_checks() {
        let db = TestDb::new().await;
        let store = db.store().await;
        let client = store.client().await.unwrap();
        // A schema as the first release created it, with one row.
        client
            .batch_execute(
                "ALTER TABLE certificates DROP COLUMN key_check; \
                 ALTER TABLE accounts DROP COLUMN key_check; \
                 INSERT INTO accounts (slot, credentials_sealed) VALUES ('s', 'x')",
            )
            .await
            .unwrap();
        // Connecting again migrates (twice: idempotent); the old row's key
        // is unknown, so a re-seal pass considers it.
        drop(db.store().await);
        let again = db.store().await;
        let rows = again.accounts_sealed_with("whatever").await.unwrap();
        assert_eq!(rows.len(), 1);
        db.drop().await;
    }
}
