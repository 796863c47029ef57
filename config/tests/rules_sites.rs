//! Validation rules: listeners, admin, limits, TLS and sites; each error names its line and key.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use edge_config::ConfigError;

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
    let text = with("[listeners]\nhttps = \"\"\nplain_http = \"events\"\nhttp = \"8080\"\n");
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
         add a [[tls.certificates]] entry, an [acme] table, or set listeners.https = \"\"",
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
        "[listeners]\nhttps = \"\"\nplain_http = \"events\"\n[encryption]\nactive_key_id = \"{KEY_ID}\"\n\
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
