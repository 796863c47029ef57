//! The read-only HTTP endpoint of the aggregator (HTTP/1.1, loopback by default):
//!
//! * `GET /stats?site=S&from=T&to=T[&bucket=minute|hour][&limit=N]` — the
//!   rollups as JSON (the same document `edge-backend stats` prints);
//! * `GET /metrics` — Prometheus text;
//! * `GET /healthz` — `ok`.
//!
//! Every other method is refused with 405; nothing here writes. Like the
//! edge's admin API, every request must name an allowed `Host` (the
//! loopback names by default, plus the listen address; `aggregate
//! --http-allowed-host`) and must not come from a web page (`Origin`, or a
//! cross-site `Sec-Fetch-Site`), so neither a page the operator visits nor
//! DNS rebinding reads the statistics: 421, 400 or 403 otherwise, counted
//! in `edge_backend_http_refused_total{reason}`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

pub use edge_config::host_guard::AllowedHosts;
use edge_config::host_guard::{self, LOOPBACK_HOSTS};

use super::metrics::Metrics;
use super::rollup::BucketSize;
use super::stats::{StatsQuery, parse_time, query};
use super::store::Store;

/// Default number of values per dimension.
pub const DEFAULT_LIMIT: usize = 10;

/// Default allowed hosts: the loopback names (any port).
pub fn default_allowed_hosts() -> Vec<String> {
    LOOPBACK_HOSTS.iter().map(|h| (*h).to_string()).collect()
}

/// Why the endpoint cannot listen or stopped listening.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound.
    #[error("cannot bind stats endpoint {addr}: {error}")]
    Bind {
        /// The listen address.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// Accepting a connection failed.
    #[error("stats endpoint accept failed: {0}")]
    Accept(std::io::Error),
}

/// Binds `addr` (warning when it is not loopback) and returns the listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    if !addr.ip().is_loopback() {
        warn!(%addr, "stats endpoint bound to a non-loopback address: it has no authentication");
    }
    TcpListener::bind(addr)
        .await
        .map_err(|error| HttpError::Bind { addr, error })
}

/// Serves connections until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    metrics: Metrics,
    allowed: AllowedHosts,
    stop: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let allowed = std::sync::Arc::new(allowed);
    info!(addr = ?listener.local_addr().ok(), "stats endpoint listening");
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => return Ok(()),
            r = listener.accept() => r.map_err(HttpError::Accept)?,
        };
        let store = store.clone();
        let metrics = metrics.clone();
        let allowed = allowed.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let store = store.clone();
                let metrics = metrics.clone();
                let allowed = allowed.clone();
                async move { Ok::<_, Infallible>(guarded(req, &store, &metrics, &allowed).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!(%peer, error = %e, "stats connection ended with an error");
            }
        });
    }
}

/// Refuses foreign hosts and web pages (except on `/healthz`), then answers.
async fn guarded(
    req: Request<Incoming>,
    store: &Store,
    metrics: &Metrics,
    allowed: &AllowedHosts,
) -> Response<Full<Bytes>> {
    // The liveness probe carries no data: probes may use any Host.
    let probe = req.uri().path() == "/healthz";
    if !probe && let Err(refusal) = host_guard::check(req.uri(), req.headers(), allowed) {
        metrics
            .http_refused
            .with_label_values(&[refusal.as_label()])
            .inc();
        return text(refusal.status(), &format!("{refusal}\n"));
    }
    handle(req, store, metrics).await
}

async fn handle(req: Request<Incoming>, store: &Store, metrics: &Metrics) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only endpoint: GET only\n",
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/metrics" => match metrics.render() {
            Ok(body) => text(StatusCode::OK, &body),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        },
        "/stats" => {
            let params: HashMap<String, String> = req
                .uri()
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default();
            let q = match stats_query(&params) {
                Ok(q) => q,
                Err(e) => return json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e })),
            };
            match query(store, &q).await {
                Ok(report) => json(StatusCode::OK, &report),
                Err(e) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({ "error": format!("{e:#}") }),
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Builds a query from URL parameters (`site`, `from`, `to` required).
pub fn stats_query(params: &HashMap<String, String>) -> Result<StatsQuery, String> {
    let get = |k: &str| {
        params
            .get(k)
            .ok_or_else(|| format!("missing parameter {k}"))
    };
    Ok(StatsQuery {
        site: get("site")?.clone(),
        from_ms: parse_time(get("from")?)?,
        to_ms: parse_time(get("to")?)?,
        bucket: match params.get("bucket") {
            Some(b) => b.parse()?,
            None => BucketSize::Minute,
        },
        limit: match params.get("limit") {
            Some(l) => l.parse().map_err(|e| format!("limit: {e}"))?,
            None => DEFAULT_LIMIT,
        },
    })
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, req: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_stats_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&super::super::store::sqlite_url_in(dir.path()))
            .await
            .unwrap();
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let allowed = AllowedHosts::new(&default_allowed_hosts(), Some(addr));
        let server = tokio::spawn(serve(
            listener,
            store,
            Metrics::new().unwrap(),
            allowed,
            async {
                let _ = rx.await;
            },
        ));
        let ok = get(
            addr,
            "GET /stats?site=s&from=0&to=2026-01-01T00:00:00Z&bucket=hour HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("\"bucket\": \"hour\""), "{ok}");
        let bad = get(
            addr,
            "GET /stats?site=s HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(
            bad.starts_with("HTTP/1.1 400") && bad.contains("missing parameter from"),
            "{bad}"
        );
        let post = get(
            addr,
            "POST /stats HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let metrics = get(
            addr,
            "GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(
            metrics.contains("edge_backend_events_aggregated_total 0"),
            "{metrics}"
        );
        let rebound = get(
            addr,
            "GET /stats?site=s&from=0&to=1 HTTP/1.1\r\nhost: rebind.evil.example\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
        let page = get(
            addr,
            "GET /stats?site=s&from=0&to=1 HTTP/1.1\r\nhost: 127.0.0.1\r\norigin: https://evil.example\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 403"), "{page}");
        let probe = get(
            addr,
            "GET /healthz HTTP/1.1\r\nhost: 10.1.2.3:9902\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
        let metrics = get(
            addr,
            "GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .await;
        for reason in ["foreign_host", "origin"] {
            assert!(
                metrics.contains(&format!(
                    "edge_backend_http_refused_total{{reason=\"{reason}\"}} 1"
                )),
                "{metrics}"
            );
        }
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
