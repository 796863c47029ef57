//! The `[connections]` table: how long a client may hold a connection of a
//! public listener without progress, and how many connections it may hold.
//!
//! Absent keys take the defaults below; the two caps, when absent, are sized
//! by the proxy from the process's open-file limit (`RLIMIT_NOFILE`), so the
//! edge never runs out of file descriptors on accept. Every key is
//! reloadable except `h2_idle_timeout_ms` (Pingora fixes it when the
//! listener is built). The defaults and accepted ranges of this table live
//! here, next to the table, rather than in [`crate::defaults`].

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// Accepted range for every `*_timeout_ms` key of the table (100 ms to 1 h).
pub const CONNECTION_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 100..=3_600_000;
/// Accepted range for `max_per_listener` and `max_per_client`.
pub const CONNECTION_CAP_RANGE: RangeInclusive<u32> = 1..=10_000_000;
/// Accepted range for `admin_max_connections`.
pub const ADMIN_CONNECTIONS_RANGE: RangeInclusive<u32> = 1..=1_024;
/// Accepted range for `reserved_fds`.
pub const RESERVED_FDS_RANGE: RangeInclusive<u32> = 16..=1_000_000;

/// Default `connections.header_timeout_ms`: 10 s for a whole request head.
pub fn header_timeout_ms() -> u64 {
    10_000
}

/// Default `connections.keepalive_timeout_ms`: 20 s idle between HTTP/1.1 requests.
pub fn keepalive_timeout_ms() -> u64 {
    20_000
}

/// Default `connections.h2_handshake_timeout_ms`: 10 s for the HTTP/2 preface.
pub fn h2_handshake_timeout_ms() -> u64 {
    10_000
}

/// Default `connections.h2_idle_timeout_ms`: 30 s without an open stream.
pub fn h2_idle_timeout_ms() -> u64 {
    30_000
}

/// Default `connections.tls_handshake_timeout_ms`: 10 s.
pub fn tls_handshake_timeout_ms() -> u64 {
    10_000
}

/// Default `connections.admin_max_connections`: 32.
pub fn admin_max_connections() -> u32 {
    32
}

/// Default `connections.reserved_fds`: 256 descriptors kept for everything
/// but public connections (Kafka, files, the admin listener).
pub fn reserved_fds() -> u32 {
    256
}

/// Connection caps and timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connections {
    /// Time for a whole HTTP/1.1 request head: from accept (or the end of
    /// the TLS handshake) for a connection's first request, from the first
    /// byte for later ones. A client trickling header lines is closed.
    #[serde(default = "header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Idle time allowed between two HTTP/1.1 requests on one connection.
    #[serde(default = "keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// Time for an HTTP/2 client (ALPN `h2`) to send its connection preface.
    #[serde(default = "h2_handshake_timeout_ms")]
    pub h2_handshake_timeout_ms: u64,
    /// Time an HTTP/2 connection may stay open without a stream. Not reloadable.
    #[serde(default = "h2_idle_timeout_ms")]
    pub h2_idle_timeout_ms: u64,
    /// Time for a client to finish its TLS handshake.
    #[serde(default = "tls_handshake_timeout_ms")]
    pub tls_handshake_timeout_ms: u64,
    /// Open connections per public listener; absent = sized from the
    /// open-file limit: (limit − `reserved_fds` − `admin_max_connections`)
    /// split between the public listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_listener: Option<u32>,
    /// Open connections per client address (IPv4 address, IPv6 prefix of
    /// `rate_limits.ipv6_prefix_len` bits) and listener; absent = a quarter
    /// of the listener's cap, between 16 and 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_client: Option<u32>,
    /// Open connections of the admin listener; the excess is closed at accept.
    #[serde(default = "admin_max_connections")]
    pub admin_max_connections: u32,
    /// File descriptors kept out of the public listeners' automatic caps
    /// for Kafka, files and the process itself.
    #[serde(default = "reserved_fds")]
    pub reserved_fds: u32,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            header_timeout_ms: header_timeout_ms(),
            keepalive_timeout_ms: keepalive_timeout_ms(),
            h2_handshake_timeout_ms: h2_handshake_timeout_ms(),
            h2_idle_timeout_ms: h2_idle_timeout_ms(),
            tls_handshake_timeout_ms: tls_handshake_timeout_ms(),
            max_per_listener: None,
            max_per_client: None,
            admin_max_connections: admin_max_connections(),
            reserved_fds: reserved_fds(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_unknown_keys_are_refused() {
        let c: Connections = toml::from_str("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c, Connections::default());
        assert_eq!(c.header_timeout_ms, 10_000);
        assert_eq!(c.max_per_listener, None);
        let c: Connections =
            toml::from_str("max_per_client = 4\nkeepalive_timeout_ms = 500").unwrap();
        assert_eq!(c.max_per_client, Some(4));
        assert_eq!(c.keepalive_timeout_ms, 500);
        assert!(toml::from_str::<Connections>("keepalive_timeout = 5").is_err());
    }
}
