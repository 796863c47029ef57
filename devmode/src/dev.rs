//! `edge dev`: the whole loop on one machine with nothing installed.
//!
//! Generates (once) a backend key pair, a self-signed certificate for
//! `localhost` and a config file under the data dir; starts librdkafka's
//! in-process mock cluster as the broker; runs the edge with that config; and
//! prints every event as the backend would see it after decryption.
//!
//! Shutdown is ordered: Ctrl-C and SIGTERM both stop gracefully, so the
//! tail, aggregator and backup consumers (and the edge's producer) finish
//! before the embedded broker is dropped, and nothing logs a lost broker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use edge_backend::aggregate::{self, AggregateOptions};
use edge_backend::backup::{BackupOptions, StoreConfig};
use edge_backend::tail::{self, TailOptions};
use edge_envelope::open::Opener;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use rdkafka::mocking::MockCluster;

use edge_proxy::ConfigSource;

const TOPIC: &str = "edge.events";
/// Backup window of `edge dev` (production default: 5 minutes).
const DEV_BACKUP_WINDOW: Duration = Duration::from_secs(60);

/// Files `edge dev` keeps in its data directory.
struct DevFiles {
    config: PathBuf,
    keys: PathBuf,
}

/// Runs the dev loop until Ctrl-C.
pub fn run(data_dir: &Path) -> anyhow::Result<()> {
    let files = generate_files(data_dir)?;
    let keyring = tail::load_keys(std::slice::from_ref(&files.keys))?;
    let cluster =
        MockCluster::new(1).context("starting the embedded Kafka (librdkafka mock cluster)")?;
    cluster
        .create_topic(TOPIC, 3, 1)
        .context("creating the events topic in the embedded Kafka")?;
    cluster
        .create_topic(aggregate::DEFAULT_DLQ_TOPIC, 1, 1)
        .context("creating the dead-letter topic in the embedded Kafka")?;
    let brokers = cluster.bootstrap_servers();
    let source = ConfigSource {
        path: files.config.clone(),
        brokers_override: Some(brokers.clone()),
    };
    print_banner(&files, &brokers, data_dir);
    let opener = Arc::new(Opener::new(keyring));
    let tail_opts = TailOptions {
        brokers: brokers.clone(),
        topic: TOPIC.to_string(),
        group: "edge-dev-tail".to_string(),
        max_events: None,
        idle_timeout: None,
        properties: Vec::new(),
    };
    let mut aggregate_opts = AggregateOptions::new(
        &brokers,
        TOPIC,
        vec![files.keys.clone()],
        &aggregate::store::sqlite_url_in(data_dir),
    );
    aggregate_opts.batch_max_wait = Duration::from_millis(100);
    let mut backup_opts = BackupOptions::new(
        &brokers,
        TOPIC,
        StoreConfig::Local {
            data_dir: data_dir.to_path_buf(),
        },
    );
    // Short windows so a newcomer sees encrypted window files within a minute.
    backup_opts.window = DEV_BACKUP_WINDOW;
    backup_opts.grace = Duration::from_secs(2);
    let result = edge_proxy::run_with(
        source,
        Some(Box::new(move |server, _state| {
            server.add_service(background_service(
                "dev tail",
                DevTail {
                    opts: tail_opts,
                    opener,
                },
            ));
            server.add_service(background_service(
                "dev aggregator",
                DevAggregate {
                    opts: aggregate_opts,
                },
            ));
            server.add_service(background_service(
                "dev backup",
                DevBackup { opts: backup_opts },
            ));
        })),
        RunArgs {
            shutdown_signal: Box::new(GracefulSignals),
        },
    );
    // Every consumer and the edge's producer are gone: now the broker.
    drop(cluster);
    result
}

/// SIGINT (Ctrl-C) and SIGTERM both shut down gracefully: Pingora's fast
/// SIGINT shutdown abandons the runtimes at once, leaving the consumers
/// running against a broker that is being dropped.
struct GracefulSignals;

#[async_trait]
impl ShutdownSignalWatch for GracefulSignals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot watch SIGINT/SIGTERM; stopping");
            }
        }
        ShutdownSignal::GracefulTerminate
    }
}

/// Writes, on the first run, the key pair, the certificate and the config.
fn generate_files(data_dir: &Path) -> anyhow::Result<DevFiles> {
    edge_private_fs::create_dir(data_dir)?;
    let keys = data_dir.join("keys");
    let config = data_dir.join("edge.toml");
    let tls_dir = data_dir.join("tls");
    edge_private_fs::create_dir(&tls_dir)?;
    let cert_file = tls_dir.join("localhost.crt");
    let key_file = tls_dir.join("localhost.key");
    if !cert_file.exists() || !key_file.exists() {
        let key = rcgen::KeyPair::generate()?;
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
        edge_private_fs::write_atomic(&key_file, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_file, cert.pem())?;
    }
    if !config.exists() {
        let key = edge_backend::keygen::generate(&keys)?;
        let text = format!(
            r#"# Written by `edge dev`. Edit and save: the running edge reloads it.
# kafka.brokers is replaced at every start by the embedded broker's address.
data_dir = "."

[listeners]
http = "127.0.0.1:8080"
https = "127.0.0.1:8443"
plain_http = "events"

[admin]
listen = "127.0.0.1:9901"

[[tls.certificates]]
cert_file = "tls/localhost.crt"
key_file = "tls/localhost.key"

[[sites]]
id = "localhost"
domains = ["localhost"]
# curl is on the bot lists: in dev, keep bots' events (tagged with an
# `edge-bot` Kafka header) instead of dropping them, so a curl shows up.
bot_action = "tag"

[kafka]
brokers = "127.0.0.1:9092"
topic = "{TOPIC}"

{snippet}"#,
            snippet = key.config_snippet()
        );
        edge_private_fs::write_atomic(&config, text.as_bytes())?;
    }
    Ok(DevFiles { config, keys })
}

fn print_banner(files: &DevFiles, brokers: &str, data_dir: &Path) {
    println!(
        r#"
edge dev: public HTTP 127.0.0.1:8080, HTTPS 127.0.0.1:8443 (self-signed for localhost), admin 127.0.0.1:9901
  config (hot-reloaded): {config}
  embedded Kafka:        {brokers}  topic {TOPIC}

Send an event:
  curl -k https://localhost:8443/api/event -H 'Content-Type: application/json' \
       -d '{{"name":"pageview","url":"https://localhost/some/path","referrer":"https://example.org/"}}'
  curl 'http://localhost:8080/api/event.gif?n=pageview&u=https%3A%2F%2Flocalhost%2Fpixel' -o /dev/null
Look inside:
  curl http://127.0.0.1:9901/metrics | grep ^edge_
  {backend} tail --brokers {brokers} --topic {TOPIC} --keys {keys}
  {backend} stats --data-dir {data} --site localhost     # rollups (in-process aggregator, SQLite)
  ls {data}/backup                                          # encrypted backup windows ({window} s)
Decrypted events are printed below as JSON lines. Ctrl-C stops.
"#,
        config = files.config.display(),
        backend = backend_command(),
        keys = files.keys.display(),
        data = data_dir.display(),
        window = DEV_BACKUP_WINDOW.as_secs(),
    );
}

/// How to run `edge-backend` from here: the binary built next to this one
/// (it is not on the PATH after a `cargo build`), or the cargo command that
/// builds and runs it.
fn backend_command() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("edge-backend")))
        .filter(|path| path.is_file())
        .map_or_else(
            || "cargo run --release --bin edge-backend --".to_string(),
            |path| path.display().to_string(),
        )
}

/// Background service printing decrypted events, as `edge-backend tail` would.
struct DevTail {
    opts: TailOptions,
    opener: Arc<Opener>,
}

#[async_trait]
impl BackgroundService for DevTail {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        let mut out = std::io::stdout();
        if let Err(e) = tail::run(&self.opts, &self.opener, &mut out, stop).await {
            tracing::error!(error = format!("{e:#}"), "dev tail stopped");
        }
    }
}

/// Background service: the aggregation consumer, in-process, into SQLite
/// under the data dir (as `edge-backend aggregate --data-dir DIR` would).
struct DevAggregate {
    opts: AggregateOptions,
}

#[async_trait]
impl BackgroundService for DevAggregate {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = aggregate::run(self.opts.clone(), stop).await {
            tracing::error!(error = format!("{e:#}"), "dev aggregator stopped");
        }
    }
}

/// Background service: the backup consumer, in-process, writing encrypted
/// window files under `DATA_DIR/backup/` (as `edge-backend backup` would).
struct DevBackup {
    opts: BackupOptions,
}

#[async_trait]
impl BackgroundService for DevBackup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = edge_backend::backup::run(self.opts.clone(), stop).await {
            tracing::error!(error = format!("{e:#}"), "dev backup stopped");
        }
    }
}
