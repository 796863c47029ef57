//! The public HTTP application: Host → site, then route to the event endpoints.
//!
//! The edge never proxies: every request is answered here, through Pingora's
//! plain `HttpServerApp` path ([`app`]), not its `ProxyHttp` state machine.
//! Each request ends with exactly one [`Reply`], counted in
//! `edge_requests_total{site,outcome}` once it is written.

pub(crate) mod app;
pub(crate) mod body;
pub(crate) mod head;
pub(crate) mod ingest;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use edge_config::{BotAction, PlainHttp};
use http::{HeaderName, HeaderValue, header};
use pingora::apps::HttpServerOptions;
use pingora::protocols::http::ServerSession as Session;

use crate::bots;
use crate::clientip::{ClientIpPolicy, IpSource};
use crate::metrics::{METRICS, RequestOutcome};
use crate::reply::Reply;
use crate::runtime::{Runtime, SiteEntry, strip_port};
use crate::state::EdgeState;
use body::BodyError;
use edge_ratelimit::{Check, Scope, Verdict};

/// Per-request context.
pub(crate) struct RequestCtx {
    started: Instant,
    site: Option<Arc<SiteEntry>>,
    outcome: Option<RequestOutcome>,
}

/// Which public listener a handler serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// Plain HTTP: ACME HTTP-01 answers, then a redirect to HTTPS unless
    /// `listeners.plain_http = "events"`.
    Plain,
    /// HTTPS (TLS terminated by [`crate::tls::TlsApp`]).
    Tls,
}

/// The HTTP application behind both public listeners (see [`app`]).
pub(crate) struct EdgeHttp {
    state: Arc<EdgeState>,
    listener: Listener,
    server_options: HttpServerOptions,
}

/// Path prefix of ACME HTTP-01 challenge requests (RFC 8555 §8.3).
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

impl EdgeHttp {
    /// Handler over the shared state for one listener, with Pingora's
    /// HTTP server options (the HTTP/2 idle timeout).
    pub(crate) fn new(
        state: Arc<EdgeState>,
        listener: Listener,
        server_options: HttpServerOptions,
    ) -> Self {
        Self {
            state,
            listener,
            server_options,
        }
    }

    async fn handle(&self, session: &mut Session, rt: &Runtime, ctx: &mut RequestCtx) -> Reply {
        if let Some(refused) = head::check(session, rt) {
            return refused;
        }
        let Some(host) = request_host(session) else {
            return Reply::text(400, RequestOutcome::Malformed, "missing Host header");
        };
        if self.listener == Listener::Plain {
            let path = session.req_header().uri.path();
            if let Some(token) = path.strip_prefix(ACME_CHALLENGE_PREFIX) {
                return self.acme_challenge(&host, token).await;
            }
            // Only names this edge serves are redirected: never send a
            // client on to an arbitrary Host.
            if rt.plain_http == PlainHttp::Redirect && rt.sites.lookup(&host).is_some() {
                return redirect_to_https(session, rt, &host);
            }
        }
        let Some(site) = rt.sites.lookup(&host).cloned() else {
            return Reply::text(
                421,
                RequestOutcome::UnknownHost,
                "no site is configured for this host on this edge",
            );
        };
        ctx.site = Some(site.clone());
        if session.req_header().uri.path() == crate::tracker::TAG_PATH {
            // The tracker is a public static asset, the same bytes for every
            // page: no Origin allow-list, its own CORS (`*`) and caching.
            let req = session.req_header();
            let if_none_match = req
                .headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            let tag = &rt.loaded.config.tag;
            return crate::tracker::respond(&req.method, if_none_match, tag, &crate::tracker::TAG);
        }
        // Checked readable by `head::check`: a value that is not is refused there.
        let origin = session.req_header().headers.get(header::ORIGIN).cloned();
        if let Some(origin) = &origin
            && !site.allows_origin(origin.to_str().unwrap_or_default())
        {
            return Reply::text(
                403,
                RequestOutcome::OriginForbidden,
                "this origin may not send events for this site",
            );
        }
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let reply = match (path.as_str(), method.as_str()) {
            ("/api/event", "POST") => self.post_event(session, rt, &site).await,
            ("/api/event", "OPTIONS") => preflight(),
            ("/api/event", _) => method_not_allowed("POST, OPTIONS"),
            ("/api/event.gif", "GET") => self.pixel_event(session, rt, &site).await,
            // A HEAD gets the pixel's headers and ingests nothing: link
            // checkers and prefetchers must not count as visits.
            ("/api/event.gif", "HEAD") => {
                let mut reply = Reply::pixel();
                reply.outcome = RequestOutcome::PixelHead;
                reply
            }
            ("/api/event.gif", _) => method_not_allowed("GET, HEAD"),
            _ => Reply::text(404, RequestOutcome::NotFound, "no route for this path"),
        };
        with_cors(reply, &site, origin.as_ref())
    }

    async fn acme_challenge(&self, host: &str, token: &str) -> Reply {
        match self
            .state
            .acme
            .http_challenge(strip_port(host), token)
            .await
        {
            Some(key_authorization) => {
                edge_acme::METRICS
                    .acme_challenges_served
                    .with_label_values(&["http-01"])
                    .inc();
                Reply::text(200, RequestOutcome::AcmeChallenge, key_authorization).with_header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )
            }
            None => Reply::text(
                404,
                RequestOutcome::NotFound,
                "no pending ACME challenge for this token and host",
            ),
        }
    }

    async fn post_event(&self, session: &mut Session, rt: &Runtime, site: &SiteEntry) -> Reply {
        if let Some(ct) = header_str(session, &header::CONTENT_TYPE) {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" && essence != "text/plain" {
                return Reply::text(
                    415,
                    RequestOutcome::UnsupportedMediaType,
                    "this content type is not accepted; send application/json or text/plain",
                )
                .closing();
            }
        }
        let body = match body::read_bounded(session, rt.max_body_bytes, rt.body_timeout).await {
            Ok(b) => b,
            Err(e @ BodyError::TooLarge { .. }) => {
                return Reply::text(413, RequestOutcome::PayloadTooLarge, e.to_string()).closing();
            }
            Err(e @ BodyError::Timeout(_)) => {
                return Reply::text(408, RequestOutcome::BodyTimeout, e.to_string()).closing();
            }
            Err(BodyError::Read(_)) => {
                // The cause may quote the client's bytes: not echoed.
                return Reply::text(
                    400,
                    RequestOutcome::Malformed,
                    "the request body could not be read (bad chunked encoding or connection error)",
                )
                .closing();
            }
        };
        let events = match edge_collector::schema::parse_body(&body, &rt.bounds) {
            Ok(ev) => ev,
            Err(e) => return rejected(&e),
        };
        drop(body);
        // Only what validation accepted is captured, in its sanitised form.
        let ip = client_ip(session, rt);
        capture(session, rt, ip, &events);
        let count = events.len();
        match self.screen_and_deliver(session, rt, site, ip, events).await {
            // Bots get the same answer as everyone: they learn nothing.
            Ok(outcome) => Reply::accepted(outcome, count),
            Err(reply) => reply,
        }
    }

    async fn pixel_event(&self, session: &mut Session, rt: &Runtime, site: &SiteEntry) -> Reply {
        let query = session.req_header().uri.query().unwrap_or("");
        let event = match edge_collector::schema::parse_query(query, &rt.bounds) {
            Ok(ev) => ev,
            Err(e) => return rejected(&e),
        };
        let ip = client_ip(session, rt);
        capture(session, rt, ip, std::slice::from_ref(&event));
        match self
            .screen_and_deliver(session, rt, site, ip, vec![event])
            .await
        {
            Ok(outcome) => {
                let mut reply = Reply::pixel();
                reply.outcome = outcome;
                reply
            }
            Err(reply) => reply,
        }
    }

    /// Bot filter, rate limits, then enrichment and delivery
    /// ([`ingest::ingest`]) of the validated `events` of client `ip`. `Ok`
    /// carries the outcome of a request that gets the normal success answer:
    /// its events were delivered, or they were a bot's and dropped.
    async fn screen_and_deliver(
        &self,
        session: &Session,
        rt: &Runtime,
        site: &SiteEntry,
        ip: IpAddr,
        events: Vec<edge_collector::schema::IncomingEvent>,
    ) -> std::result::Result<RequestOutcome, Reply> {
        let user_agent = header_str(session, &header::USER_AGENT);
        let filter = rt.bots.as_deref();
        let mut bot = bots::judge_request(filter, site.bot_action, user_agent, ip);
        if bot.is_some_and(|v| v.action == BotAction::Drop) {
            return Ok(RequestOutcome::BotDropped);
        }
        // Each referrer is parsed once, for the spam check and enrichment.
        let mut events: Vec<_> = events
            .into_iter()
            .map(|e| {
                let referrer = e
                    .referrer
                    .as_deref()
                    .and_then(edge_collector::sanitize::parse_referrer);
                (e, referrer)
            })
            .collect();
        if bot.is_none() {
            // Referrer spam is judged per event: a dropping site loses just
            // those events, a tagging site keeps them all and tags the request.
            events.retain(|(_, referrer)| {
                match bots::judge_referrer(filter, site.bot_action, referrer.as_ref()) {
                    Some(v) if v.action == BotAction::Drop => false,
                    Some(v) => {
                        bot = Some(v);
                        true
                    }
                    None => true,
                }
            });
        }
        if bot.is_some_and(|v| v.action == BotAction::Drop) || events.is_empty() {
            return Ok(RequestOutcome::BotDropped);
        }
        let limits = rt.rate_limits.check(&site.id, ip, events.len());
        crate::metrics::count_ratelimit(&limits);
        if let Verdict::Refused { scope, check } = limits.verdict {
            crate::metrics::events::events_rate_limited(&site.id, events.len() as u64);
            return Err(rate_limited(scope, check, events.len()));
        }
        let client = ingest::ClientInfo {
            ip,
            user_agent: user_agent.unwrap_or(""),
            bot: bot.map(|v| v.reason),
        };
        ingest::ingest(&self.state, rt, site, events, &client)
            .await
            .map(|()| RequestOutcome::Accepted)
    }
}

/// A 400 naming the validation problem, counted by reason.
fn rejected(e: &edge_collector::schema::EventError) -> Reply {
    METRICS
        .event_rejections
        .with_label_values(&[e.kind()])
        .inc();
    Reply::text(400, RequestOutcome::Malformed, e.to_string())
}

/// `308` to the same path and query over HTTPS (the listener's port when it
/// is not 443), for a host that names a configured site (others get 421).
fn redirect_to_https(session: &Session, rt: &Runtime, host: &str) -> Reply {
    let name = strip_port(host);
    let name = if name.contains(':') {
        format!("[{name}]")
    } else {
        name.to_string()
    };
    let port = match rt.loaded.config.listeners.https.map(|a| a.port()) {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    let target = session
        .req_header()
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str());
    let location = format!("https://{name}{port}{target}");
    Reply::text(308, RequestOutcome::Redirect, "use HTTPS")
        .with_built_header(header::LOCATION, location)
}

fn preflight() -> Reply {
    let mut reply = Reply::text(204, RequestOutcome::Preflight, "");
    reply.body = bytes::Bytes::new();
    reply
        .with_header(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        )
        .with_header(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        )
        .with_header(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        )
}

fn method_not_allowed(allow: &'static str) -> Reply {
    Reply::text(
        405,
        RequestOutcome::MethodNotAllowed,
        format!("method not allowed; this route accepts {allow}"),
    )
    .with_header(header::ALLOW, HeaderValue::from_static(allow))
}

fn with_cors(reply: Reply, site: &SiteEntry, origin: Option<&HeaderValue>) -> Reply {
    match origin {
        Some(origin) if !site.allowed_origins.is_empty() => reply
            .with_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())
            .with_header(header::VARY, HeaderValue::from_static("Origin")),
        _ => reply.with_header(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ),
    }
}

fn header_str<'a>(session: &'a Session, name: &HeaderName) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

/// Host from the URI authority (HTTP/2, absolute-form) or the Host header.
fn request_host(session: &Session) -> Option<String> {
    if let Some(host) = session.req_header().uri.host() {
        return Some(host.to_string());
    }
    header_str(session, &header::HOST).map(str::to_string)
}

/// Hands a validated event request to the capture (when on and sampled).
fn capture(
    session: &Session,
    rt: &Runtime,
    client: IpAddr,
    events: &[edge_collector::schema::IncomingEvent],
) {
    rt.capture.observe(move || {
        let req = session.req_header();
        let host = req
            .uri
            .host()
            .or_else(|| req.headers.get(header::HOST).and_then(|v| v.to_str().ok()))
            .unwrap_or("");
        edge_capture::Request {
            ts_ms: edge_certs::clock::unix_millis(),
            method: &req.method,
            host: strip_port(host),
            uri: &req.uri,
            headers: &req.headers,
            events,
            client,
        }
    });
}

/// The client address: the socket peer (or PROXY protocol source), or what
/// a trusted proxy's forwarding header says (see [`crate::clientip`]). The
/// one place a request's client address is resolved and its source counted.
fn client_ip(session: &Session, rt: &Runtime) -> IpAddr {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    resolve_client(peer, &session.req_header().headers, &rt.client_ip)
}

/// [`client_ip`] over its parts: the peer (`None` for a non-IP socket, read
/// as 0.0.0.0), the request headers and the `[client_ip]` policy. Counts
/// `edge_client_ip_source_total` when a forwarding header was consulted.
fn resolve_client(
    peer: Option<IpAddr>,
    headers: &http::HeaderMap,
    policy: &ClientIpPolicy,
) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let (ip, source) = match policy.header_name() {
        None => (peer, IpSource::Peer),
        Some(name) => policy.resolve(
            peer,
            headers.get_all(name).iter().filter_map(|v| v.to_str().ok()),
        ),
    };
    if source != IpSource::Peer {
        METRICS
            .abuse
            .client_ip_source
            .with_label_values(&[source.as_label()])
            .inc();
    }
    ip
}

/// `429` for events a rate-limit scope refused.
fn rate_limited(scope: Scope, check: Check, events: usize) -> Reply {
    let wait = match check {
        Check::OverBurst { burst } => {
            return Reply::text(
                429,
                RequestOutcome::RateLimited,
                format!(
                    "a batch of {events} events exceeds the {} burst of {burst}; send smaller batches",
                    scope.as_label()
                ),
            );
        }
        Check::Limited { retry_after } => retry_after,
        // A refusal is never `Allowed`; one second is a safe hint regardless.
        Check::Allowed => std::time::Duration::from_secs(1),
    };
    let secs = edge_ratelimit::retry_after_seconds(wait);
    Reply::text(
        429,
        RequestOutcome::RateLimited,
        format!(
            "rate limit exceeded ({}); retry after {secs} s",
            scope.as_label()
        ),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
}

#[cfg(test)]
mod tests {
    use edge_config::{ClientIp, ForwardedHeader};

    use super::*;

    fn policy(trusted: &[&str]) -> ClientIpPolicy {
        ClientIpPolicy::new(&ClientIp {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            header: ForwardedHeader::XForwardedFor,
            proxy_protocol: false,
        })
    }

    fn xff(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn source_count(source: IpSource) -> u64 {
        METRICS
            .abuse
            .client_ip_source
            .with_label_values(&[source.as_label()])
            .get()
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwards_it() {
        let trusting = policy(&["10.0.0.0/8"]);
        let before = source_count(IpSource::XForwardedFor);
        // Trusted peer: the header decides, and the source is counted.
        assert_eq!(
            resolve_client(Some(ip("10.0.0.1")), &xff("198.51.100.7"), &trusting),
            ip("198.51.100.7")
        );
        assert!(source_count(IpSource::XForwardedFor) > before);
        // Untrusted peer: its header is ignored.
        assert_eq!(
            resolve_client(Some(ip("203.0.113.9")), &xff("198.51.100.7"), &trusting),
            ip("203.0.113.9")
        );
        // No trusted proxies: headers are never read.
        assert_eq!(
            resolve_client(Some(ip("10.0.0.1")), &xff("198.51.100.7"), &policy(&[])),
            ip("10.0.0.1")
        );
        // A non-IP socket (Unix) has no address.
        assert_eq!(
            resolve_client(None, &http::HeaderMap::new(), &policy(&[])),
            ip("0.0.0.0")
        );
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn rate_limited_answers_429_with_a_rounded_up_retry_after() {
        let r = rate_limited(
            Scope::PerIp,
            Check::Limited {
                retry_after: std::time::Duration::from_millis(1_500),
            },
            3,
        );
        assert_eq!((r.status, r.outcome), (429, RequestOutcome::RateLimited));
        assert_eq!(header(&r, "retry-after"), Some("2"));
        assert!(String::from_utf8_lossy(&r.body).contains("per_ip"));
        // A batch over the burst never conforms: no Retry-After, a hint instead.
        let r = rate_limited(Scope::PerSite, Check::OverBurst { burst: 4 }, 9);
        assert_eq!(r.status, 429);
        assert_eq!(header(&r, "retry-after"), None);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains("batch of 9") && body.contains("burst of 4"),
            "{body}"
        );
    }

    #[test]
    fn a_rejected_event_is_a_counted_400_naming_the_problem() {
        let bounds = edge_collector::schema::Bounds::default();
        let err = edge_collector::schema::parse_body(b"{not json", &bounds).unwrap_err();
        let counted = || {
            METRICS
                .event_rejections
                .with_label_values(&[err.kind()])
                .get()
        };
        let before = counted();
        let r = rejected(&err);
        assert_eq!((r.status, r.outcome), (400, RequestOutcome::Malformed));
        assert_eq!(counted(), before + 1);
        assert!(!r.body.is_empty());
    }
}
