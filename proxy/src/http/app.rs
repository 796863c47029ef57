//! One request on a public listener, through Pingora's plain `HttpServerApp`.
//!
//! The edge never talks to an upstream, so it does not use Pingora's
//! `ProxyHttp` state machine: that path builds a proxy session (cache state,
//! compression and module contexts, subrequest hooks) and runs its phases for
//! every request, which cost about a third of a 404's instructions (see
//! BENCHMARKS.md, issue #15). Here a request is read, answered by
//! [`EdgeHttp::handle`] with exactly one [`Reply`], counted, and the
//! connection handed back for keep-alive. What the proxy path did for the
//! edge is kept: a malformed head gets Pingora's 400 and `CONNECT` a 405
//! (both close the connection), a client fault while answering is counted in
//! `edge_client_faults_total` instead of logged, anything else is logged
//! with the method and path only.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::Method;
use pingora::ErrorType;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use super::{EdgeHttp, RequestCtx};
use crate::connections::faults;
use crate::metrics::handles::observe_request_duration;
use crate::metrics::{METRICS, RequestOutcome};

#[async_trait]
impl HttpServerApp for EdgeHttp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !read_head(&mut session).await {
            return None;
        }
        if *shutdown.borrow() {
            // Stop the client from reusing a connection of a server shutting down.
            session.set_keepalive(None);
        }
        let mut ctx = RequestCtx {
            started: Instant::now(),
            site: None,
            outcome: None,
        };
        let rt = self.state.runtime();
        let reply = self.handle(&mut session, &rt, &mut ctx).await;
        drop(rt);
        ctx.outcome = Some(reply.outcome);
        let head_only = session.req_header().method == Method::HEAD;
        let written = reply.write(&mut session, head_only).await;
        count_request(&ctx);
        if let Err(e) = written {
            if !faults::suppress_error_log(&e) {
                tracing::error!(
                    error = %e,
                    request = %faults::request_summary(&session),
                    "writing the response failed"
                );
            }
            return None;
        }
        let persistent = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, persistent)),
            Err(e) => {
                if !faults::suppress_error_log(&e) {
                    tracing::debug!(error = %e, "finishing the request failed");
                }
                None
            }
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.server_options)
    }
}

/// Reads and parses the request head (already buffered by the connection
/// layer); `false` when the connection is to be closed. A malformed head is
/// answered 400 and `CONNECT` 405, as Pingora's proxy path does.
async fn read_head(session: &mut ServerSession) -> bool {
    match session.read_request().await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(mut e) => {
            e.as_down();
            if matches!(e.etype, ErrorType::InvalidHTTPHeader) {
                tracing::debug!(error = %e, "malformed request head");
                // Best effort: the client may already be gone.
                let _ = session.respond_error(400).await;
            } else {
                tracing::error!(error = %e, "reading the request head failed");
            }
            session.shutdown().await;
            return false;
        }
    }
    // CONNECT changes the message framing, and the edge tunnels nothing.
    if session.req_header().method == Method::CONNECT {
        let _ = session.respond_error(405).await;
        session.shutdown().await;
        return false;
    }
    true
}

/// `edge_requests_total{site,outcome}` and the request duration, once per
/// request (a request whose answer could not be written counts with the
/// outcome it was given).
fn count_request(ctx: &RequestCtx) {
    let outcome = ctx.outcome.unwrap_or(RequestOutcome::InternalError);
    match &ctx.site {
        Some(site) if outcome == RequestOutcome::Accepted => {
            site.counters.accepted_requests(&site.id).inc();
        }
        site => {
            let site = site.as_ref().map(|s| s.id.as_str()).unwrap_or("-");
            METRICS
                .requests
                .with_label_values(&[site, outcome.as_label()])
                .inc();
        }
    }
    observe_request_duration(outcome, ctx.started.elapsed().as_secs_f64());
}
