//! Retention: certificates and on-demand approvals of names nobody covers
//! any more are deleted, never those of a name some edge still covers.
//!
//! Each edge marks every name it covers ([`FleetStore::mark_wanted`], one
//! statement for all of them) every few minutes; a row whose name no edge
//! marked for the retention time is deleted by whichever edge sweeps first
//! ([`FleetStore::sweep`], which NOTIFYs `gone:` for each certificate). So
//! a name removed from one edge's configuration stays shared while another
//! edge, not yet reloaded, still covers it.

use std::time::Duration;

use crate::{FleetStore, Result};

/// What a sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Certificates deleted.
    pub certificates: u64,
    /// Approvals deleted.
    pub approvals: u64,
}

impl FleetStore {
    /// Marks `names` (every name this edge covers) as wanted now, skipping
    /// rows marked within `fresh` (another edge did it: fewer row versions).
    /// Returns the rows marked.
    pub async fn mark_wanted(&self, names: &[String], fresh: Duration) -> Result<u64> {
        let client = self.client().await?;
        let row = self
            .timed(client.query_one(
                "WITH c AS (UPDATE certificates SET wanted_at = now() \
                   WHERE name = ANY($1) AND wanted_at < now() - make_interval(secs => $2) \
                   RETURNING 1), \
                 a AS (UPDATE approvals SET wanted_at = now() \
                   WHERE name = ANY($1) AND wanted_at < now() - make_interval(secs => $2) \
                   RETURNING 1) \
                 SELECT (SELECT count(*) FROM c) + (SELECT count(*) FROM a)",
                &[&names, &fresh.as_secs_f64()],
            ))
            .await?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Deletes the certificates and approvals nobody marked for
    /// `unwanted_for`, and tells the edges (`gone:{name}`).
    pub async fn sweep(&self, unwanted_for: Duration) -> Result<Swept> {
        let client = self.client().await?;
        let channel = self.channel();
        let row = self
            .timed(client.query_one(
                "WITH gone AS (DELETE FROM certificates \
                   WHERE wanted_at < now() - make_interval(secs => $1) RETURNING name), \
                 told AS (SELECT pg_notify($2, 'gone:' || name) FROM gone), \
                 ap AS (DELETE FROM approvals \
                   WHERE wanted_at < now() - make_interval(secs => $1) RETURNING name) \
                 SELECT (SELECT count(*) FROM told), (SELECT count(*) FROM ap)",
                &[&unwanted_for.as_secs_f64(), &channel],
            ))
            .await?;
        Ok(Swept {
            certificates: row.get::<_, i64>(0).max(0) as u64,
            approvals: row.get::<_, i64>(1).max(0) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::events::{FleetEvent, listen};
    use crate::testdb::{TestDb, put_test_cert};

    use super::*;

    /// Two edges: A covers `a` and `both`, B (not reloaded yet) still
    /// covers `both` and `b`. `gone` is covered by nobody. After the
    /// retention time only `gone` (and its approval) is deleted.
    #[tokio::test]
    async fn only_names_nobody_marks_are_swept() {
        let db = TestDb::new().await;
        let store = db.store().await;
        let mut events = listen(db.options.clone()).unwrap();
        for name in ["a.example", "both.example", "b.example", "gone.example"] {
            put_test_cert(&store, name, b"sealed", "k").await;
        }
        store.put_approval("gone.example", 1).await.unwrap();
        store.put_approval("b.example", 1).await.unwrap();
        let edge_a = vec!["a.example".to_string(), "both.example".to_string()];
        let edge_b = vec!["both.example".to_string(), "b.example".to_string()];
        let retain = Duration::from_secs(2 * 3600);

        // Nothing is old enough yet.
        assert_eq!(store.sweep(retain).await.unwrap(), Swept::default());
        // Three hours pass without any mark.
        let client = store.client().await.unwrap();
        client
            .batch_execute(
                "UPDATE certificates SET wanted_at = now() - interval '3 hours'; \
                 UPDATE approvals SET wanted_at = now() - interval '3 hours'",
            )
            .await
            .unwrap();
        // Each edge marks what it covers; B skips `both`, which A marked
        // moments ago, and marks its certificate and approval of `b`.
        let fresh = Duration::from_secs(3600);
        assert_eq!(store.mark_wanted(&edge_a, fresh).await.unwrap(), 2);
        assert_eq!(store.mark_wanted(&edge_b, fresh).await.unwrap(), 2);
        let swept = store.sweep(retain).await.unwrap();
        assert_eq!(
            swept,
            Swept {
                certificates: 1,
                approvals: 1
            }
        );
        let left: Vec<String> = store
            .certs_since(0)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(left, ["a.example", "both.example", "b.example"]);
        assert_eq!(
            store.approvals().await.unwrap(),
            vec![("b.example".to_string(), 1)]
        );
        // The edges hear of the deletion.
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("no gone: event")
                .unwrap();
            if event == FleetEvent::Gone("gone.example".into()) {
                break;
            }
        }
        db.drop().await;
    }
}
