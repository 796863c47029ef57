//! Reload rules: which changes between two configurations need a restart.
//!
//! Listen addresses, `data_dir`, `connections.h2_idle_timeout_ms`,
//! `spool.dir`, `spool.fsync`, `spool.segment_bytes`, `spool.prefill_bytes`
//! and the whole `[kafka]` table are fixed for the life of the process; everything else (sites,
//! limits, TLS certificates, encryption keys, the admin token file, …) may
//! be reloaded. That includes `[rate_limits.shared]` (part of the reloadable
//! `[rate_limits]` table): its sync task reconnects when the Redis settings
//! change and falls back to local buckets when the table goes away.
//!
//! Every table that holds a restart-only key is destructured below without
//! `..`, so a field added to [`Config`], [`Listeners`], [`Admin`],
//! [`Connections`], [`Kafka`] or [`Spool`] does not compile until it is given
//! a decision here. `[kafka]` is compared as a whole table; its per-key
//! messages only explain the difference. The tests check every key of the
//! serialized model against an explicit list of decisions, and those
//! decisions against the Reload column of `docs/config.md`.

use std::net::SocketAddr;

use crate::locate::join_key;
use crate::model::{Admin, Config, Connections, Kafka, Listeners, Spool};

/// The keys whose change needs a restart, as written in the file; `kafka`
/// stands for every key of the `[kafka]` table.
pub const RESTART_ONLY_KEYS: [&str; 10] = [
    "data_dir",
    "listeners.http",
    "listeners.https",
    "admin.listen",
    "connections.h2_idle_timeout_ms",
    "kafka",
    "spool.dir",
    "spool.fsync",
    "spool.segment_bytes",
    "spool.prefill_bytes",
];

/// Describes every change from `old` to `new` that a reload cannot apply,
/// one message per key; an empty result means `new` may be swapped in.
///
/// Messages look like `listeners.https: changed from 127.0.0.1:8443 to
/// 0.0.0.0:443; listen addresses need a restart`. Kafka properties and
/// credentials are never echoed, only named.
pub fn non_reloadable_changes(old: &Config, new: &Config) -> Vec<String> {
    // No `..`: a new top-level table needs a decision here.
    let Config {
        data_dir,
        listeners,
        admin,
        connections,
        kafka,
        spool,
        // Applied by a reload, as whole tables.
        limits: _,
        rate_limits: _,
        client_ip: _,
        bots: _,
        tls: _,
        sites: _,
        encryption: _,
        acme: _,
        tag: _,
        capture: _,
    } = old;
    let mut changes = Vec::new();
    if *data_dir != new.data_dir {
        changes.push(format!(
            "data_dir: changed from {} to {}; data_dir needs a restart",
            data_dir.display(),
            new.data_dir.display()
        ));
    }
    listener_changes(listeners, &new.listeners, &mut changes);
    admin_changes(admin, &new.admin, &mut changes);
    connection_changes(connections, &new.connections, &mut changes);
    kafka_changes(kafka, &new.kafka, &mut changes);
    spool_changes(spool, old, new, &mut changes);
    changes
}

/// `listeners.http` and `listeners.https` need a restart; `plain_http` is reloadable.
fn listener_changes(old: &Listeners, new: &Listeners, changes: &mut Vec<String>) {
    let Listeners {
        http,
        https,
        plain_http: _,
    } = old;
    listen_change("listeners.http", *http, new.http, changes);
    listen_change("listeners.https", *https, new.https, changes);
}

/// `admin.listen` needs a restart; the token file and allowed hosts are reloadable.
fn admin_changes(old: &Admin, new: &Admin, changes: &mut Vec<String>) {
    let Admin {
        listen,
        token_file: _,
        allowed_hosts: _,
    } = old;
    listen_change("admin.listen", Some(*listen), Some(new.listen), changes);
}

fn listen_change(
    key: &str,
    before: Option<SocketAddr>,
    after: Option<SocketAddr>,
    changes: &mut Vec<String>,
) {
    if before != after {
        changes.push(format!(
            "{key}: changed from {} to {}; listen addresses need a restart",
            show_addr(before),
            show_addr(after)
        ));
    }
}

/// Only `h2_idle_timeout_ms` needs a restart (Pingora fixes it when the
/// listener is built); caps and the other timeouts are read per connection.
fn connection_changes(old: &Connections, new: &Connections, changes: &mut Vec<String>) {
    let Connections {
        h2_idle_timeout_ms,
        header_timeout_ms: _,
        keepalive_timeout_ms: _,
        h2_handshake_timeout_ms: _,
        tls_handshake_timeout_ms: _,
        max_per_listener: _,
        max_per_client: _,
        admin_max_connections: _,
        reserved_fds: _,
    } = old;
    let (before, after) = (*h2_idle_timeout_ms, new.h2_idle_timeout_ms);
    if before != after {
        changes.push(format!(
            "connections.h2_idle_timeout_ms: changed from {before} to {after}; it needs a restart"
        ));
    }
}

/// The whole `[kafka]` table needs a restart. The tables are compared as a
/// whole; each differing key is then named (values only where they cannot
/// be secrets).
fn kafka_changes(a: &Kafka, b: &Kafka, changes: &mut Vec<String>) {
    if a == b {
        return;
    }
    let reported = changes.len();
    let mut kafka = |key: &str, values: Option<(String, String)>| {
        let detail = match values {
            Some((before, after)) => format!("changed from {before} to {after}"),
            None => "changed".to_owned(),
        };
        changes.push(format!(
            "kafka.{key}: {detail}; the [kafka] table needs a restart"
        ));
    };
    let shown =
        |before: &dyn ToString, after: &dyn ToString| Some((before.to_string(), after.to_string()));
    let Kafka {
        brokers,
        topic,
        delivery_timeout_ms,
        linger_ms,
        compression,
        tls,
        sasl,
        properties,
    } = a;
    if *brokers != b.brokers {
        kafka("brokers", shown(brokers, &b.brokers));
    }
    if *topic != b.topic {
        kafka("topic", shown(topic, &b.topic));
    }
    if *delivery_timeout_ms != b.delivery_timeout_ms {
        kafka(
            "delivery_timeout_ms",
            shown(delivery_timeout_ms, &b.delivery_timeout_ms),
        );
    }
    if *linger_ms != b.linger_ms {
        kafka("linger_ms", shown(linger_ms, &b.linger_ms));
    }
    if *compression != b.compression {
        kafka("compression", shown(compression, &b.compression));
    }
    if *tls != b.tls {
        kafka("tls", None);
    }
    if *sasl != b.sasl {
        kafka("sasl", None);
    }
    for key in changed_property_keys(properties, &b.properties) {
        kafka(&join_key("properties", key), None);
    }
    if changes.len() == reported {
        // The tables differ in a way no key above names: still a restart.
        changes.push("kafka: changed; the [kafka] table needs a restart".to_owned());
    }
}

/// Keys added, removed or changed between two property maps, sorted.
fn changed_property_keys<'a>(
    a: &'a std::collections::BTreeMap<String, String>,
    b: &'a std::collections::BTreeMap<String, String>,
) -> Vec<&'a str> {
    let mut keys: Vec<&str> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .chain(b.keys().filter(|k| !a.contains_key(*k)).map(String::as_str))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// `dir`, `fsync`, `segment_bytes` and `prefill_bytes` need a restart; the size bounds and
/// the group-commit delay are reloadable.
fn spool_changes(spool: &Spool, old: &Config, new: &Config, changes: &mut Vec<String>) {
    let Spool {
        dir,
        fsync,
        segment_bytes,
        prefill_bytes,
        max_bytes: _,
        min_free_disk_bytes: _,
        commit_delay_us: _,
        commit_delay_min_appends: _,
    } = spool;
    let b = &new.spool;
    let spool_dir = |c: &Config| c.spool.dir_in(&c.data_dir);
    // Both unset: the directory follows data_dir, whose change is reported above.
    if *dir != b.dir && spool_dir(old) != spool_dir(new) {
        changes.push(format!(
            "spool.dir: changed from {} to {}; spool.dir needs a restart",
            spool_dir(old).display(),
            spool_dir(new).display()
        ));
    }
    if *fsync != b.fsync {
        changes.push(format!(
            "spool.fsync: changed from {} to {}; spool.fsync needs a restart",
            fsync.as_str(),
            b.fsync.as_str()
        ));
    }
    if *segment_bytes != b.segment_bytes {
        changes.push(format!(
            "spool.segment_bytes: changed from {} to {}; spool.segment_bytes needs a restart",
            segment_bytes, b.segment_bytes
        ));
    }
    if *prefill_bytes != b.prefill_bytes {
        changes.push(format!(
            "spool.prefill_bytes: changed from {} to {}; spool.prefill_bytes needs a restart",
            prefill_bytes, b.prefill_bytes
        ));
    }
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

    /// Keys a reload applies, below the tables that also hold restart-only
    /// keys. Together with [`WHOLE_TABLES_RELOADABLE`] and
    /// [`RESTART_ONLY_KEYS`] this is the explicit decision for every key.
    const RELOADABLE_KEYS: [&str; 15] = [
        "listeners.plain_http",
        "admin.token_file",
        "admin.allowed_hosts",
        "connections.header_timeout_ms",
        "connections.keepalive_timeout_ms",
        "connections.h2_handshake_timeout_ms",
        "connections.tls_handshake_timeout_ms",
        "connections.max_per_listener",
        "connections.max_per_client",
        "connections.admin_max_connections",
        "connections.reserved_fds",
        "spool.max_bytes",
        "spool.min_free_disk_bytes",
        "spool.commit_delay_us",
        "spool.commit_delay_min_appends",
    ];

    /// Top-level tables a reload applies with every key in them.
    const WHOLE_TABLES_RELOADABLE: [&str; 10] = [
        "limits",
        "rate_limits",
        "client_ip",
        "bots",
        "tls",
        "sites",
        "encryption",
        "acme",
        "tag",
        "capture",
    ];

    /// A configuration with every optional key and table present, so that
    /// its serialized form names every key of the model.
    fn every_key_present() -> Config {
        let mut config = Config::default();
        config.admin.token_file = Some("/t".into());
        config.connections.max_per_listener = Some(1);
        config.connections.max_per_client = Some(1);
        config.spool.dir = Some("/s".into());
        config.acme = Some(
            toml::from_str("directory_url = \"https://acme.test/dir\"")
                .unwrap_or_else(|e| panic!("{e}")),
        );
        config.capture = Some(crate::model::Capture::new("/c".into()));
        config.rate_limits.shared = Some(
            toml::from_str("redis_url = \"redis://redis.test:6379\"")
                .unwrap_or_else(|e| panic!("{e}")),
        );
        config
    }

    /// Every key of the serialized model, down to the second level (the
    /// level of the mixed tables).
    fn serialized_keys(config: &Config) -> Vec<String> {
        let value = toml::Value::try_from(config).unwrap_or_else(|e| panic!("{e}"));
        let toml::Value::Table(root) = value else {
            panic!("a config serializes to a table")
        };
        let mut keys = Vec::new();
        for (key, value) in root {
            if let toml::Value::Table(table) = &value {
                keys.extend(table.keys().map(|k| format!("{key}.{k}")));
            }
            keys.push(key);
        }
        keys
    }

    /// The decision for `key` (a top-level key or `table.key`), if any.
    fn decision(key: &str) -> Option<bool> {
        let table = key.split(['.', '[']).next().unwrap_or(key);
        if RESTART_ONLY_KEYS.contains(&key) || table == "kafka" {
            Some(false)
        } else if RELOADABLE_KEYS.contains(&key) || WHOLE_TABLES_RELOADABLE.contains(&table) {
            Some(true)
        } else {
            None
        }
    }

    #[test]
    fn every_key_of_the_model_has_a_reload_decision() {
        let keys = serialized_keys(&every_key_present());
        // Positive control: the walk sees keys of every kind of table.
        for expected in ["data_dir", "kafka.topic", "spool.dir", "acme", "limits"] {
            assert!(keys.iter().any(|k| k == expected), "{expected} in {keys:?}");
        }
        let mixed = ["listeners", "admin", "connections", "spool"];
        let undecided: Vec<&String> = keys
            .iter()
            .filter(|k| !mixed.contains(&k.as_str()) && decision(k).is_none())
            .collect();
        assert!(
            undecided.is_empty(),
            "keys without a reload decision (add them to diff.rs and docs/config.md): {undecided:?}"
        );
        // And no decision names a key the model no longer has.
        for key in RESTART_ONLY_KEYS.iter().chain(&RELOADABLE_KEYS) {
            assert!(keys.iter().any(|k| k == key), "{key} is not in the model");
        }
    }

    /// A change to one key of a configuration.
    type Edit = fn(&mut Config);

    #[test]
    fn every_restart_only_key_is_reported_and_no_reloadable_one() {
        let old = every_key_present();
        // `spool.fsync` has a single value (`always`) today, so no edit of it exists.
        let edits: [(&str, Edit); 16] = [
            ("data_dir", |c| c.data_dir = "/elsewhere".into()),
            ("listeners.http", |c| c.listeners.http = None),
            ("listeners.https", |c| c.listeners.https = None),
            ("admin.listen", |c| c.admin.listen.set_port(1)),
            ("connections.h2_idle_timeout_ms", |c| {
                c.connections.h2_idle_timeout_ms = 1
            }),
            ("kafka.brokers", |c| c.kafka.brokers = "b:9092".into()),
            ("kafka.topic", |c| c.kafka.topic = "t".into()),
            ("kafka.delivery_timeout_ms", |c| {
                c.kafka.delivery_timeout_ms = 1
            }),
            ("kafka.linger_ms", |c| c.kafka.linger_ms = 1),
            ("kafka.compression", |c| {
                c.kafka.compression = crate::model::Compression::Zstd
            }),
            ("kafka.tls", |c| c.kafka.tls = Some(Default::default())),
            ("kafka.sasl", |c| {
                c.kafka.sasl = Some(KafkaSasl {
                    mechanism: SaslMechanism::Plain,
                    username: "u".into(),
                    password_file: "/p".into(),
                })
            }),
            ("kafka.properties", |c| {
                c.kafka.properties.insert("client.id".into(), "x".into());
            }),
            ("spool.dir", |c| c.spool.dir = Some("/other".into())),
            ("spool.segment_bytes", |c| c.spool.segment_bytes = 4_096),
            ("spool.prefill_bytes", |c| c.spool.prefill_bytes = 0),
        ];
        for (key, edit) in edits {
            let mut new = old.clone();
            edit(&mut new);
            let changes = non_reloadable_changes(&old, &new);
            assert_ne!(new, old, "{key}: the edit changes nothing");
            assert_eq!(changes.len(), 1, "{key}: {changes:?}");
            assert!(changes[0].starts_with(key), "{key}: {changes:?}");
            assert_eq!(decision(key), Some(false), "{key}");
        }
        let mut new = old.clone();
        new.listeners.plain_http = crate::model::PlainHttp::Events;
        new.admin.token_file = None;
        new.admin.allowed_hosts.clear();
        new.connections = crate::model::Connections {
            header_timeout_ms: 1,
            keepalive_timeout_ms: 1,
            h2_handshake_timeout_ms: 1,
            h2_idle_timeout_ms: old.connections.h2_idle_timeout_ms,
            tls_handshake_timeout_ms: 1,
            max_per_listener: None,
            max_per_client: None,
            admin_max_connections: 1,
            reserved_fds: 1,
        };
        new.spool.max_bytes = 1;
        new.spool.min_free_disk_bytes = 1;
        new.limits.max_uri_bytes = 1;
        new.acme = None;
        new.capture = None;
        new.sites.push(crate::model::Site {
            id: "s".into(),
            domains: vec!["s.test".into()],
            allowed_origins: Vec::new(),
            rate_limits: Default::default(),
            bot_action: None,
        });
        assert!(non_reloadable_changes(&old, &new).is_empty());
    }

    #[test]
    fn the_reload_column_of_docs_config_md_agrees() {
        let docs = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config.md"));
        let mut rows = 0;
        for line in docs.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<String> = line
                .replace("\\|", "/")
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            let (Some(key), Some(reload)) = (cells.get(1), cells.get(4)) else {
                panic!("short row: {line}")
            };
            let key = key.trim_matches('`');
            // Rows of nested tables (`sites[].…`, `kafka.tls.ca_file`) take
            // the decision of their first two levels.
            let top: String = key.split('.').take(2).collect::<Vec<_>>().join(".");
            let expected = match decision(&top).or_else(|| decision(key)) {
                Some(true) => "yes",
                Some(false) => "no",
                // `….enabled` and friends: the keys of each `[rate_limits.*]` table.
                None if key.starts_with('…') => "yes",
                None => panic!("docs/config.md names {key}, which has no decision"),
            };
            assert_eq!(reload, expected, "docs/config.md: Reload of {key}");
            rows += 1;
        }
        assert!(rows > 100, "only {rows} key rows found in docs/config.md");
    }
}
