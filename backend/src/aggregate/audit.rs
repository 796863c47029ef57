//! `edge-backend audit --site S --from T --to T`: a reconciliation of one
//! site and time range across the stores, for a person to run after an
//! incident.
//!
//! * Backup: records of the site whose Kafka timestamp is in the range,
//!   and how many distinct (partition, offset) they are. With `--keys`,
//!   the records are also opened and their distinct event ids counted.
//! * Aggregator: page views and custom events counted (minute buckets
//!   starting in the range), distinct event ids remembered, duplicates not
//!   counted, dead letters by reason.
//!
//! Every backed-up record is either counted, dropped as a duplicate, or
//! dead-lettered, so `unaccounted = distinct offsets − (counted +
//! duplicates + dead letters)` is 0 when nothing was lost or double
//! counted. The backup is stamped with Kafka time and the aggregator with
//! the edge's receive time: give a range whose ends lie outside the
//! incident (whole minutes, and whole hours for the duplicates).

use std::collections::HashSet;
use std::path::PathBuf;

use edge_envelope::open::Opener;
use serde::Serialize;

use super::cli::DbArgs;
use super::stats::{parse_time, rfc3339};
use super::store::{AggregatorCounts, NO_EVENT_ID, Store, StoreError};
use crate::backup::catalog;
use crate::backup::cli::StoreArgs;
use crate::backup::frame::BackupRecord;
use crate::backup::store::BackupStore;
use crate::tail::KeyLoadError;

/// An error of the backup module (which reports with `anyhow`), kept as
/// this module's source.
type BackupFailure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an audit could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Neither `--backup-dir` nor `--s3-bucket` was given.
    #[error("give the backup: --backup-dir DIR or --s3-bucket NAME")]
    NoBackupLocation,
    /// `--from` is not before `--to`.
    #[error("--from must be before --to")]
    EmptyRange,
    /// A `--keys` file or directory could not be read.
    #[error(transparent)]
    Keys(#[from] KeyLoadError),
    /// The backup store could not be opened.
    #[error("cannot open the backup")]
    OpenBackup(#[source] BackupFailure),
    /// The backup could not be read; `location` says where it is.
    #[error("reading the backup in {location}")]
    ReadBackup {
        /// The backup store's description.
        location: String,
        /// What failed.
        #[source]
        source: BackupReadError,
    },
    /// The aggregation database refused or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The report could not be serialised.
    #[error("cannot serialise the report: {0}")]
    Json(#[from] serde_json::Error),
    /// The report could not be written to stdout.
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

/// Why the backup's side of an audit could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum BackupReadError {
    /// The catalog (manifests and objects) could not be listed.
    #[error("cannot list the backup's catalog")]
    Catalog(#[source] BackupFailure),
    /// A manifest does not parse.
    #[error("{key}: {problem} (run `edge-backend verify`)")]
    Manifest {
        /// The manifest's key.
        key: String,
        /// Why it does not parse.
        problem: String,
    },
    /// A data object could not be read.
    #[error("cannot read {object}")]
    Get {
        /// The object's key.
        object: String,
        /// What failed.
        #[source]
        source: BackupFailure,
    },
    /// A data object does not match its manifest.
    #[error("{object}: {problems} (run `edge-backend verify`)")]
    Object {
        /// The object's key.
        object: String,
        /// What does not match, `; `-separated.
        problems: String,
    },
}

/// `edge-backend audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Site id.
    #[arg(long)]
    pub site: String,
    /// Range start (inclusive): RFC 3339, ms since the epoch, `now`, `now-N{s,m,h,d}`.
    #[arg(long, value_parser = parse_time)]
    pub from: i64,
    /// Range end (exclusive).
    #[arg(long, value_parser = parse_time, default_value = "now")]
    pub to: i64,
    /// Backed-up events topic.
    #[arg(long, default_value = "edge.events")]
    pub topic: String,
    /// Private keys: open the backed-up records to count their distinct event ids.
    #[arg(long = "keys")]
    pub keys: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The aggregation database.
    #[command(flatten)]
    pub db: DbArgs,
    /// Where the backup is (`--backup-dir` or the S3 flags).
    #[command(flatten)]
    pub store: AuditStoreArgs,
}

/// The backup location of `audit` (its own flag for the local directory,
/// since `--data-dir` names the aggregation database's directory).
#[derive(Debug, Clone, clap::Args)]
pub struct AuditStoreArgs {
    /// Local backup data directory (objects under DIR/backup/).
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// S3-compatible bucket of the backup.
    #[arg(long, env = "EDGE_BACKUP_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, default_value = "backup")]
    pub s3_prefix: String,
    /// Endpoint URL of an S3-compatible server.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
    /// Region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,
}

impl AuditStoreArgs {
    fn store_args(&self) -> Result<StoreArgs, AuditError> {
        if self.backup_dir.is_none() && self.s3_bucket.is_none() {
            return Err(AuditError::NoBackupLocation);
        }
        Ok(StoreArgs {
            data_dir: self.backup_dir.clone(),
            s3_bucket: self.s3_bucket.clone(),
            s3_prefix: self.s3_prefix.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            s3_access_key_id: std::env::var("AWS_ACCESS_KEY_ID").ok(),
            s3_secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
            s3_session_token: std::env::var("AWS_SESSION_TOKEN").ok(),
            s3_allow_http: false,
        })
    }
}

/// The backup's side of an audit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackupCounts {
    /// Records of the site with a Kafka timestamp in the range.
    pub records: u64,
    /// Distinct (partition, offset) among them.
    pub distinct_offsets: u64,
    /// Distinct event ids among them (only with `--keys`).
    pub distinct_event_ids: Option<u64>,
    /// Records without an event id (version 1; only with `--keys`).
    pub without_event_id: Option<u64>,
    /// Records that could not be opened (only with `--keys`).
    pub unopenable: Option<u64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Site id.
    pub site: String,
    /// Range start, RFC 3339.
    pub from: String,
    /// Range end, RFC 3339.
    pub to: String,
    /// Backup counts.
    pub backup: BackupCounts,
    /// Aggregator counts.
    pub aggregator: AggregatorCounts,
    /// distinct offsets − (counted + duplicates + dead letters).
    pub unaccounted: i64,
}

/// Counts the backed-up records of `site` in `[from_ms, to_ms)`.
///
/// # Errors
///
/// [`BackupReadError`] when the catalog, a manifest or an object cannot be
/// read or does not check.
pub async fn backup_counts(
    store: &BackupStore,
    topic: &str,
    site: &str,
    from_ms: i64,
    to_ms: i64,
    opener: Option<&Opener>,
) -> Result<BackupCounts, BackupReadError> {
    let cat = catalog::load(store, Some(topic))
        .await
        .map_err(|e| BackupReadError::Catalog(e.into()))?;
    let mut offsets = HashSet::new();
    let mut ids = HashSet::new();
    let (mut records, mut no_id, mut unopenable) = (0u64, 0u64, 0u64);
    for (key, parsed) in cat.manifests {
        let m = parsed.map_err(|problem| BackupReadError::Manifest {
            key: key.clone(),
            problem,
        })?;
        let overlaps = match (m.min_timestamp_ms, m.max_timestamp_ms) {
            (Some(lo), Some(hi)) => hi >= from_ms && lo < to_ms,
            _ => false,
        };
        if m.topic != topic || !m.sites.contains_key(site) || !overlaps {
            continue;
        }
        let object = store
            .get(&m.object)
            .await
            .map_err(|e| BackupReadError::Get {
                object: m.object.clone(),
                source: e.into(),
            })?;
        let all = m
            .check_object(&object)
            .map_err(|p| BackupReadError::Object {
                object: m.object.clone(),
                problems: p.join("; "),
            })?;
        for r in all.iter().filter(|r| in_range(r, site, from_ms, to_ms)) {
            records += 1;
            offsets.insert((r.partition, r.offset));
            if let Some(opener) = opener {
                match opener.open(site, r.value.as_deref().unwrap_or_default()) {
                    Ok(e) if e.event_id == NO_EVENT_ID => no_id += 1,
                    Ok(e) => {
                        ids.insert(e.event_id);
                    }
                    Err(_) => unopenable += 1,
                }
            }
        }
    }
    Ok(BackupCounts {
        records,
        distinct_offsets: offsets.len() as u64,
        distinct_event_ids: opener.map(|_| ids.len() as u64),
        without_event_id: opener.map(|_| no_id),
        unopenable: opener.map(|_| unopenable),
    })
}

fn in_range(r: &BackupRecord, site: &str, from_ms: i64, to_ms: i64) -> bool {
    r.key.as_deref() == Some(site.as_bytes())
        && r.timestamp
            .millis()
            .is_some_and(|t| t >= from_ms && t < to_ms)
}

/// Builds the report.
///
/// # Errors
///
/// [`AuditError`]: bad arguments, unreadable keys, backup or database.
pub async fn report(args: &AuditArgs) -> Result<AuditReport, AuditError> {
    if args.from >= args.to {
        return Err(AuditError::EmptyRange);
    }
    let opener = if args.keys.is_empty() {
        None
    } else {
        Some(Opener::new(crate::tail::load_keys(&args.keys)?))
    };
    let backup_store = BackupStore::open(&args.store.store_args()?.config())
        .map_err(|e| AuditError::OpenBackup(e.into()))?;
    let backup = backup_counts(
        &backup_store,
        &args.topic,
        &args.site,
        args.from,
        args.to,
        opener.as_ref(),
    )
    .await
    .map_err(|source| AuditError::ReadBackup {
        location: backup_store.describe().to_string(),
        source,
    })?;
    let store = Store::open(&args.db.url()).await?;
    let aggregator = store.audit_counts(&args.site, args.from, args.to).await;
    store.close().await;
    let aggregator = aggregator?;
    let letters: i64 = aggregator.dead_letters.iter().map(|(_, n)| n).sum();
    let unaccounted = backup.distinct_offsets as i64
        - (aggregator.pageviews + aggregator.custom_events + aggregator.duplicates + letters);
    Ok(AuditReport {
        site: args.site.clone(),
        from: rfc3339(args.from),
        to: rfc3339(args.to),
        backup,
        aggregator,
        unaccounted,
    })
}

/// The report as text lines.
pub fn render(r: &AuditReport) -> String {
    let opt = |v: Option<u64>| v.map_or("- (give --keys)".to_string(), |n| n.to_string());
    let a = &r.aggregator;
    let letters: Vec<String> = a
        .dead_letters
        .iter()
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect();
    format!(
        "audit of site {} from {} to {}\n\
         backup:     records {}, distinct offsets {}, distinct event ids {}, without id {}, unopenable {}\n\
         aggregator: counted {} (pageviews {}, custom events {}), distinct event ids {}, duplicates {}, dead letters [{}]\n\
         unaccounted (backup offsets - counted - duplicates - dead letters): {}\n",
        r.site,
        r.from,
        r.to,
        r.backup.records,
        r.backup.distinct_offsets,
        opt(r.backup.distinct_event_ids),
        opt(r.backup.without_event_id),
        opt(r.backup.unopenable),
        a.pageviews + a.custom_events,
        a.pageviews,
        a.custom_events,
        a.distinct_event_ids,
        a.duplicates,
        letters.join(", "),
        r.unaccounted,
    )
}

/// Runs `audit`; `Ok(false)` when records are unaccounted for.
///
/// # Errors
///
/// [`AuditError`] from [`report`], or when the report cannot be printed.
pub async fn run(args: AuditArgs) -> Result<bool, AuditError> {
    let r = report(&args).await?;
    if args.json {
        crate::output::print_stdout(&(serde_json::to_string_pretty(&r)? + "\n"))?;
    } else {
        crate::output::print_stdout(&render(&r))?;
    }
    Ok(r.unaccounted == 0)
}
