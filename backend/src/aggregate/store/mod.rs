//! The SQL store of rollups and consumer offsets: one schema and one set of
//! migrations for SQLite and PostgreSQL, through `sqlx::Any` with portable
//! SQL only (`$N` parameters, `INSERT … ON CONFLICT`, TEXT/BIGINT columns).
//!
//! [`Store::apply`] writes a batch's rollups and the partitions' next offsets
//! in one transaction, and only if the stored offsets are still the ones the
//! consumer started the batch from (fencing against a second consumer that
//! took over a partition during a rebalance).

mod apply;
mod audit;
pub mod classify;
mod error;

pub use apply::{DeadLetterRow, NO_EVENT_ID};
pub use audit::AggregatorCounts;
pub use classify::ErrorClass;
pub(crate) use error::SqlContext;
pub use error::StoreError;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};

use super::rollup::BucketSize;

/// The migrations, embedded in the binary (same files for both databases).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "rollups", include_str!("../migrations/0001_rollups.sql")),
    (2, "seen", include_str!("../migrations/0002_seen.sql")),
];

/// Rows per multi-row INSERT (keeps under SQLite's and PostgreSQL's parameter limits).
pub(crate) const CHUNK: usize = 200;

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` URL.
    Sqlite,
    /// `postgres:` / `postgresql:` URL.
    Postgres,
}

impl Backend {
    /// Detects the backend from a database URL.
    pub fn of_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }
}

/// The default SQLite URL under a data directory (`DIR/aggregates.db`, created if missing).
pub fn sqlite_url_in(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("aggregates.db").display()
    )
}

/// One partition's offset move in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAdvance {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The stored next offset the batch started from (`None`: no row yet).
    pub expected: Option<i64>,
    /// The next offset to store (last record's offset + 1).
    pub next: i64,
}

/// What a committed batch added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Events added to the rollups.
    pub events: u64,
    /// Events dropped because their id had already been counted.
    pub duplicates: u64,
}

/// Result of [`Store::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Rollups and offsets are committed.
    Committed(Committed),
    /// Some partitions' stored offsets were not the expected ones (another
    /// consumer advanced them): nothing was written.
    Conflict(Vec<(String, i32)>),
}

/// One stored bucket row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRow {
    /// Bucket start, ms since the epoch.
    pub start_ms: i64,
    /// Page views.
    pub pageviews: i64,
    /// Custom events.
    pub custom_events: i64,
    /// Exact distinct visitors in this bucket.
    pub visitors: i64,
    /// Visitor sketch (base64).
    pub visitors_hll: String,
}

/// A handle on the aggregation database (a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects (creating a SQLite file and its directory if needed) and runs the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let backend = Backend::of_url(url)?;
        sqlx::any::install_default_drivers();
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(url)
            && let Some(dir) = Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|error| StoreError::CreateDir {
                dir: dir.to_path_buf(),
                error,
            })?;
        }
        // A short acquire timeout: a database that is away shows up as an
        // error within seconds (retried with backoff by the consumer)
        // instead of a silent 30 s wait per batch.
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to {}", redact_url(url)))?;
        if backend == Backend::Sqlite {
            // WAL lets readers (stats, HTTP) run beside the writer; persistent in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .context("cannot switch SQLite to WAL")?;
        }
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations: Vec<Migration> = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        // PostgreSQL serialises concurrent migrators with an advisory lock;
        // SQLite has no such lock, so a second process (another aggregator,
        // `stats`) starting at the same moment can fail on the already
        // created tables. The next attempt then finds the migration applied.
        let mut attempt = 1;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 => {
                    tracing::debug!(error = %e, attempt, "migration failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(StoreError::Migrate(e)),
            }
        }
    }

    /// Stored next offsets of a group's partitions of `topic`.
    pub async fn load_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<HashMap<i32, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT partition_id, next_offset FROM agg_offsets WHERE group_id = $1 AND topic = $2",
        )
        .bind(group)
        .bind(topic)
        .fetch_all(&self.pool)
        .await
        .context("cannot read stored offsets")?;
        rows.iter()
            .map(|r| {
                let p: i64 = r.try_get(0)?;
                let o: i64 = r.try_get(1)?;
                let p = i32::try_from(p).map_err(|_| StoreError::OutOfRange("partition"))?;
                Ok((p, o))
            })
            .collect()
    }

    /// Bucket rows of a site with `from <= start < to`, oldest first.
    pub async fn buckets(
        &self,
        site: &str,
        size: BucketSize,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<BucketRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT bucket_start, pageviews, custom_events, visitors, visitors_hll FROM agg_buckets \
             WHERE site_id = $1 AND bucket = $2 AND bucket_start >= $3 AND bucket_start < $4 ORDER BY bucket_start",
        )
        .bind(site)
        .bind(size.as_str())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await
        .context("cannot read buckets")?;
        rows.iter().map(bucket_row).collect()
    }

    /// Dimension counts of a site summed over buckets with `from <= start < to`:
    /// (dimension, value, count), largest count first.
    pub async fn dimensions(
        &self,
        site: &str,
        size: BucketSize,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT dimension, value, CAST(SUM(count) AS BIGINT) AS total FROM agg_dimensions \
             WHERE site_id = $1 AND bucket = $2 AND bucket_start >= $3 AND bucket_start < $4 \
             GROUP BY dimension, value ORDER BY dimension, total DESC, value",
        )
        .bind(site)
        .bind(size.as_str())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await
        .context("cannot read dimension counts")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()
            .context("cannot decode dimension counts")
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn bucket_row(r: &AnyRow) -> Result<BucketRow, StoreError> {
    Ok(BucketRow {
        start_ms: r.try_get(0)?,
        pageviews: r.try_get(1)?,
        custom_events: r.try_get(2)?,
        visitors: r.try_get(3)?,
        visitors_hll: r.try_get(4)?,
    })
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// The URL without a password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::aggregate::rollup::SketchMerger;
    use edge_envelope::{BrowserFamily, DeviceClass, EventRecord, OsFamily, Utm};
    use sqlx::AssertSqlSafe;

    pub(crate) fn event(site: &str, ms: i64, name: &str, path: &str, visitor: u8) -> EventRecord {
        EventRecord {
            site_id: site.into(),
            received_at_ms: ms,
            name: name.into(),
            url: format!("https://{site}.test{path}"),
            referrer: None,
            utm: Utm::default(),
            props: vec![],
            visitor_id: [visitor; 16],
            device: DeviceClass::Desktop,
            browser: BrowserFamily::Firefox,
            os: OsFamily::Linux,
            event_id: NO_EVENT_ID,
        }
    }

    /// The same event with an id.
    pub(crate) fn with_id(mut e: EventRecord, id: u8) -> EventRecord {
        e.event_id = [id; 16];
        e
    }

    pub(crate) fn refs(v: &[EventRecord]) -> Vec<&EventRecord> {
        v.iter().collect()
    }

    fn adv(partition: i32, expected: Option<i64>, next: i64) -> OffsetAdvance {
        OffsetAdvance {
            topic: "t".into(),
            partition,
            expected,
            next,
        }
    }

    /// A PostgreSQL database of its own, dropped by [`PgTestDb::drop_db`].
    pub(crate) struct PgTestDb {
        pub(crate) url: String,
        name: String,
    }

    pub(crate) const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    impl PgTestDb {
        pub(crate) async fn create() -> PgTestDb {
            sqlx::any::install_default_drivers();
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let name = format!("edge_agg_unit_{}_{nanos}", std::process::id());
            let admin = AnyPool::connect(PG_ADMIN_URL).await.unwrap();
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            PgTestDb {
                url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                name,
            }
        }

        pub(crate) async fn drop_db(self) {
            let admin = AnyPool::connect(PG_ADMIN_URL).await.unwrap();
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&admin)
            .await
            .unwrap();
            admin.close().await;
        }
    }

    async fn exactly_once_and_rollups(store: &Store) {
        // Batch 1: partition 0 from nothing to 3.
        let r = vec![
            event("s", 1_000, "pageview", "/", 1),
            event("s", 2_000, "pageview", "/a", 2),
            event("s", 3_000, "signup", "/a", 1),
        ];
        assert_eq!(
            store
                .apply("g", &[adv(0, None, 3)], &refs(&r), &[])
                .await
                .unwrap(),
            ApplyOutcome::Committed(Committed {
                events: 3,
                duplicates: 0
            })
        );
        // A replay of the same batch (a restarted consumer that believes
        // nothing is stored) is refused and changes nothing.
        assert_eq!(
            store
                .apply("g", &[adv(0, None, 3)], &refs(&r), &[])
                .await
                .unwrap(),
            ApplyOutcome::Conflict(vec![("t".into(), 0)])
        );
        // Batch 2: partition 0 from 3 to 5, visitor 1 again + visitor 3 in the same minute,
        // plus partition 1 (new) with a conflicting stale partition 0 start → all refused.
        let r2 = vec![
            event("s", 4_000, "pageview", "/", 1),
            event("s", 61_000, "pageview", "/", 3),
        ];
        assert_eq!(
            store
                .apply("g", &[adv(1, None, 1), adv(0, Some(2), 5)], &refs(&r2), &[])
                .await
                .unwrap(),
            ApplyOutcome::Conflict(vec![("t".into(), 0)])
        );
        assert_eq!(
            store.load_offsets("g", "t").await.unwrap(),
            HashMap::from([(0, 3)])
        );
        assert_eq!(
            store
                .apply("g", &[adv(0, Some(3), 5)], &refs(&r2), &[])
                .await
                .unwrap(),
            ApplyOutcome::Committed(Committed {
                events: 2,
                duplicates: 0
            })
        );
        assert_eq!(
            store.load_offsets("g", "t").await.unwrap(),
            HashMap::from([(0, 5)])
        );
        assert!(store.load_offsets("other", "t").await.unwrap().is_empty());

        let minutes = store
            .buckets("s", BucketSize::Minute, 0, 120_000)
            .await
            .unwrap();
        assert_eq!(minutes.len(), 2);
        assert_eq!(
            (
                minutes[0].start_ms,
                minutes[0].pageviews,
                minutes[0].custom_events,
                minutes[0].visitors
            ),
            (0, 3, 1, 2)
        );
        assert_eq!(
            (
                minutes[1].start_ms,
                minutes[1].pageviews,
                minutes[1].visitors
            ),
            (60_000, 1, 1)
        );
        let hours = store
            .buckets("s", BucketSize::Hour, 0, 3_600_000)
            .await
            .unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!(
            (
                hours[0].pageviews,
                hours[0].custom_events,
                hours[0].visitors
            ),
            (4, 1, 3)
        );
        let mut m = SketchMerger::default();
        for b in &minutes {
            m.add_encoded(&b.visitors_hll).unwrap();
        }
        assert_eq!(m.estimate(), 3);
        // Range bounds: [from, to).
        assert_eq!(
            store
                .buckets("s", BucketSize::Minute, 0, 60_000)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            store
                .buckets("x", BucketSize::Minute, 0, 120_000)
                .await
                .unwrap()
                .is_empty()
        );

        let dims = store
            .dimensions("s", BucketSize::Hour, 0, 3_600_000)
            .await
            .unwrap();
        let get = |d: &str, v: &str| {
            dims.iter()
                .find(|(dd, vv, _)| dd == d && vv == v)
                .map(|x| x.2)
        };
        assert_eq!(get("pages", "/"), Some(3));
        assert_eq!(get("pages", "/a"), Some(1));
        assert_eq!(get("events", "signup"), Some(1));
        assert_eq!(get("devices", "desktop"), Some(4));
        assert_eq!(get("browsers", "firefox"), Some(4));
        assert_eq!(get("os", "linux"), Some(4));
        assert_eq!(get("referrers", "x"), None);
    }

    /// A record delivered twice (the edge's at-least-once shipping, a
    /// replayed window) is counted once: within a batch, across batches and
    /// across offsets; an event without an id is never deduplicated; ids
    /// older than the window are pruned.
    async fn duplicates_are_counted_once(store: &Store) {
        let a = with_id(event("s", 1_000, "pageview", "/", 1), 1);
        let b = with_id(event("s", 2_000, "signup", "/", 2), 2);
        let no_id = event("s", 3_000, "pageview", "/", 3);
        let batch = vec![a.clone(), a.clone(), b.clone(), no_id.clone()];
        assert_eq!(
            store
                .apply("g", &[adv(0, None, 4)], &refs(&batch), &[])
                .await
                .unwrap(),
            ApplyOutcome::Committed(Committed {
                events: 3,
                duplicates: 1
            })
        );
        // The same records again at later offsets (a replay).
        let again = vec![
            b.clone(),
            a.clone(),
            no_id.clone(),
            with_id(event("s", 4_000, "pageview", "/", 4), 4),
        ];
        assert_eq!(
            store
                .apply("g", &[adv(0, Some(4), 8)], &refs(&again), &[])
                .await
                .unwrap(),
            ApplyOutcome::Committed(Committed {
                events: 2,
                duplicates: 2
            })
        );
        let h = store
            .buckets("s", BucketSize::Hour, 0, 3_600_000)
            .await
            .unwrap();
        assert_eq!((h[0].pageviews, h[0].custom_events), (4, 1));
        let counts = store.audit_counts("s", 0, 3_600_000).await.unwrap();
        assert_eq!((counts.distinct_event_ids, counts.duplicates), (3, 3));
        // Pruning by receive time forgets a and b (ms 1000, 2000), not the one at 4000.
        assert_eq!(store.prune_seen(3_000).await.unwrap(), 2);
        let late = vec![a, with_id(event("s", 4_000, "pageview", "/", 4), 4)];
        assert_eq!(
            store
                .apply("g", &[adv(0, Some(8), 10)], &refs(&late), &[])
                .await
                .unwrap(),
            ApplyOutcome::Committed(Committed {
                events: 1,
                duplicates: 1
            })
        );
    }

    #[tokio::test]
    async fn sqlite_store_counts_duplicates_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&sqlite_url_in(dir.path())).await.unwrap();
        duplicates_are_counted_once(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn postgres_store_counts_duplicates_once() {
        let db = PgTestDb::create().await;
        let store = Store::open(&db.url).await.unwrap();
        duplicates_are_counted_once(&store).await;
        store.close().await;
        db.drop_db().await;
    }

    #[tokio::test]
    async fn sqlite_store_is_exactly_once_and_sums_rollups() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url_in(&dir.path().join("sub"));
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        exactly_once_and_rollups(&store).await;
        store.close().await;
        // Reopening runs the migrations again (a no-op) and keeps the data.
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.load_offsets("g", "t").await.unwrap()[&0], 5);
        store.close().await;
    }

    #[tokio::test]
    async fn postgres_store_is_exactly_once_and_sums_rollups() {
        let db = PgTestDb::create().await;
        let store = Store::open(&db.url).await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        exactly_once_and_rollups(&store).await;
        store.close().await;
        db.drop_db().await;
    }

    #[tokio::test]
    async fn many_visitors_and_dimensions_span_several_insert_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&sqlite_url_in(dir.path())).await.unwrap();
        let mut r: Vec<EventRecord> = Vec::new();
        for i in 0..250u8 {
            r.push(event("s", 1_000, "pageview", &format!("/p{i}"), i));
        }
        store
            .apply("g", &[adv(0, None, 250)], &refs(&r), &[])
            .await
            .unwrap();
        let mut r: Vec<EventRecord> = Vec::new();
        for i in 200..=255u8 {
            r.push(event("s", 2_000, "pageview", &format!("/p{i}"), i));
        }
        store
            .apply("g", &[adv(0, Some(250), 306)], &refs(&r), &[])
            .await
            .unwrap();
        let b = store
            .buckets("s", BucketSize::Minute, 0, 60_000)
            .await
            .unwrap();
        assert_eq!((b[0].pageviews, b[0].visitors), (306, 256));
        let dims = store
            .dimensions("s", BucketSize::Minute, 0, 60_000)
            .await
            .unwrap();
        assert_eq!(dims.iter().filter(|d| d.0 == "pages").count(), 256);
        assert_eq!(dims.iter().find(|d| d.1 == "/p200").map(|d| d.2), Some(2));
    }

    #[test]
    fn urls() {
        assert_eq!(Backend::of_url("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgresql://x/y").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::of_url("mysql://x").is_err());
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db?mode=rwc"),
            Some("/tmp/a.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
    }
}
