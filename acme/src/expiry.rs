//! `edge_tls_certificate_expiry_seconds{site}`: the earliest expiry among the
//! certificates (operator files and ACME) serving each site's names.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::ManagedCert;
use crate::manager::SiteDomains;
use edge_certs::clock::unix_seconds;

/// Sets the gauge for every site with a certificate. Series of sites in
/// `published` (the previous call's sites) that no longer have one are
/// removed; the others are overwritten in place, so a scrape never sees a gap.
pub(crate) fn publish(
    sites: &[SiteDomains],
    served: &HashMap<String, Arc<ManagedCert>>,
    published: &mut HashSet<String>,
) {
    let now = unix_seconds();
    let mut earliest: HashMap<&str, i64> = HashMap::new();
    for site in sites {
        for (domain, operator_not_after) in &site.domains {
            let not_after =
                operator_not_after.or_else(|| served.get(domain.as_str()).map(|c| c.not_after));
            if let Some(t) = not_after {
                let e = earliest.entry(site.site.as_str()).or_insert(t);
                *e = (*e).min(t);
            }
        }
    }
    for cert in served.values() {
        let e = earliest.entry(cert.site.as_str()).or_insert(cert.not_after);
        *e = (*e).min(cert.not_after);
    }
    edge_certs::METRICS.publish_expiry(&earliest, now, published);
}
