//! Semantic validation of a parsed [`Config`].
//!
//! [`validate`] checks every rule and returns every violation (never just the
//! first), each naming its key path. Lines are attached by the loader, which
//! knows where each key was written.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;

use edge_envelope::keys::{KeyId, PublicKey};

use crate::defaults;
use crate::error::ConfigError;

mod abuse;
mod acme;
mod admin;
mod capture;
mod connections;
mod kafka;
mod spool;
mod tag;

use crate::model::{Config, Encryption, PlainHttp, Site};
pub use abuse::parse_cidr;

/// Checks every rule on `config`; an empty result means it is valid.
///
/// Does not touch the file system: certificate and key files are checked by
/// the proxy when it builds its runtime state (see
/// [`crate::LoadedConfig::error_at`]).
pub fn validate(config: &Config) -> Vec<ConfigError> {
    problems(config).into_iter().map(|p| p.error).collect()
}

/// A validation error plus a related key whose line to show when the
/// offending key itself is not written in the file (left at its default).
pub(crate) struct Problem {
    pub(crate) error: ConfigError,
    pub(crate) related: Option<&'static str>,
}

/// Like [`validate`], keeping the related-key hints used for lines.
pub(crate) fn problems(config: &Config) -> Vec<Problem> {
    let mut v = Validator::default();
    v.data_dir(config);
    v.listeners(config);
    v.admin(config);
    v.admin_hosts(&config.admin);
    v.limits(config);
    v.rate_limits(config);
    v.client_ip(config);
    v.bots(config);
    v.tls(config);
    v.sites(&config.sites);
    v.kafka(&config.kafka);
    v.encryption(&config.encryption);
    if let Some(acme) = &config.acme {
        v.acme(config, acme);
    }
    v.tag(&config.tag);
    if let Some(capture) = &config.capture {
        v.capture(capture);
    }
    v.connections(&config.connections);
    v.spool(&config.spool);
    v.errors
}

#[derive(Default)]
struct Validator {
    errors: Vec<Problem>,
}

impl Validator {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem {
            error: ConfigError::new(key, message),
            related: None,
        });
    }

    fn err_related(&mut self, key: &str, related: &'static str, message: impl Into<String>) {
        self.errors.push(Problem {
            error: ConfigError::new(key, message),
            related: Some(related),
        });
    }

    fn range<T: PartialOrd + Display>(&mut self, key: &str, value: T, range: RangeInclusive<T>) {
        if !range.contains(&value) {
            self.err(
                key,
                format!(
                    "{value} is out of range, expected {}..={}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }

    fn non_empty_path(&mut self, key: &str, path: &Path) {
        if path.as_os_str().is_empty() {
            self.err(key, "must not be empty");
        }
    }

    fn data_dir(&mut self, config: &Config) {
        self.non_empty_path("data_dir", &config.data_dir);
    }

    fn listeners(&mut self, config: &Config) {
        let l = &config.listeners;
        if l.http.is_none() && l.https.is_none() {
            self.err(
                "listeners",
                "at least one of listeners.http and listeners.https must be set",
            );
        }
        if l.http.is_some() && l.https.is_none() && l.plain_http == PlainHttp::Redirect {
            self.err_related(
                "listeners.plain_http",
                "listeners.https",
                "plain HTTP redirects to HTTPS, but listeners.https is disabled; \
                 set listeners.plain_http = \"events\" to serve events over plain HTTP",
            );
        }
        if let (Some(http), Some(https)) = (l.http, l.https)
            && addrs_conflict(http, https)
        {
            self.err(
                "listeners.https",
                format!("{https} conflicts with listeners.http ({http}); use different ports"),
            );
        }
    }

    fn admin(&mut self, config: &Config) {
        let admin = &config.admin;
        if !admin.listen.ip().is_loopback() && admin.token_file.is_none() {
            self.err(
                "admin.listen",
                format!(
                    "{} is not a loopback address, so admin.token_file is required \
                     (or listen on 127.0.0.1)",
                    admin.listen
                ),
            );
        }
        if let Some(token_file) = &admin.token_file {
            self.non_empty_path("admin.token_file", token_file);
        }
        let public = [
            ("listeners.http", config.listeners.http),
            ("listeners.https", config.listeners.https),
        ];
        for (name, addr) in public {
            if let Some(addr) = addr
                && addrs_conflict(admin.listen, addr)
            {
                self.err(
                    "admin.listen",
                    format!(
                        "{} conflicts with {name} ({addr}); the admin listener needs its own port",
                        admin.listen
                    ),
                );
            }
        }
    }

    fn limits(&mut self, config: &Config) {
        let l = &config.limits;
        self.range(
            "limits.max_body_bytes",
            l.max_body_bytes,
            defaults::MAX_BODY_BYTES_RANGE,
        );
        self.range(
            "limits.max_batch_events",
            l.max_batch_events,
            defaults::MAX_BATCH_EVENTS_RANGE,
        );
        self.range(
            "limits.max_request_head_bytes",
            l.max_request_head_bytes,
            defaults::MAX_REQUEST_HEAD_BYTES_RANGE,
        );
        self.range(
            "limits.max_uri_bytes",
            l.max_uri_bytes,
            defaults::MAX_URI_BYTES_RANGE,
        );
        self.range(
            "limits.request_body_timeout_ms",
            l.request_body_timeout_ms,
            defaults::REQUEST_BODY_TIMEOUT_MS_RANGE,
        );
    }

    fn tls(&mut self, config: &Config) {
        if let Some(https) = config.listeners.https
            && config.tls.certificates.is_empty()
            && config.acme.is_none()
        {
            self.err_related(
                "tls.certificates",
                "listeners.https",
                format!(
                    "listeners.https is set ({https}) but no certificate is configured; \
                     add a [[tls.certificates]] entry, an [acme] table, or set listeners.https = \"\""
                ),
            );
        }
        for (i, cert) in config.tls.certificates.iter().enumerate() {
            self.non_empty_path(&format!("tls.certificates[{i}].cert_file"), &cert.cert_file);
            self.non_empty_path(&format!("tls.certificates[{i}].key_file"), &cert.key_file);
        }
    }

    fn sites(&mut self, sites: &[Site]) {
        if sites.is_empty() {
            self.err(
                "sites",
                "at least one site is required (add a [[sites]] table)",
            );
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut domains: HashMap<&str, String> = HashMap::new();
        for (i, site) in sites.iter().enumerate() {
            let key = format!("sites[{i}]");
            if let Err(problem) = check_site_id(&site.id) {
                self.err(format!("{key}.id"), problem);
            } else if let Some(first) = ids.get(site.id.as_str()) {
                self.err(
                    format!("{key}.id"),
                    format!(
                        "duplicate site id {:?} (already used by sites[{first}])",
                        site.id
                    ),
                );
            } else {
                ids.insert(&site.id, i);
            }
            if site.domains.is_empty() {
                self.err(format!("{key}.domains"), "at least one domain is required");
            }
            for (j, domain) in site.domains.iter().enumerate() {
                let dkey = format!("{key}.domains[{j}]");
                if let Err(problem) = check_domain(domain) {
                    self.err(dkey, problem);
                } else if let Some(first) = domains.get(domain.as_str()) {
                    self.err(
                        dkey,
                        format!("domain {domain:?} is already used by {first}"),
                    );
                } else {
                    domains.insert(domain, dkey);
                }
            }
            for (j, origin) in site.allowed_origins.iter().enumerate() {
                if let Err(problem) = check_origin(origin) {
                    self.err(format!("{key}.allowed_origins[{j}]"), problem);
                }
            }
        }
    }

    fn encryption(&mut self, enc: &Encryption) {
        self.range(
            "encryption.data_key_max_age_seconds",
            enc.data_key_max_age_seconds,
            defaults::DATA_KEY_MAX_AGE_SECONDS_RANGE,
        );
        self.range(
            "encryption.data_key_max_events",
            enc.data_key_max_events,
            defaults::DATA_KEY_MAX_EVENTS_RANGE,
        );
        if enc.backend_keys.is_empty() {
            self.err(
                "encryption.backend_keys",
                "at least one backend key is required (add an [[encryption.backend_keys]] table)",
            );
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, key) in enc.backend_keys.iter().enumerate() {
            let path = format!("encryption.backend_keys[{i}]");
            let id_ok = match key.id.parse::<KeyId>() {
                Ok(_) => true,
                Err(_) => {
                    self.err(
                        format!("{path}.id"),
                        format!(
                            "invalid key id {:?}: expected 16 lowercase hex characters",
                            key.id
                        ),
                    );
                    false
                }
            };
            if let Some(first) = ids.get(key.id.as_str()) {
                self.err(
                    format!("{path}.id"),
                    format!(
                        "duplicate key id {:?} (already used by encryption.backend_keys[{first}])",
                        key.id
                    ),
                );
            } else {
                ids.insert(&key.id, i);
            }
            match PublicKey::from_base64(key.public_key.trim()) {
                Err(e) => self.err(
                    format!("{path}.public_key"),
                    format!("not a valid X25519 public key: {e}"),
                ),
                Ok(public) => {
                    let derived = public.key_id().to_string();
                    if id_ok && derived != key.id {
                        self.err(
                            format!("{path}.id"),
                            format!(
                                "does not match public_key: the key's id is {derived:?}, not {:?}",
                                key.id
                            ),
                        );
                    }
                }
            }
        }
        if enc.active_key_id.is_empty() {
            self.err(
                "encryption.active_key_id",
                "is required: the id of the backend key to encrypt to",
            );
        } else if !enc.backend_keys.iter().any(|k| k.id == enc.active_key_id) {
            let known: Vec<&str> = enc.backend_keys.iter().map(|k| k.id.as_str()).collect();
            self.err_related(
                "encryption.active_key_id",
                "encryption",
                format!(
                    "{:?} does not name any of encryption.backend_keys (known ids: {})",
                    enc.active_key_id,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
    }
}

/// Whether two listeners would fight over the same port.
fn addrs_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn check_site_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("site id {id:?} must be 1 to 64 characters long"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
    {
        return Err(format!(
            "site id {id:?} contains {c:?}; only a-z, 0-9, '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Checks a lowercase DNS host name, optionally with a leading `*.`.
fn check_domain(domain: &str) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("invalid domain {domain:?}: {why}"));
    if domain.is_empty() {
        return invalid("must not be empty");
    }
    if domain.chars().any(|c| c.is_ascii_uppercase()) {
        return invalid("must be lowercase");
    }
    let (wildcard, host) = match domain.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, domain),
    };
    if host.len() > 253 {
        return invalid("longer than 253 characters");
    }
    if host.contains('*') {
        return invalid("a wildcard is only allowed as the whole first label (\"*.example.com\")");
    }
    if host.ends_with('.') {
        return invalid("must not end with '.'");
    }
    for label in host.split('.') {
        check_label(label).or_else(|why| invalid(&why))?;
    }
    let labels = host.split('.').count();
    if wildcard && labels < 2 {
        return invalid("a wildcard needs at least two labels after \"*.\"");
    }
    if labels < 2 && host != "localhost" {
        return invalid("expected a fully qualified name such as \"example.com\"");
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label".to_owned());
    }
    if label.len() > 63 {
        return Err(format!("label {label:?} is longer than 63 characters"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
    {
        return Err(format!("{c:?} is not allowed (use a-z, 0-9 and '-')"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label {label:?} must not start or end with '-'"));
    }
    Ok(())
}

/// Checks a browser origin: `https://host[:port]` (`http://` only for
/// loopback hosts, for local development).
fn check_origin(origin: &str) -> Result<(), String> {
    let invalid = |why: &str| {
        Err(format!(
            "invalid origin {origin:?}: {why} (expected \"https://host[:port]\")"
        ))
    };
    let (https, rest) = if let Some(rest) = origin.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = origin.strip_prefix("http://") {
        (false, rest)
    } else {
        return invalid("scheme must be https");
    };
    if rest.contains(['/', '?', '#', '@']) {
        return invalid("must not contain a path, query, fragment or user info");
    }
    let (host, port) = split_host_port(rest);
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return invalid("port must be 1..=65535");
    }
    let loopback = if let Some(ip) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        match ip.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => return invalid("bad IPv6 address"),
        }
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        ip.is_loopback()
    } else {
        if host.contains('*') {
            return invalid("wildcards are not allowed in origins");
        }
        if let Err(why) = check_domain(host) {
            return invalid(&why);
        }
        host == "localhost"
    };
    if !https && !loopback {
        return invalid("scheme must be https (http is only accepted for loopback hosts)");
    }
    Ok(())
}

/// Splits `host[:port]`, aware of bracketed IPv6 hosts.
pub(super) fn split_host_port(text: &str) -> (&str, Option<&str>) {
    if text.starts_with('[') {
        return match text.find(']') {
            Some(end) => {
                let (host, rest) = text.split_at(end + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        for ok in [
            "example.com",
            "a.b.example.com",
            "localhost",
            "*.example.com",
            "x-1.io",
        ] {
            assert_eq!(check_domain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Example.com",
            "example",
            "*.com",
            "a.*.com",
            "-a.com",
            "a-.com",
            "a..com",
            "example.com.",
            "exa mple.com",
            "*",
            "ex_ample.com",
        ] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins() {
        for ok in [
            "https://example.com",
            "https://example.com:8443",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "https://[::1]:8443",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "example.com",
            "http://example.com",
            "https://example.com/",
            "https://example.com:0",
            "https://example.com:99999",
            "https://*.example.com",
            "ftp://example.com",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listener_conflicts() {
        let a: SocketAddr = "0.0.0.0:80".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: SocketAddr = "127.0.0.1:80".parse().unwrap_or_else(|e| panic!("{e}"));
        let c: SocketAddr = "127.0.0.1:81".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(addrs_conflict(a, b));
        assert!(!addrs_conflict(b, c));
    }
}
