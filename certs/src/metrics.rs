//! The certificate metrics: `edge_tls_certificates` and
//! `edge_tls_certificate_expiry_seconds{site}`.
//!
//! They live here, next to what they measure; the edge registers them into
//! its own registry ([`CertMetrics::register`]) so `/metrics` shows them
//! beside everything else.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

/// The process-wide certificate metrics (registered by the edge at startup).
pub static METRICS: LazyLock<CertMetrics> = LazyLock::new(CertMetrics::new);

/// The certificate metrics.
pub struct CertMetrics {
    /// `edge_tls_certificates`: certificates loaded in the active configuration.
    pub(crate) tls_certificates: IntGauge,
    /// `edge_tls_certificate_expiry_seconds{site}`: seconds until the site's earliest certificate expiry.
    tls_certificate_expiry: IntGaugeVec,
}

impl CertMetrics {
    // Building only fails on an invalid name or label, a programming error
    // the unit test below catches; panicking at startup is right.
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        Self {
            tls_certificates: IntGauge::new(
                "edge_tls_certificates",
                "Certificates loaded in the active configuration.",
            )
            .expect("edge_tls_certificates"),
            tls_certificate_expiry: IntGaugeVec::new(
                Opts::new(
                    "edge_tls_certificate_expiry_seconds",
                    "Seconds until the earliest expiry among the certificates serving a site (negative once expired).",
                ),
                &["site"],
            )
            .expect("edge_tls_certificate_expiry_seconds"),
        }
    }

    /// Registers every certificate metric into the edge's `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.tls_certificates.clone()))?;
        registry.register(Box::new(self.tls_certificate_expiry.clone()))
    }

    /// Sets `edge_tls_certificate_expiry_seconds` to `earliest[site] - now`
    /// for every site. Series of sites in `published` (the previous call's
    /// sites) that are no longer in `earliest` are removed; the others are
    /// overwritten in place, so a scrape never sees a gap.
    pub fn publish_expiry(
        &self,
        earliest: &HashMap<&str, i64>,
        now: i64,
        published: &mut HashSet<String>,
    ) {
        for gone in published
            .iter()
            .filter(|s| !earliest.contains_key(s.as_str()))
        {
            let _ = self.tls_certificate_expiry.remove_label_values(&[gone]);
        }
        for (site, t) in earliest {
            self.tls_certificate_expiry
                .with_label_values(&[*site])
                .set(t - now);
        }
        *published = earliest.keys().map(|s| s.to_string()).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_removes_sites_that_lost_their_certificate() {
        let registry = Registry::new();
        let metrics = CertMetrics::new();
        metrics.register(&registry).unwrap();
        let mut published = HashSet::new();
        metrics.publish_expiry(
            &HashMap::from([("a", 110), ("b", 150)]),
            100,
            &mut published,
        );
        metrics.publish_expiry(&HashMap::from([("b", 140)]), 100, &mut published);
        let families = registry.gather();
        let expiry = families
            .iter()
            .find(|f| f.name() == "edge_tls_certificate_expiry_seconds")
            .unwrap();
        let series: Vec<_> = expiry
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_string(),
                    m.get_gauge().get_value(),
                )
            })
            .collect();
        assert_eq!(series, vec![("b".to_string(), 40.0)]);
        assert!(families.iter().any(|f| f.name() == "edge_tls_certificates"));
    }
}
