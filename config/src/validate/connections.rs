//! Rules of the `[connections]` table.

use super::Validator;
use crate::model_connections::{
    ADMIN_CONNECTIONS_RANGE, CONNECTION_CAP_RANGE, CONNECTION_TIMEOUT_MS_RANGE, Connections,
    RESERVED_FDS_RANGE,
};

impl Validator {
    pub(super) fn connections(&mut self, c: &Connections) {
        for (key, value) in [
            ("connections.header_timeout_ms", c.header_timeout_ms),
            ("connections.keepalive_timeout_ms", c.keepalive_timeout_ms),
            (
                "connections.h2_handshake_timeout_ms",
                c.h2_handshake_timeout_ms,
            ),
            ("connections.h2_idle_timeout_ms", c.h2_idle_timeout_ms),
            (
                "connections.tls_handshake_timeout_ms",
                c.tls_handshake_timeout_ms,
            ),
        ] {
            self.range(key, value, CONNECTION_TIMEOUT_MS_RANGE);
        }
        if let Some(n) = c.max_per_listener {
            self.range("connections.max_per_listener", n, CONNECTION_CAP_RANGE);
        }
        if let Some(n) = c.max_per_client {
            self.range("connections.max_per_client", n, CONNECTION_CAP_RANGE);
            if let Some(l) = c.max_per_listener
                && n > l
            {
                self.err(
                    "connections.max_per_client",
                    format!("{n} is above connections.max_per_listener ({l})"),
                );
            }
        }
        self.range(
            "connections.admin_max_connections",
            c.admin_max_connections,
            ADMIN_CONNECTIONS_RANGE,
        );
        self.range(
            "connections.reserved_fds",
            c.reserved_fds,
            RESERVED_FDS_RANGE,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &Connections) -> Vec<String> {
        let mut v = Validator::default();
        v.connections(c);
        v.errors.iter().map(|p| p.error.key.clone()).collect()
    }

    #[test]
    fn every_bad_key_is_reported() {
        assert!(keys(&Connections::default()).is_empty());
        let bad = Connections {
            header_timeout_ms: 0,
            keepalive_timeout_ms: 10,
            h2_handshake_timeout_ms: 4_000_000,
            h2_idle_timeout_ms: 0,
            tls_handshake_timeout_ms: 99,
            max_per_listener: Some(0),
            max_per_client: Some(0),
            admin_max_connections: 0,
            reserved_fds: 1,
        };
        assert_eq!(
            keys(&bad),
            [
                "connections.header_timeout_ms",
                "connections.keepalive_timeout_ms",
                "connections.h2_handshake_timeout_ms",
                "connections.h2_idle_timeout_ms",
                "connections.tls_handshake_timeout_ms",
                "connections.max_per_listener",
                "connections.max_per_client",
                "connections.admin_max_connections",
                "connections.reserved_fds",
            ]
        );
        let client_above_listener = Connections {
            max_per_listener: Some(10),
            max_per_client: Some(11),
            ..Connections::default()
        };
        assert_eq!(keys(&client_above_listener), ["connections.max_per_client"]);
    }
}
