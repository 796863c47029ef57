//! Certificates: the public chain and the private key sealed by the caller.
//!
//! Every write bumps the row's `version` (from a sequence) and NOTIFYs the
//! schema's channel with `cert:{name}`, so the other edges fetch it at once
//! ([`crate::events`]) or at their next poll ([`FleetStore::certs_since`]).

use crate::lease::Lease;
use crate::{FleetStore, FleetStoreError, Result};

/// A stored certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// The DNS name it was ordered for.
    pub name: String,
    /// Key algorithm, as the edge's configuration spells it.
    pub key_type: String,
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// The PKCS#8 private key sealed with the storage key (never clear).
    pub key_sealed: Vec<u8>,
    /// Leaf `notAfter`, Unix seconds.
    pub not_after: i64,
    /// Fencing token of the lease it was written under.
    pub fence: i64,
    /// Store-wide write counter (greater = written later).
    pub version: i64,
    /// Check id of the storage key that sealed `key_sealed` ('' = unknown:
    /// written before the column existed).
    pub key_check: String,
}

/// What the caller writes; the store adds fence and version.
#[derive(Debug, Clone, Copy)]
pub struct NewCert<'a> {
    /// The DNS name.
    pub name: &'a str,
    /// Key algorithm.
    pub key_type: &'a str,
    /// PEM chain, leaf first.
    pub chain_pem: &'a str,
    /// The sealed PKCS#8 private key.
    pub key_sealed: &'a [u8],
    /// Leaf `notAfter`, Unix seconds.
    pub not_after: i64,
    /// Check id of the storage key that sealed `key_sealed`.
    pub key_check: &'a str,
}

const COLUMNS: &str = "name, key_type, chain_pem, key_sealed, not_after, fence, version, key_check";

/// One statement, so one transaction: the lease row is locked (FOR SHARE)
/// until the write commits, so a takeover cannot slip between check and
/// write; a newer fence already stored is never overwritten.
const FENCED_UPSERT: &str = "\
WITH held AS (
    SELECT fence FROM leases
    WHERE name = $1 AND fence = $6 AND expires_at > now()
    FOR SHARE
), up AS (
    INSERT INTO certificates (name, key_type, chain_pem, key_sealed, not_after, fence, version, key_check)
    SELECT $1, $2, $3, $4, $5, fence, nextval('certificate_versions'), $8 FROM held
    ON CONFLICT (name) DO UPDATE
        SET key_type = EXCLUDED.key_type, chain_pem = EXCLUDED.chain_pem,
            key_sealed = EXCLUDED.key_sealed, not_after = EXCLUDED.not_after,
            fence = EXCLUDED.fence, version = EXCLUDED.version,
            key_check = EXCLUDED.key_check, wanted_at = now()
        WHERE certificates.fence <= EXCLUDED.fence
    RETURNING name
)
SELECT pg_notify($7, 'cert:' || name) FROM up";

fn row(r: &tokio_postgres::Row) -> CertRow {
    CertRow {
        name: r.get(0),
        key_type: r.get(1),
        chain_pem: r.get(2),
        key_sealed: r.get(3),
        not_after: r.get(4),
        fence: r.get(5),
        version: r.get(6),
        key_check: r.get(7),
    }
}

impl FleetStore {
    /// Stores a certificate under `lease`: refused with
    /// [`FleetStoreError::StaleLease`] unless the lease is still held (its
    /// row is locked until the write commits, so no takeover slips between
    /// the check and the write) and no newer lease already wrote the name.
    pub async fn put_cert(&self, lease: &Lease, cert: NewCert<'_>) -> Result<()> {
        if lease.name != cert.name {
            return Err(FleetStoreError::Settings(format!(
                "a lease on {} cannot write {}",
                lease.name, cert.name
            )));
        }
        let client = self.client().await?;
        let channel = self.channel();
        let written = self
            .timed(client.query(
                FENCED_UPSERT,
                &[
                    &cert.name,
                    &cert.key_type,
                    &cert.chain_pem,
                    &cert.key_sealed,
                    &cert.not_after,
                    &lease.fence,
                    &channel,
                    &cert.key_check,
                ],
            ))
            .await?;
        if written.len() == 1 {
            Ok(())
        } else {
            Err(FleetStoreError::StaleLease {
                name: lease.name.clone(),
                fence: lease.fence,
            })
        }
    }

    /// The stored certificate of `name`.
    pub async fn get_cert(&self, name: &str) -> Result<Option<CertRow>> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM certificates WHERE name = $1");
        let r = self.timed(client.query_opt(&sql, &[&name])).await?;
        Ok(r.as_ref().map(row))
    }

    /// Every certificate written after `version` (0 = all), oldest first.
    pub async fn certs_since(&self, version: i64) -> Result<Vec<CertRow>> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM certificates WHERE version > $1 ORDER BY version");
        let rows = self.timed(client.query(&sql, &[&version])).await?;
        Ok(rows.iter().map(row).collect())
    }

    /// Deletes the certificate of `name` (a name no longer served by the
    /// fleet) and tells the other edges.
    pub async fn remove_cert(&self, name: &str) -> Result<()> {
        let client = self.client().await?;
        let channel = self.channel();
        self.timed(client.execute(
            "WITH gone AS (DELETE FROM certificates WHERE name = $1 RETURNING name) \
             SELECT pg_notify($2, 'gone:' || name) FROM gone",
            &[&name, &channel],
        ))
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::testdb::TestDb;

    use super::*;

    fn cert<'a>(name: &'a str, pem: &'a str) -> NewCert<'a> {
        NewCert {
            name,
            key_type: "ecdsa-p256",
            chain_pem: pem,
            key_sealed: b"EDGESK1-sealed",
            not_after: 1_900_000_000,
            key_check: "k1",
        }
    }

    #[tokio::test]
    async fn a_stale_holder_cannot_overwrite() {
        let db = TestDb::new().await;
        let store = db.store().await;
        let short = Duration::from_millis(200);
        let a = store
            .acquire("s.example", "a", short)
            .await
            .unwrap()
            .unwrap();
        store.put_cert(&a, cert("s.example", "A1")).await.unwrap();
        let b = loop {
            if let Some(b) = store.acquire("s.example", "b", short).await.unwrap() {
                break b;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        store.put_cert(&b, cert("s.example", "B")).await.unwrap();
        let err = store
            .put_cert(&a, cert("s.example", "A2"))
            .await
            .unwrap_err();
        assert!(matches!(err, FleetStoreError::StaleLease { .. }), "{err}");
        let stored = store.get_cert("s.example").await.unwrap().unwrap();
        assert_eq!((stored.chain_pem.as_str(), stored.fence), ("B", b.fence));

        // An expired (not taken over) lease is refused too.
        while store.holder("s.example").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(store.put_cert(&b, cert("s.example", "B2")).await.is_err());
        // The connection is still usable after a refused write.
        assert_eq!(store.certs_since(0).await.unwrap().len(), 1);
        db.drop().await;
    }

    #[tokio::test]
    async fn versions_grow_and_removal_deletes() {
        let db = TestDb::new().await;
        let store = db.store().await;
        let ttl = Duration::from_secs(30);
        let l1 = store.acquire("a.example", "e", ttl).await.unwrap().unwrap();
        store.put_cert(&l1, cert("a.example", "1")).await.unwrap();
        let l2 = store.acquire("b.example", "e", ttl).await.unwrap().unwrap();
        store.put_cert(&l2, cert("b.example", "2")).await.unwrap();
        let all = store.certs_since(0).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[1].version > all[0].version);
        let later = store.certs_since(all[0].version).await.unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].name, "b.example");
        assert_eq!(later[0].key_sealed, b"EDGESK1-sealed");
        store.remove_cert("a.example").await.unwrap();
        assert!(store.get_cert("a.example").await.unwrap().is_none());
        db.drop().await;
    }
}
