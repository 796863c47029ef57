//! On-demand names: the `ask` calls that approve or refuse them, and, under
//! `[acme.shared]`, the fleet's shared approvals.
//!
//! With a shared store an `ask` answer is written there (an approval stored
//! with its time, a refusal deletes it; both NOTIFY the fleet), every edge
//! applies the approvals it reads (at start, on NOTIFY, at every poll), and
//! a queued name is looked up in the store before the endpoint is called:
//! a name approved fleet-wide within `ask_cache_seconds` is not asked again
//! by another edge. The endpoint stays authoritative: once the approval is
//! older than that, the next edge that needs an answer asks it. Store
//! failures only mean asking as without a store
//! (`edge_acme_shared_errors_total{operation="approval"}`).

use std::sync::Arc;

use super::Worker;
use crate::authorize::{AskVerdict, ask};
use crate::metrics::METRICS;
use crate::policy::AcmePolicy;
use crate::shared::store_error;
use edge_certs::clock::unix_seconds;
use edge_fleetstore::FleetStore;

/// Where an answer came from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Asked {
    /// The `ask` endpoint answered this edge.
    Endpoint(AskVerdict),
    /// A fresh fleet-wide approval (Unix time of the approval) was found in
    /// the shared store; the endpoint was not called.
    Fleet(i64),
}

impl Worker {
    /// Starts `ask` calls for queued names, at most `max_pending` at once
    /// (the rest stay queued).
    pub(super) fn start_asks(&mut self, policy: &AcmePolicy) {
        let Some(settings) = policy.ask.clone() else {
            self.acme.ask.take_pending(usize::MAX);
            return;
        };
        let store = self.shared.as_ref().map(|s| s.store.clone());
        let room = settings.max_pending.saturating_sub(self.asking.len());
        for name in self.acme.ask.take_pending(room) {
            if policy.on_demand_site(&name).is_none() || !self.asking.insert(name.clone()) {
                continue;
            }
            let client = self.http.clone();
            let settings = settings.clone();
            let store = store.clone();
            let task_name = name.clone();
            let handle = self.asks.spawn(async move {
                if let Some(store) = store
                    && let Some(at) = fleet_approval(&store, &name, settings.cache_for).await
                {
                    return (name, Asked::Fleet(at));
                }
                let verdict = ask(&client, &settings, &name).await;
                (name, Asked::Endpoint(verdict))
            });
            self.ask_names.insert(handle.id(), task_name);
        }
    }

    pub(super) fn asked(&mut self, name: &str, answer: Asked) {
        self.asking.remove(name);
        let Some(policy) = self.acme.policy() else {
            return;
        };
        let verdict = match answer {
            Asked::Endpoint(verdict) => verdict,
            Asked::Fleet(at) => {
                if let Some(settings) = &policy.ask
                    && policy.on_demand_site(name).is_some()
                {
                    self.acme
                        .ask
                        .record_shared(name, AskVerdict::Approved, at, settings);
                    let entry = self.on_demand.entry(name.to_string()).or_insert(at);
                    *entry = (*entry).max(at);
                    METRICS
                        .acme_shared
                        .approvals
                        .with_label_values(&["used"])
                        .inc();
                    tracing::info!(name, "acme: approved fleet-wide; ask endpoint not called");
                }
                return;
            }
        };
        if let Some(settings) = &policy.ask {
            self.acme.ask.record(name, verdict, settings);
        }
        let now = unix_seconds();
        match verdict {
            AskVerdict::Approved => {
                if policy.on_demand_site(name).is_some() {
                    self.on_demand.insert(name.to_string(), now);
                }
            }
            AskVerdict::Denied => {
                self.on_demand.remove(name);
            }
            AskVerdict::Unavailable => {}
        }
        self.share_answer(name, verdict, now);
        tracing::info!(name, verdict = ?verdict, "acme: ask endpoint answered");
    }

    /// Writes an endpoint's answer to the shared store, in the background
    /// (an approval with its time; a refusal deletes the approval).
    fn share_answer(&self, name: &str, verdict: AskVerdict, now: i64) {
        let Some(shared) = &self.shared else {
            return;
        };
        if verdict == AskVerdict::Unavailable {
            return;
        }
        let store = shared.store.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let written = match verdict {
                AskVerdict::Approved => store.put_approval(&name, now).await,
                _ => store.remove_approval(&name).await,
            };
            match written {
                Ok(()) => METRICS
                    .acme_shared
                    .approvals
                    .with_label_values(&["stored"])
                    .inc(),
                Err(e) => store_error("approval", &e),
            }
        });
    }

    /// Applies approvals read from the shared store: each name this edge's
    /// policy covers becomes wanted (like an approval of its own), and is
    /// not asked again while the approval is fresh. A fresher refusal this
    /// edge received is not overridden.
    pub(super) fn shared_approvals(&mut self, approvals: Vec<(String, i64)>) {
        let Some(policy) = self.acme.policy() else {
            return;
        };
        let Some(settings) = &policy.ask else {
            return;
        };
        for (name, at) in approvals {
            if policy.on_demand_site(&name).is_none() {
                continue;
            }
            let recorded = self
                .acme
                .ask
                .record_shared(&name, AskVerdict::Approved, at, settings);
            if !recorded && self.acme.ask.fresh(&name) == Some(AskVerdict::Denied) {
                continue;
            }
            if self.on_demand.get(&name).is_none_or(|old| at > *old) {
                self.on_demand.insert(name, at);
                METRICS
                    .acme_shared
                    .approvals
                    .with_label_values(&["received"])
                    .inc();
            }
        }
    }

    /// Another edge's `ask` endpoint refused `name`: refused here too for
    /// `ask_cache_seconds` (its certificate is withdrawn like after a
    /// refusal of this edge's own).
    pub(super) fn shared_unapproved(&mut self, name: &str) {
        let Some(policy) = self.acme.policy() else {
            return;
        };
        let Some(settings) = &policy.ask else {
            return;
        };
        if policy.on_demand_site(name).is_none() {
            return;
        }
        self.acme
            .ask
            .record_shared(name, AskVerdict::Denied, unix_seconds(), settings);
        self.on_demand.remove(name);
        METRICS
            .acme_shared
            .approvals
            .with_label_values(&["received"])
            .inc();
        tracing::info!(name, "acme: on-demand name refused on another edge");
    }
}

/// The time of `name`'s fleet-wide approval when it is younger than
/// `cache_for`; `None` otherwise or when the store fails (then the endpoint
/// is asked, as without a store).
async fn fleet_approval(
    store: &Arc<FleetStore>,
    name: &str,
    cache_for: std::time::Duration,
) -> Option<i64> {
    match store.approval(name).await {
        Ok(Some(at)) if unix_seconds() - at < cache_for.as_secs() as i64 => Some(at),
        Ok(_) => None,
        Err(e) => {
            store_error("approval", &e);
            None
        }
    }
}
