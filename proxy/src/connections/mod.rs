//! Connection hygiene of the listeners: how many connections a listener and
//! a client address may hold, and how long a connection may sit without
//! progress.
//!
//! - [`admission`]: caps on open connections per listener and per client
//!   address (IPv6 by prefix), checked at accept; the excess is closed at
//!   once and counted.
//! - [`http`]: the HTTP/1.1 keep-alive loop with a deadline for the whole
//!   request head and an idle timeout between requests, and the HTTP/2
//!   preface deadline ([`preface`]).
//! - [`rlimit`]: raises `RLIMIT_NOFILE` at start; the automatic caps are
//!   sized from it so accept never fails with `EMFILE`.
//! - [`faults`] and [`logs`]: per-connection client faults become counters,
//!   and Pingora's own log lines are kept free of client data and rate-limited.
//!
//! The settings of one connection are computed once at accept from the
//! active configuration ([`Settings::from_config`]) and travel with the
//! connection's task ([`Settings::scope`]), so a reload applies to new
//! connections.

pub(crate) mod admission;
pub(crate) mod faults;
pub(crate) mod gate;
pub(crate) mod http;
pub(crate) mod logs;
mod preface;
pub(crate) mod rlimit;

use std::future::Future;
use std::time::Duration;

use edge_config::Config;

/// A listener, the `listener` label of the connection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ListenerKind {
    /// The public plain-HTTP listener.
    Http,
    /// The public HTTPS listener.
    Https,
    /// The admin listener.
    Admin,
}

impl ListenerKind {
    /// The label value.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Http => 0,
            Self::Https => 1,
            Self::Admin => 2,
        }
    }
}

/// The effective caps and timeouts for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The listener the connection came in on.
    pub listener: ListenerKind,
    /// Whole HTTP/1.1 request head.
    pub header_timeout: Duration,
    /// Idle time between two HTTP/1.1 requests.
    pub keepalive_timeout: Duration,
    /// HTTP/2 connection preface.
    pub h2_handshake_timeout: Duration,
    /// TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Open connections of this listener.
    pub max_per_listener: usize,
    /// Open connections of one client address on this listener.
    pub max_per_client: usize,
    /// Prefix length by which IPv6 clients are grouped.
    pub ipv6_prefix_len: u8,
}

/// Smallest automatic per-listener cap, whatever the open-file limit says.
const MIN_AUTO_LISTENER_CAP: u64 = 8;

impl Settings {
    /// The settings of `listener` under `cfg`, with automatic caps sized
    /// from the open-file limit [`rlimit::open_files_limit`].
    pub(crate) fn from_config(cfg: &Config, listener: ListenerKind) -> Settings {
        Self::with_limit(cfg, listener, rlimit::open_files_limit())
    }

    /// Like [`Self::from_config`] with an explicit open-file limit.
    pub(crate) fn with_limit(cfg: &Config, listener: ListenerKind, nofile: u64) -> Settings {
        let c = &cfg.connections;
        let ms = Duration::from_millis;
        let public = [cfg.listeners.http, cfg.listeners.https]
            .iter()
            .filter(|l| l.is_some())
            .count()
            .max(1) as u64;
        let available = nofile
            .saturating_sub(u64::from(c.reserved_fds))
            .saturating_sub(u64::from(c.admin_max_connections));
        let auto_listener = (available / public).max(MIN_AUTO_LISTENER_CAP);
        let per_listener = c.max_per_listener.map_or(auto_listener, u64::from);
        let auto_client = (per_listener / 4).clamp(16, 256).min(per_listener);
        let per_client = c.max_per_client.map_or(auto_client, u64::from);
        let (max_per_listener, max_per_client) = match listener {
            ListenerKind::Admin => {
                let n = u64::from(c.admin_max_connections);
                (n, n)
            }
            _ => (per_listener, per_client),
        };
        Settings {
            listener,
            header_timeout: ms(c.header_timeout_ms),
            keepalive_timeout: ms(c.keepalive_timeout_ms),
            h2_handshake_timeout: ms(c.h2_handshake_timeout_ms),
            tls_handshake_timeout: ms(c.tls_handshake_timeout_ms),
            max_per_listener: usize::try_from(max_per_listener).unwrap_or(usize::MAX),
            max_per_client: usize::try_from(max_per_client).unwrap_or(usize::MAX),
            ipv6_prefix_len: cfg.rate_limits.ipv6_prefix_len,
        }
    }

    /// Runs `fut` (one connection's processing) with these settings visible
    /// to [`Settings::current`].
    pub(crate) async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// The settings of the connection this task serves; the defaults of an
    /// empty configuration outside [`Settings::scope`].
    pub(crate) fn current() -> Settings {
        CURRENT
            .try_with(|s| *s)
            .unwrap_or_else(|_| Settings::from_config(&Config::default(), ListenerKind::Https))
    }
}

tokio::task_local! {
    static CURRENT: Settings;
}

/// The TLS handshake timeout of the connection this task serves.
pub(crate) fn tls_handshake_timeout() -> Duration {
    Settings::current().tls_handshake_timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_caps_follow_the_open_file_limit() {
        let cfg = Config::default(); // http and https listeners
        let s = Settings::with_limit(&cfg, ListenerKind::Https, 1024);
        // (1024 - 256 reserved - 32 admin) / 2 listeners
        assert_eq!(s.max_per_listener, 368);
        assert_eq!(s.max_per_client, 92);
        let big = Settings::with_limit(&cfg, ListenerKind::Http, 1 << 20);
        assert_eq!(big.max_per_client, 256);
        let tiny = Settings::with_limit(&cfg, ListenerKind::Http, 100);
        assert_eq!((tiny.max_per_listener, tiny.max_per_client), (8, 8));
        let admin = Settings::with_limit(&cfg, ListenerKind::Admin, 1024);
        assert_eq!(admin.max_per_listener, 32);
        assert_eq!(s.header_timeout, Duration::from_secs(10));
    }

    #[test]
    fn configured_caps_win() {
        let mut cfg = Config::default();
        cfg.connections.max_per_listener = Some(50);
        cfg.connections.max_per_client = Some(3);
        let s = Settings::with_limit(&cfg, ListenerKind::Http, 1024);
        assert_eq!((s.max_per_listener, s.max_per_client), (50, 3));
        cfg.connections.max_per_client = None;
        let s = Settings::with_limit(&cfg, ListenerKind::Http, 1024);
        assert_eq!(s.max_per_client, 16);
    }
}
