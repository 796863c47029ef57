//! Checks made before an order: the operator's `ask` endpoint (on-demand
//! names) and, optionally, that the name's DNS points at this edge.
//!
//! Both run only in the background manager, never in a handshake.

use std::collections::HashMap;

use indexmap::IndexSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;

use super::policy::{AskSettings, DnsSettings};
use crate::metrics::METRICS;

/// The answer of the `ask` endpoint for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskVerdict {
    /// 2xx: order a certificate.
    Approved,
    /// Any other status: never order (until the answer expires).
    Denied,
    /// No answer (timeout, connection error): retried after a short pause.
    Unavailable,
}

impl AskVerdict {
    fn label(self) -> &'static str {
        match self {
            AskVerdict::Approved => "approved",
            AskVerdict::Denied => "denied",
            AskVerdict::Unavailable => "error",
        }
    }
}

/// How long an unavailable answer is remembered, so an `ask` outage is not
/// hammered by every handshake.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(10);

/// Most answers remembered; beyond it, expired answers are dropped first,
/// then refusals (approvals are what keep certified names alive).
const MAX_ANSWERS: usize = 100_000;

/// One remembered answer.
struct Answer {
    verdict: AskVerdict,
    /// Fresh until then.
    until: Instant,
    /// When the endpoint gave it (Unix seconds; for a fleet-wide approval,
    /// when the approving edge was answered).
    at_unix: i64,
}

/// Cached `ask` answers plus the names waiting for one.
#[derive(Default)]
pub(crate) struct AskCache {
    answers: Mutex<HashMap<String, Answer>>,
    pending: Mutex<IndexSet<String>>,
}

/// What the handshake path learns from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskState {
    /// Answered and still fresh.
    Known(AskVerdict),
    /// Just queued for the manager to ask (wake it).
    Queued,
    /// Already waiting in the queue.
    AlreadyQueued,
    /// The queue is full; the handshake is refused without asking.
    QueueFull,
}

impl AskCache {
    /// The cached answer for `name`, or queues it (bounded by `max_pending`).
    pub(crate) fn lookup_or_queue(&self, name: &str, max_pending: usize) -> AskState {
        if let Ok(answers) = self.answers.lock()
            && let Some(answer) = answers.get(name)
            && answer.until > Instant::now()
        {
            return AskState::Known(answer.verdict);
        }
        let Ok(mut pending) = self.pending.lock() else {
            return AskState::QueueFull;
        };
        if pending.contains(name) {
            return AskState::AlreadyQueued;
        }
        if pending.len() >= max_pending {
            METRICS.acme_ask.with_label_values(&["queue_full"]).inc();
            return AskState::QueueFull;
        }
        pending.insert(name.to_string());
        AskState::Queued
    }

    /// Takes up to `n` queued names, oldest first.
    pub(crate) fn take_pending(&self, n: usize) -> Vec<String> {
        let Ok(mut pending) = self.pending.lock() else {
            return Vec::new();
        };
        let n = n.min(pending.len());
        pending.drain(..n).collect()
    }

    /// The fresh answer for `name`, if any.
    pub(crate) fn fresh(&self, name: &str) -> Option<AskVerdict> {
        let answers = self.answers.lock().ok()?;
        let answer = answers.get(name)?;
        (answer.until > Instant::now()).then_some(answer.verdict)
    }

    /// Records an answer the endpoint just gave.
    pub(crate) fn record(&self, name: &str, verdict: AskVerdict, settings: &AskSettings) {
        let keep = match verdict {
            AskVerdict::Unavailable => {
                UNAVAILABLE_RETRY.min(settings.cache_for.max(Duration::from_secs(1)))
            }
            _ => settings.cache_for,
        };
        self.insert(name, verdict, keep, edge_certs::clock::unix_seconds());
    }

    /// Records an answer the endpoint gave another edge at `at_unix` (an
    /// approval or a refusal shared through `[acme.shared]`): fresh for what
    /// remains of `cache_for` since then, and only when no answer at least
    /// as recent is remembered (this edge's own refusal is not overridden
    /// by an older approval). Returns whether it was recorded.
    pub(crate) fn record_shared(
        &self,
        name: &str,
        verdict: AskVerdict,
        at_unix: i64,
        settings: &AskSettings,
    ) -> bool {
        let age = (edge_certs::clock::unix_seconds() - at_unix).max(0) as u64;
        let Some(keep) = settings.cache_for.checked_sub(Duration::from_secs(age)) else {
            return false;
        };
        if keep.is_zero() {
            return false;
        }
        if let Ok(answers) = self.answers.lock()
            && let Some(answer) = answers.get(name)
            && answer.until > Instant::now()
            && answer.at_unix >= at_unix
        {
            return false;
        }
        self.insert(name, verdict, keep, at_unix);
        true
    }

    fn insert(&self, name: &str, verdict: AskVerdict, keep: Duration, at_unix: i64) {
        if let Ok(mut answers) = self.answers.lock() {
            let now = Instant::now();
            if answers.len() >= MAX_ANSWERS {
                answers.retain(|_, a| a.until > now);
            }
            if answers.len() >= MAX_ANSWERS {
                answers.retain(|_, a| a.verdict == AskVerdict::Approved);
            }
            answers.insert(
                name.to_string(),
                Answer {
                    verdict,
                    until: now + keep,
                    at_unix,
                },
            );
        }
    }

    /// Forgets every answer (the `ask` URL changed).
    pub(crate) fn clear(&self) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.clear();
        }
    }
}

/// Asks the operator's endpoint whether `name` may get a certificate.
pub(crate) async fn ask(
    client: &reqwest::Client,
    settings: &AskSettings,
    name: &str,
) -> AskVerdict {
    let Ok(mut url) = url::Url::parse(&settings.url) else {
        return AskVerdict::Unavailable;
    };
    url.query_pairs_mut().append_pair("domain", name);
    let verdict = match client.get(url).timeout(settings.timeout).send().await {
        Ok(rsp) if rsp.status().is_success() => AskVerdict::Approved,
        Ok(rsp) if rsp.status().is_server_error() || rsp.status().as_u16() == 429 => {
            AskVerdict::Unavailable
        }
        Ok(_) => AskVerdict::Denied,
        Err(e) => {
            tracing::warn!(error = %e, "acme ask endpoint unavailable");
            AskVerdict::Unavailable
        }
    };
    METRICS.acme_ask.with_label_values(&[verdict.label()]).inc();
    verdict
}

/// The result of a DNS pre-validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnsVerdict {
    /// The name resolves to one of the edge's addresses.
    PointsHere,
    /// It resolves elsewhere (or nowhere): the customer has not set the CNAME yet.
    Elsewhere(Vec<IpAddr>),
    /// The lookup failed.
    Failed(String),
}

/// Resolves names with the configured server (or the system's).
pub(crate) struct DnsChecker {
    resolver: TokioResolver,
    settings: DnsSettings,
}

impl DnsChecker {
    /// Builds a resolver for `settings` (no answer caching: a customer who
    /// just fixed their CNAME should not wait for a stale TTL).
    pub(crate) fn new(settings: &DnsSettings) -> Result<Self, String> {
        let mut builder = match settings.resolver {
            Some(addr) => {
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], group),
                    TokioConnectionProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("reading the system resolver configuration: {e}"))?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.cache_size = 0;
        opts.attempts = 2;
        opts.timeout = Duration::from_secs(2);
        Ok(Self {
            resolver: builder.build(),
            settings: settings.clone(),
        })
    }

    /// Whether these are the settings this checker was built for.
    pub(crate) fn is_for(&self, settings: &DnsSettings) -> bool {
        &self.settings == settings
    }

    /// Looks `name` up (CNAMEs followed) and compares with the edge's addresses.
    pub(crate) async fn check(&self, name: &str) -> DnsVerdict {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let verdict = match self.resolver.lookup_ip(fqdn).await {
            Ok(found) => {
                let ips: Vec<IpAddr> = found.iter().collect();
                if ips.iter().any(|ip| self.settings.addresses.contains(ip)) {
                    DnsVerdict::PointsHere
                } else {
                    DnsVerdict::Elsewhere(ips)
                }
            }
            Err(e) if e.is_no_records_found() => DnsVerdict::Elsewhere(Vec::new()),
            Err(e) => DnsVerdict::Failed(e.to_string()),
        };
        let label = match verdict {
            DnsVerdict::PointsHere => "ok",
            DnsVerdict::Elsewhere(_) => "mismatch",
            DnsVerdict::Failed(_) => "error",
        };
        METRICS.acme_dns_checks.with_label_values(&[label]).inc();
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AskSettings {
        AskSettings {
            url: "http://127.0.0.1:1/ask".into(),
            timeout: Duration::from_millis(100),
            cache_for: Duration::from_secs(60),
            max_pending: 2,
        }
    }

    #[test]
    fn queue_is_bounded_and_answers_are_cached() {
        let cache = AskCache::default();
        let s = settings();
        assert_eq!(cache.lookup_or_queue("a.x.example", 2), AskState::Queued);
        assert_eq!(
            cache.lookup_or_queue("a.x.example", 2),
            AskState::AlreadyQueued
        );
        assert_eq!(cache.lookup_or_queue("b.x.example", 2), AskState::Queued);
        assert_eq!(cache.lookup_or_queue("c.x.example", 2), AskState::QueueFull);
        assert_eq!(cache.take_pending(1), vec!["a.x.example".to_string()]);
        assert_eq!(cache.take_pending(5), vec!["b.x.example".to_string()]);
        cache.record("a.x.example", AskVerdict::Approved, &s);
        cache.record("b.x.example", AskVerdict::Denied, &s);
        assert_eq!(
            cache.lookup_or_queue("a.x.example", 2),
            AskState::Known(AskVerdict::Approved)
        );
        assert_eq!(cache.fresh("b.x.example"), Some(AskVerdict::Denied));
        cache.clear();
        assert_eq!(cache.fresh("a.x.example"), None);
    }

    #[test]
    fn shared_answers_keep_their_age_and_never_override_newer_ones() {
        let cache = AskCache::default();
        let s = settings();
        let now = edge_certs::clock::unix_seconds();
        // Older than cache_for: not fresh anywhere in the fleet any more.
        assert!(!cache.record_shared("old.x.example", AskVerdict::Approved, now - 61, &s));
        assert_eq!(cache.fresh("old.x.example"), None);
        assert!(cache.record_shared("a.x.example", AskVerdict::Approved, now - 10, &s));
        assert_eq!(cache.fresh("a.x.example"), Some(AskVerdict::Approved));
        // This edge's own (newer) refusal wins over an older fleet approval.
        cache.record("b.x.example", AskVerdict::Denied, &s);
        assert!(!cache.record_shared("b.x.example", AskVerdict::Approved, now - 5, &s));
        assert_eq!(cache.fresh("b.x.example"), Some(AskVerdict::Denied));
        // A later fleet answer replaces an earlier one.
        assert!(cache.record_shared("a.x.example", AskVerdict::Denied, now + 1, &s));
        assert_eq!(cache.fresh("a.x.example"), Some(AskVerdict::Denied));
    }

    #[tokio::test]
    async fn an_unreachable_ask_endpoint_is_unavailable_not_approved() {
        // reqwest is built without a default crypto provider; binaries install ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        assert_eq!(
            ask(&client, &settings(), "a.x.example").await,
            AskVerdict::Unavailable
        );
    }
}
