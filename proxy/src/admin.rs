//! The admin listener: metrics, health, readiness, reload, the active config,
//! certificate status (`/admin/certs`, `POST /admin/certs/renew?name=`) and
//! the tracker's integrity value (`/admin/tag`).
//!
//! It binds loopback by default and is never served on a public listener.
//! When `admin.token_file` is set, everything but `/healthz` and `/readyz`
//! requires `Authorization: Bearer <token>`.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::METRICS;
use crate::reload::{ReloadOutcome, Reloader, Trigger};
use crate::state::EdgeState;

/// The admin HTTP app.
pub struct AdminApp {
    state: Arc<EdgeState>,
    reloader: Arc<Reloader>,
}

impl AdminApp {
    /// App over the shared state.
    pub fn new(state: Arc<EdgeState>, reloader: Arc<Reloader>) -> Self {
        Self { state, reloader }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let rt = self.state.runtime();
        let Some(expected) = rt.admin_token.as_deref() else {
            return true;
        };
        let presented = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(presented.as_bytes(), expected)
    }
}

/// Compares secrets in constant time (digests first, so the length leaks nothing either).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let da = ring::digest::digest(&ring::digest::SHA256, a);
    let db = ring::digest::digest(&ring::digest::SHA256, b);
    da.as_ref().ct_eq(db.as_ref()).into()
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    if let Ok(v) = resp.body().len().to_string().parse() {
        resp.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
    resp
}

fn text(status: StatusCode, msg: &str) -> Response<Vec<u8>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        format!("{msg}\n").into_bytes(),
    )
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", value.to_string().into_bytes())
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let public = matches!(path.as_str(), "/healthz" | "/readyz");
        let (endpoint, resp) = if !public && !self.authorized(session) {
            (
                "unauthorized",
                text(StatusCode::UNAUTHORIZED, "admin token required"),
            )
        } else {
            match (path.as_str(), method.as_str()) {
                ("/metrics", "GET") => (
                    "metrics",
                    respond(
                        StatusCode::OK,
                        "text/plain; version=0.0.4",
                        METRICS.render(),
                    ),
                ),
                ("/healthz", "GET") => ("healthz", text(StatusCode::OK, "ok")),
                ("/readyz", "GET") => match crate::admin_spool::not_ready_reason(&self.state) {
                    None => ("readyz", text(StatusCode::OK, "ready")),
                    Some(why) => ("readyz", text(StatusCode::SERVICE_UNAVAILABLE, &why)),
                },
                ("/admin/spool", "GET") => (
                    "spool",
                    json(StatusCode::OK, &crate::admin_spool::status(&self.state)),
                ),
                ("/admin/reload", "POST") => {
                    let outcome = self.reloader.reload(Trigger::Admin).await;
                    let status = match outcome {
                        ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged { .. } => {
                            StatusCode::OK
                        }
                        ReloadOutcome::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                        ReloadOutcome::Rejected { .. } => StatusCode::CONFLICT,
                    };
                    let body = serde_json::to_value(&outcome).unwrap_or_default();
                    ("reload", json(status, &body))
                }
                ("/admin/config", "GET") => {
                    let rt = self.state.runtime();
                    let body = serde_json::json!({
                        "version": rt.version(),
                        "sha256": rt.loaded.sha256,
                        "path": rt.loaded.path.display().to_string(),
                        "config": rt.loaded.config.redacted(),
                    });
                    ("config", json(StatusCode::OK, &body))
                }
                ("/admin/tag", "GET") => (
                    "tag",
                    json(
                        StatusCode::OK,
                        &crate::tag::admin_status(&self.state.runtime().loaded.config),
                    ),
                ),
                ("/admin/certs", "GET") => (
                    "certs",
                    json(
                        StatusCode::OK,
                        &crate::acme::status::snapshot(&self.state.acme),
                    ),
                ),
                ("/admin/certs/renew", "POST") => {
                    let name = session
                        .req_header()
                        .uri
                        .query()
                        .and_then(|q| {
                            url::form_urlencoded::parse(q.as_bytes())
                                .find(|(k, _)| k == "name")
                                .map(|(_, v)| v.into_owned())
                        })
                        .unwrap_or_default();
                    let resp = if name.is_empty() {
                        text(
                            StatusCode::BAD_REQUEST,
                            "give the name: /admin/certs/renew?name=NAME",
                        )
                    } else if self.state.acme.force_renewal(&name) {
                        text(
                            StatusCode::ACCEPTED,
                            &format!("renewal of {name} scheduled"),
                        )
                    } else {
                        text(
                            StatusCode::NOT_FOUND,
                            &format!("{name} is not a name this edge manages over ACME"),
                        )
                    };
                    ("certs_renew", resp)
                }
                (
                    "/metrics" | "/healthz" | "/readyz" | "/admin/config" | "/admin/certs"
                    | "/admin/tag",
                    _,
                ) => (
                    "method_not_allowed",
                    text(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
                ),
                ("/admin/reload" | "/admin/certs/renew", _) => (
                    "method_not_allowed",
                    text(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
                ),
                _ => (
                    "not_found",
                    text(StatusCode::NOT_FOUND, "no such admin endpoint"),
                ),
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
