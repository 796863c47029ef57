//! Backoff and issuance limits shared by the fleet, so a restarted edge (or
//! another edge) does not start over: a failing name keeps its backoff and
//! the CA sees the fleet's orders against one budget.

use std::time::Duration;

use crate::{FleetStore, Result};

/// A name's stored backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive failed orders.
    pub failures: u32,
    /// No order before this Unix time.
    pub until_unix: i64,
}

/// Which limit refused an order start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// Orders per hour across the fleet.
    Global,
    /// Orders per name per day across the fleet.
    Name,
}

/// The answer of [`FleetStore::try_charge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Counted; the order may start.
    Charged,
    /// Refused by `scope` for `wait`.
    Refused {
        /// The limit that refused.
        scope: LimitScope,
        /// Until it allows another start.
        wait: Duration,
    },
}

impl FleetStore {
    /// The stored backoff of `name`.
    pub async fn backoff(&self, name: &str) -> Result<Option<Backoff>> {
        let client = self.client().await?;
        let row = self
            .timed(client.query_opt(
                "SELECT failures, until_unix FROM backoff WHERE name = $1",
                &[&name],
            ))
            .await?;
        Ok(row.map(|r| Backoff {
            failures: r.get::<_, i32>(0).max(0) as u32,
            until_unix: r.get(1),
        }))
    }

    /// Records a failure's backoff for `name`.
    pub async fn set_backoff(&self, name: &str, backoff: Backoff) -> Result<()> {
        let client = self.client().await?;
        let failures = i32::try_from(backoff.failures).unwrap_or(i32::MAX);
        self.timed(client.execute(
            "INSERT INTO backoff (name, failures, until_unix) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET failures = EXCLUDED.failures, \
             until_unix = EXCLUDED.until_unix",
            &[&name, &failures, &backoff.until_unix],
        ))
        .await?;
        Ok(())
    }

    /// Clears the backoff of `name` (it was issued).
    pub async fn clear_backoff(&self, name: &str) -> Result<()> {
        let client = self.client().await?;
        self.timed(client.execute("DELETE FROM backoff WHERE name = $1", &[&name]))
            .await?;
        Ok(())
    }

    /// Charges an order start of `name` at `now_unix` against the fleet's
    /// limits (`per_hour` overall, `per_name_per_day` per name), or says
    /// which one refuses and for how long.
    pub async fn try_charge(
        &self,
        name: &str,
        now_unix: i64,
        per_hour: u32,
        per_name_per_day: u32,
    ) -> Result<Charge> {
        let client = self.client().await?;
        let per_hour = i32::try_from(per_hour).unwrap_or(i32::MAX);
        let per_name = i32::try_from(per_name_per_day).unwrap_or(i32::MAX);
        let row = self
            .timed(client.query_one(
                "SELECT scope, wait_seconds FROM acme_try_charge($1, $2, $3, $4)",
                &[&name, &now_unix, &per_hour, &per_name],
            ))
            .await?;
        let scope: String = row.get(0);
        let wait = Duration::from_secs(row.get::<_, i64>(1).max(0) as u64);
        Ok(match scope.as_str() {
            "name" => Charge::Refused {
                scope: LimitScope::Name,
                wait,
            },
            "global" => Charge::Refused {
                scope: LimitScope::Global,
                wait,
            },
            _ => Charge::Charged,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::testdb::TestDb;

    use super::*;

    #[tokio::test]
    async fn backoff_survives_a_new_connection() {
        let db = TestDb::new().await;
        let store = db.store().await;
        let b = Backoff {
            failures: 3,
            until_unix: 2_000_000_000,
        };
        store.set_backoff("a.example", b).await.unwrap();
        drop(store);
        let other = db.store().await;
        assert_eq!(other.backoff("a.example").await.unwrap(), Some(b));
        other.clear_backoff("a.example").await.unwrap();
        assert_eq!(other.backoff("a.example").await.unwrap(), None);
        db.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn limits_hold_across_racing_edges() {
        let db = TestDb::new().await;
        let now = 1_800_000_000;
        let mut tasks = tokio::task::JoinSet::new();
        let stores: Vec<Arc<FleetStore>> = futures::future::join_all((0..8).map(|_| db.store()))
            .await
            .into_iter()
            .map(Arc::new)
            .collect();
        for (i, s) in stores.iter().enumerate() {
            let s = s.clone();
            tasks.spawn(async move {
                let mut charged = 0;
                for n in 0..10 {
                    let name = format!("n{}.example", (i * 10 + n) % 40);
                    if s.try_charge(&name, now, 25, 100).await.unwrap() == Charge::Charged {
                        charged += 1;
                    }
                }
                charged
            });
        }
        let mut total = 0;
        while let Some(c) = tasks.join_next().await {
            total += c.unwrap();
        }
        assert_eq!(total, 25, "80 racing starts, a budget of 25 per hour");
        match stores[0]
            .try_charge("new.example", now + 10, 25, 100)
            .await
            .unwrap()
        {
            Charge::Refused {
                scope: LimitScope::Global,
                wait,
            } => assert_eq!(wait, Duration::from_secs(3590)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            stores[0]
                .try_charge("new.example", now + 3600, 25, 100)
                .await
                .unwrap(),
            Charge::Charged,
            "the hour slides"
        );
        // Per name: two a day.
        for t in 0..2 {
            assert_eq!(
                stores[1]
                    .try_charge("d.example", now + 4000 + t, 1000, 2)
                    .await
                    .unwrap(),
                Charge::Charged
            );
        }
        assert!(matches!(
            stores[2]
                .try_charge("d.example", now + 4010, 1000, 2)
                .await
                .unwrap(),
            Charge::Refused {
                scope: LimitScope::Name,
                ..
            }
        ));
        db.drop().await;
    }
}
