//! Operator-forced renewals (`POST /admin/certs/renew?name=`), bounded like
//! the CA bounds duplicate certificates, and by the manager's own backoff.
//!
//! A forced renewal is refused (the admin API answers 429 with
//! `Retry-After`) while the name waits out a backoff after failures or an
//! issuance limit (its `next_attempt_unix` in `/admin/certs`), and when
//! `acme.max_forced_renewals_per_name_per_week` forced renewals of the name
//! were already accepted in the last 7 days (Let's Encrypt allows 5
//! duplicate certificates per exact set of names per week). An accepted
//! renewal is still subject to the manager's issuance limits.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Acme;
use super::limits::{NameWindow, WEEK};
use super::status::NameState;
use crate::metrics::METRICS;
use edge_certs::clock::unix_seconds;

/// Accepted forced renewals per name, over the last week.
pub(crate) struct ForcedRenewals(Mutex<NameWindow>);

impl Default for ForcedRenewals {
    fn default() -> Self {
        Self(Mutex::new(NameWindow::new(
            edge_config::defaults::acme_max_forced_renewals_per_name_per_week(),
            WEEK,
        )))
    }
}

/// Why a forced renewal was refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewLimit {
    /// The name is backing off after failed orders (or a DNS mismatch).
    Backoff,
    /// The name is held back by `max_orders_per_hour` / `max_orders_per_name_per_day`.
    RateLimited,
    /// `acme.max_forced_renewals_per_name_per_week` is spent.
    Weekly,
}

/// The answer to a forced renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewAnswer {
    /// Renewed on the manager's next pass.
    Scheduled,
    /// Not a name this edge manages over ACME.
    NotManaged,
    /// An order for the name is running now.
    InProgress,
    /// Refused until `retry_after` has passed.
    Refused {
        /// Which limit refused it.
        limit: RenewLimit,
        /// How long until a renewal may be accepted.
        retry_after: Duration,
        /// The explanation for the operator.
        reason: String,
    },
}

impl RenewAnswer {
    /// Label of `edge_acme_forced_renewals_total{outcome}`.
    pub(crate) fn as_label(&self) -> &'static str {
        match self {
            RenewAnswer::Scheduled => "scheduled",
            RenewAnswer::NotManaged => "not_managed",
            RenewAnswer::InProgress => "in_progress",
            RenewAnswer::Refused { limit, .. } => match limit {
                RenewLimit::Backoff => "refused_backoff",
                RenewLimit::RateLimited => "refused_rate_limited",
                RenewLimit::Weekly => "refused_weekly_limit",
            },
        }
    }
}

impl Acme {
    /// Asks for `name` to be renewed now (after a revocation or key
    /// compromise), within the limits above. Counted in
    /// `edge_acme_forced_renewals_total`.
    pub fn force_renewal(&self, name: &str) -> RenewAnswer {
        let answer = self.decide_renewal(&name.trim_end_matches('.').to_ascii_lowercase());
        METRICS
            .acme_forced_renewals
            .with_label_values(&[answer.as_label()])
            .inc();
        answer
    }

    fn decide_renewal(&self, name: &str) -> RenewAnswer {
        let policy = self.policy();
        let managed = self.served().contains_key(name)
            || policy
                .as_ref()
                .is_some_and(|p| p.configured_site(name).is_some());
        let Some(policy) = policy.filter(|_| managed) else {
            return RenewAnswer::NotManaged;
        };
        if let Some(answer) = self.manager_holds(name) {
            return answer;
        }
        // Every accepted request is charged, even one for a name already
        // waiting for the manager's pass: the answer never depends on timing.
        let Ok(mut window) = self.forced_renewals.0.lock() else {
            return RenewAnswer::InProgress;
        };
        let limit = policy.max_forced_renewals_per_name_per_week;
        window.set_limit(limit);
        let now = Instant::now();
        if let Some(wait) = window.wait(name, now) {
            return RenewAnswer::Refused {
                limit: RenewLimit::Weekly,
                retry_after: wait.max(Duration::from_secs(1)),
                reason: format!(
                    "{name} had {limit} forced renewals in the last 7 days \
                     (acme.max_forced_renewals_per_name_per_week)"
                ),
            };
        }
        window.charge(name, now);
        if let Ok(mut forced) = self.forced.lock() {
            forced.insert(name.to_string());
        }
        self.wake.notify_one();
        RenewAnswer::Scheduled
    }

    /// The manager's own hold on `name`: an order running, a backoff or an
    /// issuance limit not yet over.
    fn manager_holds(&self, name: &str) -> Option<RenewAnswer> {
        let status = self.status.lock().ok()?;
        let s = status.get(name)?;
        let wait = s.next_attempt_unix.map_or(0, |t| t - unix_seconds());
        let limit = match s.state {
            NameState::Issuing => return Some(RenewAnswer::InProgress),
            NameState::Backoff | NameState::DnsMismatch => RenewLimit::Backoff,
            NameState::RateLimited => RenewLimit::RateLimited,
            NameState::Pending | NameState::Valid => return None,
        };
        if wait <= 0 {
            return None;
        }
        let why = match limit {
            RenewLimit::Backoff => format!(
                "{name} is backing off after {} failed attempt(s)",
                s.failures
            ),
            _ => format!("{name} is held back by the issuance limits"),
        };
        let last = s
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        Some(RenewAnswer::Refused {
            limit,
            retry_after: Duration::from_secs(wait as u64),
            reason: format!("{why}{last}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::AcmePolicy;
    use crate::status::NameStatus;
    use crate::storage_key::StorageKey;
    use edge_certs::CertMap;

    const NAME: &str = "stats.a.example";

    fn acme(extra: &str) -> Acme {
        let config: edge_config::Config = toml::from_str(&format!(
            r#"
            [[sites]]
            id = "a"
            domains = ["{NAME}"]
            [acme]
            directory_url = "https://ca.example/dir"
            storage_key_env = "X"
            {extra}
            "#
        ))
        .unwrap();
        let key = Arc::new(StorageKey::from_bytes(&[1; 32]).unwrap());
        let settings = config.acme.clone().unwrap();
        let policy = AcmePolicy::build(&config, &settings, key, &CertMap::new(&[]));
        let acme = Acme::default();
        acme.set_policy(Some(Arc::new(policy)));
        acme
    }

    #[test]
    fn the_weekly_limit_refuses_with_the_wait_and_the_reason() {
        let a = acme("max_forced_renewals_per_name_per_week = 2");
        assert_eq!(a.force_renewal("unknown.example"), RenewAnswer::NotManaged);
        assert_eq!(a.force_renewal("STATS.a.example."), RenewAnswer::Scheduled);
        assert_eq!(a.force_renewal(NAME), RenewAnswer::Scheduled);
        match a.force_renewal(NAME) {
            RenewAnswer::Refused {
                limit: RenewLimit::Weekly,
                retry_after,
                reason,
            } => {
                assert!(
                    retry_after > WEEK - Duration::from_secs(60),
                    "{retry_after:?}"
                );
                assert!(reason.contains("2 forced renewals"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.take_forced().into_iter().collect::<Vec<_>>(),
            vec![NAME.to_string()]
        );
        let none = acme("max_forced_renewals_per_name_per_week = 0");
        assert!(matches!(
            none.force_renewal(NAME),
            RenewAnswer::Refused {
                limit: RenewLimit::Weekly,
                ..
            }
        ));
    }

    #[test]
    fn a_backoff_or_a_running_order_holds_renewals_back() {
        let a = acme("");
        let mut s = NameStatus::new("a");
        s.state = NameState::Backoff;
        s.failures = 3;
        s.next_attempt_unix = Some(unix_seconds() + 120);
        s.last_error = Some("http-01 validation failed".into());
        a.status.lock().unwrap().insert(NAME.into(), s.clone());
        match a.force_renewal(NAME) {
            RenewAnswer::Refused {
                limit: RenewLimit::Backoff,
                retry_after,
                reason,
            } => {
                assert!(
                    (118..=120).contains(&retry_after.as_secs()),
                    "{retry_after:?}"
                );
                assert!(
                    reason.contains("after 3 failed")
                        && reason.contains("http-01 validation failed"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        s.state = NameState::Issuing;
        a.status.lock().unwrap().insert(NAME.into(), s.clone());
        assert_eq!(a.force_renewal(NAME), RenewAnswer::InProgress);
        s.state = NameState::Backoff;
        s.next_attempt_unix = Some(unix_seconds() - 1);
        a.status.lock().unwrap().insert(NAME.into(), s);
        assert_eq!(
            a.force_renewal(NAME),
            RenewAnswer::Scheduled,
            "backoff over"
        );
        assert!(a.take_forced().contains(NAME));
    }
}
