//! Pending challenge responses, so any edge answers the CA's validation
//! whichever edge placed the order.
//!
//! HTTP-01 rows hold the token and key authorization (public values: the CA
//! fetches them over plain HTTP). TLS-ALPN-01 rows hold the SHA-256 digest of
//! the key authorization; each edge builds the validation certificate from
//! it. Rows expire on their own; each write NOTIFYs `http:{token}` or
//! `alpn:{name}` so the other edges can copy them before the CA asks.

use std::time::Duration;

use crate::{FleetStore, Result};

impl FleetStore {
    /// Publishes an HTTP-01 response valid for `ttl`.
    pub async fn put_http(
        &self,
        token: &str,
        name: &str,
        key_authorization: &str,
        ttl: Duration,
    ) -> Result<()> {
        let client = self.client().await?;
        let channel = self.channel();
        self.timed(client.execute(
            "WITH up AS (INSERT INTO http_challenges (token, name, key_authorization, expires_at) \
             VALUES ($1, $2, $3, now() + make_interval(secs => $4)) \
             ON CONFLICT (token) DO UPDATE SET name = EXCLUDED.name, \
             key_authorization = EXCLUDED.key_authorization, expires_at = EXCLUDED.expires_at \
             RETURNING token) SELECT pg_notify($5, 'http:' || token) FROM up",
            &[
                &token,
                &name,
                &key_authorization,
                &ttl.as_secs_f64(),
                &channel,
            ],
        ))
        .await?;
        Ok(())
    }

    /// The unexpired HTTP-01 response for `token`: (name, key authorization).
    pub async fn get_http(&self, token: &str) -> Result<Option<(String, String)>> {
        let client = self.client().await?;
        let row = self
            .timed(client.query_opt(
                "SELECT name, key_authorization FROM http_challenges \
                 WHERE token = $1 AND expires_at > now()",
                &[&token],
            ))
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Withdraws an HTTP-01 response.
    pub async fn remove_http(&self, token: &str) -> Result<()> {
        let client = self.client().await?;
        self.timed(client.execute("DELETE FROM http_challenges WHERE token = $1", &[&token]))
            .await?;
        Ok(())
    }

    /// Publishes the TLS-ALPN-01 key authorization digest of `name`.
    pub async fn put_alpn(&self, name: &str, digest: &[u8], ttl: Duration) -> Result<()> {
        let client = self.client().await?;
        let channel = self.channel();
        self.timed(client.execute(
            "WITH up AS (INSERT INTO alpn_challenges (name, digest, expires_at) \
             VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE SET digest = EXCLUDED.digest, \
             expires_at = EXCLUDED.expires_at RETURNING name) \
             SELECT pg_notify($4, 'alpn:' || name) FROM up",
            &[&name, &digest, &ttl.as_secs_f64(), &channel],
        ))
        .await?;
        Ok(())
    }

    /// The unexpired TLS-ALPN-01 digest of `name`.
    pub async fn get_alpn(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row = self
            .timed(client.query_opt(
                "SELECT digest FROM alpn_challenges WHERE name = $1 AND expires_at > now()",
                &[&name],
            ))
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Withdraws the TLS-ALPN-01 digest of `name`.
    pub async fn remove_alpn(&self, name: &str) -> Result<()> {
        let client = self.client().await?;
        self.timed(client.execute("DELETE FROM alpn_challenges WHERE name = $1", &[&name]))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testdb::TestDb;

    use super::*;

    #[tokio::test]
    async fn responses_round_trip_and_expire() {
        let db = TestDb::new().await;
        let store = db.store().await;
        let long = Duration::from_secs(60);
        store
            .put_http("tok", "a.example", "tok.thumb", long)
            .await
            .unwrap();
        assert_eq!(
            store.get_http("tok").await.unwrap(),
            Some(("a.example".into(), "tok.thumb".into()))
        );
        store.remove_http("tok").await.unwrap();
        assert_eq!(store.get_http("tok").await.unwrap(), None);

        store.put_alpn("a.example", &[7; 32], long).await.unwrap();
        assert_eq!(
            store.get_alpn("a.example").await.unwrap(),
            Some(vec![7; 32])
        );
        store.remove_alpn("a.example").await.unwrap();
        assert_eq!(store.get_alpn("a.example").await.unwrap(), None);

        store
            .put_http("old", "a.example", "x", Duration::from_millis(1))
            .await
            .unwrap();
        while store.get_http("old").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        db.drop().await;
    }
}
