//! Fenced per-name leases: exactly one holder per name fleet-wide at a time.
//!
//! [`FleetStore::acquire`] is one statement: insert the lease, or take over
//! an expired one, returning a fencing token from a sequence (so tokens only
//! grow, across names and takeovers). The holder renews while it works and
//! releases at the end. Writes of the result ([`FleetStore::put_cert`]) lock
//! the lease row and check its token, so a holder whose lease expired (and
//! was perhaps taken over) cannot overwrite anything.

use std::time::Duration;

use crate::{FleetStore, Result};

/// A lease held on one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The name leased.
    pub name: String,
    /// Who holds it (an edge's holder id).
    pub holder: String,
    /// The fencing token: greater than every token issued before it.
    pub fence: i64,
}

const ACQUIRE: &str = "\
INSERT INTO leases (name, holder, fence, expires_at)
VALUES ($1, $2, nextval('lease_fences'), now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE
    SET holder = EXCLUDED.holder, fence = EXCLUDED.fence, expires_at = EXCLUDED.expires_at
    WHERE leases.expires_at <= now()
RETURNING fence";

impl FleetStore {
    /// Takes the lease on `name` for `ttl` when nobody holds it (or the last
    /// holder's lease expired); `None` when someone else holds it.
    pub async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
        let client = self.client().await?;
        let row = self
            .timed(client.query_opt(ACQUIRE, &[&name, &holder, &ttl.as_secs_f64()]))
            .await?;
        Ok(row.map(|r| Lease {
            name: name.to_string(),
            holder: holder.to_string(),
            fence: r.get(0),
        }))
    }

    /// Extends a lease still held by `lease` to `ttl` from now; false when it
    /// expired or was taken over (the holder must stop writing).
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        let client = self.client().await?;
        let n = self
            .timed(client.execute(
                "UPDATE leases SET expires_at = now() + make_interval(secs => $3) \
                 WHERE name = $1 AND fence = $2 AND expires_at > now()",
                &[&lease.name, &lease.fence, &ttl.as_secs_f64()],
            ))
            .await?;
        Ok(n == 1)
    }

    /// Ends a lease (a no-op when it was already taken over).
    pub async fn release(&self, lease: &Lease) -> Result<()> {
        let client = self.client().await?;
        self.timed(client.execute(
            "UPDATE leases SET expires_at = '-infinity' WHERE name = $1 AND fence = $2",
            &[&lease.name, &lease.fence],
        ))
        .await?;
        Ok(())
    }

    /// The current unexpired holder of `name` and its token, if any.
    pub async fn holder(&self, name: &str) -> Result<Option<(String, i64)>> {
        let client = self.client().await?;
        let row = self
            .timed(client.query_opt(
                "SELECT holder, fence FROM leases WHERE name = $1 AND expires_at > now()",
                &[&name],
            ))
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use crate::testdb::TestDb;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_winner_per_name_under_concurrency() {
        let db = TestDb::new().await;
        let names: Vec<String> = (0..20).map(|i| format!("n{i}.example.com")).collect();
        // 24 contenders, each with its own connection, race for every name.
        let mut stores = Vec::new();
        for _ in 0..24 {
            stores.push(Arc::new(db.store().await));
        }
        let names = Arc::new(names);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, store) in stores.iter().enumerate() {
            let (store, names) = (store.clone(), names.clone());
            tasks.spawn(async move {
                let mut won = Vec::new();
                for name in names.iter() {
                    let holder = format!("edge-{i}");
                    if let Some(l) = store
                        .acquire(name, &holder, Duration::from_secs(60))
                        .await
                        .unwrap()
                    {
                        won.push(l);
                    }
                }
                won
            });
        }
        let mut winners: HashMap<String, Vec<Lease>> = HashMap::new();
        while let Some(won) = tasks.join_next().await {
            for l in won.unwrap() {
                winners.entry(l.name.clone()).or_default().push(l);
            }
        }
        assert_eq!(winners.len(), 20, "every name has a holder");
        for (name, ls) in &winners {
            assert_eq!(ls.len(), 1, "{name}: {ls:?}");
            let (holder, fence) = stores[0].holder(name).await.unwrap().unwrap();
            assert_eq!((holder, fence), (ls[0].holder.clone(), ls[0].fence));
        }
        db.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn expiry_lets_another_take_over_with_a_greater_fence() {
        let db = TestDb::new().await;
        let store = db.store().await;
        let short = Duration::from_millis(300);
        let a = store
            .acquire("x.example", "a", short)
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .acquire("x.example", "b", short)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store.renew(&a, short).await.unwrap(),
            "the holder may renew"
        );
        // Wait for the condition (the lease's expiry), not a fixed time.
        let b = loop {
            if let Some(b) = store.acquire("x.example", "b", short).await.unwrap() {
                break b;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(b.fence > a.fence, "{} > {}", b.fence, a.fence);
        assert!(!store.renew(&a, short).await.unwrap(), "a lost its lease");
        store.release(&a).await.unwrap();
        assert_eq!(
            store.holder("x.example").await.unwrap().map(|h| h.0),
            Some("b".into()),
            "a stale release does not end the new holder's lease"
        );
        store.release(&b).await.unwrap();
        let c = store
            .acquire("x.example", "c", short)
            .await
            .unwrap()
            .unwrap();
        assert!(c.fence > b.fence, "released: taken at once, fence grows");
        db.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_takeovers_of_an_expired_lease_have_one_winner() {
        let db = TestDb::new().await;
        let mut stores = Vec::new();
        for _ in 0..16 {
            stores.push(Arc::new(db.store().await));
        }
        for round in 0..5 {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, s) in stores.iter().enumerate() {
                let s = s.clone();
                tasks.spawn(async move {
                    s.acquire("race.example", &format!("e{i}"), Duration::from_millis(150))
                        .await
                        .unwrap()
                });
            }
            let mut won = Vec::new();
            while let Some(r) = tasks.join_next().await {
                won.extend(r.unwrap());
            }
            assert_eq!(won.len(), 1, "round {round}: {won:?}");
            // Let the lease expire before the next round.
            while stores[0].holder("race.example").await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        db.drop().await;
    }
}
