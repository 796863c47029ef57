//! The background service that keeps every eligible name certified.
//!
//! One loop owns all decisions: which names are wanted (site domains plus
//! approved on-demand names), which are due (no certificate, a third of the
//! lifetime left, a changed key type, a forced renewal), whether limits and
//! backoff allow an order now, and what to do with finished orders. Orders,
//! `ask` calls and DNS checks run as tasks; the loop wakes when one finishes,
//! when the config changes, when a handshake reports an on-demand name, or
//! when the next deadline passes. `manager/finish.rs` handles finished orders.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinSet;

use edge_config::AcmeKeyType;

use super::Acme;
use super::authorize::{AskState, AskVerdict, DnsChecker, DnsVerdict};
use super::limits::{IssuanceLimits, LimitScope};
use super::order::{self, Issued, OrderError};
use super::policy::AcmePolicy;
use super::status::{NameState, NameStatus};
use super::store::CertStore;
use crate::metrics::METRICS;
use edge_certs::clock::unix_seconds;

mod finish;
mod fleet;
mod on_demand;
mod setup;

/// Longest sleep between passes when nothing is due.
const IDLE_PASS: Duration = Duration::from_secs(60);
/// Pause before retrying after the store or the account failed.
const SETUP_RETRY: Duration = Duration::from_secs(30);
/// Time allowed to register or restore the ACME account.
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the ACME manager reads of the running edge, and nothing more: the
/// shared [`Acme`] state it writes to is handed over separately, and the
/// policy (names, CA, limits) arrives through [`Acme::set_policy`].
pub trait AcmeEdge: Send + Sync {
    /// The active configuration's `data_dir` (the store is `DATA_DIR/acme`).
    fn data_dir(&self) -> PathBuf;
    /// The active configuration's sites with their domains, for the expiry
    /// gauge: each domain with the expiry of the operator certificate that
    /// serves it, if any.
    fn site_domains(&self) -> Vec<SiteDomains>;
}

/// One configured site as [`AcmeEdge::site_domains`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDomains {
    /// The site id (the `site` label of the expiry gauge).
    pub site: String,
    /// Each domain with the `notAfter` (Unix seconds) of the operator
    /// certificate that SNI selects for it, or `None`.
    pub domains: Vec<(String, Option<i64>)>,
}

/// The ACME background service.
pub struct AcmeManager {
    acme: Arc<Acme>,
    edge: Arc<dyn AcmeEdge>,
}

impl AcmeManager {
    /// A manager that keeps `acme` (the listeners' view) filled, reading the
    /// configuration through `edge`.
    pub fn new(acme: Arc<Acme>, edge: Arc<dyn AcmeEdge>) -> Self {
        Self { acme, edge }
    }
}

#[async_trait]
impl BackgroundService for AcmeManager {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut worker = Worker::new(self.acme.clone(), self.edge.clone());
        loop {
            let pause = worker.pass().await;
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = worker.acme.wake.notified() => {}
                Some(done) = worker.orders.join_next_with_id(), if !worker.orders.is_empty() => {
                    match done {
                        Ok((id, done)) => {
                            worker.order_names.remove(&id);
                            worker.finish(done);
                        }
                        Err(e) => worker.order_crashed(e),
                    }
                }
                Some(update) = async {
                    match worker.shared.as_mut() {
                        Some(shared) => shared.updates.recv().await,
                        None => std::future::pending().await,
                    }
                } => worker.apply_shared(update),
                Some(answer) = worker.asks.join_next_with_id(), if !worker.asks.is_empty() => {
                    match answer {
                        Ok((id, (name, answer))) => {
                            worker.ask_names.remove(&id);
                            worker.asked(&name, answer);
                        }
                        Err(e) => {
                            if let Some(name) = worker.ask_names.remove(&e.id()) {
                                worker.asking.remove(&name);
                            }
                        }
                    }
                }
                _ = tokio::time::sleep(pause) => {}
            }
        }
        worker.orders.abort_all();
    }
}

enum Outcome {
    Issued(Issued),
    Failed(Vec<OrderError>),
    DnsMismatch(String),
}

struct OrderDone {
    name: String,
    site: String,
    key_type: AcmeKeyType,
    started: Instant,
    renewal: bool,
    outcome: Outcome,
}

struct Worker {
    edge: Arc<dyn AcmeEdge>,
    acme: Arc<Acme>,
    store: Option<(CertStore, String)>,
    account: Option<((String, Option<PathBuf>), instant_acme::Account)>,
    account_retry_at: Option<Instant>,
    limits: Option<IssuanceLimits>,
    dns: Option<Arc<DnsChecker>>,
    http: reqwest::Client,
    orders: JoinSet<OrderDone>,
    order_names: HashMap<tokio::task::Id, String>,
    in_flight: HashSet<String>,
    asks: JoinSet<(String, on_demand::Asked)>,
    ask_names: HashMap<tokio::task::Id, String>,
    asking: HashSet<String>,
    /// On-demand names the `ask` endpoint approved (name → Unix time of the
    /// latest approval); kept, with their backoff, until it refuses them,
    /// however long its answers are cached.
    on_demand: HashMap<String, i64>,
    /// Renewals the operator forced that have not started yet.
    forced: HashSet<String>,
    backoff_until: HashMap<String, Instant>,
    /// Names whose lease another edge held at the last try, with when to
    /// try again (`[acme.shared]`).
    held_elsewhere: HashMap<String, Instant>,
    expiry_sites: HashSet<String>,
    /// The fleet's shared store, under `[acme.shared]` (manager/fleet.rs).
    shared: Option<crate::shared::Shared>,
    /// The storage key a reload just replaced, kept until the shared rows
    /// sealed under it are re-sealed (manager/fleet.rs).
    rekeyed_from: Option<Arc<crate::storage_key::StorageKey>>,
}

impl Worker {
    fn new(acme: Arc<Acme>, edge: Arc<dyn AcmeEdge>) -> Self {
        Self {
            edge,
            acme,
            store: None,
            account: None,
            account_retry_at: None,
            limits: None,
            dns: None,
            http: reqwest::Client::new(),
            orders: JoinSet::new(),
            order_names: HashMap::new(),
            in_flight: HashSet::new(),
            asks: JoinSet::new(),
            ask_names: HashMap::new(),
            asking: HashSet::new(),
            on_demand: HashMap::new(),
            forced: HashSet::new(),
            backoff_until: HashMap::new(),
            held_elsewhere: HashMap::new(),
            expiry_sites: HashSet::new(),
            shared: None,
            rekeyed_from: None,
        }
    }

    /// One pass over every name; returns how long until the next is due.
    async fn pass(&mut self) -> Duration {
        let Some(policy) = self.acme.policy() else {
            if !self.acme.served().is_empty() {
                self.acme.set_served(HashMap::new());
            }
            // Turned off: forget everything, so turning it on again reloads
            // the store instead of ordering every name anew.
            self.store = None;
            self.shared = None;
            self.account = None;
            self.on_demand.clear();
            self.publish_expiry();
            return IDLE_PASS;
        };
        if let Err(e) = self.ensure_store(&policy) {
            tracing::error!(error = %e, "acme certificate store unavailable");
            METRICS.acme_store_errors.with_label_values(&["open"]).inc();
            return SETUP_RETRY;
        }
        if !self.ensure_shared(&policy).await {
            return fleet::SHARED_RETRY;
        }
        IssuanceLimits::ensure(
            &mut self.limits,
            policy.max_orders_per_hour,
            policy.max_orders_per_name_per_day,
        );
        self.ensure_dns(&policy);

        let desired = self.desired_names(&policy);
        self.withdraw_unwanted(&desired);
        self.mark_wanted(&desired);
        self.start_asks(&policy);
        self.forced.extend(self.acme.take_forced());
        self.forced.retain(|n| desired.contains_key(n));

        let now_unix = unix_seconds();
        let now = Instant::now();
        let served = self.acme.served();
        let mut next = IDLE_PASS;
        let mut names: Vec<(&String, &String)> = desired.iter().collect();
        names.sort();
        for (name, site) in names {
            if self.in_flight.contains(name) {
                continue;
            }
            let cert = served.get(name);
            let is_forced = self.forced.contains(name);
            if let Some(c) = cert {
                let renew_at = c.renew_at(policy.renew_remaining_fraction);
                if now_unix < renew_at && c.key_type == policy.key_type && !is_forced {
                    next = next.min(Duration::from_secs((renew_at - now_unix) as u64));
                    self.set_state(name, site, NameState::Valid, None);
                    continue;
                }
            }
            // Forced renewals wait out a backoff too (the admin API refuses
            // them meanwhile: acme/renew.rs).
            if let Some(until) = self.backoff_until.get(name)
                && *until > now
            {
                next = next.min(*until - now);
                continue;
            }
            // Another edge holds the name's lease: its certificate arrives
            // by NOTIFY; the lease is tried again only at the set time, not
            // at every pass (manager/fleet.rs).
            if let Some(until) = self.held_elsewhere.get(name)
                && *until > now
            {
                next = next.min(*until - now);
                continue;
            }
            if let Some(c) = cert
                && policy.configured_site(name).is_none()
            {
                // An on-demand name is re-approved before each renewal.
                let approved_at = self.on_demand.get(name).copied().unwrap_or(i64::MIN);
                if approved_at < c.renew_at(policy.renew_remaining_fraction) {
                    if let Some(ask) = &policy.ask
                        && self.acme.ask.lookup_or_queue(name, ask.max_pending) == AskState::Queued
                    {
                        self.acme.wake.notify_one();
                    }
                    continue;
                }
            }
            if policy.dns.is_some() && self.dns.is_none() {
                self.set_error(
                    name,
                    site,
                    "the DNS pre-check is not available; see the log",
                );
                continue;
            }
            if self.in_flight.len() >= policy.max_concurrent_orders {
                break;
            }
            let Some(limits) = self.limits.as_mut() else {
                break;
            };
            if let Some(wait) = limits.name_wait(name, now) {
                self.rate_limited(name, site, wait, LimitScope::Name);
                next = next.min(wait.max(Duration::from_secs(1)));
                continue;
            }
            let Some(account) = self.ensure_account(&policy).await else {
                return SETUP_RETRY;
            };
            let claim = match self
                .claim_shared(&policy, name, site, cert, is_forced)
                .await
            {
                fleet::Step::Order(claim) => claim,
                fleet::Step::Skip(wait) => {
                    next = next.min(wait);
                    continue;
                }
                fleet::Step::Stop => {
                    next = next.min(fleet::SHARED_RETRY);
                    break;
                }
            };
            let Some(limits) = self.limits.as_mut() else {
                break;
            };
            if let Err(wait) = limits.start(name, now) {
                if let Some(claim) = claim {
                    tokio::spawn(claim.release());
                }
                // Nothing else may start either until the global limit allows.
                self.rate_limited(name, site, wait, LimitScope::Global);
                next = next.min(wait.max(Duration::from_secs(1)));
                break;
            }
            self.forced.remove(name);
            self.spawn_order(&policy, account, name, site, cert.is_some(), claim);
        }
        self.publish_expiry();
        next.max(Duration::from_millis(50))
    }

    fn rate_limited(&self, name: &str, site: &str, wait: Duration, scope: LimitScope) {
        METRICS
            .acme_rate_limited
            .with_label_values(&[scope.as_label()])
            .inc();
        let at = unix_seconds() + wait.as_secs() as i64 + 1;
        self.set_state(name, site, NameState::RateLimited, Some(at));
    }

    fn set_error(&self, name: &str, site: &str, error: &str) {
        if let Ok(mut status) = self.acme.status.lock() {
            let s = status
                .entry(name.to_string())
                .or_insert_with(|| NameStatus::new(site));
            s.last_error = Some(error.to_string());
        }
    }

    /// An order task panicked: the name leaves `in_flight` and backs off.
    fn order_crashed(&mut self, e: tokio::task::JoinError) {
        tracing::error!(error = %e, "acme order task failed");
        let Some(name) = self.order_names.remove(&e.id()) else {
            return;
        };
        self.in_flight.remove(&name);
        if let Some(policy) = self.acme.policy() {
            let wait = policy.backoff(1);
            self.backoff_until.insert(name, Instant::now() + wait);
        }
    }

    /// Site domains plus approved on-demand names (and on-demand names
    /// already served, unless the `ask` endpoint has since refused them).
    fn desired_names(&self, policy: &AcmePolicy) -> HashMap<String, String> {
        let mut desired = policy.names.clone();
        for name in self.on_demand.keys().chain(self.acme.served().keys()) {
            if let Some(site) = policy.on_demand_site(name)
                && self.acme.ask.fresh(name) != Some(AskVerdict::Denied)
            {
                desired.insert(name.clone(), site.to_string());
            }
        }
        desired
    }

    /// Stops serving, deletes from the store and forgets the status of
    /// names no longer wanted (a running order's result is dropped).
    fn withdraw_unwanted(&mut self, desired: &HashMap<String, String>) {
        let served = self.acme.served();
        if served.keys().any(|n| !desired.contains_key(n)) {
            let mut kept = HashMap::with_capacity(served.len());
            for (name, cert) in served.iter() {
                if desired.contains_key(name) {
                    kept.insert(name.clone(), cert.clone());
                    continue;
                }
                tracing::info!(%name, "acme: name no longer authorised; certificate withdrawn and deleted");
                if let Some((store, _)) = &self.store
                    && let Err(e) = store.remove_cert(name)
                {
                    METRICS.acme_store_errors.with_label_values(&["save"]).inc();
                    tracing::error!(error = %e, "acme: could not delete a withdrawn certificate");
                }
            }
            self.acme.set_served(kept);
        }
        self.on_demand.retain(|n, _| desired.contains_key(n));
        if let Some(limits) = self.limits.as_mut() {
            limits.retain(|n| desired.contains_key(n));
        }
        if let Ok(mut status) = self.acme.status.lock() {
            status.retain(|n, _| desired.contains_key(n));
            for (name, site) in desired {
                status
                    .entry(name.clone())
                    .or_insert_with(|| NameStatus::new(site));
            }
        }
        self.backoff_until.retain(|n, _| desired.contains_key(n));
        let now = Instant::now();
        self.held_elsewhere
            .retain(|n, until| *until > now && desired.contains_key(n));
    }

    fn spawn_order(
        &mut self,
        policy: &AcmePolicy,
        account: instant_acme::Account,
        name: &str,
        site: &str,
        renewal: bool,
        claim: Option<crate::shared::claim::SharedClaim>,
    ) {
        self.in_flight.insert(name.to_string());
        if let Ok(mut status) = self.acme.status.lock()
            && let Some(s) = status.get_mut(name)
        {
            s.state = NameState::Issuing;
            s.attempts += 1;
            s.next_attempt_unix = None;
        }
        let acme = self.acme.clone();
        let dns = self.dns.clone();
        let kinds = policy.challenges.clone();
        let key_type = policy.key_type;
        let timeout = policy.order_timeout;
        let (name, site) = (name.to_string(), site.to_string());
        tracing::info!(%name, renewal, "acme: ordering a certificate");
        let task_name = name.clone();
        let handle = self.orders.spawn(async move {
            let started = Instant::now();
            let outcome = match dns.as_ref() {
                Some(dns) => match dns.check(&name).await {
                    DnsVerdict::PointsHere => None,
                    DnsVerdict::Elsewhere(ips) => Some(Outcome::DnsMismatch(format!(
                        "{name} resolves to {ips:?}, not to this edge; point a CNAME at the edge"
                    ))),
                    DnsVerdict::Failed(e) => {
                        Some(Outcome::DnsMismatch(format!("DNS lookup failed: {e}")))
                    }
                },
                None => None,
            };
            let outcome = match outcome {
                Some(o) => o,
                None => {
                    let obtain =
                        order::obtain(&account, &name, &kinds, key_type, &acme.challenges, timeout);
                    let obtained = match &claim {
                        Some(claim) => claim.hold_while(obtain).await,
                        None => obtain.await,
                    };
                    match obtained {
                        Ok(issued) => Outcome::Issued(issued),
                        Err(errors) => Outcome::Failed(errors),
                    }
                }
            };
            if let Some(claim) = claim {
                match &outcome {
                    Outcome::Issued(issued) => claim.store_and_release(key_type, issued).await,
                    _ => claim.release().await,
                }
            }
            OrderDone {
                name,
                site,
                key_type,
                started,
                renewal,
                outcome,
            }
        });
        self.order_names.insert(handle.id(), task_name);
    }

    fn set_state(&self, name: &str, site: &str, state: NameState, next: Option<i64>) {
        if let Ok(mut status) = self.acme.status.lock() {
            let s = status
                .entry(name.to_string())
                .or_insert_with(|| NameStatus::new(site));
            s.state = state;
            s.next_attempt_unix = next;
        }
    }

    /// Refreshes the expiry gauge (see [`super::expiry`]) and the backoff gauge.
    fn publish_expiry(&mut self) {
        let sites = self.edge.site_domains();
        super::expiry::publish(&sites, &self.acme.served(), &mut self.expiry_sites);
        let now = Instant::now();
        METRICS
            .acme_names_in_backoff
            .set(self.backoff_until.values().filter(|t| **t > now).count() as i64);
    }
}
