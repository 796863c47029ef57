//! Rules of the `[rate_limits]`, `[client_ip]` and `[bots]` tables and the
//! per-site rate-limit overrides.

use super::Validator;
use crate::defaults;
use crate::model::{Config, RateLimit, SharedLimits};

impl Validator {
    pub(super) fn rate_limits(&mut self, config: &Config) {
        let r = &config.rate_limits;
        self.range(
            "rate_limits.ipv6_prefix_len",
            r.ipv6_prefix_len,
            defaults::IPV6_PREFIX_LEN_RANGE,
        );
        self.range(
            "rate_limits.max_tracked_keys",
            r.max_tracked_keys,
            defaults::RATELIMIT_MAX_TRACKED_KEYS_RANGE,
        );
        self.range(
            "rate_limits.prune_interval_seconds",
            r.prune_interval_seconds,
            defaults::RATELIMIT_PRUNE_INTERVAL_SECONDS_RANGE,
        );
        self.rate_limit("rate_limits.per_ip", &r.per_ip);
        self.rate_limit("rate_limits.per_site", &r.per_site);
        self.rate_limit("rate_limits.per_site_ip", &r.per_site_ip);
        for (i, site) in config.sites.iter().enumerate() {
            if let Some(limit) = &site.rate_limits.per_site {
                self.rate_limit(&format!("sites[{i}].rate_limits.per_site"), limit);
            }
            if let Some(limit) = &site.rate_limits.per_site_ip {
                self.rate_limit(&format!("sites[{i}].rate_limits.per_site_ip"), limit);
            }
        }
        if let Some(shared) = &r.shared {
            self.shared_limits(shared);
        }
    }

    fn shared_limits(&mut self, s: &SharedLimits) {
        match url::Url::parse(&s.redis_url) {
            // TLS (`rediss://`) is not supported yet.
            Ok(u) if u.scheme() == "redis" && u.host_str().is_some() => {}
            // The URL may hold a password: never echo it.
            Ok(_) | Err(_) => self.err(
                "rate_limits.shared.redis_url",
                "expected redis://[user:password@]host:port[/db]",
            ),
        }
        self.range(
            "rate_limits.shared.timeout_ms",
            s.timeout_ms,
            defaults::SHARED_LIMITS_TIMEOUT_MS_RANGE,
        );
        self.range(
            "rate_limits.shared.sync_interval_ms",
            s.sync_interval_ms,
            defaults::SHARED_LIMITS_SYNC_INTERVAL_MS_RANGE,
        );
        if s.timeout_ms >= s.sync_interval_ms {
            self.err(
                "rate_limits.shared.timeout_ms",
                format!(
                    "{} must be shorter than sync_interval_ms ({})",
                    s.timeout_ms, s.sync_interval_ms
                ),
            );
        }
        if s.key_prefix.is_empty() || s.key_prefix.len() > 256 {
            self.err(
                "rate_limits.shared.key_prefix",
                "expected 1..=256 bytes (keys are the prefix plus the site id)",
            );
        }
        self.range(
            "rate_limits.shared.fleet_size",
            s.fleet_size,
            defaults::SHARED_LIMITS_FLEET_SIZE_RANGE,
        );
    }

    fn rate_limit(&mut self, key: &str, limit: &RateLimit) {
        if !limit.enabled {
            return;
        }
        if !limit.events_per_second.is_finite()
            || !defaults::RATELIMIT_EVENTS_PER_SECOND_RANGE.contains(&limit.events_per_second)
        {
            self.err(
                format!("{key}.events_per_second"),
                format!(
                    "{} is out of range, expected {}..={} (set enabled = false to turn the scope off)",
                    limit.events_per_second,
                    defaults::RATELIMIT_EVENTS_PER_SECOND_RANGE.start(),
                    defaults::RATELIMIT_EVENTS_PER_SECOND_RANGE.end()
                ),
            );
        }
        self.range(
            &format!("{key}.burst"),
            limit.burst,
            defaults::RATELIMIT_BURST_RANGE,
        );
    }

    pub(super) fn bots(&mut self, config: &Config) {
        let b = &config.bots;
        for (key, files) in [
            ("bots.user_agent_files", &b.user_agent_files),
            ("bots.datacenter_cidr_files", &b.datacenter_cidr_files),
            ("bots.referrer_spam_files", &b.referrer_spam_files),
        ] {
            for (i, file) in files.iter().enumerate() {
                self.non_empty_path(&format!("{key}[{i}]"), file);
            }
        }
        self.range(
            "bots.max_user_agent_bytes",
            b.max_user_agent_bytes,
            defaults::BOTS_USER_AGENT_BYTES_RANGE,
        );
        self.range(
            "bots.min_user_agent_bytes",
            b.min_user_agent_bytes,
            defaults::BOTS_USER_AGENT_BYTES_RANGE,
        );
        if b.min_user_agent_bytes > b.max_user_agent_bytes {
            self.err(
                "bots.min_user_agent_bytes",
                format!(
                    "{} is larger than bots.max_user_agent_bytes ({})",
                    b.min_user_agent_bytes, b.max_user_agent_bytes
                ),
            );
        }
    }

    pub(super) fn client_ip(&mut self, config: &Config) {
        for (i, cidr) in config.client_ip.trusted_proxies.iter().enumerate() {
            if let Err(problem) = parse_cidr(cidr) {
                self.err(format!("client_ip.trusted_proxies[{i}]"), problem);
            }
        }
    }
}

/// Parses `a.b.c.d/len`, `v6/len`, or a bare address (a single host).
pub fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| {
            format!(
                "{text:?} is not an IP network; expected e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""
            )
        })
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert!(parse_cidr("10.0.0.1/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(parse_cidr("ten/8").is_err());
    }
}
