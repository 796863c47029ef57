//! Answers a rollup query: one site, buckets whose start lies in `[from, to)`,
//! per-bucket counts, range totals (unique visitors merged from the buckets'
//! HyperLogLog sketches, exact for a single bucket) and the top values of
//! every dimension.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::rollup::{BucketSize, Dimension, SketchError, SketchMerger};
use super::store::{Store, StoreError};

/// A rollup query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// Site id.
    pub site: String,
    /// Range start (inclusive), ms since the epoch.
    pub from_ms: i64,
    /// Range end (exclusive), ms since the epoch.
    pub to_ms: i64,
    /// Bucket size to read.
    pub bucket: BucketSize,
    /// Most values per dimension.
    pub limit: usize,
}

/// The answer, as printed by `edge-backend stats` and served at `GET /stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsReport {
    /// Site id.
    pub site: String,
    /// Bucket size.
    pub bucket: BucketSize,
    /// Range start (inclusive), RFC 3339.
    pub from: String,
    /// Range end (exclusive), RFC 3339.
    pub to: String,
    /// Sums over the range.
    pub totals: Totals,
    /// Buckets with data, oldest first.
    pub buckets: Vec<BucketStats>,
    /// Page paths by page views.
    pub pages: Vec<Count>,
    /// Referrer hosts by page views.
    pub referrers: Vec<Count>,
    /// Device classes by page views.
    pub devices: Vec<Count>,
    /// Browser families by page views.
    pub browsers: Vec<Count>,
    /// Operating system families by page views.
    pub os: Vec<Count>,
    /// Custom event names by count.
    pub events: Vec<Count>,
}

/// Sums over the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Page views.
    pub pageviews: i64,
    /// Custom events.
    pub custom_events: i64,
    /// Distinct visitors over the range: exact for one bucket, a HyperLogLog
    /// estimate (about 1.6 % standard error, exact for small sets) for several.
    pub visitors: i64,
    /// Whether `visitors` is exact.
    pub visitors_exact: bool,
}

/// One bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketStats {
    /// Bucket start, RFC 3339.
    pub start: String,
    /// Bucket start, ms since the epoch.
    pub start_ms: i64,
    /// Page views.
    pub pageviews: i64,
    /// Custom events.
    pub custom_events: i64,
    /// Exact distinct visitors in this bucket.
    pub visitors: i64,
}

/// A dimension value and its count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The value (path, host, class, event name).
    pub value: String,
    /// How many.
    pub count: i64,
}

/// Why a stats query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The range is empty or reversed.
    #[error("from must be before to")]
    EmptyRange,
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored visitor sketch cannot be decoded.
    #[error("bucket {start_ms}: {error}")]
    Sketch {
        /// The bucket's start, ms since the epoch.
        start_ms: i64,
        /// Why it cannot be read.
        error: SketchError,
    },
}

/// Runs a query.
pub async fn query(store: &Store, q: &StatsQuery) -> Result<StatsReport, StatsError> {
    if q.from_ms >= q.to_ms {
        return Err(StatsError::EmptyRange);
    }
    let rows = store.buckets(&q.site, q.bucket, q.from_ms, q.to_ms).await?;
    let mut merger = SketchMerger::default();
    let mut totals = Totals {
        pageviews: 0,
        custom_events: 0,
        visitors: 0,
        visitors_exact: rows.len() <= 1,
    };
    let mut buckets = Vec::with_capacity(rows.len());
    for r in &rows {
        merger
            .add_encoded(&r.visitors_hll)
            .map_err(|error| StatsError::Sketch {
                start_ms: r.start_ms,
                error,
            })?;
        totals.pageviews += r.pageviews;
        totals.custom_events += r.custom_events;
        buckets.push(BucketStats {
            start: rfc3339(r.start_ms),
            start_ms: r.start_ms,
            pageviews: r.pageviews,
            custom_events: r.custom_events,
            visitors: r.visitors,
        });
    }
    totals.visitors = match rows.as_slice() {
        [one] => one.visitors,
        _ => i64::try_from(merger.estimate()).unwrap_or(i64::MAX),
    };
    let dims = store
        .dimensions(&q.site, q.bucket, q.from_ms, q.to_ms)
        .await?;
    let top = |d: Dimension| -> Vec<Count> {
        dims.iter()
            .filter(|(name, _, _)| name == d.as_str())
            .take(q.limit)
            .map(|(_, value, count)| Count {
                value: value.clone(),
                count: *count,
            })
            .collect()
    };
    Ok(StatsReport {
        site: q.site.clone(),
        bucket: q.bucket,
        from: rfc3339(q.from_ms),
        to: rfc3339(q.to_ms),
        totals,
        buckets,
        pages: top(Dimension::Page),
        referrers: top(Dimension::Referrer),
        devices: top(Dimension::Device),
        browsers: top(Dimension::Browser),
        os: top(Dimension::Os),
        events: top(Dimension::Event),
    })
}

/// RFC 3339 (UTC, seconds) of ms since the epoch.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Parses a time: RFC 3339 (`2026-01-31T12:00:00Z`), ms since the epoch,
/// `now`, or `now-N` with a unit (`now-90s`, `now-15m`, `now-24h`, `now-7d`).
pub fn parse_time(s: &str) -> Result<i64, String> {
    if s == "now" {
        return Ok(Utc::now().timestamp_millis());
    }
    if let Some(ago) = s.strip_prefix("now-") {
        let split = ago.len().saturating_sub(1);
        let (n, unit) = ago.split_at(split);
        let n: i64 = n
            .parse()
            .map_err(|_| format!("expected now-N with a unit s, m, h or d, got {s:?}"))?;
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("unknown unit in {s:?}; use s, m, h or d")),
        };
        return Ok(Utc::now().timestamp_millis() - n.saturating_mul(unit_ms));
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("expected RFC 3339, ms since the epoch or `now`, got {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::aggregate::store::tests::{event, refs};
    use crate::aggregate::store::{OffsetAdvance, sqlite_url_in};

    #[test]
    fn times() {
        assert_eq!(
            parse_time("2026-01-01T00:01:00Z").unwrap(),
            1_767_225_660_000
        );
        assert_eq!(parse_time("1767225660000").unwrap(), 1_767_225_660_000);
        assert!(parse_time("yesterday").is_err());
        let day_ago = parse_time("now-24h").unwrap();
        assert!((Utc::now().timestamp_millis() - day_ago - 86_400_000).abs() < 5_000);
        assert!(parse_time("now-5x").is_err());
        assert!(parse_time("now-h").is_err());
        assert_eq!(rfc3339(1_767_225_660_000), "2026-01-01T00:01:00Z");
    }

    #[tokio::test]
    async fn report_sums_buckets_merges_visitors_and_ranks_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&sqlite_url_in(dir.path())).await.unwrap();
        let r = vec![
            event("s", 1_000, "pageview", "/a", 1),
            event("s", 2_000, "pageview", "/b", 2),
            event("s", 61_000, "pageview", "/b", 2),
            event("s", 62_000, "signup", "/b", 3),
            event("s", 121_000, "pageview", "/b", 4), // outside the range below
        ];
        let adv = OffsetAdvance {
            topic: "t".into(),
            partition: 0,
            expected: None,
            next: 5,
        };
        store.apply("g", &[adv], &refs(&r), &[]).await.unwrap();
        let q = StatsQuery {
            site: "s".into(),
            from_ms: 0,
            to_ms: 120_000,
            bucket: BucketSize::Minute,
            limit: 10,
        };
        let rep = query(&store, &q).await.unwrap();
        assert_eq!(rep.buckets.len(), 2);
        assert_eq!(
            rep.totals,
            Totals {
                pageviews: 3,
                custom_events: 1,
                visitors: 3,
                visitors_exact: false
            }
        );
        assert_eq!(rep.buckets[1].visitors, 2);
        assert_eq!(
            rep.pages,
            vec![
                Count {
                    value: "/b".into(),
                    count: 2
                },
                Count {
                    value: "/a".into(),
                    count: 1
                }
            ]
        );
        assert_eq!(rep.events[0].value, "signup");
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["bucket"], "minute");
        assert_eq!(json["from"], "1970-01-01T00:00:00Z");
        // One hour bucket: exact visitors.
        let rep = query(
            &store,
            &StatsQuery {
                bucket: BucketSize::Hour,
                to_ms: 3_600_000,
                limit: 1,
                ..q.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!((rep.totals.visitors, rep.totals.visitors_exact), (4, true));
        assert_eq!(rep.pages.len(), 1);
        assert!(query(&store, &StatsQuery { to_ms: 0, ..q }).await.is_err());
    }
}
