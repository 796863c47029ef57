//! The admin listener (`admin.listen`, `127.0.0.1:9901` by default; never
//! served on a public listener).
//!
//! | endpoint | method | what |
//! |---|---|---|
//! | `/metrics` | GET | Prometheus text (every `edge_*` metric) |
//! | `/healthz` | GET | liveness probe |
//! | `/readyz` | GET | readiness: the broker answers and the topic exists |
//! | `/admin/reload` | POST | reload the configuration now |
//! | `/admin/config` | GET | active version and configuration, secrets redacted |
//! | `/admin/certs` | GET | ACME settings and per-name certificate status |
//! | `/admin/certs/renew?name=` | POST | force a renewal, within the CA's and the backoff's limits |
//! | `/admin/tag` | GET | the tracker's integrity value and `<script>` snippets |
//!
//! Modules: [`guard`] (Host, browser, token, method and header checks, run
//! before any endpoint), [`routes`] (the route table and one handler per
//! endpoint), [`reply`] (answer builders). Every request is counted in
//! `edge_admin_requests_total`, every refusal in `edge_admin_refused_total`.

mod guard;
mod reply;
mod routes;

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::METRICS;
use crate::reload::Reloader;
use crate::state::EdgeState;

/// The admin HTTP app.
pub(crate) struct AdminApp {
    state: Arc<EdgeState>,
    reloader: Arc<Reloader>,
}

impl AdminApp {
    /// App over the shared state.
    pub(crate) fn new(state: Arc<EdgeState>, reloader: Arc<Reloader>) -> Self {
        Self { state, reloader }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let checked = guard::check(session.req_header(), &self.state.runtime());
        let (endpoint, resp) = match checked {
            Ok(Some(endpoint)) => (endpoint.label(), self.serve(endpoint, session).await),
            Ok(None) => (
                "not_found",
                reply::text(StatusCode::NOT_FOUND, "no such admin endpoint"),
            ),
            Err(refused) => {
                METRICS
                    .admin_refused
                    .with_label_values(&[refused.reason()])
                    .inc();
                (refused.endpoint_label(), refused.response())
            }
        };
        let class = match resp.status().as_u16() {
            200..=299 => "2xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        METRICS
            .admin_requests
            .with_label_values(&[endpoint, class])
            .inc();
        resp
    }
}
