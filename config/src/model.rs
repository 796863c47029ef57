//! The configuration model: plain data types mirroring the TOML file.
//!
//! Every struct rejects unknown keys, every key with a unit carries it in its
//! name (`_ms`, `_bytes`, `_seconds`), and every default comes from
//! [`crate::defaults`]. Validation lives in [`crate::validate`]; this module
//! only describes shapes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::defaults;
pub use crate::model_abuse::{
    ClientIp, ForwardedHeader, RateLimit, RateLimits, SharedLimits, SiteRateLimits,
};
pub use crate::model_acme::{Acme, AcmeKeyType, AcmeShared, ChallengeKind, DnsCheck, OnDemand};
pub use crate::model_bots::{BotAction, Bots};
pub use crate::model_capture::Capture;
pub use crate::model_connections::Connections;
pub use crate::model_spool::{Spool, SpoolFsync};
pub use crate::model_tag::Tag;

/// The whole edge configuration (the root of the TOML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the edge's local state (spool, data-key state).
    /// Relative paths resolve against the configuration file's directory.
    /// Not reloadable.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// Public listeners. Not reloadable.
    #[serde(default)]
    pub listeners: Listeners,
    /// Admin (metrics, health, config) listener.
    #[serde(default)]
    pub admin: Admin,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// Event rate limits per client IP, per site and per site and IP.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// How the client address is determined (trusted proxies, PROXY protocol).
    #[serde(default)]
    pub client_ip: ClientIp,
    /// Bot filtering.
    #[serde(default)]
    pub bots: Bots,
    /// TLS settings of the HTTPS listener.
    #[serde(default)]
    pub tls: Tls,
    /// Sites accepted by this edge.
    #[serde(default)]
    pub sites: Vec<Site>,
    /// Kafka producer settings. The whole table is not reloadable.
    #[serde(default)]
    pub kafka: Kafka,
    /// Envelope encryption towards the backend.
    #[serde(default)]
    pub encryption: Encryption,
    /// Automatic certificates over ACME (absent = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<Acme>,
    /// How the tracker script (`GET /js/script.js`) is served and pinned.
    #[serde(default)]
    pub tag: Tag,
    /// Sampled, anonymised traffic log of event requests (absent = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<Capture>,
    /// Connection caps and timeouts of the listeners.
    #[serde(default)]
    pub connections: Connections,
    /// The durable local spool in front of Kafka.
    #[serde(default)]
    pub spool: Spool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: defaults::data_dir(),
            listeners: Listeners::default(),
            admin: Admin::default(),
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
            client_ip: ClientIp::default(),
            bots: Bots::default(),
            tls: Tls::default(),
            sites: Vec::new(),
            kafka: Kafka::default(),
            encryption: Encryption::default(),
            acme: None,
            tag: Tag::default(),
            capture: None,
            connections: Connections::default(),
            spool: Spool::default(),
        }
    }
}

/// Public listen addresses. At least one must be set; an empty string in the
/// file (`http = ""`) disables a listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// Plain HTTP listener (`None` = disabled).
    #[serde(default = "defaults::http_listener", with = "opt_addr")]
    pub http: Option<SocketAddr>,
    /// HTTPS listener (`None` = disabled). Requires `tls.certificates` or `[acme]`.
    #[serde(default = "defaults::https_listener", with = "opt_addr")]
    pub https: Option<SocketAddr>,
    /// What the plain HTTP listener does besides answering ACME HTTP-01
    /// challenges. Reloadable.
    #[serde(default = "defaults::plain_http")]
    pub plain_http: PlainHttp,
}

/// Behaviour of the plain HTTP listener for requests that are not ACME
/// HTTP-01 challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlainHttp {
    /// `308 Permanent Redirect` to the same URL over HTTPS (production).
    Redirect,
    /// Serve the event API over plain HTTP (development, benchmarks, or an
    /// edge behind a TLS-terminating load balancer).
    Events,
}

impl fmt::Display for PlainHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlainHttp::Redirect => "redirect",
            PlainHttp::Events => "events",
        })
    }
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            http: defaults::http_listener(),
            https: defaults::https_listener(),
            plain_http: defaults::plain_http(),
        }
    }
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Admin listen address. Not reloadable. A non-loopback address
    /// requires `token_file`.
    #[serde(default = "defaults::admin_listen", with = "addr")]
    pub listen: SocketAddr,
    /// File holding the bearer token required by the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// `Host` values the admin API answers (`name` = any port, or
    /// `name:port`), besides the listen address; anything else is 421.
    /// Reloadable.
    #[serde(default = "defaults::admin_allowed_hosts")]
    pub allowed_hosts: Vec<String>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            listen: defaults::admin_listen(),
            token_file: None,
            allowed_hosts: defaults::admin_allowed_hosts(),
        }
    }
}

/// Per-request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    /// Largest number of events in one batch request.
    #[serde(default = "defaults::max_batch_events")]
    pub max_batch_events: u32,
    /// Time allowed to receive a whole request body.
    #[serde(default = "defaults::request_body_timeout_ms")]
    pub request_body_timeout_ms: u64,
    /// Largest request head (request line plus headers) answered normally;
    /// larger heads get 431.
    #[serde(default = "defaults::max_request_head_bytes")]
    pub max_request_head_bytes: u64,
    /// Longest request target (path and query); longer ones get 414.
    #[serde(default = "defaults::max_uri_bytes")]
    pub max_uri_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: defaults::max_body_bytes(),
            max_batch_events: defaults::max_batch_events(),
            request_body_timeout_ms: defaults::request_body_timeout_ms(),
            max_request_head_bytes: defaults::max_request_head_bytes(),
            max_uri_bytes: defaults::max_uri_bytes(),
        }
    }
}

/// TLS settings for the HTTPS listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chains with their private keys (selected by SNI).
    #[serde(default)]
    pub certificates: Vec<CertificateFiles>,
    /// Lowest TLS protocol version offered.
    #[serde(default = "defaults::tls_min_version")]
    pub min_version: TlsVersion,
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            certificates: Vec::new(),
            min_version: defaults::tls_min_version(),
        }
    }
}

/// One certificate chain and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// PEM certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key_file: PathBuf,
}

/// Lowest accepted TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    V1_3,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}

/// A site (one analytics property) accepted by the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Site id: 1 to 64 characters of `[a-z0-9_-]`, unique.
    pub id: String,
    /// Host names this site is served on (`*.example.com` wildcards allowed);
    /// unique across all sites.
    pub domains: Vec<String>,
    /// Browser origins (`https://host[:port]`) allowed to send events;
    /// empty means any origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Overrides of the `[rate_limits]` defaults for this site.
    #[serde(default, skip_serializing_if = "is_default")]
    pub rate_limits: SiteRateLimits,
    /// Overrides `bots.action` for this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_action: Option<BotAction>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Kafka producer settings. The whole table is not reloadable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// Comma-separated `host:port` bootstrap brokers.
    #[serde(default = "defaults::kafka_brokers")]
    pub brokers: String,
    /// Topic events are produced to.
    #[serde(default = "defaults::kafka_topic")]
    pub topic: String,
    /// Time after which an undelivered message fails.
    #[serde(default = "defaults::delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Time the producer waits to fill a batch.
    #[serde(default = "defaults::linger_ms")]
    pub linger_ms: u32,
    /// Batch compression codec.
    #[serde(default = "defaults::compression")]
    pub compression: Compression,
    /// TLS towards the brokers (absent = plaintext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,
    /// SASL authentication (absent = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
    /// Extra librdkafka properties; may not override keys the edge owns.
    #[serde(default = "defaults::kafka_properties")]
    pub properties: BTreeMap<String, String>,
}

impl Default for Kafka {
    fn default() -> Self {
        Self {
            brokers: defaults::kafka_brokers(),
            topic: defaults::kafka_topic(),
            delivery_timeout_ms: defaults::delivery_timeout_ms(),
            linger_ms: defaults::linger_ms(),
            compression: defaults::compression(),
            tls: None,
            sasl: None,
            properties: defaults::kafka_properties(),
        }
    }
}

/// Kafka batch compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The librdkafka name of the codec.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TLS towards the Kafka brokers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTls {
    /// CA bundle (PEM) to verify brokers with; absent = system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; requires `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; requires `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// SASL authentication towards the Kafka brokers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    /// SASL mechanism.
    pub mechanism: SaslMechanism,
    /// SASL user name.
    pub username: String,
    /// File holding the SASL password.
    pub password_file: PathBuf,
}

/// SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// `PLAIN` (only sensible over TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// `SCRAM-SHA-256`.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The librdkafka name of the mechanism.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Envelope encryption towards the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// Id of the backend key new data keys are wrapped to; must name one of
    /// `backend_keys`. Required (the default, empty, is invalid).
    #[serde(default)]
    pub active_key_id: String,
    /// Known backend public keys.
    #[serde(default)]
    pub backend_keys: Vec<BackendKey>,
    /// Rotate the data key after this many seconds.
    #[serde(default = "defaults::data_key_max_age_seconds")]
    pub data_key_max_age_seconds: u64,
    /// Rotate the data key after this many events.
    #[serde(default = "defaults::data_key_max_events")]
    pub data_key_max_events: u64,
}

impl Default for Encryption {
    fn default() -> Self {
        Self {
            active_key_id: String::new(),
            backend_keys: Vec::new(),
            data_key_max_age_seconds: defaults::data_key_max_age_seconds(),
            data_key_max_events: defaults::data_key_max_events(),
        }
    }
}

/// A backend X25519 public key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendKey {
    /// Key id: 16 lowercase hex characters derived from the key.
    pub id: String,
    /// Base64 of the 32-byte X25519 public key.
    pub public_key: String,
}

/// Parses a socket address, with a message that says what is expected.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid socket address {text:?}: expected an IP address and port such as \
             \"127.0.0.1:8080\" or \"[::1]:8080\" (host names are not accepted)"
        )
    })
}

/// (De)serializes a [`SocketAddr`] as a `"ip:port"` string.
mod addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(addr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_addr(&text).map_err(serde::de::Error::custom)
    }
}

/// (De)serializes an optional [`SocketAddr`]; the empty string means `None`
/// (TOML has no null, and the default of these keys is `Some`).
mod opt_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        super::parse_addr(&text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("{e}, or \"\" to disable")))
    }
}
