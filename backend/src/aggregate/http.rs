//! The aggregator's routes on the read-only HTTP endpoint
//! ([`crate::endpoint`]: host guard, `GET` only, connection limits):
//!
//! * `GET /stats?site=S&from=T&to=T[&bucket=minute|hour][&limit=N]` — the
//!   rollups as JSON (the same document `edge-backend stats` prints);
//! * `GET /metrics` — Prometheus text;
//! * `GET /healthz` — `ok`.
//!
//! Refusals are counted in `edge_backend_http_refused_total{reason}`.

use std::collections::HashMap;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::net::TcpListener;

use crate::endpoint::{self, Answer, json, metrics_text, text};
pub use crate::endpoint::{AllowedHosts, HttpError, bind, default_allowed_hosts};

use super::metrics::Metrics;
use super::rollup::BucketSize;
use super::stats::{StatsQuery, parse_time, query};
use super::store::Store;

/// Default number of values per dimension.
pub const DEFAULT_LIMIT: usize = 10;

/// Serves the aggregator's routes until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    metrics: Metrics,
    allowed: AllowedHosts,
    stop: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let refused = metrics.http_refused.clone();
    endpoint::serve(
        listener,
        AggregateRoutes { store, metrics },
        allowed,
        refused,
        stop,
    )
    .await
}

#[derive(Clone)]
struct AggregateRoutes {
    store: Store,
    metrics: Metrics,
}

impl endpoint::Routes for AggregateRoutes {
    async fn answer(&self, req: Request<Incoming>) -> Answer {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/metrics" => metrics_text(self.metrics.render()),
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
                    Err(e) => {
                        return json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e }));
                    }
                };
                match query(&self.store, &q).await {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, req: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_stats_behind_the_guard_and_refuses_writes() {
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
        let metrics = get(
            addr,
            "GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .await;
        // The guard itself is tested in endpoint_tests.rs; here, that the
        // aggregator's routes sit behind it and its counter counts.
        assert!(
            metrics.contains("edge_backend_http_refused_total{reason=\"foreign_host\"} 1"),
            "{metrics}"
        );
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
