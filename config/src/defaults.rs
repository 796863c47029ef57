//! Default values and accepted ranges for every configuration key.
//!
//! Each `fn` here is used as a `#[serde(default = "…")]` function, so the
//! defaults documented in `docs/config.md` live in exactly one place.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use crate::model::{
    AcmeKeyType, BotAction, ChallengeKind, Compression, ForwardedHeader, PlainHttp, RateLimit,
    TlsVersion,
};

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// Accepted range for `limits.max_body_bytes`.
pub const MAX_BODY_BYTES_RANGE: RangeInclusive<u64> = 1..=64 * MIB;
/// Accepted range for `limits.max_batch_events`.
pub const MAX_BATCH_EVENTS_RANGE: RangeInclusive<u32> = 1..=1000;
/// Accepted range for `limits.max_request_head_bytes` (Pingora itself never
/// reads a head above 1 MiB).
pub const MAX_REQUEST_HEAD_BYTES_RANGE: RangeInclusive<u64> = 1024..=MIB;
/// Accepted range for `limits.max_uri_bytes`.
pub const MAX_URI_BYTES_RANGE: RangeInclusive<u64> = 256..=MIB;
/// Accepted range for `limits.request_body_timeout_ms`.
pub const REQUEST_BODY_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 1..=300_000;
/// Accepted range for `kafka.delivery_timeout_ms`.
pub const DELIVERY_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 100..=300_000;
/// Accepted range for `kafka.linger_ms` (librdkafka's own limit).
pub const LINGER_MS_RANGE: RangeInclusive<u32> = 0..=900_000;
/// Accepted range for `encryption.data_key_max_age_seconds`.
pub const DATA_KEY_MAX_AGE_SECONDS_RANGE: RangeInclusive<u64> = 60..=86_400;
/// Accepted range for `encryption.data_key_max_events`.
pub const DATA_KEY_MAX_EVENTS_RANGE: RangeInclusive<u64> = 1..=(1 << 32);

/// Kafka client properties the edge sets itself; `kafka.properties` may not
/// override them (they are either derived from typed keys of the `[kafka]`
/// table or required for the edge's delivery guarantees).
pub const RESERVED_KAFKA_PROPERTIES: &[&str] = &[
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "transactional.id",
    "bootstrap.servers",
    "metadata.broker.list",
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "compression.type",
    "compression.codec",
    "linger.ms",
    "queue.buffering.max.ms",
    "delivery.timeout.ms",
    "message.timeout.ms",
];

/// Accepted range for `acme.renew_remaining_fraction`.
pub const ACME_RENEW_REMAINING_FRACTION_RANGE: RangeInclusive<f64> = 0.05..=0.9;
/// Accepted range for `acme.max_orders_per_hour`.
pub const ACME_MAX_ORDERS_PER_HOUR_RANGE: RangeInclusive<u32> = 1..=10_000;
/// Accepted range for `acme.max_orders_per_name_per_day`.
pub const ACME_MAX_ORDERS_PER_NAME_PER_DAY_RANGE: RangeInclusive<u32> = 1..=100;
/// Accepted range for `acme.max_forced_renewals_per_name_per_week`.
pub const ACME_MAX_FORCED_RENEWALS_PER_NAME_PER_WEEK_RANGE: RangeInclusive<u32> = 0..=50;
/// Accepted range for `acme.max_concurrent_orders`.
pub const ACME_MAX_CONCURRENT_ORDERS_RANGE: RangeInclusive<u32> = 1..=64;
/// Accepted range for `acme.backoff_initial_seconds` and `acme.backoff_max_seconds`.
pub const ACME_BACKOFF_SECONDS_RANGE: RangeInclusive<u64> = 1..=7 * 86_400;
/// Accepted range for `acme.order_timeout_seconds`.
pub const ACME_ORDER_TIMEOUT_SECONDS_RANGE: RangeInclusive<u64> = 5..=3_600;
/// Accepted range for `acme.shared.lease_seconds`.
pub const ACME_SHARED_LEASE_SECONDS_RANGE: RangeInclusive<u64> = 2..=3_600;
/// Accepted range for `acme.shared.poll_seconds`.
pub const ACME_SHARED_POLL_SECONDS_RANGE: RangeInclusive<u64> = 1..=3_600;
/// Accepted range for `acme.shared.timeout_ms`.
pub const ACME_SHARED_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 100..=60_000;
/// Accepted range for `acme.shared.retain_unwanted_hours`.
pub const ACME_SHARED_RETAIN_UNWANTED_HOURS_RANGE: RangeInclusive<u64> = 1..=8_760;
/// Accepted range for `acme.shared.challenge_lookup_ms`.
pub const ACME_SHARED_CHALLENGE_LOOKUP_MS_RANGE: RangeInclusive<u64> = 10..=5_000;
/// Accepted range for `acme.on_demand.ask_timeout_ms`.
pub const ACME_ASK_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 10..=30_000;
/// Accepted range for `acme.on_demand.ask_cache_seconds`.
pub const ACME_ASK_CACHE_SECONDS_RANGE: RangeInclusive<u64> = 0..=86_400;
/// Accepted range for `acme.on_demand.max_pending`.
pub const ACME_ASK_MAX_PENDING_RANGE: RangeInclusive<u32> = 1..=10_000;

/// Accepted range for `bots.max_user_agent_bytes` and `bots.min_user_agent_bytes`.
pub const BOTS_USER_AGENT_BYTES_RANGE: std::ops::RangeInclusive<u32> = 0..=65_536;

/// Accepted range for `rate_limits.ipv6_prefix_len`.
pub const IPV6_PREFIX_LEN_RANGE: RangeInclusive<u8> = 32..=128;
/// Accepted range for `rate_limits.max_tracked_keys`.
pub const RATELIMIT_MAX_TRACKED_KEYS_RANGE: RangeInclusive<u64> = 1_000..=100_000_000;
/// Accepted range for `rate_limits.prune_interval_seconds`.
pub const RATELIMIT_PRUNE_INTERVAL_SECONDS_RANGE: RangeInclusive<u64> = 1..=3_600;
/// Accepted range for `events_per_second` of an enabled rate-limit scope.
pub const RATELIMIT_EVENTS_PER_SECOND_RANGE: RangeInclusive<f64> = 0.001..=10_000_000.0;
/// Accepted range for `burst` of an enabled rate-limit scope.
pub const RATELIMIT_BURST_RANGE: RangeInclusive<u32> = 1..=10_000_000;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Default `data_dir`: `./data`, relative to the configuration file.
pub fn data_dir() -> PathBuf {
    PathBuf::from("./data")
}

/// Default `listeners.http`: `127.0.0.1:8080`.
pub fn http_listener() -> Option<SocketAddr> {
    Some(SocketAddr::new(LOOPBACK, 8080))
}

/// Default `listeners.https`: `127.0.0.1:8443`.
pub fn https_listener() -> Option<SocketAddr> {
    Some(SocketAddr::new(LOOPBACK, 8443))
}

/// Default `admin.listen`: `127.0.0.1:9901`.
pub fn admin_listen() -> SocketAddr {
    SocketAddr::new(LOOPBACK, 9901)
}

/// Default `admin.allowed_hosts`: the loopback names `localhost`,
/// `127.0.0.1` and `[::1]` (any port).
pub fn admin_allowed_hosts() -> Vec<String> {
    crate::host_guard::LOOPBACK_HOSTS
        .iter()
        .map(|h| (*h).to_string())
        .collect()
}

/// Default `limits.max_body_bytes`: 1 MiB.
pub fn max_body_bytes() -> u64 {
    MIB
}

/// Default `limits.max_batch_events`: 100.
pub fn max_batch_events() -> u32 {
    100
}

/// Default `limits.max_request_head_bytes`: 32 KiB.
pub fn max_request_head_bytes() -> u64 {
    32 * 1024
}

/// Default `limits.max_uri_bytes`: 16 KiB (a pixel request with a 2,000-byte
/// page URL and referrer, fully percent-encoded, fits).
pub fn max_uri_bytes() -> u64 {
    16 * 1024
}

/// Default `limits.request_body_timeout_ms`: 10 s.
pub fn request_body_timeout_ms() -> u64 {
    10_000
}

/// Default `tls.min_version`: TLS 1.2.
pub fn tls_min_version() -> TlsVersion {
    TlsVersion::V1_2
}

/// Default `kafka.brokers`: `127.0.0.1:9092`.
pub fn kafka_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}

/// Default `kafka.topic`: `edge.events`.
pub fn kafka_topic() -> String {
    "edge.events".to_owned()
}

/// Default `kafka.delivery_timeout_ms`: 5 s.
pub fn delivery_timeout_ms() -> u64 {
    5_000
}

/// Default `kafka.linger_ms`: 5 ms.
pub fn linger_ms() -> u32 {
    5
}

/// Default `kafka.compression`: lz4.
pub fn compression() -> Compression {
    Compression::Lz4
}

/// Default `kafka.properties`: empty.
pub fn kafka_properties() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// Default `encryption.data_key_max_age_seconds`: one hour.
pub fn data_key_max_age_seconds() -> u64 {
    3_600
}

/// Default `encryption.data_key_max_events`: one million.
pub fn data_key_max_events() -> u64 {
    1_000_000
}

/// Default `listeners.plain_http`: redirect to HTTPS.
pub fn plain_http() -> PlainHttp {
    PlainHttp::Redirect
}

/// Default `acme.challenges`: HTTP-01, then TLS-ALPN-01.
pub fn acme_challenges() -> Vec<ChallengeKind> {
    vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01]
}

/// Default `acme.key_type`: ECDSA P-256.
pub fn acme_key_type() -> AcmeKeyType {
    AcmeKeyType::EcdsaP256
}

/// Default `acme.renew_remaining_fraction`: renew with a third of the lifetime left.
pub fn acme_renew_remaining_fraction() -> f64 {
    1.0 / 3.0
}

/// Default `acme.max_orders_per_hour`: 100 (Let's Encrypt allows 300 new orders per 3 hours).
pub fn acme_max_orders_per_hour() -> u32 {
    100
}

/// Default `acme.max_forced_renewals_per_name_per_week`: 5, Let's
/// Encrypt's limit of duplicate certificates per exact set of names per week.
pub fn acme_max_forced_renewals_per_name_per_week() -> u32 {
    5
}

/// Default `acme.max_orders_per_name_per_day`: 5.
pub fn acme_max_orders_per_name_per_day() -> u32 {
    5
}

/// Default `acme.max_concurrent_orders`: 4.
pub fn acme_max_concurrent_orders() -> u32 {
    4
}

/// Default `acme.backoff_initial_seconds`: one minute.
pub fn acme_backoff_initial_seconds() -> u64 {
    60
}

/// Default `acme.backoff_max_seconds`: one day.
pub fn acme_backoff_max_seconds() -> u64 {
    86_400
}

/// Default `acme.order_timeout_seconds`: two minutes.
pub fn acme_order_timeout_seconds() -> u64 {
    120
}

/// Default `acme.shared.schema`.
pub fn acme_shared_schema() -> String {
    "edge_acme".to_string()
}

/// Default `acme.shared.lease_seconds`: one minute (renewed every 20 s).
pub fn acme_shared_lease_seconds() -> u64 {
    60
}

/// Default `acme.shared.poll_seconds`: 30 s.
pub fn acme_shared_poll_seconds() -> u64 {
    30
}

/// Default `acme.shared.timeout_ms`: 5 s.
pub fn acme_shared_timeout_ms() -> u64 {
    5_000
}

/// Default `acme.shared.challenge_lookup_ms`: 500 ms.
pub fn acme_shared_challenge_lookup_ms() -> u64 {
    500
}

/// Default `acme.shared.retain_unwanted_hours`: 7 days.
pub fn acme_shared_retain_unwanted_hours() -> u64 {
    168
}

/// Default `acme.on_demand.ask_timeout_ms`: 2 s.
pub fn acme_ask_timeout_ms() -> u64 {
    2_000
}

/// Default `acme.on_demand.ask_cache_seconds`: 10 minutes.
pub fn acme_ask_cache_seconds() -> u64 {
    600
}

/// Default `acme.on_demand.max_pending`: 64.
pub fn acme_ask_max_pending() -> u32 {
    64
}

/// Default `rate_limits.ipv6_prefix_len`: /64, one customer network.
pub fn ipv6_prefix_len() -> u8 {
    64
}

/// Default `rate_limits.max_tracked_keys`: one million keys per scope
/// (about 100 MB at the measured cost per key, see BENCHMARKS.md).
pub fn ratelimit_max_tracked_keys() -> u64 {
    1_000_000
}

/// Default `rate_limits.prune_interval_seconds`.
pub fn ratelimit_prune_interval_seconds() -> u64 {
    10
}

/// Default `rate_limits.shared.timeout_ms`: a Redis round trip on a LAN
/// takes well under a millisecond; 25 ms means Redis is in trouble.
pub fn shared_limits_timeout_ms() -> u64 {
    25
}

/// Allowed `rate_limits.shared.timeout_ms`.
pub const SHARED_LIMITS_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 1..=5_000;

/// Default `rate_limits.shared.sync_interval_ms`.
pub fn shared_limits_sync_interval_ms() -> u64 {
    100
}

/// Allowed `rate_limits.shared.sync_interval_ms`.
pub const SHARED_LIMITS_SYNC_INTERVAL_MS_RANGE: RangeInclusive<u64> = 10..=10_000;

/// Default `rate_limits.shared.key_prefix`.
pub fn shared_limits_key_prefix() -> String {
    "edge:ratelimit:site:".to_owned()
}

/// Default `rate_limits.shared.fleet_size`.
pub fn shared_limits_fleet_size() -> u32 {
    1
}

/// Allowed `rate_limits.shared.fleet_size`.
pub const SHARED_LIMITS_FLEET_SIZE_RANGE: RangeInclusive<u32> = 1..=10_000;

/// Default `rate_limits.per_ip`: 100 events/s with a burst of 1,000. A real
/// visitor sends a few events per page; this only stops floods.
pub fn ratelimit_per_ip() -> RateLimit {
    RateLimit {
        enabled: true,
        events_per_second: 100.0,
        burst: 1_000,
        dry_run: false,
    }
}

/// Default `enabled` of a rate-limit scope that is written in the file.
pub fn enabled() -> bool {
    true
}

/// Default `client_ip.header`.
pub fn forwarded_header() -> ForwardedHeader {
    ForwardedHeader::XForwardedFor
}

/// Default `bots.max_user_agent_bytes`.
pub fn bots_max_user_agent_bytes() -> u32 {
    1_024
}

/// Default `bots.min_user_agent_bytes`.
pub fn bots_min_user_agent_bytes() -> u32 {
    10
}

/// Default `bots.action`: drop silently.
pub fn bot_action() -> BotAction {
    BotAction::Drop
}
