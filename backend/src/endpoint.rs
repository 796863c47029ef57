//! The consumers' read-only HTTP endpoint (HTTP/1.1, loopback by default),
//! shared by `aggregate --http` (`/stats`, `/metrics`, `/healthz`) and
//! `backup --http` (`/metrics`, `/healthz`).
//!
//! What every request goes through before its route answers:
//! * like the edge's admin API, it must name an allowed `Host` (the loopback
//!   names by default, plus the listen address; `--http-allowed-host`) and
//!   must not come from a web page (`Origin`, or a cross-site
//!   `Sec-Fetch-Site`), so neither a page the operator visits nor DNS
//!   rebinding reads it: 421, 400 or 403 otherwise. `/healthz` carries no
//!   data and answers any `Host`;
//! * only `GET` and `HEAD`: 405 otherwise (nothing here writes).
//!
//! And every connection ([`Limits`]): at most 64 at once (more are closed
//! as soon as accepted), a request head within 10 s (also while a
//! kept-alive connection idles between requests), and at most 60 s in all,
//! so a client that stops reading cannot hold a connection either.
//! Refusals of both kinds are counted in the caller's
//! `*_http_refused_total{reason}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::IntCounterVec;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

pub use edge_config::host_guard::AllowedHosts;
use edge_config::host_guard::{self, LOOPBACK_HOSTS, Refusal};

/// What one client may hold of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; the next ones are closed as soon as accepted.
    pub max_connections: usize,
    /// Longest wait for a request head, from the connection's start or the
    /// end of the previous answer.
    pub head_timeout: Duration,
    /// Longest life of one connection (Prometheus reconnects; nothing else
    /// needs longer): then the answer in progress is finished (within
    /// `head_timeout`) and the connection closed.
    pub connection_lifetime: Duration,
}

impl Limits {
    /// 64 connections, 10 s per request head, 60 s per connection.
    pub const DEFAULT: Limits = Limits {
        max_connections: 64,
        head_timeout: Duration::from_secs(10),
        connection_lifetime: Duration::from_secs(60),
    };
}

/// The `reason` counted for a connection closed at [`Limits::max_connections`].
pub const CONNECTION_LIMIT_REASON: &str = "connection_limit";
/// Every `reason` of `*_http_refused_total`, for creating the series up
/// front: the host guard's own labels, then the connection limit's.
pub const REFUSAL_REASONS: [&str; 5] = [
    Refusal::NoHost.as_label(),
    Refusal::ForeignHost.as_label(),
    Refusal::Origin.as_label(),
    Refusal::CrossSite.as_label(),
    CONNECTION_LIMIT_REASON,
];

/// An answer of the endpoint.
pub type Answer = Response<Full<Bytes>>;

/// Default allowed hosts: the loopback names (any port).
pub fn default_allowed_hosts() -> Vec<String> {
    LOOPBACK_HOSTS.iter().map(|h| (*h).to_string()).collect()
}

/// Parses one `--http-allowed-host` value (`name` = any port, `name:port`).
pub fn parse_allowed_host(s: &str) -> Result<String, String> {
    host_guard::check_entry(s).map(|()| s.to_string())
}

/// Why the endpoint cannot listen or stopped listening.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound.
    #[error("cannot bind the HTTP endpoint {addr}: {error}")]
    Bind {
        /// The listen address.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// Accepting a connection failed.
    #[error("HTTP endpoint accept failed: {0}")]
    Accept(std::io::Error),
}

/// The routes behind the guard: a `GET` or `HEAD` request whose `Host` and
/// origin passed (or a `/healthz` probe).
pub trait Routes: Clone + Send + Sync + 'static {
    /// Answers one request.
    fn answer(&self, req: Request<Incoming>) -> impl Future<Output = Answer> + Send;
}

/// Binds `addr` (warning when it is not loopback) and returns the listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    if !addr.ip().is_loopback() {
        warn!(%addr, "HTTP endpoint bound to a non-loopback address: it has no authentication");
    }
    TcpListener::bind(addr)
        .await
        .map_err(|error| HttpError::Bind { addr, error })
}

/// Serves connections under [`Limits::DEFAULT`] until `stop` resolves.
/// `refused` counts refusals by `reason` ([`REFUSAL_REASONS`]).
pub async fn serve<R: Routes>(
    listener: TcpListener,
    routes: R,
    allowed: AllowedHosts,
    refused: IntCounterVec,
    stop: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    serve_limited(listener, routes, allowed, refused, Limits::DEFAULT, stop).await
}

/// [`serve`] under other limits.
pub async fn serve_limited<R: Routes>(
    listener: TcpListener,
    routes: R,
    allowed: AllowedHosts,
    refused: IntCounterVec,
    limits: Limits,
    stop: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let allowed = Arc::new(allowed);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    info!(addr = ?listener.local_addr().ok(), "HTTP endpoint listening");
    tokio::pin!(stop);
    loop {
        // The peer's address is not kept: no address reaches the log.
        let (stream, _) = tokio::select! {
            _ = &mut stop => return Ok(()),
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                // Out of file descriptors or a connection reset before it
                // was accepted: the listener itself is fine.
                Err(e) if is_transient(&e) => {
                    debug!(error = %e, "HTTP endpoint accept failed; going on");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(HttpError::Accept(e)),
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.with_label_values(&[CONNECTION_LIMIT_REASON]).inc();
            drop(stream);
            continue;
        };
        let (routes, allowed, refused) = (routes.clone(), allowed.clone(), refused.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let (routes, allowed, refused) = (routes.clone(), allowed.clone(), refused.clone());
                async move { Ok::<_, Infallible>(guarded(req, &routes, &allowed, &refused).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(connection);
            let ended = tokio::select! {
                r = connection.as_mut() => r,
                () = tokio::time::sleep(limits.connection_lifetime) => {
                    // At its lifetime: finish the answer in progress (a
                    // client that does not read it gets the head timeout
                    // more), then close instead of reading another request.
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(limits.head_timeout, connection).await {
                        Ok(r) => r,
                        Err(_) => {
                            debug!("HTTP connection dropped: its answer was not read");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = ended {
                debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

/// Linux `ENFILE` and `EMFILE`: no file descriptor for the new connection.
const OUT_OF_DESCRIPTORS: [i32; 2] = [23, 24];

/// An accept error that concerns one connection or a passing shortage, not
/// the listener.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || e
        .raw_os_error()
        .is_some_and(|code| OUT_OF_DESCRIPTORS.contains(&code))
}

/// Refuses foreign hosts and web pages (except on `/healthz`) and methods
/// other than `GET`/`HEAD`, then lets `routes` answer.
async fn guarded<R: Routes>(
    req: Request<Incoming>,
    routes: &R,
    allowed: &AllowedHosts,
    refused: &IntCounterVec,
) -> Answer {
    // The liveness probe carries no data: probes may use any Host.
    let probe = req.uri().path() == "/healthz";
    if !probe && let Err(refusal) = host_guard::check(req.uri(), req.headers(), allowed) {
        refused.with_label_values(&[refusal.as_label()]).inc();
        return text(refusal.status(), &format!("{refusal}\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only endpoint: GET only\n",
        );
    }
    routes.answer(req).await
}

/// A `text/plain` answer.
pub fn text(status: StatusCode, body: &str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An `application/json` answer (pretty-printed).
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Answer {
    let body = serde_json::to_vec_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The answer to `/metrics`: the Prometheus text, or 500 naming the error.
pub fn metrics_text(rendered: Result<String, prometheus::Error>) -> Answer {
    match rendered {
        Ok(body) => text(StatusCode::OK, &body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
