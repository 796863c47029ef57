//! Command-line arguments of `backup`, `replay` and `verify`, kept here so
//! `main.rs` only names them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::DateTime;

use super::consumer::{self, BackupOptions};
use super::replay::{self, ReplayOptions};
use super::store::{BackupStore, S3Config, StoreConfig};
use super::verify;

/// Where the backup is: a local data directory (default) or an S3 bucket.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Local data directory; objects go to DIR/backup/ (default `data`, unless --s3-bucket is given).
    #[arg(long, conflicts_with = "s3_bucket")]
    pub data_dir: Option<PathBuf>,
    /// S3-compatible bucket (must exist).
    #[arg(long, env = "EDGE_BACKUP_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, default_value = "backup")]
    pub s3_prefix: String,
    /// Endpoint URL of an S3-compatible server (path-style requests), e.g. http://127.0.0.1:9000.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
    /// Region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Access key id (prefer the environment variable).
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    /// Secret access key (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Session token for temporary credentials.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub s3_session_token: Option<String>,
    /// Allow a plain-HTTP endpoint that is not loopback (loopback is always allowed).
    #[arg(long)]
    pub s3_allow_http: bool,
}

impl StoreArgs {
    /// The store these arguments name.
    pub fn config(&self) -> StoreConfig {
        match &self.s3_bucket {
            Some(bucket) => StoreConfig::S3(S3Config {
                bucket: bucket.clone(),
                prefix: self.s3_prefix.clone(),
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                access_key_id: self.s3_access_key_id.clone(),
                secret_access_key: self.s3_secret_access_key.clone(),
                session_token: self.s3_session_token.clone(),
                allow_http: self.s3_allow_http,
            }),
            None => StoreConfig::Local {
                data_dir: self
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("data")),
            },
        }
    }
}

/// Parses an RFC 3339 time (`2026-11-22T20:00:00Z`) or Unix seconds into ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<i64>() {
        return secs
            .checked_mul(1000)
            .ok_or_else(|| format!("{s} is out of range"));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("expected RFC 3339 (2026-11-22T20:00:00Z) or Unix seconds: {e}"))
}

/// `edge-backend backup`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Events topic.
    #[arg(long, default_value = "edge.events")]
    pub topic: String,
    /// Consumer group id.
    #[arg(long, default_value = "edge-backup")]
    pub group: String,
    /// Time window per object, in seconds (aligned to the Unix epoch).
    #[arg(long, default_value_t = 300)]
    pub window_seconds: u64,
    /// Cut an object once its records reach this many bytes (before compression).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_object_bytes: usize,
    /// Seconds after a window's end before its object is written without waiting for more records.
    #[arg(long, default_value_t = 10)]
    pub grace_seconds: u64,
    /// Extra librdkafka properties (`--property`, `--properties-file`).
    #[command(flatten)]
    pub kafka: crate::kafka_props::KafkaPropsArgs,
    /// Crash testing: abort after storing N objects, before committing the last offset.
    #[arg(long, hide = true)]
    pub abort_after_objects: Option<u64>,
    /// Serve GET /metrics and /healthz on ADDR (read-only; keep it on loopback).
    #[arg(long, num_args = 0..=1, default_missing_value = super::http::DEFAULT_ADDR)]
    pub http: Option<std::net::SocketAddr>,
    /// Host the --http endpoint answers (repeatable; `name` = any port, or
    /// `name:port`); the listen address is always allowed. Giving the flag
    /// replaces the default loopback names.
    #[arg(long = "http-allowed-host", value_parser = crate::endpoint::parse_allowed_host,
          default_values_t = crate::endpoint::default_allowed_hosts())]
    pub http_allowed_hosts: Vec<String>,
    #[command(flatten)]
    /// Where objects go.
    pub store: StoreArgs,
}

/// `edge-backend replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Kafka bootstrap servers to publish to.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Only records stamped at or after this time (RFC 3339 or Unix seconds).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<i64>,
    /// Only records stamped before this time (RFC 3339 or Unix seconds).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<i64>,
    /// Only records of this site id.
    #[arg(long)]
    pub site: Option<String>,
    /// Topic to publish to (required: there is no default). Naming the
    /// backed-up topic itself (the live one) also needs --yes.
    #[arg(long)]
    pub topic: String,
    /// Confirms publishing into the backed-up topic (--topic equal to
    /// --source-topic): every consumer of it reads the records again.
    #[arg(long)]
    pub yes: bool,
    /// Backed-up topic to read.
    #[arg(long, default_value = "edge.events")]
    pub source_topic: String,
    /// Extra librdkafka properties (`--property`, `--properties-file`).
    #[command(flatten)]
    pub kafka: crate::kafka_props::KafkaPropsArgs,
    #[command(flatten)]
    /// Where the backup is.
    pub store: StoreArgs,
}

/// `edge-backend verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Only this topic's objects (default: every topic in the store).
    #[arg(long)]
    pub topic: Option<String>,
    #[command(flatten)]
    /// Where the backup is.
    pub store: StoreArgs,
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    r = tokio::signal::ctrl_c() => { let _ = r; }
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C either; running until killed");
        std::future::pending::<()>().await;
    }
}

/// Runs `backup` until SIGTERM/Ctrl-C.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.window_seconds > 0, "--window-seconds must be positive");
    let opts = BackupOptions {
        brokers: args.brokers,
        topic: args.topic,
        group: args.group,
        properties: args.kafka.resolve()?,
        window: Duration::from_secs(args.window_seconds),
        max_object_bytes: args.max_object_bytes,
        grace: Duration::from_secs(args.grace_seconds),
        store: args.store.config(),
        abort_after_objects: args.abort_after_objects,
        http: args.http,
        http_allowed_hosts: args.http_allowed_hosts,
    };
    let s = consumer::run(opts, shutdown_signal()).await?;
    eprintln!(
        "backup: {} records consumed, {} stored in {} objects ({} bytes)",
        s.consumed, s.stored, s.objects, s.bytes
    );
    Ok(())
}

/// Runs `replay`.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let s = replay::run(ReplayOptions {
        brokers: args.brokers,
        properties: args.kafka.resolve()?,
        source_topic: args.source_topic,
        target_topic: args.topic,
        into_source_topic: args.yes,
        from_ms: args.from,
        to_ms: args.to,
        site: args.site,
        store: args.store.config(),
    })
    .await?;
    eprintln!(
        "replay: {} records published from {} objects ({} outside the selection)",
        s.published, s.objects, s.skipped
    );
    Ok(())
}

/// Runs `verify`; `Ok(false)` when problems were found (printed to stdout)
/// or the store holds no object at all.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<bool> {
    let store = BackupStore::open(&args.store.config())?;
    let report = verify::run(&store, args.topic.as_deref())
        .await
        .with_context(|| format!("verifying {}", store.describe()))?;
    for w in &report.warnings {
        println!("warning: {w}");
    }
    for p in &report.problems {
        println!("FAILED {p}");
    }
    if report.objects == 0 && report.problems.is_empty() {
        // An empty store is more likely a wrong path or bucket than a backup.
        println!("FAILED no backup objects found in {}", store.describe());
        return Ok(false);
    }
    println!(
        "verify: {} objects, {} records, {} problems ({})",
        report.objects,
        report.records,
        report.problems.len(),
        store.describe()
    );
    Ok(report.ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time("1795378503").unwrap(), 1_795_378_503_000);
        assert_eq!(
            parse_time("2026-11-22T20:15:03.123Z").unwrap(),
            1_795_378_503_123
        );
        assert_eq!(
            parse_time("2026-11-22T21:15:03.123+01:00").unwrap(),
            1_795_378_503_123
        );
        assert!(parse_time("yesterday").is_err());
    }
}
