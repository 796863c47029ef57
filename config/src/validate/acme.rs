//! Rules of the `[acme]` table, one method per group of keys: the CA
//! account, the challenge types, the storage key, the issuance limits,
//! on-demand issuance and the DNS pre-check.

use super::Validator;
use crate::defaults;
use crate::model::{Acme, AcmeShared, ChallengeKind, Config, DnsCheck, OnDemand};

impl Validator {
    pub(super) fn acme(&mut self, config: &Config, acme: &Acme) {
        self.acme_account(acme);
        self.acme_challenges(config, &acme.challenges);
        self.acme_storage_key(acme);
        self.acme_limits(acme);
        if let Some(on_demand) = &acme.on_demand {
            self.acme_on_demand(config, on_demand);
        }
        if let Some(shared) = &acme.shared {
            self.acme_shared(shared);
        }
        if let Some(dns) = &acme.dns_check {
            self.acme_dns_check(dns);
        }
    }

    /// `directory_url`, `contact` and `ca_file`: how the CA is reached.
    fn acme_account(&mut self, acme: &Acme) {
        if let Err(e) = check_url(&acme.directory_url, false) {
            self.err("acme.directory_url", e);
        }
        for (i, contact) in acme.contact.iter().enumerate() {
            if let Err(e) = check_contact(contact) {
                self.err(format!("acme.contact[{i}]"), e);
            }
        }
        if let Some(ca_file) = &acme.ca_file {
            self.non_empty_path("acme.ca_file", ca_file);
        }
    }

    /// `challenges`: at least one, none twice, each answered on a listener
    /// that is enabled.
    fn acme_challenges(&mut self, config: &Config, challenges: &[ChallengeKind]) {
        if challenges.is_empty() {
            self.err(
                "acme.challenges",
                "must name at least one of \"http-01\", \"tls-alpn-01\"",
            );
        }
        for (i, kind) in challenges.iter().enumerate() {
            if challenges[..i].contains(kind) {
                self.err(
                    format!("acme.challenges[{i}]"),
                    format!("{kind} is listed twice"),
                );
            }
            let (listener, name) = match kind {
                ChallengeKind::Http01 => (config.listeners.http, "listeners.http"),
                ChallengeKind::TlsAlpn01 => (config.listeners.https, "listeners.https"),
            };
            if listener.is_none() {
                self.err(
                    format!("acme.challenges[{i}]"),
                    format!("{kind} is answered on {name}, which is disabled"),
                );
            }
        }
    }

    /// Exactly one of `storage_key_file` and `storage_key_env`.
    fn acme_storage_key(&mut self, acme: &Acme) {
        match (&acme.storage_key_file, &acme.storage_key_env) {
            (Some(_), Some(_)) => self.err(
                "acme.storage_key_env",
                "set only one of acme.storage_key_file and acme.storage_key_env",
            ),
            (None, None) => self.err(
                "acme",
                "acme.storage_key_file (or acme.storage_key_env) is required: stored private \
                 keys are encrypted with it (create one with `openssl rand -base64 32`)",
            ),
            (Some(file), None) => self.non_empty_path("acme.storage_key_file", file),
            (None, Some(var)) => {
                if var.is_empty() || var.contains('=') {
                    self.err(
                        "acme.storage_key_env",
                        format!("{var:?} is not an environment variable name"),
                    );
                }
            }
        }
    }

    /// Renewal point, issuance limits, backoff and order timeout: ranges,
    /// and a backoff that does not shrink.
    fn acme_limits(&mut self, acme: &Acme) {
        self.range(
            "acme.renew_remaining_fraction",
            acme.renew_remaining_fraction,
            defaults::ACME_RENEW_REMAINING_FRACTION_RANGE,
        );
        self.range(
            "acme.max_orders_per_hour",
            acme.max_orders_per_hour,
            defaults::ACME_MAX_ORDERS_PER_HOUR_RANGE,
        );
        self.range(
            "acme.max_orders_per_name_per_day",
            acme.max_orders_per_name_per_day,
            defaults::ACME_MAX_ORDERS_PER_NAME_PER_DAY_RANGE,
        );
        self.range(
            "acme.max_forced_renewals_per_name_per_week",
            acme.max_forced_renewals_per_name_per_week,
            defaults::ACME_MAX_FORCED_RENEWALS_PER_NAME_PER_WEEK_RANGE,
        );
        self.range(
            "acme.max_concurrent_orders",
            acme.max_concurrent_orders,
            defaults::ACME_MAX_CONCURRENT_ORDERS_RANGE,
        );
        self.range(
            "acme.backoff_initial_seconds",
            acme.backoff_initial_seconds,
            defaults::ACME_BACKOFF_SECONDS_RANGE,
        );
        self.range(
            "acme.backoff_max_seconds",
            acme.backoff_max_seconds,
            defaults::ACME_BACKOFF_SECONDS_RANGE,
        );
        if acme.backoff_max_seconds < acme.backoff_initial_seconds {
            self.err(
                "acme.backoff_max_seconds",
                format!(
                    "{} is below acme.backoff_initial_seconds ({})",
                    acme.backoff_max_seconds, acme.backoff_initial_seconds
                ),
            );
        }
        self.range(
            "acme.order_timeout_seconds",
            acme.order_timeout_seconds,
            defaults::ACME_ORDER_TIMEOUT_SECONDS_RANGE,
        );
    }

    /// `[acme.on_demand]`: the `ask` endpoint and its bounds, and a site
    /// wildcard for it to cover.
    fn acme_on_demand(&mut self, config: &Config, on_demand: &OnDemand) {
        if let Err(e) = check_url(&on_demand.ask_url, true) {
            self.err("acme.on_demand.ask_url", e);
        }
        self.range(
            "acme.on_demand.ask_timeout_ms",
            on_demand.ask_timeout_ms,
            defaults::ACME_ASK_TIMEOUT_MS_RANGE,
        );
        self.range(
            "acme.on_demand.ask_cache_seconds",
            on_demand.ask_cache_seconds,
            defaults::ACME_ASK_CACHE_SECONDS_RANGE,
        );
        self.range(
            "acme.on_demand.max_pending",
            on_demand.max_pending,
            defaults::ACME_ASK_MAX_PENDING_RANGE,
        );
        if !config
            .sites
            .iter()
            .any(|s| s.domains.iter().any(|d| d.starts_with("*.")))
        {
            self.err(
                "acme.on_demand",
                "on-demand issuance only covers names under a site's \"*.\" wildcard domain, \
                 and no site has one",
            );
        }
    }

    /// `[acme.shared]`: a PostgreSQL URL, a usable schema name, bounds.
    fn acme_shared(&mut self, shared: &AcmeShared) {
        let url = shared.postgres_url.as_str();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            self.err(
                "acme.shared.postgres_url",
                "expected postgres://user@host:port/database",
            );
        }
        let schema_ok = shared
            .schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && shared.schema.len() <= 63
            && shared
                .schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !schema_ok {
            self.err(
                "acme.shared.schema",
                format!(
                    "{:?}: use lower-case letters, digits and _ (at most 63, not starting with a digit)",
                    shared.schema
                ),
            );
        }
        self.range(
            "acme.shared.lease_seconds",
            shared.lease_seconds,
            defaults::ACME_SHARED_LEASE_SECONDS_RANGE,
        );
        self.range(
            "acme.shared.poll_seconds",
            shared.poll_seconds,
            defaults::ACME_SHARED_POLL_SECONDS_RANGE,
        );
        self.range(
            "acme.shared.timeout_ms",
            shared.timeout_ms,
            defaults::ACME_SHARED_TIMEOUT_MS_RANGE,
        );
        self.range(
            "acme.shared.challenge_lookup_ms",
            shared.challenge_lookup_ms,
            defaults::ACME_SHARED_CHALLENGE_LOOKUP_MS_RANGE,
        );
        self.range(
            "acme.shared.retain_unwanted_hours",
            shared.retain_unwanted_hours,
            defaults::ACME_SHARED_RETAIN_UNWANTED_HOURS_RANGE,
        );
    }

    /// `[acme.dns_check]`: the addresses names must resolve to.
    fn acme_dns_check(&mut self, dns: &DnsCheck) {
        if dns.addresses.is_empty() {
            self.err(
                "acme.dns_check.addresses",
                "list the public addresses of this edge; a name must resolve to one of them",
            );
        }
    }
}

/// Checks one `acme.contact` entry: `mailto:` and an address with `@` and
/// no whitespace.
fn check_contact(contact: &str) -> Result<(), String> {
    let address = contact.strip_prefix("mailto:").unwrap_or("");
    if !address.contains('@') || address.contains(char::is_whitespace) {
        return Err(format!(
            "{contact:?} is not a contact URL; expected \"mailto:ops@example.com\""
        ));
    }
    Ok(())
}

/// Checks an absolute `https://` URL (or `http://` when `allow_http`).
fn check_url(text: &str, allow_http: bool) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
    if !scheme_ok {
        let expected = if allow_http {
            "http:// or https://"
        } else {
            "https://"
        };
        return Err(format!("{text:?} must start with {expected}"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(config: &Config) -> Vec<String> {
        crate::validate::validate(config)
            .into_iter()
            .filter(|e| e.key.starts_with("acme"))
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect()
    }

    fn acme(toml_text: &str) -> Acme {
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        assert!(check_url("https://acme.test/dir", false).is_ok());
        assert!(check_url("http://ask.test/", true).is_ok());
        let plain = check_url("http://acme.test/dir", false).unwrap_err();
        assert!(plain.contains("must start with https://"), "{plain}");
        assert!(
            check_url("acme.test", false)
                .unwrap_err()
                .contains("not a URL")
        );
        assert!(check_url("file:///x", true).is_err());
    }

    #[test]
    fn contacts_are_mailto_addresses() {
        assert!(check_contact("mailto:ops@example.com").is_ok());
        for bad in ["ops@example.com", "mailto:ops", "mailto:o ps@example.com"] {
            assert!(check_contact(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_group_reports_its_own_keys() {
        let mut config = Config::default();
        config.listeners.http = None;
        let mut a = acme(
            "directory_url = \"https://acme.test/dir\"\nstorage_key_env = \"K\"\n\
             challenges = [\"http-01\", \"http-01\"]\n\
             backoff_initial_seconds = 600\nbackoff_max_seconds = 60\n\
             [on_demand]\nask_url = \"https://ask.test/\"\n\
             [dns_check]\naddresses = []",
        );
        config.acme = Some(a.clone());
        assert_eq!(
            errors_of(&config),
            vec![
                "acme.challenges[0]: http-01 is answered on listeners.http, which is disabled",
                "acme.challenges[1]: http-01 is listed twice",
                "acme.challenges[1]: http-01 is answered on listeners.http, which is disabled",
                "acme.backoff_max_seconds: 60 is below acme.backoff_initial_seconds (600)",
                "acme.on_demand: on-demand issuance only covers names under a site's \"*.\" \
                 wildcard domain, and no site has one",
                "acme.dns_check.addresses: list the public addresses of this edge; a name must \
                 resolve to one of them",
            ]
        );
        // Positive control: the same table without those mistakes is clean.
        config.listeners.http = Config::default().listeners.http;
        a.challenges.truncate(1);
        a.backoff_max_seconds = 600;
        a.on_demand = None;
        a.dns_check = None;
        config.acme = Some(a);
        assert_eq!(errors_of(&config), Vec::<String>::new());
    }
}
