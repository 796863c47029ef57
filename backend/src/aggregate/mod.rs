//! `edge-backend aggregate`: consume the events topic, decrypt, roll up per
//! site per minute and hour into SQL (SQLite or PostgreSQL), exactly once.
//!
//! Modules, one job each: [`consumer`] (Kafka group member, batches,
//! positions from SQL), [`batch`] (decrypting and checking records),
//! [`commit`] (dead letters, then the transaction; isolating records the
//! store refuses; backoff), [`rollup`] (batch math and visitor sketches),
//! [`store`] (schema, migrations, the transactional apply, event-id dedupe,
//! error classes), [`audit`] (reconciliation report), [`dlq`]
//! (dead-letter topic), [`stats`] (queries), [`http`] (read-only endpoint),
//! [`metrics`] (`edge_backend_*`).
//!
//! [`run`] is the library entry point, usable in-process (e.g. by `edge dev`).

pub mod audit;
pub mod batch;
pub mod cli;
pub mod commit;
pub mod consumer;
pub mod dlq;
pub mod http;
pub mod metrics;
pub mod rollup;
pub mod stats;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edge_envelope::open::Opener;
use tracing::info;

pub use consumer::RunSummary;

/// Why the aggregator could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// `batch_max_records` is 0.
    #[error("batch size must be at least 1")]
    EmptyBatch,
    /// The private keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] crate::tail::KeyLoadError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The metrics could not be registered.
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The dead-letter producer could not be created.
    #[error(transparent)]
    DeadLetters(#[from] dlq::DlqError),
    /// The HTTP endpoint could not listen, or stopped.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// The consumer stopped on an error.
    #[error(transparent)]
    Consumer(#[from] consumer::ConsumerError),
    /// The consumer thread could not be started.
    #[error("cannot start the consumer thread: {0}")]
    Thread(std::io::Error),
    /// The HTTP endpoint task panicked or was cancelled.
    #[error("stats endpoint task failed: {0}")]
    HttpTask(tokio::task::JoinError),
    /// The consumer thread panicked.
    #[error("the consumer thread panicked")]
    Panicked,
    /// Waiting for the consumer thread failed.
    #[error("cannot join the consumer thread: {0}")]
    Join(tokio::task::JoinError),
}

/// Default consumer group.
pub const DEFAULT_GROUP: &str = "edge-aggregator";
/// Default dead-letter topic.
pub const DEFAULT_DLQ_TOPIC: &str = "edge.events.dlq";
/// Default event-id dedupe window: 7 days (the edge spool's default maximum
/// record age plus a margin).
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// Everything `aggregate` needs.
#[derive(Debug, Clone)]
pub struct AggregateOptions {
    /// Kafka `bootstrap.servers`.
    pub brokers: String,
    /// Events topic.
    pub topic: String,
    /// Consumer group (also the key of the offsets stored in SQL).
    pub group: String,
    /// Dead-letter topic (must exist: brokers without auto-creation).
    pub dlq_topic: String,
    /// Private key files or directories of `*.key` files.
    pub keys: Vec<PathBuf>,
    /// Database URL: `sqlite://PATH?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// Most records per batch (one transaction).
    pub batch_max_records: usize,
    /// Longest wait for a batch to fill after its first record.
    pub batch_max_wait: Duration,
    /// Where to serve the read-only HTTP endpoint, if anywhere.
    pub http: Option<SocketAddr>,
    /// Extra librdkafka properties (consumer and dead-letter producer).
    pub properties: Vec<(String, String)>,
    /// How long (by the edge's receive time) event ids are remembered: a
    /// record delivered again within it is counted once.
    pub dedupe_window: Duration,
    /// `Host` values the HTTP endpoint answers besides its listen address
    /// (default: the loopback names; see `edge_config::host_guard`).
    pub http_allowed_hosts: Vec<String>,
}

impl AggregateOptions {
    /// Defaults for a broker, topic, keys and database.
    pub fn new(brokers: &str, topic: &str, keys: Vec<PathBuf>, database_url: &str) -> Self {
        AggregateOptions {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group: DEFAULT_GROUP.to_string(),
            dlq_topic: DEFAULT_DLQ_TOPIC.to_string(),
            keys,
            database_url: database_url.to_string(),
            batch_max_records: 2000,
            batch_max_wait: Duration::from_millis(200),
            http: None,
            properties: Vec::new(),
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            http_allowed_hosts: http::default_allowed_hosts(),
        }
    }
}

/// Runs the aggregator until `shutdown` resolves (the batch in progress is
/// committed first) or a fatal error happens.
pub async fn run(
    opts: AggregateOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, AggregateError> {
    if opts.batch_max_records == 0 {
        return Err(AggregateError::EmptyBatch);
    }
    let keyring = crate::tail::load_keys(&opts.keys)?;
    let ids: Vec<String> = keyring.ids().iter().map(ToString::to_string).collect();
    info!(key_ids = ?ids, "private keys loaded");
    let opener = Opener::new(keyring);
    let store = store::Store::open(&opts.database_url).await?;
    let metrics = metrics::Metrics::new()?;
    let dlq = dlq::DlqProducer::new(&opts.brokers, &opts.properties, &opts.dlq_topic)?;

    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http_task = match opts.http {
        Some(addr) => {
            let listener = http::bind(addr).await?;
            let (store, metrics) = (store.clone(), metrics.clone());
            let allowed = http::AllowedHosts::new(&opts.http_allowed_hosts, Some(addr));
            Some(tokio::spawn(http::serve(
                listener,
                store,
                metrics,
                allowed,
                async {
                    let _ = http_stop_rx.await;
                },
            )))
        }
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let settings = consumer::ConsumerSettings {
        brokers: opts.brokers.clone(),
        topic: opts.topic.clone(),
        group: opts.group.clone(),
        properties: opts.properties.clone(),
        max_records: opts.batch_max_records,
        max_wait: opts.batch_max_wait,
        dedupe_window: opts.dedupe_window,
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread = {
        let (handle, store, stop) = (
            tokio::runtime::Handle::current(),
            store.clone(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("edge-aggregator".into())
            .spawn(move || {
                let r = consumer::consume_loop(handle, settings, store, opener, dlq, metrics, stop);
                let _ = done_tx.send(r);
            })
            .map_err(AggregateError::Thread)?
    };
    tokio::pin!(shutdown);
    tokio::pin!(done_rx);
    let result = tokio::select! {
        r = &mut done_rx => r,
        _ = &mut shutdown => {
            stop.store(true, Ordering::Relaxed);
            done_rx.await
        }
    };
    let _ = http_stop_tx.send(());
    if let Some(task) = http_task {
        task.await.map_err(AggregateError::HttpTask)??;
    }
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    store.close().await;
    match (result, joined) {
        (Ok(r), Ok(Ok(()))) => Ok(r?),
        (_, Ok(Err(_))) | (Err(_), _) => Err(AggregateError::Panicked),
        (_, Err(e)) => Err(AggregateError::Join(e)),
    }
}
