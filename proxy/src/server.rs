//! Assembles the Pingora server: public HTTP and HTTPS, admin, background tasks.
//!
//! Startup and `edge validate` share [`prepare`]; reloads share its
//! [`Runtime::build`] step.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use edge_acme::AcmeManager;
use edge_collector::enrich::Enricher;
use edge_collector::salt::SaltStore;
use edge_config::{ConfigErrors, LoadedConfig};
use pingora::apps::HttpServerOptions;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use rdkafka::ClientConfig;

use crate::admin::AdminApp;
use crate::connections::ListenerKind;
use crate::connections::gate::Gate;
use crate::connections::http::HttpConnApp;
use crate::http::{EdgeHttp, Listener};
use crate::kafka::KafkaSink;
use crate::proxy_protocol::ProxyProtocolApp;
use crate::reload::{ReloadTriggers, Reloader};
use crate::runtime::Runtime;
use crate::shipper::{Shipper, SpoolState};
use crate::state::{ConfigSource, EdgeState};
use crate::tls::{TlsApp, TlsContext};

/// A config checked as far as possible without binding sockets or contacting Kafka.
pub struct Prepared {
    /// The loaded file.
    pub loaded: LoadedConfig,
    /// Its runtime, built exactly as reloads build it.
    pub runtime: Runtime,
    /// librdkafka settings (the SASL password file has been read).
    pub kafka: ClientConfig,
}

/// Loads the config and builds its runtime exactly as startup and reload do,
/// plus the Kafka client settings (which read the SASL password file). It
/// binds no socket and does not contact the broker.
pub fn prepare(source: &ConfigSource) -> Result<Prepared, ConfigErrors> {
    let loaded = source.load()?;
    let runtime = Runtime::build(&loaded, None)?;
    let kafka = crate::kafka::client_config(&loaded.config.kafka)
        .map_err(|e| loaded.errors_at("kafka.sasl.password_file", e.to_string()))?;
    Ok(Prepared {
        loaded,
        runtime,
        kafka,
    })
}

/// Extra services a caller (for example `edge dev`) adds next to the edge's own.
pub type ExtraServices = Box<dyn FnOnce(&mut Server, &Arc<EdgeState>)>;

/// Runs the edge until SIGINT (fast) or SIGTERM (graceful) and then flushes
/// Kafka; events not yet delivered stay in the spool for the next start.
pub fn run(source: ConfigSource, extra: Option<ExtraServices>) -> anyhow::Result<()> {
    run_with(source, extra, RunArgs::default())
}

/// [`run`] with the caller's shutdown signals (`edge-dev` makes Ctrl-C
/// graceful, so its consumers stop before its embedded broker).
pub fn run_with(
    source: ConfigSource,
    extra: Option<ExtraServices>,
    run_args: RunArgs,
) -> anyhow::Result<()> {
    let Prepared {
        loaded,
        runtime,
        kafka,
    } = match prepare(&source) {
        Ok(p) => p,
        Err(errors) => bail!("configuration is invalid:\n{errors}"),
    };
    let cfg = &loaded.config;
    raise_open_files_limit();
    for addr in [
        cfg.listeners.http,
        cfg.listeners.https,
        Some(cfg.admin.listen),
    ]
    .into_iter()
    .flatten()
    {
        check_bindable(addr)?;
    }
    let parts = Parts::open(cfg, runtime, kafka, source)?;
    let mut server = Server::new_with_opt_and_conf(None, server_conf());
    server.bootstrap();
    add_public_listeners(&mut server, cfg, &parts.state);
    add_admin_listener(&mut server, cfg, &parts.state, parts.reloader.clone());
    add_background_services(&mut server, &parts);
    if let Some(extra) = extra {
        extra(&mut server, &parts.state);
    }
    tracing::info!(
        http = ?cfg.listeners.http,
        https = ?cfg.listeners.https,
        admin = %cfg.admin.listen,
        version = %parts.state.runtime().version(),
        "edge starting"
    );
    server.run(run_args);
    parts.flush();
    Ok(())
}

/// What the listeners and background services share, opened before any of
/// them starts.
struct Parts {
    state: Arc<EdgeState>,
    reloader: Arc<Reloader>,
    sink: Arc<KafkaSink>,
    salts: Arc<SaltStore>,
    spool: Arc<SpoolState>,
}

impl Parts {
    /// Opens the salt store, the Kafka producer, the TLS context and the
    /// durable spool (recovered before any listener starts).
    fn open(
        cfg: &edge_config::Config,
        runtime: Runtime,
        kafka: ClientConfig,
        source: ConfigSource,
    ) -> anyhow::Result<Self> {
        let salts = SaltStore::open(&cfg.data_dir.join("salts"))
            .with_context(|| format!("opening the salt store under {}", cfg.data_dir.display()))?;
        let salts = Arc::new(salts);
        let enricher = Enricher::new(salts.clone());
        let sink =
            Arc::new(KafkaSink::new(kafka, &cfg.kafka).context("creating the Kafka producer")?);
        let tls = Arc::new(TlsContext::new(runtime.min_tls)?);
        let spool = Arc::new(SpoolState::open(&cfg.spool, &cfg.data_dir)?);
        let state = EdgeState::new(runtime, tls, enricher, sink.clone(), source, spool.clone());
        let reloader = Reloader::new(state.clone());
        Ok(Self {
            state,
            reloader,
            sink,
            salts,
            spool,
        })
    }

    /// After the listeners closed: flushes Kafka, commits what the spool
    /// holds (undelivered records stay on disk) and flushes the capture.
    fn flush(&self) {
        tracing::info!("listeners closed; flushing kafka");
        self.sink.flush(Duration::from_secs(5));
        self.spool.spool.close();
        self.state.runtime().capture.flush(Duration::from_secs(2));
    }
}

/// Raises RLIMIT_NOFILE to the hard limit, logging the outcome.
fn raise_open_files_limit() {
    match crate::connections::rlimit::raise() {
        Ok(r) => tracing::info!(
            open_files_limit = r.now,
            before = r.before,
            hard = r.hard,
            "open-file limit (RLIMIT_NOFILE) raised to the hard limit"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            open_files_limit = crate::connections::rlimit::open_files_limit(),
            "could not raise the open-file limit (RLIMIT_NOFILE)"
        ),
    }
}

/// The public HTTP and HTTPS listeners that are configured, one thread per core.
fn add_public_listeners(server: &mut Server, cfg: &edge_config::Config, state: &Arc<EdgeState>) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    if let Some(addr) = cfg.listeners.http {
        let app = ProxyProtocolApp::new(
            state.clone(),
            ListenerKind::Http,
            HttpConnApp::new(EdgeHttp::new(
                state.clone(),
                Listener::Plain,
                public_server_options(cfg),
            )),
        );
        let mut svc = Service::new("edge http".to_string(), app);
        svc.add_listener(public_listener(addr));
        svc.threads = Some(threads);
        server.add_service(svc);
    }
    if let Some(addr) = cfg.listeners.https {
        let app = ProxyProtocolApp::new(
            state.clone(),
            ListenerKind::Https,
            TlsApp::new(
                state.tls.clone(),
                HttpConnApp::new(EdgeHttp::new(
                    state.clone(),
                    Listener::Tls,
                    public_server_options(cfg),
                )),
            ),
        );
        let mut svc = Service::new("edge https".to_string(), app);
        svc.add_listener(public_listener(addr));
        svc.threads = Some(threads);
        server.add_service(svc);
    }
}

/// Bytes of the read buffer Pingora puts under every public connection
/// (its default is 64 KiB). Allocated at accept and held for the
/// connection's life, so it bounds what an idle or slow connection costs:
/// 16 KiB holds a whole typical request (head and event body) and a TLS
/// record of up to 16 KiB of ciphertext; longer bodies, and a record at the
/// 16 KiB plaintext maximum plus its header and tag, are read in more calls.
/// Measured
/// (BENCHMARKS.md, issue 15, tenth round): 2.4 instead of 11.5 KiB resident
/// per connection holding a half-sent request, and about 7 µs less CPU per
/// new connection.
const PUBLIC_READ_BUFFER_BYTES: usize = 16 << 10;

/// A public listener's endpoint: TCP on `addr`, with the read buffer of
/// [`PUBLIC_READ_BUFFER_BYTES`] and Pingora's default write buffer.
fn public_listener(addr: SocketAddr) -> ListenerConfig {
    ListenerConfig::tcp(addr.to_string())
        .l4_buffer(L4BufferSettings::default().read(PUBLIC_READ_BUFFER_BYTES))
}

/// The admin listener: its own small budget (connections.admin_max_connections),
/// kept out of the public listeners' automatic caps, and the same deadlines.
fn add_admin_listener(
    server: &mut Server,
    cfg: &edge_config::Config,
    state: &Arc<EdgeState>,
    reloader: Arc<Reloader>,
) {
    let mut admin = Service::new(
        "edge admin".to_string(),
        Gate::new(
            state.clone(),
            ListenerKind::Admin,
            HttpConnApp::new(HttpServer::new_app(AdminApp::new(state.clone(), reloader))),
        ),
    );
    admin.add_tcp(&cfg.admin.listen.to_string());
    admin.threads = Some(1);
    server.add_service(admin);
}

/// Reload triggers, Kafka readiness, the spool shipper (it drains the spool
/// to Kafka, resuming after restarts), salt and rate-limit pruning, ACME.
fn add_background_services(server: &mut Server, parts: &Parts) {
    let reloader = parts.reloader.clone();
    server.add_service(background_service(
        "config reload",
        ReloadTriggers { reloader },
    ));
    let sink = parts.sink.clone();
    server.add_service(background_service(
        "kafka readiness",
        ReadinessProbe { sink },
    ));
    server.add_service(background_service(
        "spool shipper",
        Shipper {
            spool: parts.spool.clone(),
            sink: parts.sink.clone(),
        },
    ));
    let salts = parts.salts.clone();
    server.add_service(background_service("salt pruning", SaltPruner { salts }));
    let state = parts.state.clone();
    server.add_service(background_service(
        "rate limit pruning",
        LimiterPruner {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "shared rate limits sync",
        crate::fleet_sync::FleetLimitSync { state },
    ));
    server.add_service(background_service(
        "acme certificates",
        AcmeManager::new(parts.state.acme.clone(), parts.state.clone()),
    ));
}

/// Pingora's HTTP server options for a public listener: the HTTP/2 idle
/// timeout (`connections.h2_idle_timeout_ms`, fixed at start).
fn public_server_options(cfg: &edge_config::Config) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(Duration::from_millis(cfg.connections.h2_idle_timeout_ms));
    options
}

fn server_conf() -> ServerConf {
    ServerConf {
        // Seconds between SIGTERM and closing listeners, then the budget for
        // in-flight requests; Pingora's defaults add up to five minutes.
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    }
}

/// Fails early with a clear message when a listen address is taken.
fn check_bindable(addr: SocketAddr) -> anyhow::Result<()> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Background service: probes the broker so `/readyz` tells the truth.
struct ReadinessProbe {
    sink: Arc<KafkaSink>,
}

#[async_trait]
impl BackgroundService for ReadinessProbe {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let ready = self.sink.probe(Duration::from_secs(2)).await;
            let pause = if ready {
                Duration::from_secs(5)
            } else {
                Duration::from_millis(500)
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Background service: deletes salts older than yesterday every hour, so no
/// salt outlives two days even when no event arrives to roll the day over.
struct SaltPruner {
    salts: Arc<SaltStore>,
}

#[async_trait]
impl BackgroundService for SaltPruner {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.salts.prune(edge_collector::salt::current_day());
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    }
}

/// Background service: drops rate-limiter keys whose bucket is full again,
/// every `rate_limits.prune_interval_seconds`, and publishes key counts.
struct LimiterPruner {
    state: Arc<EdgeState>,
}

#[async_trait]
impl BackgroundService for LimiterPruner {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let rt = self.state.runtime();
            let interval = rt.loaded.config.rate_limits.prune_interval_seconds;
            let limiters = rt.rate_limits.clone();
            drop(rt);
            // Pruning millions of keys takes a while: keep it off the request threads.
            match tokio::task::spawn_blocking(move || limiters.prune()).await {
                Ok(reports) => crate::metrics::METRICS.abuse.publish_prune(&reports),
                Err(e) => tracing::error!(error = %e, "rate limiter pruning failed"),
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(Duration::from_secs(interval.max(1))) => {}
            }
        }
    }
}
