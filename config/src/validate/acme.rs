//! Rules of the `[acme]` table.

use super::Validator;
use crate::defaults;
use crate::model::{Acme, ChallengeKind, Config};

impl Validator {
    pub(super) fn acme(&mut self, config: &Config, acme: &Acme) {
        if let Err(e) = check_url(&acme.directory_url, false) {
            self.err("acme.directory_url", e);
        }
        for (i, contact) in acme.contact.iter().enumerate() {
            let address = contact.strip_prefix("mailto:").unwrap_or("");
            if !address.contains('@') || address.contains(char::is_whitespace) {
                self.err(
                    format!("acme.contact[{i}]"),
                    format!(
                        "{contact:?} is not a contact URL; expected \"mailto:ops@example.com\""
                    ),
                );
            }
        }
        if let Some(ca_file) = &acme.ca_file {
            self.non_empty_path("acme.ca_file", ca_file);
        }
        if acme.challenges.is_empty() {
            self.err(
                "acme.challenges",
                "must name at least one of \"http-01\", \"tls-alpn-01\"",
            );
        }
        for (i, kind) in acme.challenges.iter().enumerate() {
            if acme.challenges[..i].contains(kind) {
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
        if !defaults::ACME_RENEW_REMAINING_FRACTION_RANGE.contains(&acme.renew_remaining_fraction) {
            let r = defaults::ACME_RENEW_REMAINING_FRACTION_RANGE;
            self.err(
                "acme.renew_remaining_fraction",
                format!(
                    "{} is out of range, expected {}..={}",
                    acme.renew_remaining_fraction,
                    r.start(),
                    r.end()
                ),
            );
        }
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
        if let Some(on_demand) = &acme.on_demand {
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
        if let Some(dns) = &acme.dns_check
            && dns.addresses.is_empty()
        {
            self.err(
                "acme.dns_check.addresses",
                "list the public addresses of this edge; a name must resolve to one of them",
            );
        }
    }
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
