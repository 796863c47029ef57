//! The open-loop engine: a scheduler releases requests at their intended times into
//! a queue; a fixed pool of workers (`--connections`) sends them. Latency is measured
//! from the intended send time, so time spent queued behind a slow server counts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::{Mutex, mpsc};

use crate::clientaddr::ClientIpMode;
use crate::request::PlannedRequest;
use crate::sources::SourceRange;
use crate::stats::{Outcome, SharedStats};
use crate::transport::{Conn, Connector};

/// How requests are sent.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Number of workers = maximum requests in flight.
    pub connections: usize,
    /// Reuse connections (`true`) or open one per request.
    pub keepalive: bool,
    /// Source addresses to bind, indexed by client slot.
    pub sources: Option<SourceRange>,
    /// How the client address reaches the target.
    pub client_ip_mode: ClientIpMode,
    /// Per-request timeout.
    pub timeout: Duration,
}

struct Job {
    req: PlannedRequest,
    intended: Option<Instant>,
}

type Queue = Arc<Mutex<mpsc::UnboundedReceiver<Job>>>;

/// Most connections a worker keeps open (one per source address and SNI host).
const MAX_CONNS_PER_WORKER: usize = 256;

/// Runs `jobs` against the target and records into `stats`. Stops scheduling early
/// on Ctrl-C; requests already released are still finished. Intended offsets are
/// relative to `start`.
pub async fn run<I>(
    connector: Connector,
    cfg: RunConfig,
    jobs: I,
    stats: SharedStats,
    start: Instant,
) -> Result<()>
where
    I: IntoIterator<Item = PlannedRequest>,
{
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let queue: Queue = Arc::new(Mutex::new(rx));
    let cfg = Arc::new(cfg);
    let workers: Vec<_> = (0..cfg.connections.max(1))
        .map(|_| {
            let worker = Worker {
                connector: connector.clone(),
                cfg: cfg.clone(),
                stats: stats.clone(),
                start,
                conns: HashMap::new(),
            };
            tokio::spawn(worker.run(queue.clone()))
        })
        .collect();

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    'schedule: for req in jobs {
        let intended = req.offset.map(|off| start + off);
        if let Some(at) = intended {
            tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                _ = &mut ctrl_c => break 'schedule,
            }
        }
        if tx.send(Job { req, intended }).is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        w.await?;
    }
    Ok(())
}

/// A reusable connection: bound source address, client announced in a
/// PROXY header (a connection belongs to that one client), TLS SNI host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConnKey {
    source: Option<IpAddr>,
    proxied: Option<IpAddr>,
    sni: Option<String>,
}

struct Worker {
    connector: Connector,
    cfg: Arc<RunConfig>,
    stats: SharedStats,
    start: Instant,
    conns: HashMap<ConnKey, Conn>,
}

impl Worker {
    async fn run(mut self, queue: Queue) {
        loop {
            let job = { queue.lock().await.recv().await };
            let Some(job) = job else { break };
            let actual = Instant::now();
            let intended = job.intended.unwrap_or(actual);
            let second = usize::try_from(intended.saturating_duration_since(self.start).as_secs())
                .unwrap_or(usize::MAX);
            self.stats.lock().record_sent();
            let key = self.key(&job.req);
            let outcome =
                match tokio::time::timeout(self.cfg.timeout, self.execute(&job.req, &key)).await {
                    Ok(Ok(status)) => Outcome::Status(status),
                    Ok(Err(e)) => {
                        self.stats.lock().note_error(format!("{e:#}"));
                        Outcome::Error
                    }
                    Err(_) => {
                        // The connection is in an unknown state: never reuse it.
                        self.conns.remove(&key);
                        Outcome::Timeout
                    }
                };
            let now = Instant::now();
            self.stats.lock().record(
                outcome,
                now.saturating_duration_since(intended),
                second,
                now.saturating_duration_since(self.start),
            );
        }
    }

    fn key(&self, req: &PlannedRequest) -> ConnKey {
        let mode = self.cfg.client_ip_mode;
        let source = match mode {
            ClientIpMode::Bind => self.cfg.sources.as_ref().map(|r| r.get(req.client)),
            _ => None,
        };
        let proxied = mode.proxy_version().map(|_| req.client_addr);
        let sni = self.connector.target().tls.then(|| req.host.clone());
        ConnKey {
            source,
            proxied,
            sni,
        }
    }

    async fn execute(&mut self, req: &PlannedRequest, key: &ConnKey) -> Result<u16> {
        let forwarded =
            (self.cfg.client_ip_mode == ClientIpMode::XForwardedFor).then_some(req.client_addr);
        let request = self.connector.build_request(req, forwarded)?;
        let reuse = self.cfg.keepalive;
        let cached = if reuse { self.conns.remove(key) } else { None };
        let mut conn = match cached.filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => {
                let host = key.sni.as_deref().unwrap_or(&req.host);
                let proxy = self.cfg.client_ip_mode.proxy_version().zip(key.proxied);
                let (conn, handshake) = self.connector.connect(key.source, host, proxy).await?;
                if let Some((kind, took)) = handshake {
                    self.stats.lock().record_handshake(kind, took);
                }
                conn
            }
        };
        let status = conn.send(request).await?;
        if reuse {
            if self.conns.len() >= MAX_CONNS_PER_WORKER
                && let Some(evict) = self.conns.keys().next().cloned()
            {
                self.conns.remove(&evict);
            }
            self.conns.insert(key.clone(), conn);
        }
        Ok(status)
    }
}
