//! `edge-backend`: key tooling and consumers for edge events.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use edge_backend::{aggregate, backup, kafka_props, keygen, tail};

#[derive(Parser)]
#[command(
    name = "edge-backend",
    version,
    about = "Backend tools for the edge: keys and consumers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an X25519 key pair: the private key goes to DIR (0600), the public key is printed for the edge config.
    Keygen {
        /// Directory for the private key file.
        #[arg(long, default_value = "keys")]
        out: PathBuf,
    },
    /// Consume the events topic, decrypt with the private keys and print JSON lines.
    Tail {
        /// Kafka bootstrap servers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Events topic.
        #[arg(long, default_value = "edge.events")]
        topic: String,
        /// Consumer group id.
        #[arg(long, default_value = "edge-tail")]
        group: String,
        /// Private key files or directories of `*.key` files (repeatable).
        #[arg(long = "keys", required = true)]
        keys: Vec<PathBuf>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Exit after this many seconds without a message.
        #[arg(long)]
        idle_timeout_seconds: Option<u64>,
        /// Extra librdkafka properties (`--property`, `--properties-file`).
        #[command(flatten)]
        kafka: kafka_props::KafkaPropsArgs,
    },
    /// Consume the events topic, decrypt and roll up per site per minute/hour into SQL (exactly once).
    Aggregate(aggregate::cli::AggregateArgs),
    /// Print the rollups of a site and time range as JSON.
    Stats(aggregate::cli::StatsArgs),
    /// Back up the events topic, still encrypted, into compressed objects per time window (local dir or S3).
    Backup(backup::cli::BackupArgs),
    /// Re-publish backed-up records (key, value, headers unchanged) to Kafka.
    Replay(backup::cli::ReplayArgs),
    /// Check backup objects against their manifests; exits 1 on any mismatch.
    Verify(backup::cli::VerifyArgs),
    /// Reconcile a site and time range: backed-up records vs events counted, duplicates and dead letters; exits 1 when records are unaccounted for.
    Audit(aggregate::audit::AuditArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First: the S3 client (reqwest with `rustls-no-provider`) needs a process-wide
    // rustls provider; ring is the only one linked. Err only means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Keygen { out } => {
            let key = keygen::generate(&out)?;
            eprintln!(
                "private key written to {} (mode 0600; keep it on the backend only)",
                key.path.display()
            );
            eprintln!("add this to the edge configuration:\n");
            println!("{}", key.config_snippet());
        }
        Command::Tail {
            brokers,
            topic,
            group,
            keys,
            count,
            idle_timeout_seconds,
            kafka,
        } => {
            let opener = edge_envelope::open::Opener::new(tail::load_keys(&keys)?);
            let opts = tail::TailOptions {
                brokers,
                topic,
                group,
                max_events: count,
                idle_timeout: idle_timeout_seconds.map(Duration::from_secs),
                properties: kafka.resolve()?,
            };
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let summary = tail::run(&opts, &opener, &mut std::io::stdout().lock(), stop).await?;
            eprintln!(
                "tail: {} events printed, {} failed to decrypt",
                summary.printed, summary.failed
            );
            if summary.failed > 0 {
                std::process::exit(3);
            }
        }
        Command::Aggregate(args) => aggregate::cli::aggregate(args).await?,
        Command::Stats(args) => aggregate::cli::stats(args).await?,
        Command::Backup(args) => backup::cli::backup(args).await?,
        Command::Replay(args) => backup::cli::replay(args).await?,
        Command::Verify(args) => {
            if !backup::cli::verify(args).await? {
                std::process::exit(1);
            }
        }
        Command::Audit(args) => {
            if !aggregate::audit::run(args).await? {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
