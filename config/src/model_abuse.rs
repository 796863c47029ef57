//! Abuse controls: the `[rate_limits]` and `[client_ip]` tables, and the
//! per-site rate-limit overrides under `[[sites]]`.
//!
//! Every key here is reloadable. A reload keeps the limiter state of every
//! scope whose quota did not change.

use serde::{Deserialize, Serialize};

use crate::defaults;

/// Event rate limits (`[rate_limits]`), enforced with exact GCRA limiters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// IPv6 clients are keyed by this prefix length (a household or host
    /// usually owns a whole /64). IPv4 clients are keyed by their address.
    #[serde(default = "defaults::ipv6_prefix_len")]
    pub ipv6_prefix_len: u8,
    /// Hard cap on the keys an exact limiter tracks per keyed scope. Beyond
    /// it, new keys are judged by a fixed-memory estimator (count-min
    /// sketch) until pruning frees room.
    #[serde(default = "defaults::ratelimit_max_tracked_keys")]
    pub max_tracked_keys: u64,
    /// Seconds between prunings of keys whose limiter is back to full.
    #[serde(default = "defaults::ratelimit_prune_interval_seconds")]
    pub prune_interval_seconds: u64,
    /// Events from one client IP (or IPv6 prefix), across all sites.
    #[serde(default = "defaults::ratelimit_per_ip")]
    pub per_ip: RateLimit,
    /// Events for one site, from all clients together.
    #[serde(default = "RateLimit::off")]
    pub per_site: RateLimit,
    /// Events from one client IP for one site.
    #[serde(default = "RateLimit::off")]
    pub per_site_ip: RateLimit,
    /// Enforces every per-site limit across the fleet through Redis (absent
    /// = each edge enforces its per-site limits alone, as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedLimits>,
}

/// Fleet-wide per-site limits (`[rate_limits.shared]`): every edge that
/// names the same Redis and key prefix shares one bucket per site.
///
/// Local-first: requests spend tokens an edge already holds; a background
/// task fetches more from a GCRA bucket in Redis every `sync_interval_ms`,
/// each call bounded by `timeout_ms`. While Redis is unreachable each edge
/// enforces `1 / fleet_size` of every per-site limit on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedLimits {
    /// `redis://[user:password@]host:port[/db]` (no TLS yet).
    pub redis_url: String,
    /// Longest wait for one Redis round trip (connect or script) before the
    /// edge counts it as failed and enforces its local share.
    #[serde(default = "defaults::shared_limits_timeout_ms")]
    pub timeout_ms: u64,
    /// Time between two syncs with Redis (also the longest an edge runs on
    /// the tokens it holds before asking for more).
    #[serde(default = "defaults::shared_limits_sync_interval_ms")]
    pub sync_interval_ms: u64,
    /// Prefix of the Redis keys (one key per site: prefix + site id).
    #[serde(default = "defaults::shared_limits_key_prefix")]
    pub key_prefix: String,
    /// Edges sharing the limits; while Redis is unreachable each enforces
    /// `events_per_second / fleet_size` and `burst / fleet_size` (at least 1).
    #[serde(default = "defaults::shared_limits_fleet_size")]
    pub fleet_size: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            ipv6_prefix_len: defaults::ipv6_prefix_len(),
            max_tracked_keys: defaults::ratelimit_max_tracked_keys(),
            prune_interval_seconds: defaults::ratelimit_prune_interval_seconds(),
            per_ip: defaults::ratelimit_per_ip(),
            per_site: RateLimit::off(),
            per_site_ip: RateLimit::off(),
            shared: None,
        }
    }
}

/// One rate-limit scope: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `false` turns the scope off.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Sustained events per second (fractions allowed: 0.5 = one every 2 s).
    #[serde(default)]
    pub events_per_second: f64,
    /// Events allowed at once above the sustained rate (the bucket size).
    /// A batch larger than this is always refused.
    #[serde(default)]
    pub burst: u32,
    /// Count what would be limited without limiting it.
    #[serde(default)]
    pub dry_run: bool,
}

impl RateLimit {
    /// A disabled scope.
    pub fn off() -> Self {
        Self {
            enabled: false,
            events_per_second: 0.0,
            burst: 0,
            dry_run: false,
        }
    }
}

/// Per-site overrides of the `[rate_limits]` defaults (`[sites.rate_limits]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRateLimits {
    /// Replaces `rate_limits.per_site` for this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_site: Option<RateLimit>,
    /// Replaces `rate_limits.per_site_ip` for this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_site_ip: Option<RateLimit>,
}

/// Which header carries the client address from a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
}

impl std::fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        })
    }
}

/// How the edge learns the client address (`[client_ip]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIp {
    /// CIDRs of proxies whose forwarding header is believed. Requests from
    /// any other peer are judged by the socket address (or PROXY header) alone.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header read from trusted proxies.
    #[serde(default = "defaults::forwarded_header")]
    pub header: ForwardedHeader,
    /// Public listeners expect a PROXY protocol (v1 or v2) header on every
    /// connection, as sent by an L4 load balancer; connections without one
    /// are closed. The address it carries replaces the socket peer.
    #[serde(default)]
    pub proxy_protocol: bool,
}

impl Default for ClientIp {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            header: defaults::forwarded_header(),
            proxy_protocol: false,
        }
    }
}
