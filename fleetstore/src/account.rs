//! The fleet's one ACME account and its on-demand approvals.

use crate::{FleetStore, Result};

impl FleetStore {
    /// The sealed credentials stored in `slot` (one slot per directory URL).
    pub async fn account(&self, slot: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row = self
            .timed(client.query_opt(
                "SELECT credentials_sealed FROM accounts WHERE slot = $1",
                &[&slot],
            ))
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Stores credentials sealed under the key whose check id is
    /// `key_check` unless another edge stored some first; returns the
    /// credentials the fleet uses (the first stored), so every edge ends up
    /// on the same account.
    pub async fn put_account_if_absent(
        &self,
        slot: &str,
        sealed: &[u8],
        key_check: &str,
    ) -> Result<Vec<u8>> {
        let client = self.client().await?;
        self.timed(client.execute(
            "INSERT INTO accounts (slot, credentials_sealed, key_check) VALUES ($1, $2, $3) \
             ON CONFLICT (slot) DO NOTHING",
            &[&slot, &sealed, &key_check],
        ))
        .await?;
        Ok(self.account(slot).await?.unwrap_or_else(|| sealed.to_vec()))
    }

    /// Records that the `ask` endpoint approved `name` at `approved_at` (Unix)
    /// and tells the other edges (`approval:{name}`); an older approval never
    /// replaces a newer one.
    pub async fn put_approval(&self, name: &str, approved_at: i64) -> Result<()> {
        let client = self.client().await?;
        let channel = self.channel();
        self.timed(client.execute(
            "WITH up AS (INSERT INTO approvals (name, approved_at) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET approved_at = GREATEST(approvals.approved_at, EXCLUDED.approved_at), \
             wanted_at = now() \
             RETURNING name) SELECT pg_notify($3, 'approval:' || name) FROM up",
            &[&name, &approved_at, &channel],
        ))
        .await?;
        Ok(())
    }

    /// Forgets an approval (the `ask` endpoint refused the name) and tells
    /// the other edges (`unapproved:{name}`).
    pub async fn remove_approval(&self, name: &str) -> Result<()> {
        let client = self.client().await?;
        let channel = self.channel();
        self.timed(client.execute(
            "WITH gone AS (DELETE FROM approvals WHERE name = $1 RETURNING name) \
             SELECT pg_notify($2, 'unapproved:' || name) FROM gone",
            &[&name, &channel],
        ))
        .await?;
        Ok(())
    }

    /// The Unix time of the latest approval of `name`, if any.
    pub async fn approval(&self, name: &str) -> Result<Option<i64>> {
        let client = self.client().await?;
        let row = self
            .timed(client.query_opt(
                "SELECT approved_at FROM approvals WHERE name = $1",
                &[&name],
            ))
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Every approval: (name, Unix time of the latest approval).
    pub async fn approvals(&self) -> Result<Vec<(String, i64)>> {
        let client = self.client().await?;
        let rows = self
            .timed(client.query("SELECT name, approved_at FROM approvals", &[]))
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::testdb::TestDb;

    #[tokio::test]
    async fn first_account_wins_and_approvals_round_trip() {
        let db = TestDb::new().await;
        let a = db.store().await;
        let b = db.store().await;
        assert_eq!(a.account("slot").await.unwrap(), None);
        assert_eq!(
            a.put_account_if_absent("slot", b"first", "k")
                .await
                .unwrap(),
            b"first"
        );
        assert_eq!(
            b.put_account_if_absent("slot", b"second", "k")
                .await
                .unwrap(),
            b"first"
        );
        a.put_approval("x.example", 10).await.unwrap();
        b.put_approval("x.example", 5).await.unwrap();
        assert_eq!(b.approvals().await.unwrap(), vec![("x.example".into(), 10)]);
        assert_eq!(b.approval("x.example").await.unwrap(), Some(10));
        assert_eq!(b.approval("y.example").await.unwrap(), None);
        a.remove_approval("x.example").await.unwrap();
        assert!(a.approvals().await.unwrap().is_empty());
        assert_eq!(b.approval("x.example").await.unwrap(), None);
        db.drop().await;
    }
}
