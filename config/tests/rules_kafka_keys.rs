//! Validation rules: Kafka, encryption keys, and several errors reported at once.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use edge_config::{ConfigError, parse_str};
use std::path::Path;

#[test]
fn kafka_topic_name() {
    let text = http_only("[kafka]\ntopic = \"edge events\"\n");
    assert_single(
        &text,
        "topic",
        "kafka.topic",
        "topic name \"edge events\" contains ' '; only a-z, A-Z, 0-9, '.', '_' and '-' are allowed",
    );
    let text = http_only("[kafka]\ntopic = \"..\"\n");
    assert_single(
        &text,
        "topic",
        "kafka.topic",
        "topic name \"..\" is not allowed",
    );
}

#[test]
fn kafka_brokers_are_host_port() {
    let text = http_only("[kafka]\nbrokers = \"k1:9092,k2\"\n");
    assert_single(
        &text,
        "brokers",
        "kafka.brokers",
        "invalid broker \"k2\": expected \"host:port\" (comma-separated for several)",
    );
}

#[test]
fn kafka_delivery_timeout_range() {
    let text = http_only("[kafka]\ndelivery_timeout_ms = 99\n");
    assert_single(
        &text,
        "delivery_timeout_ms",
        "kafka.delivery_timeout_ms",
        "99 is out of range, expected 100..=300000",
    );
    let text = http_only("[kafka]\ndelivery_timeout_ms = 300001\n");
    assert_single(
        &text,
        "delivery_timeout_ms",
        "kafka.delivery_timeout_ms",
        "300001 is out of range, expected 100..=300000",
    );
    let text = http_only("[kafka]\ndelivery_timeout_ms = 1000\nlinger_ms = 1000\n");
    assert_single(
        &text,
        "delivery_timeout_ms",
        "kafka.delivery_timeout_ms",
        "must be greater than kafka.linger_ms (1000)",
    );
}

#[test]
fn kafka_compression_is_an_enum() {
    let text = http_only("[kafka]\ncompression = \"brotli\"\n");
    assert_single(
        &text,
        "compression",
        "kafka.compression",
        "unknown variant `brotli`, expected one of `none`, `gzip`, `snappy`, `lz4`, `zstd`",
    );
}

#[test]
fn kafka_client_cert_and_key_go_together() {
    let text = http_only("[kafka.tls]\nca_file = \"ca.pem\"\nkey_file = \"client.key\"\n");
    assert_single(
        &text,
        "key_file",
        "kafka.tls.key_file",
        "is set but kafka.tls.cert_file is not; set both or neither",
    );
    let text = http_only("[kafka.tls]\ncert_file = \"client.pem\"\n");
    assert_single(
        &text,
        "cert_file",
        "kafka.tls.cert_file",
        "is set but kafka.tls.key_file is not; set both or neither",
    );
}

#[test]
fn kafka_sasl() {
    let text = http_only(
        "[kafka.sasl]\nmechanism = \"SCRAM-SHA-1\"\nusername = \"u\"\npassword_file = \"p\"\n",
    );
    assert_single(
        &text,
        "mechanism",
        "kafka.sasl.mechanism",
        "unknown variant `SCRAM-SHA-1`, expected one of `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`",
    );
    let text =
        http_only("[kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"\"\npassword_file = \"p\"\n");
    assert_single(
        &text,
        "username",
        "kafka.sasl.username",
        "must not be empty",
    );
    let loaded = valid(&http_only(
        "[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"edge\"\npassword_file = \"secrets/kafka\"\n",
    ));
    let sasl = loaded
        .config
        .kafka
        .sasl
        .as_ref()
        .map(|s| s.password_file.clone());
    assert_eq!(sasl, Some("/etc/edge/secrets/kafka".into()));
}

#[test]
fn kafka_properties_cannot_override_owned_keys() {
    let text = http_only(
        "[kafka.properties]\n\"client.id\" = \"edge\"\n\"enable.idempotence\" = \"false\"\n",
    );
    assert_single(
        &text,
        "enable.idempotence",
        "kafka.properties.\"enable.idempotence\"",
        "property \"enable.idempotence\" is set by the edge and cannot be overridden",
    );
    let text = http_only("[kafka.properties]\n\"bootstrap.servers\" = \"x:1\"\n");
    assert_single(
        &text,
        "bootstrap.servers",
        "kafka.properties.\"bootstrap.servers\"",
        "property \"bootstrap.servers\" is set by the edge and cannot be overridden; \
         use kafka.brokers",
    );
    // Dotted keys (unquoted) are nested tables in TOML, not property names.
    let text = http_only("[kafka.properties]\nclient.id = \"edge\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, "kafka.properties.client");
    assert_eq!(errs[0].line, Some(line_of(&text, "client.id")));
}

// ---- encryption ----------------------------------------------------------

#[test]
fn encryption_is_required() {
    let text = "[listeners]\nhttps = \"\"\nplain_http = \"events\"\n[[sites]]\nid = \"s\"\ndomains = [\"localhost\"]\n";
    let errs = errors(text);
    assert_eq!(
        errs,
        vec![
            ConfigError::new(
                "encryption.backend_keys",
                "at least one backend key is required (add an [[encryption.backend_keys]] table)"
            ),
            ConfigError::new(
                "encryption.active_key_id",
                "is required: the id of the backend key to encrypt to"
            ),
        ]
    );
}

#[test]
fn active_key_must_be_known() {
    let text = format!(
        "[listeners]\nhttps = \"\"\nplain_http = \"events\"\n[[sites]]\nid = \"s\"\ndomains = [\"localhost\"]\n\
         [encryption]\nactive_key_id = \"{OTHER_KEY_ID}\"\n\
         [[encryption.backend_keys]]\nid = \"{KEY_ID}\"\npublic_key = \"{PUBLIC_KEY}\"\n"
    );
    assert_single(
        &text,
        "active_key_id",
        "encryption.active_key_id",
        &format!(
            "\"{OTHER_KEY_ID}\" does not name any of encryption.backend_keys (known ids: {KEY_ID})"
        ),
    );
}

#[test]
fn key_id_must_match_public_key() {
    let text = http_only(&format!(
        "[[encryption.backend_keys]]\nid = \"{KEY_ID}\"\npublic_key = \"{OTHER_PUBLIC_KEY}\"\n"
    ));
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:?}");
    // The second key both duplicates the first id and does not match it.
    let mismatch = &errs[1];
    assert_eq!(mismatch.key, "encryption.backend_keys[1].id");
    assert_eq!(
        mismatch.message,
        format!("does not match public_key: the key's id is \"{OTHER_KEY_ID}\", not \"{KEY_ID}\"")
    );
    assert_eq!(
        errs[0].message,
        format!("duplicate key id \"{KEY_ID}\" (already used by encryption.backend_keys[0])")
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[mismatch.line.unwrap_or(1) - 1],
        format!("id = \"{KEY_ID}\"")
    );
    assert!(mismatch.line > Some(line_of(&text, "[listeners]")));
}

#[test]
fn public_key_must_be_32_bytes_of_base64() {
    let text = http_only(&format!(
        "[[encryption.backend_keys]]\nid = \"{OTHER_KEY_ID}\"\npublic_key = \"not base64!\"\n"
    ));
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "encryption.backend_keys[1].public_key");
    assert_eq!(errs[0].line, Some(line_of(&text, "not base64")));
    assert!(
        errs[0]
            .message
            .starts_with("not a valid X25519 public key: key is not valid base64"),
        "{}",
        errs[0].message
    );
    let text = http_only(&format!(
        "[[encryption.backend_keys]]\nid = \"{OTHER_KEY_ID}\"\npublic_key = \"AAAA\"\n"
    ));
    assert_single(
        &text,
        "AAAA",
        "encryption.backend_keys[1].public_key",
        "not a valid X25519 public key: key must be 32 bytes, got 3",
    );
}

#[test]
fn key_id_format() {
    let text = http_only(&format!(
        "[[encryption.backend_keys]]\nid = \"CF29DB6249EF6E86\"\npublic_key = \"{OTHER_PUBLIC_KEY}\"\n"
    ));
    assert_single(
        &text,
        "CF29DB",
        "encryption.backend_keys[1].id",
        "invalid key id \"CF29DB6249EF6E86\": expected 16 lowercase hex characters",
    );
}

#[test]
fn two_keys_with_matching_ids_are_valid() {
    let loaded = valid(&http_only(&format!(
        "[[encryption.backend_keys]]\nid = \"{OTHER_KEY_ID}\"\npublic_key = \"{OTHER_PUBLIC_KEY}\"\n"
    )));
    assert_eq!(loaded.config.encryption.backend_keys.len(), 2);
}

#[test]
fn data_key_rotation_ranges() {
    let text = format!(
        "[listeners]\nhttps = \"\"\nplain_http = \"events\"\n[[sites]]\nid = \"s\"\ndomains = [\"localhost\"]\n\
         [encryption]\nactive_key_id = \"{KEY_ID}\"\ndata_key_max_age_seconds = 59\n\
         data_key_max_events = 4294967297\n\
         [[encryption.backend_keys]]\nid = \"{KEY_ID}\"\npublic_key = \"{PUBLIC_KEY}\"\n"
    );
    let errs = errors(&text);
    assert_eq!(
        errs,
        vec![
            ConfigError {
                line: Some(line_of(&text, "max_age")),
                key: "encryption.data_key_max_age_seconds".into(),
                message: "59 is out of range, expected 60..=86400".into(),
            },
            ConfigError {
                line: Some(line_of(&text, "max_events")),
                key: "encryption.data_key_max_events".into(),
                message: "4294967297 is out of range, expected 1..=4294967296".into(),
            },
        ]
    );
}

// ---- data_dir ------------------------------------------------------------

#[test]
fn data_dir_must_not_be_empty() {
    let text = format!("data_dir = \"\"\n{}", http_only(""));
    assert_single(&text, "data_dir", "data_dir", "must not be empty");
}

// ---- shape errors --------------------------------------------------------

#[test]
fn unknown_key_is_rejected_with_its_line_and_the_expected_keys() {
    let text = http_only("[limits]\nmax_body_bytes = 1024\nmax_body_size = 1024\n");
    assert_single(
        &text,
        "max_body_size",
        "limits.max_body_size",
        "unknown field `max_body_size`, expected one of `max_body_bytes`, `max_batch_events`, \
         `request_body_timeout_ms`, `max_request_head_bytes`, `max_uri_bytes`",
    );
}

#[test]
fn unknown_top_level_table() {
    let text = http_only("[metrics]\nenabled = true\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, "metrics");
    assert_eq!(errs[0].line, Some(line_of(&text, "[metrics]")));
    assert!(
        errs[0]
            .message
            .starts_with("unknown field `metrics`, expected one of `data_dir`")
    );
}

#[test]
fn type_error_has_line_and_key() {
    let text = http_only("[limits]\nmax_body_bytes = \"1MiB\"\n");
    assert_single(
        &text,
        "1MiB",
        "limits.max_body_bytes",
        "invalid type: string \"1MiB\", expected u64",
    );
}

#[test]
fn syntax_errors_have_lines() {
    let text = "[listeners]\nhttps = \"\"\n\n[limits\nmax_body_bytes = 1\n";
    let errs = errors(text);
    assert!(!errs.is_empty());
    assert_eq!(errs[0].line, Some(4));
    assert!(
        errs[0].message.contains("unclosed table"),
        "{}",
        errs[0].message
    );
    let text = "a = 1\na = 2\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, Some(2));
    assert!(
        errs[0].message.contains("duplicate key"),
        "{}",
        errs[0].message
    );
}

#[test]
fn four_mistakes_give_four_errors() {
    let text = format!(
        "[listeners]\nhttps = \"\"\nplain_http = \"events\"\n\
         [limits]\nmax_batch_events = 0\n\
         [[sites]]\nid = \"s\"\ndomains = [\"UPPER.example.com\"]\n\
         [kafka]\ntopic = \"\"\n\
         [encryption]\nactive_key_id = \"{KEY_ID}\"\n\
         [[encryption.backend_keys]]\nid = \"{KEY_ID}\"\npublic_key = \"{OTHER_PUBLIC_KEY}\"\n"
    );
    let errs = errors(&text);
    let got: Vec<(Option<usize>, &str)> = errs.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Some(5), "limits.max_batch_events"),
            (Some(8), "sites[0].domains[0]"),
            (Some(10), "kafka.topic"),
            (Some(14), "encryption.backend_keys[0].id"),
        ]
    );
}

#[test]
fn several_shape_errors_are_reported_together() {
    let text = "[listeners]\nhttps = \"\"\nplain_http = \"events\"\nbogus = 1\n\
                [limits]\nmax_body_bytes = \"big\"\n\
                [[sites]]\nid = \"dev\"\n\
                [[sites]]\nid = 7\ndomains = [\"x.com\"]\n\
                [kafka]\ncompression = \"brotli\"\nnope = true\n";
    let errs = errors(text);
    let got: Vec<(Option<usize>, &str)> = errs.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Some(4), "listeners.bogus"),
            (Some(6), "limits.max_body_bytes"),
            (Some(7), "sites[0]"),
            (Some(10), "sites[1].id"),
            (Some(13), "kafka.compression"),
            (Some(14), "kafka.nope"),
            // Semantic problems of what remains are reported in the same run.
            (None, "encryption.backend_keys"),
            (None, "encryption.active_key_id"),
        ]
    );
    assert_eq!(errs[2].message, "missing field `domains`");
}

#[test]
fn head_and_uri_limits_are_range_checked_with_their_lines() {
    let text = http_only("[limits]\nmax_request_head_bytes = 512\nmax_uri_bytes = 2097152\n");
    let err = parse_str(&text, Path::new(ORIGIN))
        .err()
        .map(|e| e.to_string());
    let l = line_of(&text, "max_request_head_bytes");
    assert_eq!(
        err.as_deref(),
        Some(
            format!(
                "/etc/edge/edge.toml:{l}: limits.max_request_head_bytes: 512 is out of range, expected 1024..=1048576\n\
                 /etc/edge/edge.toml:{}: limits.max_uri_bytes: 2097152 is out of range, expected 256..=1048576",
                l + 1
            )
            .as_str()
        )
    );
    let ok = http_only("[limits]\nmax_request_head_bytes = 16384\nmax_uri_bytes = 8192\n");
    let cfg = parse_str(&ok, Path::new(ORIGIN)).unwrap();
    assert_eq!(cfg.config.limits.max_request_head_bytes, 16384);
    assert_eq!(cfg.config.limits.max_uri_bytes, 8192);
}

#[test]
fn display_is_one_line_per_error() {
    let text = http_only("[limits]\nmax_body_bytes = 0\nmax_batch_events = 0\n");
    let err = parse_str(&text, Path::new(ORIGIN))
        .err()
        .map(|e| e.to_string());
    let l = line_of(&text, "max_body_bytes");
    assert_eq!(
        err.as_deref(),
        Some(
            format!(
                "/etc/edge/edge.toml:{l}: limits.max_body_bytes: 0 is out of range, expected 1..=67108864\n\
                 /etc/edge/edge.toml:{}: limits.max_batch_events: 0 is out of range, expected 1..=1000",
                l + 1
            )
            .as_str()
        )
    );
}
