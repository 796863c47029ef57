//! Reload rules: which changes between two configurations need a restart.
//!
//! Listen addresses, `data_dir` and the whole `[kafka]` table are fixed for
//! the life of the process; everything else (sites, limits, TLS
//! certificates, encryption keys, the admin token file) may be reloaded.

use std::net::SocketAddr;

use crate::locate::join_key;
use crate::model::Config;

/// Describes every change from `old` to `new` that a reload cannot apply,
/// one message per key; an empty result means `new` may be swapped in.
///
/// Messages look like `listeners.https: changed from 127.0.0.1:8443 to
/// 0.0.0.0:443; listen addresses need a restart`. Kafka properties and
/// credentials are never echoed, only named.
pub fn non_reloadable_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut changes = Vec::new();
    if old.data_dir != new.data_dir {
        changes.push(format!(
            "data_dir: changed from {} to {}; data_dir needs a restart",
            old.data_dir.display(),
            new.data_dir.display()
        ));
    }
    let listen = [
        ("listeners.http", old.listeners.http, new.listeners.http),
        ("listeners.https", old.listeners.https, new.listeners.https),
        (
            "admin.listen",
            Some(old.admin.listen),
            Some(new.admin.listen),
        ),
    ];
    for (key, before, after) in listen {
        if before != after {
            changes.push(format!(
                "{key}: changed from {} to {}; listen addresses need a restart",
                show_addr(before),
                show_addr(after)
            ));
        }
    }

    let (h2_before, h2_after) = (
        old.connections.h2_idle_timeout_ms,
        new.connections.h2_idle_timeout_ms,
    );
    if h2_before != h2_after {
        changes.push(format!(
            "connections.h2_idle_timeout_ms: changed from {h2_before} to {h2_after}; it needs a restart"
        ));
    }

    let (a, b) = (&old.kafka, &new.kafka);
    let mut kafka = |key: &str, before: Option<String>, after: Option<String>| {
        let detail = match (before, after) {
            (Some(before), Some(after)) => format!("changed from {before} to {after}"),
            _ => "changed".to_owned(),
        };
        changes.push(format!(
            "kafka.{key}: {detail}; the [kafka] table needs a restart"
        ));
    };
    if a.brokers != b.brokers {
        kafka("brokers", Some(a.brokers.clone()), Some(b.brokers.clone()));
    }
    if a.topic != b.topic {
        kafka("topic", Some(a.topic.clone()), Some(b.topic.clone()));
    }
    if a.delivery_timeout_ms != b.delivery_timeout_ms {
        kafka(
            "delivery_timeout_ms",
            Some(a.delivery_timeout_ms.to_string()),
            Some(b.delivery_timeout_ms.to_string()),
        );
    }
    if a.linger_ms != b.linger_ms {
        kafka(
            "linger_ms",
            Some(a.linger_ms.to_string()),
            Some(b.linger_ms.to_string()),
        );
    }
    if a.compression != b.compression {
        kafka(
            "compression",
            Some(a.compression.to_string()),
            Some(b.compression.to_string()),
        );
    }
    if a.tls != b.tls {
        kafka("tls", None, None);
    }
    if a.sasl != b.sasl {
        kafka("sasl", None, None);
    }
    if a.properties != b.properties {
        let mut keys: Vec<&str> = a
            .properties
            .iter()
            .filter(|(k, v)| b.properties.get(*k) != Some(v))
            .map(|(k, _)| k.as_str())
            .chain(
                b.properties
                    .keys()
                    .filter(|k| !a.properties.contains_key(*k))
                    .map(String::as_str),
            )
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            kafka(&join_key("properties", key), None, None);
        }
    }
    let (a, b) = (&old.spool, &new.spool);
    let spool_dir = |c: &Config| c.spool.dir_in(&c.data_dir);
    // Both unset: the directory follows data_dir, whose change is reported above.
    if a.dir != b.dir && spool_dir(old) != spool_dir(new) {
        changes.push(format!(
            "spool.dir: changed from {} to {}; spool.dir needs a restart",
            spool_dir(old).display(),
            spool_dir(new).display()
        ));
    }
    if a.fsync != b.fsync {
        changes.push(format!(
            "spool.fsync: changed from {} to {}; spool.fsync needs a restart",
            a.fsync.as_str(),
            b.fsync.as_str()
        ));
    }
    if a.segment_bytes != b.segment_bytes {
        changes.push(format!(
            "spool.segment_bytes: changed from {} to {}; spool.segment_bytes needs a restart",
            a.segment_bytes, b.segment_bytes
        ));
    }
    changes
}

fn show_addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "disabled".to_owned(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KafkaSasl, SaslMechanism};

    #[test]
    fn identical_configs_reload() {
        let config = Config::default();
        assert!(non_reloadable_changes(&config, &config.clone()).is_empty());
    }

    #[test]
    fn reloadable_changes_are_not_reported() {
        let old = Config::default();
        let mut new = old.clone();
        new.limits.max_body_bytes = 42;
        new.admin.token_file = Some("/t".into());
        new.encryption.active_key_id = "x".into();
        new.spool.max_bytes = 1 << 20;
        new.spool.min_free_disk_bytes = 0;
        assert!(non_reloadable_changes(&old, &new).is_empty());
    }

    #[test]
    fn spool_dir_and_segment_size_need_a_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.spool.dir = Some("/var/spool/edge".into());
        new.spool.segment_bytes = 1 << 20;
        assert_eq!(
            non_reloadable_changes(&old, &new),
            vec![
                "spool.dir: changed from ./data/spool to /var/spool/edge; spool.dir needs a restart",
                "spool.segment_bytes: changed from 16777216 to 1048576; spool.segment_bytes needs a restart",
            ]
        );
    }

    #[test]
    fn listen_and_data_dir_changes() {
        let old = Config::default();
        let mut new = old.clone();
        new.listeners.https = "0.0.0.0:443".parse().ok();
        new.listeners.http = None;
        new.admin.listen = "127.0.0.1:9902".parse().unwrap_or(old.admin.listen);
        new.data_dir = "/var/lib/edge".into();
        assert_eq!(
            non_reloadable_changes(&old, &new),
            vec![
                "data_dir: changed from ./data to /var/lib/edge; data_dir needs a restart",
                "listeners.http: changed from 127.0.0.1:8080 to disabled; listen addresses need a restart",
                "listeners.https: changed from 127.0.0.1:8443 to 0.0.0.0:443; listen addresses need a restart",
                "admin.listen: changed from 127.0.0.1:9901 to 127.0.0.1:9902; listen addresses need a restart",
            ]
        );
    }

    #[test]
    fn only_the_h2_idle_timeout_of_connections_needs_a_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.connections.header_timeout_ms = 500;
        new.connections.max_per_client = Some(3);
        assert!(non_reloadable_changes(&old, &new).is_empty());
        new.connections.h2_idle_timeout_ms = 1_000;
        assert_eq!(
            non_reloadable_changes(&old, &new),
            vec!["connections.h2_idle_timeout_ms: changed from 30000 to 1000; it needs a restart"]
        );
    }

    #[test]
    fn any_kafka_change_needs_restart_and_hides_secrets() {
        let old = Config::default();
        let mut new = old.clone();
        new.kafka.topic = "other".into();
        new.kafka.linger_ms = 10;
        new.kafka
            .properties
            .insert("sasl.oauthbearer.config".into(), "secret-value".into());
        new.kafka.sasl = Some(KafkaSasl {
            mechanism: SaslMechanism::ScramSha512,
            username: "edge".into(),
            password_file: "/run/secrets/kafka".into(),
        });
        let changes = non_reloadable_changes(&old, &new);
        assert_eq!(
            changes,
            vec![
                "kafka.topic: changed from edge.events to other; the [kafka] table needs a restart",
                "kafka.linger_ms: changed from 5 to 10; the [kafka] table needs a restart",
                "kafka.sasl: changed; the [kafka] table needs a restart",
                "kafka.properties.\"sasl.oauthbearer.config\": changed; the [kafka] table needs a restart",
            ]
        );
        assert!(!changes.join("\n").contains("secret-value"));
    }
}
