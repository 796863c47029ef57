//! Per-name certificate status, as `/admin/certs` shows it.

use serde::Serialize;

use super::Acme;

/// Where a name stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NameState {
    /// Eligible, no order started yet.
    Pending,
    /// An order is running.
    Issuing,
    /// A certificate is served and not yet due for renewal.
    Valid,
    /// Failed; waiting for `next_attempt_unix`.
    Backoff,
    /// Due, but held back by `max_orders_per_hour` / `max_orders_per_name_per_day`.
    RateLimited,
    /// DNS does not point at this edge yet (`acme.dns_check`).
    DnsMismatch,
}

/// Status of one name.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NameStatus {
    /// Site the name belongs to.
    pub site: String,
    /// Current state.
    pub state: NameState,
    /// Consecutive failed orders (reset by a success).
    pub failures: u32,
    /// Attempts (DNS check plus order) started since the process started.
    pub attempts: u32,
    /// Earliest next order, Unix seconds (backoff or rate limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_unix: Option<i64>,
    /// The last failure, as the CA or the checks explained it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Challenge type of the last successful validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_challenge: Option<&'static str>,
}

impl NameStatus {
    /// A fresh status for a newly eligible name.
    pub(crate) fn new(site: &str) -> Self {
        Self {
            site: site.to_string(),
            state: NameState::Pending,
            failures: 0,
            attempts: 0,
            next_attempt_unix: None,
            last_error: None,
            last_challenge: None,
        }
    }
}

#[derive(Serialize)]
struct CertView {
    name: String,
    #[serde(flatten)]
    status: Option<NameStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after_unix: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    renew_at_unix: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_type: Option<&'static str>,
}

/// The `/admin/certs` document: ACME settings and every managed name.
pub fn snapshot(acme: &Acme) -> serde_json::Value {
    let Some(policy) = acme.policy() else {
        return serde_json::json!({ "acme": null, "names": [] });
    };
    let served = acme.served();
    let statuses = acme.status.lock().map(|s| s.clone()).unwrap_or_default();
    let mut names: Vec<&String> = statuses.keys().chain(served.keys()).collect();
    names.sort();
    names.dedup();
    let views: Vec<CertView> = names
        .into_iter()
        .map(|name| {
            let cert = served.get(name);
            CertView {
                name: name.clone(),
                status: statuses.get(name).cloned(),
                not_after_unix: cert.map(|c| c.not_after),
                renew_at_unix: cert.map(|c| c.renew_at(policy.renew_remaining_fraction)),
                key_type: cert.map(|c| c.key_type.as_str()),
            }
        })
        .collect();
    serde_json::json!({
        "acme": {
            "directory_url": policy.directory_url,
            "challenges": policy.challenges.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "on_demand": policy.ask.is_some(),
            "dns_check": policy.dns.is_some(),
        },
        "names": views,
    })
}
