//! Read-only counts for `edge-backend audit`: what the aggregator counted,
//! remembered, dropped as duplicate and dead-lettered for a site and range.

use sqlx::Row;

use super::{SqlContext as _, Store, StoreError};

/// The aggregator's side of an audit, for one site and `[from, to)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AggregatorCounts {
    /// Page views in minute buckets starting in the range.
    pub pageviews: i64,
    /// Custom events in minute buckets starting in the range.
    pub custom_events: i64,
    /// Distinct event ids remembered with a receive time in the range
    /// (only within the dedupe window; events without an id are not here).
    pub distinct_event_ids: i64,
    /// Events not counted as duplicates, in hour buckets starting in the range.
    pub duplicates: i64,
    /// Dead letters of the site with a Kafka timestamp in the range, by reason.
    pub dead_letters: Vec<(String, i64)>,
}

impl Store {
    /// Every aggregator count of `site` for `[from_ms, to_ms)`.
    pub async fn audit_counts(
        &self,
        site: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<AggregatorCounts, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(pageviews), 0) AS BIGINT), CAST(COALESCE(SUM(custom_events), 0) AS BIGINT) \
             FROM agg_buckets WHERE site_id = $1 AND bucket = 'minute' AND bucket_start >= $2 AND bucket_start < $3",
        )
        .bind(site)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(&self.pool)
        .await
        .context("cannot sum buckets")?;
        let distinct_event_ids: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM agg_seen WHERE site_id = $1 AND received_at >= $2 AND received_at < $3",
        )
        .bind(site)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(&self.pool)
        .await
        .context("cannot count seen event ids")?;
        let duplicates: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(duplicates), 0) AS BIGINT) FROM agg_audit WHERE site_id = $1 AND bucket_start >= $2 AND bucket_start < $3",
        )
        .bind(site)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(&self.pool)
        .await
        .context("cannot sum duplicates")?;
        Ok(AggregatorCounts {
            pageviews: row.try_get(0)?,
            custom_events: row.try_get(1)?,
            distinct_event_ids,
            duplicates,
            dead_letters: self.dead_letters_in(Some(site), from_ms, to_ms).await?,
        })
    }

    /// Dead letters with a Kafka timestamp in `[from_ms, to_ms)` (of `site`,
    /// or of any record when `None`), counted by reason.
    pub async fn dead_letters_in(
        &self,
        site: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT reason, CAST(COUNT(*) AS BIGINT) FROM agg_dead_letters \
             WHERE ($1 IS NULL OR site_id = $1) AND timestamp_ms >= $2 AND timestamp_ms < $3 \
             GROUP BY reason ORDER BY reason",
        )
        .bind(site)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await
        .context("cannot count dead letters")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .context("cannot decode dead-letter counts")
    }
}
