//! `edge_tls_certificate_expiry_seconds{site}`: the earliest expiry among the
//! certificates (operator files and ACME) serving each site's names.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::ManagedCert;
use crate::clock::unix_seconds;
use crate::metrics::METRICS;
use crate::runtime::Runtime;

/// Sets the gauge for every site with a certificate. Series of sites in
/// `published` (the previous call's sites) that no longer have one are
/// removed; the others are overwritten in place, so a scrape never sees a gap.
pub fn publish(
    rt: &Runtime,
    served: &HashMap<String, Arc<ManagedCert>>,
    published: &mut HashSet<String>,
) {
    let now = unix_seconds();
    let mut earliest: HashMap<&str, i64> = HashMap::new();
    for site in &rt.loaded.config.sites {
        for domain in &site.domains {
            let not_after = rt
                .certs
                .not_after(domain)
                .or_else(|| served.get(domain.as_str()).map(|c| c.not_after));
            if let Some(t) = not_after {
                let e = earliest.entry(site.id.as_str()).or_insert(t);
                *e = (*e).min(t);
            }
        }
    }
    for cert in served.values() {
        let e = earliest.entry(cert.site.as_str()).or_insert(cert.not_after);
        *e = (*e).min(cert.not_after);
    }
    for gone in published
        .iter()
        .filter(|s| !earliest.contains_key(s.as_str()))
    {
        let _ = METRICS.tls_certificate_expiry.remove_label_values(&[gone]);
    }
    for (site, t) in &earliest {
        METRICS
            .tls_certificate_expiry
            .with_label_values(&[*site])
            .set(t - now);
    }
    *published = earliest.keys().map(|s| s.to_string()).collect();
}
