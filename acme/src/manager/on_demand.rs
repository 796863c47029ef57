//! On-demand names: the `ask` calls that approve or refuse them.

use super::Worker;
use crate::authorize::{AskVerdict, ask};
use crate::policy::AcmePolicy;
use edge_certs::clock::unix_seconds;

impl Worker {
    /// Starts `ask` calls for queued names, at most `max_pending` at once
    /// (the rest stay queued).
    pub(super) fn start_asks(&mut self, policy: &AcmePolicy) {
        let Some(settings) = policy.ask.clone() else {
            self.acme.ask.take_pending(usize::MAX);
            return;
        };
        let room = settings.max_pending.saturating_sub(self.asking.len());
        for name in self.acme.ask.take_pending(room) {
            if policy.on_demand_site(&name).is_none() || !self.asking.insert(name.clone()) {
                continue;
            }
            let client = self.http.clone();
            let settings = settings.clone();
            let task_name = name.clone();
            let handle = self.asks.spawn(async move {
                let verdict = ask(&client, &settings, &name).await;
                (name, verdict)
            });
            self.ask_names.insert(handle.id(), task_name);
        }
    }

    pub(super) fn asked(&mut self, name: &str, verdict: AskVerdict) {
        self.asking.remove(name);
        let Some(policy) = self.acme.policy() else {
            return;
        };
        if let Some(settings) = &policy.ask {
            self.acme.ask.record(name, verdict, settings);
        }
        match verdict {
            AskVerdict::Approved => {
                if policy.on_demand_site(name).is_some() {
                    self.on_demand.insert(name.to_string(), unix_seconds());
                }
            }
            AskVerdict::Denied => {
                self.on_demand.remove(name);
            }
            AskVerdict::Unavailable => {}
        }
        tracing::info!(name, verdict = ?verdict, "acme: ask endpoint answered");
    }
}
