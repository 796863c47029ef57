//! Event rate limits: per client IP, per site, per site and client IP.
//!
//! Pure logic: this crate keeps no metrics and writes no logs. It returns
//! what it decided ([`Outcome`], [`PruneReport`]) and the edge counts it.
//!
//! Built from `[rate_limits]` (and per-site overrides) by the edge's
//! `Runtime::build`. A reload reuses the limiter of every
//! scope whose quota did not change, so its state (and every client's
//! remaining budget) survives the reload.
//!
//! A request takes one token per event from each enabled scope, in the order
//! per site and IP, per IP, per site; the first scope that refuses decides.
//! A scope in `dry_run` reports its refusals and lets the request go on.

pub mod fleet;
pub mod key;
pub mod keyed;

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use edge_config::{Config, RateLimit, SharedLimits};
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, RateLimiter};

pub use fleet::FleetBucket;
pub use key::IpKey;
pub use keyed::{BoundedKeyed, Limit};

/// A rate-limit scope, the `scope` label of `edge_ratelimit_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One client IP (IPv6 prefix) across all sites.
    PerIp,
    /// One site, all clients.
    PerSite,
    /// One client IP for one site.
    PerSiteIp,
}

impl Scope {
    /// The label value (and config key).
    pub fn as_label(self) -> &'static str {
        match self {
            Self::PerIp => "per_ip",
            Self::PerSite => "per_site",
            Self::PerSiteIp => "per_site_ip",
        }
    }
}

/// One limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// Tokens taken.
    Allowed,
    /// Not enough tokens now; enough after `retry_after`.
    Limited {
        /// Time until the events would conform.
        retry_after: Duration,
    },
    /// More events at once than the bucket holds: never conforms.
    OverBurst {
        /// The bucket size.
        burst: u32,
    },
}

impl Check {
    /// Reads a governor answer; `now` is asked only when the events must wait.
    pub fn from_outcome<P: governor::clock::Reference>(
        outcome: Result<Result<(), governor::NotUntil<P>>, governor::InsufficientCapacity>,
        now: impl FnOnce() -> P,
        burst: u32,
    ) -> Check {
        match outcome {
            Ok(Ok(())) => Check::Allowed,
            Ok(Err(not_until)) => Check::Limited {
                retry_after: not_until.wait_time_from(now()),
            },
            Err(_) => Check::OverBurst { burst },
        }
    }
}

/// The decision for a whole request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Every enforcing scope allowed the events.
    Allowed,
    /// `scope` refused; `check` says how.
    Refused {
        /// The refusing scope.
        scope: Scope,
        /// [`Check::Limited`] or [`Check::OverBurst`].
        check: Check,
    },
}

/// What one scope decided, the `decision` label of
/// `edge_ratelimit_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Tokens taken.
    Allowed,
    /// Refused, but the scope is in `dry_run`: the request goes on.
    DryRunLimited,
    /// Refused: not enough tokens now.
    Limited,
    /// Refused: more events at once than the bucket holds.
    OverBurst,
}

impl Decision {
    /// The label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::DryRunLimited => "dry_run_limited",
            Self::Limited => "limited",
            Self::OverBurst => "over_burst",
        }
    }
}

/// One scope's decision for a request of `events` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeDecision {
    /// The scope asked.
    pub scope: Scope,
    /// Its answer.
    pub decision: Decision,
    /// Events of the request (each is counted).
    pub events: u32,
}

/// A request's verdict and every scope decision taken on the way to it, in
/// order (at most one per scope).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// What the request gets.
    pub verdict: Verdict,
    decisions: [Option<ScopeDecision>; 3],
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            verdict: Verdict::Allowed,
            decisions: [None; 3],
        }
    }

    /// The scope decisions taken, in order.
    pub fn decisions(&self) -> impl Iterator<Item = &ScopeDecision> {
        self.decisions.iter().flatten()
    }

    /// Records `check` of `scope`; `true` when it ends the request.
    fn record(&mut self, scope: Scope, check: Check, dry_run: bool, n: NonZeroU32) -> bool {
        let decision = match (check, dry_run) {
            (Check::Allowed, _) => Decision::Allowed,
            (_, true) => Decision::DryRunLimited,
            (Check::Limited { .. }, false) => Decision::Limited,
            (Check::OverBurst { .. }, false) => Decision::OverBurst,
        };
        if let Some(slot) = self.decisions.iter_mut().find(|d| d.is_none()) {
            *slot = Some(ScopeDecision {
                scope,
                decision,
                events: n.get(),
            });
        }
        match (check, dry_run) {
            (Check::Allowed, _) | (_, true) => false,
            (check, false) => {
                self.verdict = Verdict::Refused { scope, check };
                true
            }
        }
    }
}

/// What pruning one scope's keyed limiters did, for the
/// `edge_ratelimit_{pruned,tracked}_keys` and `edge_ratelimit_degraded` metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// The scope.
    pub scope: Scope,
    /// Keys dropped (bucket full again).
    pub dropped: usize,
    /// Keys still tracked exactly.
    pub tracked: usize,
    /// Whether a limiter of the scope is on its fixed-memory estimator.
    pub degraded: bool,
}

/// A keyed scope: the limiter and whether it only counts.
struct KeyedScope<K: Hash + Eq + Clone> {
    limiter: Arc<BoundedKeyed<K>>,
    dry_run: bool,
}

/// A per-site scope: one bucket for the whole site.
struct DirectScope {
    limiter: SiteLimiter,
    dry_run: bool,
}

/// Where a site's bucket lives.
enum SiteLimiter {
    /// On this edge alone.
    Local {
        limit: Limit,
        limiter: Arc<DefaultDirectRateLimiter>,
    },
    /// Fleet-wide (`[rate_limits.shared]`): tokens held on this edge,
    /// refilled by a background sync.
    Fleet(Arc<FleetBucket>),
}

/// Key of the shared per-site-and-IP limiters: the site and the client.
type SiteIpKey = (u64, IpKey);

/// Every limiter of one configuration version.
pub struct RateLimiters {
    ipv6_prefix_len: u8,
    per_ip: Option<KeyedScope<IpKey>>,
    per_site: HashMap<String, DirectScope>,
    /// Sites with the same per-site-and-IP limit share one keyed limiter
    /// (keys carry the site), so the key cap bounds memory per distinct limit.
    per_site_ip: HashMap<String, KeyedScope<SiteIpKey>>,
}

impl RateLimiters {
    /// Builds the limiters for `cfg`, reusing `previous`'s limiter wherever
    /// the quota (and key cap) is unchanged.
    pub fn build(cfg: &Config, previous: Option<&RateLimiters>) -> RateLimiters {
        let r = &cfg.rate_limits;
        let cap = usize::try_from(r.max_tracked_keys).unwrap_or(usize::MAX);
        let per_ip = enabled(&r.per_ip).map(|limit| KeyedScope {
            limiter: previous
                .and_then(|p| p.per_ip.as_ref())
                .map(|s| &s.limiter)
                .filter(|l| l.limit() == limit && l.cap() == cap)
                .cloned()
                .unwrap_or_else(|| Arc::new(BoundedKeyed::new(limit, cap))),
            dry_run: r.per_ip.dry_run,
        });

        let mut per_site = HashMap::new();
        let mut per_site_ip = HashMap::new();
        // Shared per-site-and-IP limiters by limit, seeded from the previous version.
        let mut shared: Vec<Arc<BoundedKeyed<SiteIpKey>>> = previous
            .map(|p| p.per_site_ip.values().map(|s| s.limiter.clone()).collect())
            .unwrap_or_default();
        for site in &cfg.sites {
            let site_cfg = site.rate_limits.per_site.as_ref().unwrap_or(&r.per_site);
            if let Some(limit) = enabled(site_cfg) {
                let previous = previous.and_then(|p| p.per_site.get(&site.id));
                per_site.insert(
                    site.id.clone(),
                    DirectScope {
                        limiter: SiteLimiter::build(limit, r.shared.as_ref(), previous),
                        dry_run: site_cfg.dry_run,
                    },
                );
            }
            let site_ip_cfg = site
                .rate_limits
                .per_site_ip
                .as_ref()
                .unwrap_or(&r.per_site_ip);
            if let Some(limit) = enabled(site_ip_cfg) {
                let limiter = match shared.iter().find(|l| l.limit() == limit && l.cap() == cap) {
                    Some(l) => l.clone(),
                    None => {
                        let l = Arc::new(BoundedKeyed::new(limit, cap));
                        shared.push(l.clone());
                        l
                    }
                };
                per_site_ip.insert(
                    site.id.clone(),
                    KeyedScope {
                        limiter,
                        dry_run: site_ip_cfg.dry_run,
                    },
                );
            }
        }
        RateLimiters {
            ipv6_prefix_len: r.ipv6_prefix_len,
            per_ip,
            per_site,
            per_site_ip,
        }
    }

    /// Takes `events` tokens for a request of `site_id` from `client`; the
    /// [`Outcome`] holds the verdict and every scope decision (per event)
    /// for the caller to count.
    pub fn check(&self, site_id: &str, client: IpAddr, events: usize) -> Outcome {
        let mut outcome = Outcome::new();
        let Some(n) = u32::try_from(events).ok().and_then(NonZeroU32::new) else {
            return outcome;
        };
        let ip = IpKey::new(client, self.ipv6_prefix_len);
        if let Some(scope) = self.per_site_ip.get(site_id) {
            let check = scope.limiter.check(&(site_hash(site_id), ip), n);
            if outcome.record(Scope::PerSiteIp, check, scope.dry_run, n) {
                return outcome;
            }
        }
        if let Some(scope) = &self.per_ip {
            let check = scope.limiter.check(&ip, n);
            if outcome.record(Scope::PerIp, check, scope.dry_run, n) {
                return outcome;
            }
        }
        if let Some(scope) = self.per_site.get(site_id) {
            let check = match &scope.limiter {
                SiteLimiter::Local { limit, limiter } => {
                    Check::from_outcome(limiter.check_n(n), || limiter.clock().now(), limit.burst)
                }
                SiteLimiter::Fleet(bucket) => bucket.check(n),
            };
            outcome.record(Scope::PerSite, check, scope.dry_run, n);
        }
        outcome
    }

    /// The per-site buckets shared with the fleet, by site id (empty without
    /// `[rate_limits.shared]`), for the background sync.
    pub fn fleet_buckets(&self) -> impl Iterator<Item = (&str, &Arc<FleetBucket>)> {
        self.per_site
            .iter()
            .filter_map(|(site, scope)| match &scope.limiter {
                SiteLimiter::Fleet(bucket) => Some((site.as_str(), bucket)),
                SiteLimiter::Local { .. } => None,
            })
    }

    /// Prunes every keyed limiter; one report per keyed scope (per IP, per
    /// site and IP), also when the scope is off (zero keys).
    pub fn prune(&self) -> [PruneReport; 2] {
        let report = |scope: Scope, limiters: Vec<(usize, usize, bool)>| {
            let (dropped, tracked, degraded) = limiters
                .into_iter()
                .fold((0, 0, false), |(d, l, g), (dropped, left, degraded)| {
                    (d + dropped, l + left, g || degraded)
                });
            PruneReport {
                scope,
                dropped,
                tracked,
                degraded,
            }
        };
        let prune = |l: &dyn PruneKeys| {
            let (d, left) = l.prune_keys();
            (d, left, l.degraded())
        };
        let per_ip = report(
            Scope::PerIp,
            self.per_ip.iter().map(|s| prune(&*s.limiter)).collect(),
        );
        let mut seen: Vec<*const BoundedKeyed<SiteIpKey>> = Vec::new();
        let mut site_ip = Vec::new();
        for s in self.per_site_ip.values() {
            let ptr = Arc::as_ptr(&s.limiter);
            if !seen.contains(&ptr) {
                seen.push(ptr);
                site_ip.push(prune(&*s.limiter));
            }
        }
        [per_ip, report(Scope::PerSiteIp, site_ip)]
    }
}

impl SiteLimiter {
    /// The bucket for `limit`, reusing `previous`'s when it has the same
    /// kind and settings (so a reload resets nobody's budget).
    fn build(
        limit: Limit,
        shared: Option<&SharedLimits>,
        previous: Option<&DirectScope>,
    ) -> SiteLimiter {
        let previous = previous.map(|p| &p.limiter);
        match shared {
            None => {
                let limiter = match previous {
                    Some(SiteLimiter::Local { limit: l, limiter }) if *l == limit => {
                        limiter.clone()
                    }
                    _ => Arc::new(RateLimiter::direct(limit.quota())),
                };
                SiteLimiter::Local { limit, limiter }
            }
            Some(shared) => {
                let interval = Duration::from_millis(shared.sync_interval_ms);
                let bucket = match previous {
                    Some(SiteLimiter::Fleet(b))
                        if b.same_settings(limit, shared.fleet_size, interval) =>
                    {
                        b.clone()
                    }
                    _ => Arc::new(FleetBucket::new(limit, shared.fleet_size, interval)),
                };
                SiteLimiter::Fleet(bucket)
            }
        }
    }
}

/// Type-erased pruning for limiters with different key types.
trait PruneKeys {
    fn prune_keys(&self) -> (usize, usize);
    fn degraded(&self) -> bool;
}

impl<K: Hash + Eq + Clone> PruneKeys for BoundedKeyed<K> {
    fn prune_keys(&self) -> (usize, usize) {
        self.prune()
    }
    fn degraded(&self) -> bool {
        self.is_degraded()
    }
}

fn enabled(cfg: &RateLimit) -> Option<Limit> {
    cfg.enabled.then_some(Limit {
        events_per_second: cfg.events_per_second,
        burst: cfg.burst,
    })
}

/// A stable 64-bit tag of a site id (the same across reloads in one process).
fn site_hash(site_id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    site_id.hash(&mut h);
    h.finish()
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[listeners]\nhttps = \"\"\nplain_http = \"events\"\n\
             [[sites]]\nid = \"a\"\ndomains = [\"a.example.com\"]\n\
             [[sites]]\nid = \"b\"\ndomains = [\"b.example.com\"]\n\
             [encryption]\nactive_key_id = \"1bf54b4d765f4db4\"\n\
             [[encryption.backend_keys]]\nid = \"1bf54b4d765f4db4\"\n\
             public_key = \"Fswmsl9cVJDqZ2A8WRNKQGGrxuDFpocFNH1/J+67LDc=\"\n{extra}"
        );
        edge_config::parse_str(&text, std::path::Path::new("/etc/edge/edge.toml"))
            .unwrap()
            .config
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn refused_by(o: Outcome) -> Option<Scope> {
        match o.verdict {
            Verdict::Allowed => None,
            Verdict::Refused { scope, .. } => Some(scope),
        }
    }

    #[test]
    fn scopes_refuse_in_order_and_batches_count_each_event() {
        let cfg = config(
            "[rate_limits.per_ip]\nevents_per_second = 0.01\nburst = 10\n\
             [rate_limits.per_site_ip]\nevents_per_second = 0.01\nburst = 4\n",
        );
        let l = RateLimiters::build(&cfg, None);
        assert_eq!(l.check("a", ip("192.0.2.1"), 3).verdict, Verdict::Allowed);
        // 3 + 2 > 4: the site-and-IP bucket refuses.
        assert_eq!(
            refused_by(l.check("a", ip("192.0.2.1"), 2)),
            Some(Scope::PerSiteIp)
        );
        // The same client on another site has its own site-and-IP bucket but shares per-IP.
        assert_eq!(l.check("b", ip("192.0.2.1"), 4).verdict, Verdict::Allowed);
        // per-IP: 3 + 4 taken (the refused request took nothing from per-IP), 3 left.
        assert_eq!(
            refused_by(l.check("b", ip("192.0.2.1"), 4)),
            Some(Scope::PerSiteIp)
        );
        let mut over = l.check("a", ip("192.0.2.9"), 5).verdict;
        assert!(
            matches!(
                over,
                Verdict::Refused {
                    check: Check::OverBurst { burst: 4 },
                    ..
                }
            ),
            "{over:?}"
        );
        over = l.check("a", ip("192.0.2.9"), 1).verdict;
        assert_eq!(over, Verdict::Allowed);
    }

    #[test]
    fn dry_run_counts_but_allows() {
        let cfg =
            config("[rate_limits.per_site]\nevents_per_second = 0.01\nburst = 1\ndry_run = true\n");
        let l = RateLimiters::build(&cfg, None);
        // The default per-IP scope is asked too; per site is the last.
        let per_site = |o: Outcome| o.decisions().last().map(|d| (d.scope, d.decision));
        let first = l.check("a", ip("192.0.2.1"), 1);
        assert_eq!(first.verdict, Verdict::Allowed);
        assert_eq!(per_site(first), Some((Scope::PerSite, Decision::Allowed)));
        for _ in 0..5 {
            let o = l.check("a", ip("192.0.2.1"), 1);
            assert_eq!(o.verdict, Verdict::Allowed);
            assert_eq!(per_site(o), Some((Scope::PerSite, Decision::DryRunLimited)));
        }
    }

    #[test]
    fn every_scope_asked_is_reported_in_order() {
        let cfg = config(
            "[rate_limits.per_ip]\nevents_per_second = 0.01\nburst = 3\n\
             [rate_limits.per_site_ip]\nevents_per_second = 0.01\nburst = 10\n",
        );
        let l = RateLimiters::build(&cfg, None);
        let o = l.check("a", ip("192.0.2.1"), 5);
        let got: Vec<(Scope, Decision, u32)> = o
            .decisions()
            .map(|d| (d.scope, d.decision, d.events))
            .collect();
        assert_eq!(
            got,
            [
                (Scope::PerSiteIp, Decision::Allowed, 5),
                (Scope::PerIp, Decision::OverBurst, 5),
            ]
        );
        assert!(matches!(
            o.verdict,
            Verdict::Refused {
                scope: Scope::PerIp,
                ..
            }
        ));
        assert_eq!(l.check("a", ip("192.0.2.1"), 0).decisions().count(), 0);
        let [per_ip, site_ip] = l.prune();
        assert_eq!(
            (per_ip.scope, site_ip.scope),
            (Scope::PerIp, Scope::PerSiteIp)
        );
        assert_eq!(
            per_ip.tracked + per_ip.dropped,
            0,
            "over-burst took nothing"
        );
        assert_eq!(site_ip.tracked + site_ip.dropped, 1);
    }

    #[test]
    fn site_overrides_and_retry_after() {
        let cfg = config(
            "[rate_limits.per_site]\nevents_per_second = 100\nburst = 100\n\
             [sites.rate_limits.per_site]\nevents_per_second = 0.1\nburst = 2\n",
        );
        let l = RateLimiters::build(&cfg, None);
        assert_eq!(l.check("b", ip("192.0.2.1"), 2).verdict, Verdict::Allowed);
        match l.check("b", ip("192.0.2.2"), 1).verdict {
            Verdict::Refused {
                scope: Scope::PerSite,
                check: Check::Limited { retry_after },
            } => {
                assert_eq!(retry_after_seconds(retry_after), 10);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.check("a", ip("192.0.2.1"), 50).verdict, Verdict::Allowed);
    }

    #[test]
    fn reload_keeps_state_of_unchanged_scopes_only() {
        let base = "[rate_limits.per_ip]\nevents_per_second = 0.01\nburst = 2\n";
        let site = "[rate_limits.per_site]\nevents_per_second = 0.01\nburst = 2\n";
        let first = RateLimiters::build(&config(&format!("{base}{site}")), None);
        assert_eq!(
            first.check("a", ip("192.0.2.1"), 2).verdict,
            Verdict::Allowed
        );
        // Unchanged: the spent per-IP budget survives the reload.
        let second = RateLimiters::build(&config(&format!("{base}{site}")), Some(&first));
        assert_eq!(
            refused_by(second.check("a", ip("192.0.2.1"), 1)),
            Some(Scope::PerIp)
        );
        // per_ip changed: fresh bucket; per_site unchanged: still spent.
        let third = RateLimiters::build(
            &config(&format!(
                "[rate_limits.per_ip]\nevents_per_second = 0.01\nburst = 3\n{site}"
            )),
            Some(&second),
        );
        assert_eq!(
            refused_by(third.check("a", ip("192.0.2.1"), 1)),
            Some(Scope::PerSite)
        );
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(2_001)), 3);
    }

    #[test]
    fn shared_limits_route_per_site_through_fleet_buckets() {
        let site = "[rate_limits.per_site]\nevents_per_second = 10\nburst = 5\n";
        let shared =
            "[rate_limits.shared]\nredis_url = \"redis://127.0.0.1:6379\"\nfleet_size = 2\n";
        let local = RateLimiters::build(&config(site), None);
        assert_eq!(local.fleet_buckets().count(), 0);
        assert_eq!(
            local.check("a", ip("192.0.2.1"), 1).verdict,
            Verdict::Allowed
        );

        let fleet = RateLimiters::build(&config(&format!("{site}{shared}")), Some(&local));
        let mut sites: Vec<&str> = fleet.fleet_buckets().map(|(s, _)| s).collect();
        sites.sort_unstable();
        assert_eq!(sites, ["a", "b"]);
        // Before the first sync the local share (burst 5 / 2 = 2) applies.
        assert_eq!(
            fleet.check("a", ip("192.0.2.1"), 2).verdict,
            Verdict::Allowed
        );
        let (_, a) = fleet.fleet_buckets().find(|(s, _)| *s == "a").unwrap();
        // The first sync grants nothing: refused, with a sync interval to wait.
        a.grant(0);
        assert_eq!(
            refused_by(fleet.check("a", ip("192.0.2.1"), 1)),
            Some(Scope::PerSite)
        );
        a.grant(3);
        assert_eq!(
            fleet.check("a", ip("192.0.2.1"), 3).verdict,
            Verdict::Allowed
        );
        // A reload with the same settings keeps the bucket (and its tokens).
        a.grant(1);
        let again = RateLimiters::build(&config(&format!("{site}{shared}")), Some(&fleet));
        assert_eq!(
            again.check("a", ip("192.0.2.1"), 1).verdict,
            Verdict::Allowed
        );
        // Turning sharing off brings a local bucket back.
        let off = RateLimiters::build(&config(site), Some(&again));
        assert_eq!(off.fleet_buckets().count(), 0);
        assert_eq!(off.check("a", ip("192.0.2.1"), 5).verdict, Verdict::Allowed);
    }
}
