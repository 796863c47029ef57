//! What happens when an order finishes: install the certificate (store it
//! sealed, swap it into the served map) or put the name into backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use edge_config::AcmeKeyType;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{OrderDone, Outcome, Worker};
use crate::ManagedCert;
use crate::metrics::METRICS;
use crate::order::Issued;
use crate::status::NameState;
use edge_certs::clock::unix_seconds;
use edge_certs::from_der_parts;

impl Worker {
    pub(super) fn finish(&mut self, done: OrderDone) {
        self.in_flight.remove(&done.name);
        let Some(policy) = self.acme.policy() else {
            return;
        };
        let wanted = policy.configured_site(&done.name).is_some()
            || self.on_demand.contains_key(&done.name)
            || self.acme.served().contains_key(&done.name);
        if !wanted {
            tracing::info!(name = %done.name, "acme: order finished for a name no longer authorised; result dropped");
            return;
        }
        let dns_mismatch = matches!(done.outcome, Outcome::DnsMismatch(_));
        let error = match done.outcome {
            Outcome::Issued(issued) => {
                let label = issued.challenge.map_or("reused", |c| c.as_str());
                METRICS
                    .acme_orders
                    .with_label_values(&[label, "valid"])
                    .inc();
                match self.install(&done.name, &done.site, done.key_type, issued) {
                    Ok(()) => {
                        METRICS
                            .acme_issuance_duration
                            .observe(done.started.elapsed().as_secs_f64());
                        if done.renewal {
                            METRICS.acme_renewals.with_label_values(&["renewed"]).inc();
                        }
                        self.backoff_until.remove(&done.name);
                        if let Some(shared) = &self.shared {
                            shared.clear_backoff(&done.name);
                        }
                        if let Ok(mut status) = self.acme.status.lock()
                            && let Some(s) = status.get_mut(&done.name)
                        {
                            s.state = NameState::Valid;
                            s.failures = 0;
                            s.last_error = None;
                            s.next_attempt_unix = None;
                            s.last_challenge = Some(label);
                        }
                        self.publish_expiry();
                        return;
                    }
                    Err(e) => e,
                }
            }
            Outcome::Failed(errors) => {
                for e in &errors {
                    METRICS
                        .acme_orders
                        .with_label_values(&[e.challenge().as_str(), e.outcome()])
                        .inc();
                }
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Outcome::DnsMismatch(e) => e,
        };
        if done.renewal {
            METRICS.acme_renewals.with_label_values(&["failed"]).inc();
        }
        METRICS.acme_backoffs.inc();
        let failures = self
            .acme
            .status
            .lock()
            .ok()
            .and_then(|s| s.get(&done.name).map(|s| s.failures + 1))
            .unwrap_or(1);
        let wait = policy.backoff(failures);
        self.backoff_until
            .insert(done.name.clone(), Instant::now() + wait);
        if let Some(shared) = &self.shared {
            shared.share_backoff(&done.name, failures, unix_seconds() + wait.as_secs() as i64);
        }
        tracing::warn!(name = %done.name, failures, backoff_s = wait.as_secs(), error = %error, "acme: order failed");
        if let Ok(mut status) = self.acme.status.lock()
            && let Some(s) = status.get_mut(&done.name)
        {
            s.failures = failures;
            s.state = if dns_mismatch {
                NameState::DnsMismatch
            } else {
                NameState::Backoff
            };
            s.next_attempt_unix = Some(unix_seconds() + wait.as_secs() as i64);
            s.last_error = Some(error);
        }
    }

    fn install(
        &mut self,
        name: &str,
        site: &str,
        key_type: AcmeKeyType,
        issued: Issued,
    ) -> Result<(), String> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("the CA sent an unreadable chain: {e}"))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_pkcs8_der.clone()));
        let loaded = from_der_parts(chain, key, name).map_err(|e| e.to_string())?;
        if let Some((store, _)) = &self.store
            && let Err(e) =
                store.save_cert(name, key_type, &issued.chain_pem, &issued.key_pkcs8_der)
        {
            // Served from memory; the next start orders it again.
            METRICS.acme_store_errors.with_label_values(&["save"]).inc();
            tracing::error!(error = %e, "acme: could not store the certificate");
        }
        let mut served: HashMap<_, _> = self
            .acme
            .served()
            .iter()
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        served.insert(
            name.to_string(),
            Arc::new(ManagedCert {
                site: site.to_string(),
                key: loaded.key,
                not_before: loaded.not_before,
                not_after: loaded.not_after,
                key_type,
            }),
        );
        self.acme.set_served(served);
        tracing::info!(
            name,
            not_after = loaded.not_after,
            "acme: certificate installed"
        );
        Ok(())
    }
}
