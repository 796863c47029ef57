//! Validation rules of `[acme]` and `listeners.plain_http`; each error names its line and key.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

/// `with` plus an HTTPS listener and an `[acme]` table holding `body`.
fn acme(body: &str) -> String {
    with(&format!(
        "[acme]\ndirectory_url = \"https://acme.example/dir\"\nstorage_key_file = \"sk\"\n{body}"
    ))
}

#[test]
fn acme_replaces_static_certificates_for_https() {
    let loaded = valid(&acme(""));
    let a = loaded.config.acme.unwrap();
    assert_eq!(a.challenges.len(), 2);
    assert!((a.renew_remaining_fraction - 1.0 / 3.0).abs() < 1e-9);
    // Relative paths resolve against the config file's directory.
    assert_eq!(
        a.storage_key_file.unwrap(),
        std::path::Path::new("/etc/edge/sk")
    );
}

#[test]
fn directory_must_be_https() {
    let text =
        with("[acme]\ndirectory_url = \"http://acme.example/dir\"\nstorage_key_file = \"sk\"\n");
    assert_single(
        &text,
        "directory_url",
        "acme.directory_url",
        "\"http://acme.example/dir\" must start with https://",
    );
}

#[test]
fn storage_key_is_required_exactly_once() {
    let text = with("[acme]\ndirectory_url = \"https://acme.example/dir\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "acme");
    assert_eq!(errs[0].line, Some(line_of(&text, "[acme]")));
    assert!(errs[0].message.contains("openssl rand -base64 32"));
    let text = acme("storage_key_env = \"EDGE_KEY\"\n");
    assert_single(
        &text,
        "storage_key_env",
        "acme.storage_key_env",
        "set only one of acme.storage_key_file and acme.storage_key_env",
    );
}

#[test]
fn challenges_need_their_listener_and_no_duplicates() {
    let text = with(
        "[listeners]\nhttp = \"\"\n[acme]\ndirectory_url = \"https://acme.example/dir\"\n\
         storage_key_file = \"sk\"\nchallenges = [\"http-01\", \"tls-alpn-01\", \"tls-alpn-01\"]\n",
    );
    let errs = errors(&text);
    let got: Vec<(&str, &str)> = errs
        .iter()
        .map(|e| (e.key.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "acme.challenges[0]",
                "http-01 is answered on listeners.http, which is disabled"
            ),
            ("acme.challenges[2]", "tls-alpn-01 is listed twice"),
        ]
    );
    let text = acme("challenges = [\"dns-01\"]\n");
    let errs = errors(&text);
    assert_eq!(errs[0].key, "acme.challenges[0]");
    assert_eq!(errs[0].line, Some(line_of(&text, "dns-01")));
}

#[test]
fn limits_and_backoff_ranges() {
    let text = acme(
        "max_orders_per_hour = 0\nbackoff_initial_seconds = 600\nbackoff_max_seconds = 60\n\
         renew_remaining_fraction = 0.99\n",
    );
    let errs = errors(&text);
    let got: Vec<(Option<usize>, &str)> = errs.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (
                Some(line_of(&text, "max_orders")),
                "acme.max_orders_per_hour"
            ),
            (
                Some(line_of(&text, "backoff_max")),
                "acme.backoff_max_seconds"
            ),
            (
                Some(line_of(&text, "renew_remaining")),
                "acme.renew_remaining_fraction"
            ),
        ]
    );
}

#[test]
fn contacts_are_mailto() {
    let text = acme("contact = [\"ops@example.com\"]\n");
    assert_single(
        &text,
        "contact",
        "acme.contact[0]",
        "\"ops@example.com\" is not a contact URL; expected \"mailto:ops@example.com\"",
    );
}

#[test]
fn on_demand_needs_a_wildcard_site_and_a_url() {
    let text = acme("[acme.on_demand]\nask_url = \"ftp://x\"\n");
    let errs = errors(&text);
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["acme.on_demand", "acme.on_demand.ask_url"]);
    let text = with(
        "[[sites]]\nid = \"customers\"\ndomains = [\"*.customers.example.com\"]\n\
         [acme]\ndirectory_url = \"https://acme.example/dir\"\nstorage_key_file = \"sk\"\n\
         [acme.on_demand]\nask_url = \"http://127.0.0.1:9000/ask\"\n",
    );
    let loaded = valid(&text);
    assert_eq!(
        loaded
            .config
            .acme
            .unwrap()
            .on_demand
            .unwrap()
            .ask_timeout_ms,
        2000
    );
}

#[test]
fn dns_check_needs_addresses_and_an_ip_resolver() {
    let text = acme("[acme.dns_check]\naddresses = []\n");
    assert_single(
        &text,
        "addresses",
        "acme.dns_check.addresses",
        "list the public addresses of this edge; a name must resolve to one of them",
    );
    let text =
        acme("[acme.dns_check]\nresolver = \"dns.example:53\"\naddresses = [\"192.0.2.1\"]\n");
    let errs = errors(&text);
    assert_eq!(errs[0].key, "acme.dns_check.resolver");
    assert_eq!(errs[0].line, Some(line_of(&text, "resolver")));
}

#[test]
fn redirecting_plain_http_needs_https() {
    let text = with("[listeners]\nhttps = \"\"\n");
    // Shown on the related listeners.https line, since plain_http is left at its default.
    assert_single(
        &text,
        "https = ",
        "listeners.plain_http",
        "plain HTTP redirects to HTTPS, but listeners.https is disabled; \
         set listeners.plain_http = \"events\" to serve events over plain HTTP",
    );
}

#[test]
fn shared_store_defaults_and_bounds() {
    let text = acme("[acme.shared]\npostgres_url = \"postgres://edge:pw@db.internal/edge\"\n");
    let shared = valid(&text).config.acme.unwrap().shared.unwrap();
    assert_eq!(shared.schema, "edge_acme");
    assert_eq!(
        (
            shared.lease_seconds,
            shared.poll_seconds,
            shared.timeout_ms,
            shared.challenge_lookup_ms,
            shared.retain_unwanted_hours
        ),
        (60, 30, 5_000, 500, 168)
    );
    // The password never reaches /admin/config.
    let shown = valid(&text).config.redacted().to_string();
    assert!(shown.contains("db.internal"), "{shown}");
    assert!(!shown.contains("pw@"), "{shown}");

    assert_single(
        &acme("[acme.shared]\npostgres_url = \"mysql://db/edge\"\n"),
        "postgres_url",
        "acme.shared.postgres_url",
        "expected postgres://user@host:port/database",
    );
    assert_single(
        &acme("[acme.shared]\npostgres_url = \"postgres://db/edge\"\nschema = \"Edge-ACME\"\n"),
        "schema",
        "acme.shared.schema",
        "\"Edge-ACME\": use lower-case letters, digits and _ (at most 63, not starting with a digit)",
    );
    assert_single(
        &acme("[acme.shared]\npostgres_url = \"postgres://db/edge\"\nlease_seconds = 1\n"),
        "lease_seconds",
        "acme.shared.lease_seconds",
        "1 is out of range, expected 2..=3600",
    );
    assert_single(
        &acme("[acme.shared]\npostgres_url = \"postgres://db/edge\"\nretain_unwanted_hours = 0\n"),
        "retain_unwanted_hours",
        "acme.shared.retain_unwanted_hours",
        "0 is out of range, expected 1..=8760",
    );
}
