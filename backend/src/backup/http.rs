//! The backup's routes on the read-only HTTP endpoint (`backup --http`;
//! [`crate::endpoint`]: host guard, `GET` only, connection limits):
//!
//! * `GET /metrics` — Prometheus text ([`super::metrics`]);
//! * `GET /healthz` — `ok`.
//!
//! Refusals are counted in `edge_backup_http_refused_total{reason}`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::net::TcpListener;

use super::metrics::BackupMetrics;
use crate::endpoint::{self, AllowedHosts, Answer, HttpError, metrics_text, text};

/// Default listen address of `backup --http` given without a value.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9903";

/// Serves the backup's routes until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: BackupMetrics,
    allowed: AllowedHosts,
    stop: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let refused = metrics.http_refused.clone();
    endpoint::serve(listener, BackupRoutes { metrics }, allowed, refused, stop).await
}

#[derive(Clone)]
struct BackupRoutes {
    metrics: BackupMetrics,
}

impl endpoint::Routes for BackupRoutes {
    async fn answer(&self, req: Request<Incoming>) -> Answer {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/metrics" => metrics_text(self.metrics.render()),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}
