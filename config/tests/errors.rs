//! One test per validation rule: each shows the exact error, its key path and
//! the line it is reported on.

use std::path::Path;

use edge_config::{ConfigError, LoadedConfig, parse_str};

const KEY_ID: &str = "1bf54b4d765f4db4";
const PUBLIC_KEY: &str = "Fswmsl9cVJDqZ2A8WRNKQGGrxuDFpocFNH1/J+67LDc=";
const OTHER_KEY_ID: &str = "cf29db6249ef6e86";
const OTHER_PUBLIC_KEY: &str = "ywyQB0o+/N/ASt0ZThPS1RkFqkxX9UyLc0EP4h1TfBQ=";

const ORIGIN: &str = "/etc/edge/edge.toml";

/// A valid file (HTTP only, one site, one key) followed by `extra`.
fn with(extra: &str) -> String {
    format!(
        "[[sites]]\nid = \"base\"\ndomains = [\"base.example.com\"]\n\n\
         [encryption]\nactive_key_id = \"{KEY_ID}\"\n\n\
         [[encryption.backend_keys]]\nid = \"{KEY_ID}\"\npublic_key = \"{PUBLIC_KEY}\"\n\n\
         {extra}"
    )
}

/// [`with`], with the HTTPS listener disabled unless `extra` sets it.
fn http_only(extra: &str) -> String {
    if extra.contains("[listeners]") {
        with(extra)
    } else {
        with(&format!("[listeners]\nhttps = \"\"\n\n{extra}"))
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse_str(text, Path::new(ORIGIN)) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, Path::new(ORIGIN));
            e.errors
        }
    }
}

fn valid(text: &str) -> LoadedConfig {
    parse_str(text, Path::new(ORIGIN)).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

/// 1-based line of the last line of `text` containing `needle`.
fn last_line_of(text: &str, needle: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .rposition(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

/// Asserts `text` has exactly one error, on the line containing `needle`.
fn assert_single(text: &str, needle: &str, key: &str, message: &str) {
    let errs = errors(text);
    assert_eq!(
        errs,
        vec![ConfigError {
            line: Some(line_of(text, needle)),
            key: key.to_owned(),
            message: message.to_owned(),
        }],
        "\n---\n{text}"
    );
}

#[test]
fn base_files_are_valid() {
    valid(&http_only(""));
}

// ---- listeners -----------------------------------------------------------

#[test]
fn at_least_one_listener() {
    let text = with("[listeners]\nhttp = \"\"\nhttps = \"\"\n");
    assert_single(
        &text,
        "[listeners]",
        "listeners",
        "at least one of listeners.http and listeners.https must be set",
    );
}

#[test]
fn http_and_https_must_not_share_a_port() {
    let text = with(
        "[listeners]\nhttp = \"0.0.0.0:8443\"\nhttps = \"127.0.0.1:8443\"\n\
         [[tls.certificates]]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n",
    );
    assert_single(
        &text,
        "https =",
        "listeners.https",
        "127.0.0.1:8443 conflicts with listeners.http (0.0.0.0:8443); use different ports",
    );
}

#[test]
fn listen_addresses_must_be_ip_and_port() {
    let text = http_only("[admin]\nlisten = \"localhost:9901\"\n");
    assert_single(
        &text,
        "listen =",
        "admin.listen",
        "invalid socket address \"localhost:9901\": expected an IP address and port such as \
         \"127.0.0.1:8080\" or \"[::1]:8080\" (host names are not accepted)",
    );
    let text = with("[listeners]\nhttps = \"\"\nhttp = \"8080\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, "listeners.http");
    assert_eq!(errs[0].line, Some(line_of(&text, "http = \"8080\"")));
    assert!(
        errs[0].message.ends_with("or \"\" to disable"),
        "{}",
        errs[0].message
    );
}

#[test]
fn empty_string_disables_a_listener() {
    let loaded = valid(&with(
        "[listeners]\nhttp = \"\"\nhttps = \"0.0.0.0:443\"\n[[tls.certificates]]\ncert_file = \"c\"\nkey_file = \"k\"\n",
    ));
    assert_eq!(loaded.config.listeners.http, None);
    assert_eq!(loaded.config.listeners.https, "0.0.0.0:443".parse().ok());
}

// ---- admin ---------------------------------------------------------------

#[test]
fn public_admin_requires_token_file() {
    let text = http_only("[admin]\nlisten = \"0.0.0.0:9901\"\n");
    assert_single(
        &text,
        "listen =",
        "admin.listen",
        "0.0.0.0:9901 is not a loopback address, so admin.token_file is required \
         (or listen on 127.0.0.1)",
    );
    valid(&http_only(
        "[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_file = \"/etc/edge/admin-token\"\n",
    ));
}

#[test]
fn admin_must_not_share_a_public_listener() {
    let text = http_only("[admin]\nlisten = \"127.0.0.1:8080\"\n");
    assert_single(
        &text,
        "listen =",
        "admin.listen",
        "127.0.0.1:8080 conflicts with listeners.http (127.0.0.1:8080); \
         the admin listener needs its own port",
    );
}

// ---- limits --------------------------------------------------------------

#[test]
fn limits_ranges() {
    let text = http_only("[limits]\nmax_body_bytes = 0\n");
    assert_single(
        &text,
        "max_body_bytes",
        "limits.max_body_bytes",
        "0 is out of range, expected 1..=67108864",
    );
    let text = http_only("[limits]\nmax_body_bytes = 67108865\n");
    assert_single(
        &text,
        "max_body_bytes",
        "limits.max_body_bytes",
        "67108865 is out of range, expected 1..=67108864",
    );
    valid(&http_only(
        "[limits]\nmax_body_bytes = 67108864\nmax_batch_events = 1000\n",
    ));
    let text = http_only("[limits]\nmax_batch_events = 1001\n");
    assert_single(
        &text,
        "max_batch_events",
        "limits.max_batch_events",
        "1001 is out of range, expected 1..=1000",
    );
    let text = http_only("[limits]\nrequest_body_timeout_ms = 0\n");
    assert_single(
        &text,
        "request_body_timeout_ms",
        "limits.request_body_timeout_ms",
        "0 is out of range, expected 1..=300000",
    );
}

#[test]
fn negative_numbers_are_type_errors() {
    let text = http_only("[limits]\nmax_batch_events = -1\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].key, "limits.max_batch_events");
    assert_eq!(errs[0].line, Some(line_of(&text, "max_batch_events")));
}

// ---- tls -----------------------------------------------------------------

#[test]
fn https_requires_a_certificate() {
    let text = with("[listeners]\nhttps = \"0.0.0.0:443\"\n");
    assert_single(
        &text,
        "https =",
        "tls.certificates",
        "listeners.https is set (0.0.0.0:443) but no certificate is configured; \
         add a [[tls.certificates]] entry or set listeners.https = \"\"",
    );
    // With the default https listener and no [tls] at all the line is unknown.
    let errs = errors(&with(""));
    assert_eq!(errs.len(), 1);
    assert_eq!(
        (errs[0].line, errs[0].key.as_str()),
        (None, "tls.certificates")
    );
}

#[test]
fn tls_min_version_is_an_enum() {
    let text = http_only("[tls]\nmin_version = \"1.1\"\n");
    assert_single(
        &text,
        "min_version",
        "tls.min_version",
        "unknown variant `1.1`, expected `1.2` or `1.3`",
    );
    let loaded = valid(&http_only("[tls]\nmin_version = \"1.3\"\n"));
    assert_eq!(loaded.config.tls.min_version, edge_config::TlsVersion::V1_3);
}

#[test]
fn certificate_requires_both_files() {
    let text = http_only("[[tls.certificates]]\ncert_file = \"c.pem\"\n");
    assert_single(
        &text,
        "[[tls.certificates]]",
        "tls.certificates[0]",
        "missing field `key_file`",
    );
}

// ---- sites ---------------------------------------------------------------

#[test]
fn at_least_one_site() {
    let text = format!(
        "[listeners]\nhttps = \"\"\n[encryption]\nactive_key_id = \"{KEY_ID}\"\n\
         [[encryption.backend_keys]]\nid = \"{KEY_ID}\"\npublic_key = \"{PUBLIC_KEY}\"\n"
    );
    let errs = errors(&text);
    assert_eq!(
        errs,
        vec![ConfigError::new(
            "sites",
            "at least one site is required (add a [[sites]] table)"
        )]
    );
}

#[test]
fn site_id_format() {
    let text = http_only("[[sites]]\nid = \"Shop!\"\ndomains = [\"shop.example.com\"]\n");
    assert_single(
        &text,
        "\"Shop!\"",
        "sites[1].id",
        "site id \"Shop!\" contains 'S'; only a-z, 0-9, '_' and '-' are allowed",
    );
    let long = "a".repeat(65);
    let text = http_only(&format!(
        "[[sites]]\nid = \"{long}\"\ndomains = [\"shop.example.com\"]\n"
    ));
    assert_single(
        &text,
        &long,
        "sites[1].id",
        &format!("site id \"{long}\" must be 1 to 64 characters long"),
    );
    valid(&http_only(&format!(
        "[[sites]]\nid = \"{}\"\ndomains = [\"shop.example.com\"]\n",
        "a_-9".repeat(16)
    )));
}

#[test]
fn site_ids_are_unique() {
    let text = http_only("[[sites]]\nid = \"base\"\ndomains = [\"other.example.com\"]\n");
    let errs = errors(&text);
    assert_eq!(
        errs,
        vec![ConfigError {
            line: Some(last_line_of(&text, "id = \"base\"")),
            key: "sites[1].id".into(),
            message: "duplicate site id \"base\" (already used by sites[0])".into(),
        }]
    );
    assert!(errs[0].line > Some(line_of(&text, "[listeners]")));
}

#[test]
fn site_needs_a_domain() {
    let text = http_only("[[sites]]\nid = \"empty\"\ndomains = []\n");
    assert_single(
        &text,
        "domains = []",
        "sites[1].domains",
        "at least one domain is required",
    );
}

#[test]
fn domains_must_be_lowercase_hostnames() {
    let text =
        http_only("[[sites]]\nid = \"s\"\ndomains = [\"ok.example.com\", \"Shop.Example.com\"]\n");
    assert_single(
        &text,
        "Shop.Example",
        "sites[1].domains[1]",
        "invalid domain \"Shop.Example.com\": must be lowercase",
    );
    let text = http_only(
        "[[sites]]\nid = \"s\"\ndomains = [\n  \"ok.example.com\",\n  \"shop_x.example.com\",\n]\n",
    );
    assert_single(
        &text,
        "shop_x",
        "sites[1].domains[1]",
        "invalid domain \"shop_x.example.com\": '_' is not allowed (use a-z, 0-9 and '-')",
    );
    let text = http_only("[[sites]]\nid = \"s\"\ndomains = [\"a.*.example.com\"]\n");
    assert_single(
        &text,
        "a.*.example",
        "sites[1].domains[0]",
        "invalid domain \"a.*.example.com\": a wildcard is only allowed as the whole first \
         label (\"*.example.com\")",
    );
    let loaded = valid(&http_only(
        "[[sites]]\nid = \"s\"\ndomains = [\"localhost\", \"*.shop.example.com\"]\n",
    ));
    assert_eq!(loaded.config.sites[1].domains[1], "*.shop.example.com");
}

#[test]
fn domains_are_unique_across_sites() {
    let text = http_only(
        "[[sites]]\nid = \"two\"\ndomains = [\"two.example.com\", \"base.example.com\"]\n",
    );
    assert_single(
        &text,
        "\"two.example.com\", \"base",
        "sites[1].domains[1]",
        "domain \"base.example.com\" is already used by sites[0].domains[0]",
    );
}

#[test]
fn allowed_origins_are_https_origins() {
    let text = http_only(
        "[[sites]]\nid = \"s\"\ndomains = [\"s.example.com\"]\n\
         allowed_origins = [\"https://s.example.com\", \"https://s.example.com/path\"]\n",
    );
    assert_single(
        &text,
        "allowed_origins",
        "sites[1].allowed_origins[1]",
        "invalid origin \"https://s.example.com/path\": must not contain a path, query, \
         fragment or user info (expected \"https://host[:port]\")",
    );
    let text = http_only(
        "[[sites]]\nid = \"s\"\ndomains = [\"s.example.com\"]\n\
         allowed_origins = [\"s.example.com\"]\n",
    );
    assert_single(
        &text,
        "allowed_origins",
        "sites[1].allowed_origins[0]",
        "invalid origin \"s.example.com\": scheme must be https (expected \"https://host[:port]\")",
    );
    valid(&http_only(
        "[[sites]]\nid = \"s\"\ndomains = [\"s.example.com\"]\n\
         allowed_origins = [\"https://s.example.com:8443\", \"http://localhost:3000\"]\n",
    ));
}

// ---- kafka ---------------------------------------------------------------

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
    let text = "[listeners]\nhttps = \"\"\n[[sites]]\nid = \"s\"\ndomains = [\"localhost\"]\n";
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
        "[listeners]\nhttps = \"\"\n[[sites]]\nid = \"s\"\ndomains = [\"localhost\"]\n\
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
        "[listeners]\nhttps = \"\"\n[[sites]]\nid = \"s\"\ndomains = [\"localhost\"]\n\
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
         `request_body_timeout_ms`",
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
        "[listeners]\nhttps = \"\"\n\
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
            (Some(4), "limits.max_batch_events"),
            (Some(7), "sites[0].domains[0]"),
            (Some(9), "kafka.topic"),
            (Some(13), "encryption.backend_keys[0].id"),
        ]
    );
}

#[test]
fn several_shape_errors_are_reported_together() {
    let text = "[listeners]\nhttps = \"\"\nbogus = 1\n\
                [limits]\nmax_body_bytes = \"big\"\n\
                [[sites]]\nid = \"dev\"\n\
                [[sites]]\nid = 7\ndomains = [\"x.com\"]\n\
                [kafka]\ncompression = \"brotli\"\nnope = true\n";
    let errs = errors(text);
    let got: Vec<(Option<usize>, &str)> = errs.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Some(3), "listeners.bogus"),
            (Some(5), "limits.max_body_bytes"),
            (Some(6), "sites[0]"),
            (Some(9), "sites[1].id"),
            (Some(12), "kafka.compression"),
            (Some(13), "kafka.nope"),
            // Semantic problems of what remains are reported in the same run.
            (None, "encryption.backend_keys"),
            (None, "encryption.active_key_id"),
        ]
    );
    assert_eq!(errs[2].message, "missing field `domains`");
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
