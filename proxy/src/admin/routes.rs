//! The admin endpoints: the route table ([`Endpoint`]) and one small
//! handler per endpoint. A new endpoint is a variant here (path, method,
//! label) plus its arm in [`AdminApp::serve`], and a line below.
//!
//! | method | path | answers |
//! |---|---|---|
//! | GET | `/metrics` | every metric, Prometheus text format |
//! | GET | `/healthz` | `ok` while the process runs (probe: any Host) |
//! | GET | `/readyz` | `ready`, or 503 and why not (probe: any Host) |
//! | POST | `/admin/reload` | reloads the config file, JSON outcome |
//! | GET | `/admin/config` | the active config, secrets redacted |
//! | GET | `/admin/certs` | certificates and ACME state |
//! | POST | `/admin/certs/renew?name=` | forces an ACME renewal of one name |
//! | GET | `/admin/tag` | the tracker script's integrity status |
//! | GET | `/admin/spool` | the durable spool's state |

use std::time::Duration;

use http::{Response, StatusCode};
use pingora::protocols::http::ServerSession;

use super::AdminApp;
use super::reply::{json, respond, text, with_header};
use crate::metrics::METRICS;
use crate::reload::{ReloadOutcome, Trigger};
use edge_acme::RenewAnswer;

/// One admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `GET /metrics`.
    Metrics,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `POST /admin/reload`.
    Reload,
    /// `GET /admin/config`.
    Config,
    /// `GET /admin/certs`.
    Certs,
    /// `POST /admin/certs/renew?name=`.
    CertsRenew,
    /// `GET /admin/tag`.
    Tag,
    /// `GET /admin/spool`.
    Spool,
}

impl Endpoint {
    const ALL: [Endpoint; 9] = [
        Endpoint::Metrics,
        Endpoint::Healthz,
        Endpoint::Readyz,
        Endpoint::Reload,
        Endpoint::Config,
        Endpoint::Certs,
        Endpoint::CertsRenew,
        Endpoint::Tag,
        Endpoint::Spool,
    ];

    /// The endpoint at `path`, if any.
    pub(super) fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.path() == path)
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Metrics => "/metrics",
            Endpoint::Healthz => "/healthz",
            Endpoint::Readyz => "/readyz",
            Endpoint::Reload => "/admin/reload",
            Endpoint::Config => "/admin/config",
            Endpoint::Certs => "/admin/certs",
            Endpoint::CertsRenew => "/admin/certs/renew",
            Endpoint::Tag => "/admin/tag",
            Endpoint::Spool => "/admin/spool",
        }
    }

    /// The `endpoint` label of `edge_admin_requests_total`.
    pub(super) fn label(self) -> &'static str {
        match self {
            Endpoint::Metrics => "metrics",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Reload => "reload",
            Endpoint::Config => "config",
            Endpoint::Certs => "certs",
            Endpoint::CertsRenew => "certs_renew",
            Endpoint::Tag => "tag",
            Endpoint::Spool => "spool",
        }
    }

    /// The one method the endpoint takes.
    pub(super) fn method(self) -> &'static str {
        if self.changes_state() { "POST" } else { "GET" }
    }

    /// Whether the endpoint changes the edge's state (POST, and a token or
    /// `X-Edge-Admin: 1`).
    pub(super) fn changes_state(self) -> bool {
        matches!(self, Endpoint::Reload | Endpoint::CertsRenew)
    }

    /// Liveness and readiness probes: no data, no state change, any Host.
    pub(super) fn is_probe(self) -> bool {
        matches!(self, Endpoint::Healthz | Endpoint::Readyz)
    }
}

impl AdminApp {
    /// Answers a request that passed the guard.
    pub(super) async fn serve(
        &self,
        endpoint: Endpoint,
        session: &ServerSession,
    ) -> Response<Vec<u8>> {
        match endpoint {
            Endpoint::Metrics => {
                // The spool gauges are current at every scrape, also while
                // the shipper waits out a stalled broker between rounds.
                self.state.spool.publish();
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    METRICS.render(),
                )
            }
            Endpoint::Healthz => text(StatusCode::OK, "ok"),
            Endpoint::Readyz => self.readyz(),
            Endpoint::Reload => self.reload().await,
            Endpoint::Config => self.config(),
            Endpoint::Certs => json(
                StatusCode::OK,
                &edge_acme::status_snapshot(&self.state.acme),
            ),
            Endpoint::CertsRenew => self.certs_renew(session.req_header().uri.query()),
            Endpoint::Tag => json(
                StatusCode::OK,
                &crate::tracker::admin_status(&self.state.runtime().loaded.config),
            ),
            Endpoint::Spool => json(StatusCode::OK, &crate::admin_spool::status(&self.state)),
        }
    }

    fn readyz(&self) -> Response<Vec<u8>> {
        match crate::admin_spool::not_ready_reason(&self.state) {
            None => text(StatusCode::OK, "ready"),
            Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, &why),
        }
    }

    async fn reload(&self) -> Response<Vec<u8>> {
        let outcome = self.reloader.reload(Trigger::Admin).await;
        let status = match outcome {
            ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged { .. } => StatusCode::OK,
            ReloadOutcome::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ReloadOutcome::Rejected { .. } => StatusCode::CONFLICT,
        };
        json(status, &serde_json::to_value(&outcome).unwrap_or_default())
    }

    fn config(&self) -> Response<Vec<u8>> {
        let rt = self.state.runtime();
        let body = serde_json::json!({
            "version": rt.version(),
            "sha256": rt.loaded.sha256,
            "path": rt.loaded.path.display().to_string(),
            "config": rt.loaded.config.redacted(),
        });
        json(StatusCode::OK, &body)
    }

    fn certs_renew(&self, query: Option<&str>) -> Response<Vec<u8>> {
        let name = query
            .and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_default();
        if name.is_empty() {
            return text(
                StatusCode::BAD_REQUEST,
                "give the name: /admin/certs/renew?name=NAME",
            );
        }
        match self.state.acme.force_renewal(&name) {
            RenewAnswer::Scheduled => text(
                StatusCode::ACCEPTED,
                &format!("renewal of {name} scheduled"),
            ),
            RenewAnswer::NotManaged => text(
                StatusCode::NOT_FOUND,
                &format!("{name} is not a name this edge manages over ACME"),
            ),
            RenewAnswer::InProgress => text(
                StatusCode::CONFLICT,
                &format!("an order for {name} is running; see /admin/certs"),
            ),
            RenewAnswer::Refused {
                retry_after,
                reason,
                ..
            } => with_header(
                text(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!("renewal refused: {reason}; retry in {}", human(retry_after)),
                ),
                http::header::RETRY_AFTER,
                &retry_after.as_secs().max(1).to_string(),
            ),
        }
    }
}

/// `90061 s` as `1d 1h 1m 1s` (zero parts left out).
fn human(d: Duration) -> String {
    let s = d.as_secs().max(1);
    let parts = [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_doc_lists_every_endpoint_with_its_method() {
        let doc: Vec<&str> = include_str!("routes.rs")
            .lines()
            .filter(|l| l.starts_with("//! | "))
            .collect();
        assert_eq!(doc.len(), Endpoint::ALL.len() + 1, "{doc:?}");
        for e in Endpoint::ALL {
            let row = format!("//! | {} | `{}", e.method(), e.path());
            assert!(doc.iter().any(|l| l.starts_with(&row)), "{row}");
        }
    }

    #[test]
    fn every_endpoint_is_found_by_its_path_only() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
            assert_eq!(Endpoint::from_path(&format!("{}/", e.path())), None);
        }
        assert_eq!(Endpoint::Reload.method(), "POST");
        assert_eq!(Endpoint::Config.method(), "GET");
        assert!(Endpoint::Healthz.is_probe() && !Endpoint::Metrics.is_probe());
    }

    #[test]
    fn waits_read_as_days_hours_minutes_seconds() {
        assert_eq!(human(Duration::from_secs(90_061)), "1d 1h 1m 1s");
        assert_eq!(human(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(human(Duration::ZERO), "1s");
    }
}
