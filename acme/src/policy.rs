//! Which names the edge may order certificates for, and how.
//!
//! Built from the `[acme]` table and the sites by [`AcmePolicy::build`] on
//! every config load, so a reload that adds a site domain makes it eligible
//! and one that removes it withdraws it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edge_config::{Acme, AcmeKeyType, ChallengeKind, Config};

use super::storage_key::StorageKey;
use edge_certs::CertMap;
use edge_certs::hostmap::HostMap;

/// On-demand issuance settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AskSettings {
    /// `GET {url}?domain=NAME`; 2xx approves.
    pub url: String,
    /// Time allowed per request.
    pub timeout: Duration,
    /// How long answers are remembered.
    pub cache_for: Duration,
    /// Names waiting for an answer at once.
    pub max_pending: usize,
}

/// DNS pre-validation settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DnsSettings {
    /// Name server to ask (`None` = system configuration).
    pub resolver: Option<SocketAddr>,
    /// Addresses of this edge.
    pub addresses: Vec<IpAddr>,
}

/// The compiled `[acme]` table.
pub struct AcmePolicy {
    /// CA directory.
    pub(crate) directory_url: String,
    /// Account contacts.
    pub(crate) contact: Vec<String>,
    /// Extra root for the CA's HTTPS API.
    pub(crate) ca_file: Option<PathBuf>,
    /// Challenge types in order of preference.
    pub(crate) challenges: Vec<ChallengeKind>,
    /// Encrypts private keys at rest.
    pub(crate) storage_key: Arc<StorageKey>,
    /// Key algorithm for new certificates.
    pub(crate) key_type: AcmeKeyType,
    /// Renew when less than this fraction of the lifetime remains.
    pub(crate) renew_remaining_fraction: f64,
    /// Global order rate.
    pub(crate) max_orders_per_hour: u32,
    /// Per-name order rate.
    pub(crate) max_orders_per_name_per_day: u32,
    /// Orders in flight.
    pub(crate) max_concurrent_orders: usize,
    /// First backoff after a failure.
    pub(crate) backoff_initial: Duration,
    /// Longest backoff.
    pub(crate) backoff_max: Duration,
    /// Budget for one order attempt.
    pub(crate) order_timeout: Duration,
    /// Site domains to keep certificates for: name → site id.
    pub(crate) names: HashMap<String, String>,
    /// Site `*.` wildcard domains (on-demand candidates): → site id.
    pub(crate) wildcard_sites: HostMap<String>,
    /// On-demand issuance, if configured.
    pub(crate) ask: Option<AskSettings>,
    /// DNS pre-validation, if configured.
    pub(crate) dns: Option<DnsSettings>,
    /// Operator-forced renewals accepted per name in any 7 days.
    pub(crate) max_forced_renewals_per_name_per_week: u32,
    /// The fleet's shared store (`[acme.shared]`), if configured.
    pub(crate) shared: Option<super::shared::SharedSettings>,
}

impl std::fmt::Debug for AcmePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmePolicy")
            .field("directory_url", &self.directory_url)
            .field("names", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl AcmePolicy {
    /// Compiles the policy. Names already covered by an operator-provided
    /// certificate (`static_certs`) are left to it, and single-label names
    /// (`localhost`) are never ordered: no public CA can validate them.
    pub fn build(
        config: &Config,
        acme: &Acme,
        storage_key: Arc<StorageKey>,
        static_certs: &CertMap,
    ) -> Self {
        let mut names = HashMap::new();
        let mut wildcard_sites = HostMap::default();
        for site in &config.sites {
            for domain in &site.domains {
                let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                if domain.starts_with("*.") {
                    wildcard_sites.insert(&domain, site.id.clone());
                } else if orderable(&domain) && static_certs.lookup(&domain).is_none() {
                    names.insert(domain, site.id.clone());
                }
            }
        }
        Self {
            directory_url: acme.directory_url.clone(),
            contact: acme.contact.clone(),
            ca_file: acme.ca_file.clone(),
            challenges: acme.challenges.clone(),
            storage_key,
            key_type: acme.key_type,
            renew_remaining_fraction: acme.renew_remaining_fraction,
            max_orders_per_hour: acme.max_orders_per_hour,
            max_orders_per_name_per_day: acme.max_orders_per_name_per_day,
            max_forced_renewals_per_name_per_week: acme.max_forced_renewals_per_name_per_week,
            max_concurrent_orders: acme.max_concurrent_orders as usize,
            backoff_initial: Duration::from_secs(acme.backoff_initial_seconds),
            backoff_max: Duration::from_secs(acme.backoff_max_seconds),
            order_timeout: Duration::from_secs(acme.order_timeout_seconds),
            names,
            wildcard_sites,
            ask: acme.on_demand.as_ref().map(|o| AskSettings {
                url: o.ask_url.clone(),
                timeout: Duration::from_millis(o.ask_timeout_ms),
                cache_for: Duration::from_secs(o.ask_cache_seconds),
                max_pending: o.max_pending as usize,
            }),
            dns: acme.dns_check.as_ref().map(|d| DnsSettings {
                resolver: d.resolver,
                addresses: d.addresses.clone(),
            }),
            shared: acme
                .shared
                .as_ref()
                .map(super::shared::SharedSettings::from_config),
        }
    }

    /// The site of a name eligible without asking (an exact site domain).
    pub(crate) fn configured_site(&self, name: &str) -> Option<&str> {
        self.names.get(name).map(String::as_str)
    }

    /// The site whose wildcard domain covers `name`, when on-demand issuance is on.
    pub(crate) fn on_demand_site(&self, name: &str) -> Option<&str> {
        self.ask.as_ref()?;
        if !orderable(name) {
            return None;
        }
        self.wildcard_sites.get(name).map(String::as_str)
    }

    /// Backoff after `failures` consecutive failures (1 = first failure).
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// A lowercase multi-label DNS name without wildcard (what HTTP-01 and
/// TLS-ALPN-01 can validate).
pub(crate) fn orderable(name: &str) -> bool {
    name.contains('.')
        && !name.starts_with("*.")
        && name.parse::<IpAddr>().is_err()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml_extra: &str) -> AcmePolicy {
        let text = format!(
            r#"
            [[sites]]
            id = "a"
            domains = ["stats.a.example", "localhost", "*.customers.example", "static.a.example"]
            [acme]
            directory_url = "https://ca.example/dir"
            storage_key_env = "X"
            backoff_initial_seconds = 10
            backoff_max_seconds = 100
            {toml_extra}
            "#
        );
        let config: Config = toml::from_str(&text).unwrap();
        let key = Arc::new(StorageKey::from_bytes(&[1; 32]).unwrap());
        let acme = config.acme.clone().unwrap();
        let static_key = rcgen::KeyPair::generate().unwrap();
        let static_cert = rcgen::CertificateParams::new(vec!["static.a.example".to_string()])
            .unwrap()
            .self_signed(&static_key)
            .unwrap();
        let loaded = edge_certs::from_der_parts(
            vec![static_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(static_key.serialize_der()).unwrap(),
            "t",
        )
        .unwrap();
        AcmePolicy::build(&config, &acme, key, &CertMap::new(&[loaded]))
    }

    #[test]
    fn eligible_names() {
        let p = policy("");
        assert_eq!(p.configured_site("stats.a.example"), Some("a"));
        assert_eq!(p.configured_site("localhost"), None, "single label");
        assert_eq!(
            p.configured_site("static.a.example"),
            None,
            "static cert wins"
        );
        assert_eq!(
            p.on_demand_site("x.customers.example"),
            None,
            "no ask configured"
        );
        let p = policy("[acme.on_demand]\nask_url = \"http://127.0.0.1:1/ask\"");
        assert_eq!(p.on_demand_site("x.customers.example"), Some("a"));
        assert_eq!(p.on_demand_site("a.b.customers.example"), None);
        assert_eq!(p.on_demand_site("random.example"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy("");
        assert_eq!(p.backoff(1), Duration::from_secs(10));
        assert_eq!(p.backoff(2), Duration::from_secs(20));
        assert_eq!(p.backoff(4), Duration::from_secs(80));
        assert_eq!(p.backoff(5), Duration::from_secs(100));
        assert_eq!(p.backoff(500), Duration::from_secs(100));
    }
}
