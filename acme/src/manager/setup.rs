//! What the worker sets up before it orders: the certificate store (loaded
//! once, re-keyed when the storage key changes), the DNS pre-check and the
//! ACME account.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::{ACCOUNT_TIMEOUT, SETUP_RETRY, Worker};
use crate::ManagedCert;
use crate::authorize::DnsChecker;
use crate::metrics::METRICS;
use crate::order;
use crate::policy::AcmePolicy;
use crate::store::CertStore;

impl Worker {
    pub(super) fn ensure_store(&mut self, policy: &AcmePolicy) -> Result<(), String> {
        let check = policy.storage_key.check_hex();
        match &mut self.store {
            Some((_, current)) if *current == check => return Ok(()),
            Some((store, current)) => {
                let old = store.key();
                let (rekeyed, failed) = store.rekey(policy.storage_key.clone());
                tracing::info!(
                    rekeyed,
                    failed,
                    "acme: storage key changed; stored keys re-encrypted"
                );
                *current = check;
                // The shared rows follow once the store reconnects with
                // the new key (manager/fleet.rs ensure_shared).
                self.rekeyed_from = Some(old);
                return Ok(());
            }
            None => {}
        }
        let dir = self.edge.data_dir().join("acme");
        let store = CertStore::open(&dir, policy.storage_key.clone()).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (certs, errors) = store.load_all(threads);
        for e in &errors {
            METRICS.acme_store_errors.with_label_values(&["load"]).inc();
            tracing::warn!(error = %e, "acme: stored certificate not loaded; it will be ordered again");
        }
        let mut served = HashMap::new();
        for stored in certs {
            let site = policy
                .configured_site(&stored.name)
                .or_else(|| policy.on_demand_site(&stored.name))
                .map(str::to_string);
            let Some(site) = site else { continue };
            let not_before = stored.cert.not_before;
            served.insert(
                stored.name,
                Arc::new(ManagedCert {
                    site,
                    key: stored.cert.key,
                    not_before,
                    not_after: stored.cert.not_after,
                    key_type: stored.key_type,
                }),
            );
        }
        tracing::info!(
            loaded = served.len(),
            failed = errors.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "acme: stored certificates loaded"
        );
        self.acme.set_served(served);
        self.acme.mark_store_loaded();
        self.store = Some((store, check));
        Ok(())
    }

    pub(super) fn ensure_dns(&mut self, policy: &AcmePolicy) {
        let Some(settings) = &policy.dns else {
            self.dns = None;
            return;
        };
        if self.dns.as_ref().is_some_and(|d| d.is_for(settings)) {
            return;
        }
        match DnsChecker::new(settings) {
            Ok(d) => self.dns = Some(Arc::new(d)),
            Err(e) => {
                tracing::error!(error = %e, "acme: DNS pre-check unavailable; no name is ordered until it works");
                self.dns = None;
            }
        }
    }

    pub(super) async fn ensure_account(
        &mut self,
        policy: &AcmePolicy,
    ) -> Option<instant_acme::Account> {
        let key = (policy.directory_url.clone(), policy.ca_file.clone());
        if let Some((k, account)) = &self.account
            && *k == key
        {
            return Some(account.clone());
        }
        if self.account_retry_at.is_some_and(|t| t > Instant::now()) {
            return None;
        }
        let (store, _) = self.store.as_ref()?;
        let stored = match store.load_account(&policy.directory_url) {
            Ok(s) => s,
            Err(e) => {
                METRICS
                    .acme_store_errors
                    .with_label_values(&["account"])
                    .inc();
                tracing::error!(error = %e, "acme: stored account unreadable; registering a new one");
                None
            }
        };
        // Under [acme.shared] the fleet's account comes first.
        let stored = match &self.shared {
            Some(shared) => match shared
                .account(&policy.storage_key, &policy.directory_url)
                .await
            {
                Ok(fleet) => fleet.or(stored),
                Err(()) => {
                    self.account_retry_at = Some(Instant::now() + SETUP_RETRY);
                    return None;
                }
            },
            None => stored,
        };
        let account = tokio::time::timeout(
            ACCOUNT_TIMEOUT,
            order::account(
                &policy.directory_url,
                policy.ca_file.as_deref(),
                &policy.contact,
                stored.as_deref(),
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from {} within {ACCOUNT_TIMEOUT:?}",
                policy.directory_url
            ))
        });
        match account {
            Ok((account, new_credentials)) => {
                if let Some(creds) = &new_credentials
                    && let Err(e) = store.save_account(&policy.directory_url, creds)
                {
                    METRICS
                        .acme_store_errors
                        .with_label_values(&["account"])
                        .inc();
                    tracing::error!(error = %e, "acme: could not store the new account");
                }
                let account = self
                    .fleet_account(policy, account, new_credentials, stored)
                    .await?;
                tracing::info!(directory = %policy.directory_url, account = account.id(), "acme: account ready");
                self.account = Some((key, account.clone()));
                self.account_retry_at = None;
                Some(account)
            }
            Err(e) => {
                tracing::error!(error = %e, "acme: no account; retrying in 30 s");
                self.account_retry_at = Some(Instant::now() + SETUP_RETRY);
                None
            }
        }
    }
}
