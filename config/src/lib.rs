//! Configuration for the edge: model, defaults, parsing and validation.
//!
//! This crate binds no sockets and spawns no tasks; it only reads files.
//!
//! * [`load`] / [`parse_str`] turn a TOML file into a validated
//!   [`LoadedConfig`], or report **every** problem at once as
//!   [`ConfigErrors`] (`{file}:{line}: {key}: {message}`, one per line).
//! * [`non_reloadable_changes`] tells whether a new file may be swapped in
//!   by a reload or needs a restart.
//! * [`Config::redacted`] renders the active configuration for the admin API.
//! * [`host_guard`] checks `Host` and browser headers for the operator-only
//!   HTTP endpoints (admin API, backend `/stats`).
//!
//! The keys, their defaults and the reload rules are documented in
//! `docs/config.md`.

pub mod defaults;
pub mod diff;
pub mod error;
pub mod host_guard;
pub mod load;
mod locate;
pub mod model;
mod model_abuse;
mod model_acme;
mod model_bots;
pub mod model_capture;
pub mod model_connections;
pub mod model_spool;
pub mod model_tag;
pub mod redact;
pub mod validate;

pub use diff::non_reloadable_changes;
pub use error::{ConfigError, ConfigErrors};
pub use load::{LoadedConfig, load, parse_str};
pub use model::{
    Acme, AcmeKeyType, AcmeShared, Admin, BackendKey, BotAction, Bots, Capture, CertificateFiles,
    ChallengeKind, ClientIp, Compression, Config, DnsCheck, Encryption, ForwardedHeader, Kafka,
    KafkaSasl, KafkaTls, Limits, Listeners, OnDemand, PlainHttp, RateLimit, RateLimits,
    SaslMechanism, SharedLimits, Site, SiteRateLimits, Spool, SpoolFsync, Tag, Tls, TlsVersion,
};
pub use validate::validate;
