//! Command-line arguments of `edge-backend aggregate` and `edge-backend stats`
//! (kept here so the binary's `main.rs` only names them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::rollup::BucketSize;
use super::stats::{StatsQuery, parse_time};
use super::store::{Store, sqlite_url_in};
use super::{AggregateOptions, DEFAULT_DLQ_TOPIC, DEFAULT_GROUP};

/// Where the rollups live: `--db URL` or `--data-dir DIR` (SQLite `DIR/aggregates.db`).
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH?mode=rwc or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "EDGE_BACKEND_DB", conflicts_with = "data_dir")]
    pub db: Option<String>,
    /// Directory holding the embedded SQLite database (aggregates.db).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
}

impl DbArgs {
    /// The database URL.
    pub fn url(&self) -> String {
        self.db
            .clone()
            .unwrap_or_else(|| sqlite_url_in(&self.data_dir))
    }
}

/// `edge-backend aggregate`.
#[derive(Debug, Clone, Args)]
pub struct AggregateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Events topic.
    #[arg(long, default_value = "edge.events")]
    pub topic: String,
    /// Consumer group id (offsets are stored in the database under this name).
    #[arg(long, default_value = DEFAULT_GROUP)]
    pub group: String,
    /// Dead-letter topic for records that cannot be decrypted or parsed (must exist).
    #[arg(long, default_value = DEFAULT_DLQ_TOPIC)]
    pub dlq_topic: String,
    /// Private key files or directories of `*.key` files (repeatable; all keys are used).
    #[arg(long = "keys", required = true)]
    pub keys: Vec<PathBuf>,
    /// Where the rollups are stored.
    #[command(flatten)]
    pub db: DbArgs,
    /// Most records per batch (one SQL transaction).
    #[arg(long, default_value_t = 2000)]
    pub batch_size: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub batch_wait_ms: u64,
    /// Serve the read-only JSON endpoint (GET /stats, /metrics, /healthz) on ADDR.
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:9902")]
    pub http: Option<SocketAddr>,
    /// Extra librdkafka properties (`--property`, `--properties-file`).
    #[command(flatten)]
    pub kafka: crate::kafka_props::KafkaPropsArgs,
    /// How long event ids are remembered for dedupe, in seconds (by the
    /// edge's receive time): a record delivered again within it counts once.
    #[arg(long, default_value_t = super::DEFAULT_DEDUPE_WINDOW.as_secs())]
    pub dedupe_window_seconds: u64,
    /// Host the --http endpoint answers (repeatable; `name` = any port, or
    /// `name:port`); the listen address is always allowed. Giving the flag
    /// replaces the default loopback names.
    #[arg(long = "http-allowed-host", value_parser = crate::endpoint::parse_allowed_host,
          default_values_t = super::http::default_allowed_hosts())]
    pub http_allowed_hosts: Vec<String>,
}

/// `edge-backend stats`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Site id.
    #[arg(long)]
    pub site: String,
    /// Range start (inclusive): RFC 3339, ms since the epoch, `now`, or
    /// `now-N{s,m,h,d}` (default: the last 24 hours).
    #[arg(long, value_parser = parse_time, default_value = "now-24h")]
    pub from: i64,
    /// Range end (exclusive): RFC 3339, ms since the epoch, or `now`.
    #[arg(long, value_parser = parse_time, default_value = "now")]
    pub to: i64,
    /// Bucket size to read.
    #[arg(long, default_value = "minute")]
    pub bucket: BucketSize,
    /// Most values per dimension.
    #[arg(long, default_value_t = super::http::DEFAULT_LIMIT)]
    pub limit: usize,
    /// Where the rollups are stored.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Runs `aggregate` until SIGINT or SIGTERM.
pub async fn aggregate(args: AggregateArgs) -> anyhow::Result<()> {
    let opts = AggregateOptions {
        brokers: args.brokers,
        topic: args.topic,
        group: args.group,
        dlq_topic: args.dlq_topic,
        keys: args.keys,
        database_url: args.db.url(),
        batch_max_records: args.batch_size,
        batch_max_wait: Duration::from_millis(args.batch_wait_ms),
        http: args.http,
        properties: args.kafka.resolve()?,
        dedupe_window: Duration::from_secs(args.dedupe_window_seconds),
        http_allowed_hosts: args.http_allowed_hosts,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let summary = super::run(opts, stop).await?;
    eprintln!(
        "aggregate: {} events aggregated, {} duplicates dropped, {} dead letters, {} batches",
        summary.events, summary.duplicates, summary.dead_letters, summary.batches
    );
    Ok(())
}

/// Runs `stats`: prints the report as JSON on stdout.
pub async fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.db.url()).await?;
    let report = super::stats::query(
        &store,
        &StatsQuery {
            site: args.site,
            from_ms: args.from,
            to_ms: args.to,
            bucket: args.bucket,
            limit: args.limit,
        },
    )
    .await;
    store.close().await;
    crate::output::print_stdout(&(serde_json::to_string_pretty(&report?)? + "\n"))?;
    Ok(())
}
