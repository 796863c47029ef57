//! The `[acme]` table: automatic certificates for site domains.
//!
//! Present means on. Every key is reloadable: a reload changes which names
//! are eligible, the limits and the challenge order without touching the
//! certificates already served.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::defaults;

/// Automatic certificates over ACME (RFC 8555).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// The CA's directory URL (`https://…/directory`).
    pub directory_url: String,
    /// Account contacts (`mailto:` URLs) the CA may write to about expiry.
    #[serde(default)]
    pub contact: Vec<String>,
    /// Extra root certificate (PEM) trusted for the CA's own HTTPS API, for
    /// private or test CAs such as pebble. Absent = the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Challenge types in order of preference; when one fails the next is tried.
    #[serde(default = "defaults::acme_challenges")]
    pub challenges: Vec<ChallengeKind>,
    /// File holding the 32-byte storage key (base64) that encrypts stored
    /// private keys. Exactly one of this and `storage_key_env` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the storage key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_key_env: Option<String>,
    /// Key algorithm of issued certificates; changing it renews every
    /// certificate with the new algorithm.
    #[serde(default = "defaults::acme_key_type")]
    pub key_type: AcmeKeyType,
    /// Renew when less than this fraction of a certificate's lifetime remains.
    #[serde(default = "defaults::acme_renew_remaining_fraction")]
    pub renew_remaining_fraction: f64,
    /// Orders started per hour across all names (burst = the same number).
    #[serde(default = "defaults::acme_max_orders_per_hour")]
    pub max_orders_per_hour: u32,
    /// Orders started per name per day.
    #[serde(default = "defaults::acme_max_orders_per_name_per_day")]
    pub max_orders_per_name_per_day: u32,
    /// Orders in flight at once.
    #[serde(default = "defaults::acme_max_concurrent_orders")]
    pub max_concurrent_orders: u32,
    /// First wait after a name fails validation; doubles per failure.
    #[serde(default = "defaults::acme_backoff_initial_seconds")]
    pub backoff_initial_seconds: u64,
    /// Longest wait between attempts for a failing name.
    #[serde(default = "defaults::acme_backoff_max_seconds")]
    pub backoff_max_seconds: u64,
    /// Time allowed for one whole order (challenges, finalisation, download).
    #[serde(default = "defaults::acme_order_timeout_seconds")]
    pub order_timeout_seconds: u64,
    /// On-demand issuance for names under a site's `*.` wildcard domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand: Option<OnDemand>,
    /// Checks that a name points at this edge before ordering for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_check: Option<DnsCheck>,
    /// Operator-forced renewals (`POST /admin/certs/renew`) accepted per
    /// name in any 7 days; 0 refuses them all. Mirrors the CA's duplicate
    /// certificate limit (Let's Encrypt: 5 per exact set of names per week).
    #[serde(default = "defaults::acme_max_forced_renewals_per_name_per_week")]
    pub max_forced_renewals_per_name_per_week: u32,
    /// State shared by a fleet of edges in PostgreSQL (certificates, one
    /// order per name fleet-wide, challenge responses, limits). Absent =
    /// this edge alone, exactly as without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<AcmeShared>,
}

/// `[acme.shared]`: the fleet's shared ACME store in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeShared {
    /// `postgres://user[:password]@host[:port]/database` (the password, if
    /// any, is redacted from `/admin/config` and never logged).
    pub postgres_url: String,
    /// Schema holding the tables (created if missing). Edges sharing a
    /// schema form one fleet.
    #[serde(default = "defaults::acme_shared_schema")]
    pub schema: String,
    /// Lifetime of the per-name order lease; the holder renews it every
    /// third of it, and a crashed holder's lease is taken over after it.
    #[serde(default = "defaults::acme_shared_lease_seconds")]
    pub lease_seconds: u64,
    /// Poll for certificates written by other edges this often (a fallback
    /// for missed notifications).
    #[serde(default = "defaults::acme_shared_poll_seconds")]
    pub poll_seconds: u64,
    /// Bound on connecting and on each store operation of the manager.
    #[serde(default = "defaults::acme_shared_timeout_ms")]
    pub timeout_ms: u64,
    /// Bound on the store lookup of a challenge response this edge does not
    /// hold (the CA's validation request waits at most this long).
    #[serde(default = "defaults::acme_shared_challenge_lookup_ms")]
    pub challenge_lookup_ms: u64,
    /// Shared certificates and on-demand approvals of names no edge has
    /// covered for this long are deleted (every edge marks the names it
    /// covers every quarter of it, at most hourly).
    #[serde(default = "defaults::acme_shared_retain_unwanted_hours")]
    pub retain_unwanted_hours: u64,
}

/// An ACME challenge type the edge can answer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChallengeKind {
    /// HTTP-01, answered on the plain HTTP listener (port 80 in production).
    #[serde(rename = "http-01")]
    Http01,
    /// TLS-ALPN-01, answered on the HTTPS listener (port 443 in production).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl ChallengeKind {
    /// The ACME name of the challenge type (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Key algorithm of issued certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcmeKeyType {
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
}

impl AcmeKeyType {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeKeyType::EcdsaP256 => "ecdsa-p256",
            AcmeKeyType::EcdsaP384 => "ecdsa-p384",
        }
    }
}

impl fmt::Display for AcmeKeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// On-demand issuance: a handshake for an unknown name under a site's
/// wildcard domain asks `ask_url` whether to order a certificate for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDemand {
    /// Called as `GET {ask_url}?domain=NAME`; any 2xx approves the name.
    pub ask_url: String,
    /// Time allowed for one `ask` request.
    #[serde(default = "defaults::acme_ask_timeout_ms")]
    pub ask_timeout_ms: u64,
    /// How long an answer (approval or refusal) is remembered.
    #[serde(default = "defaults::acme_ask_cache_seconds")]
    pub ask_cache_seconds: u64,
    /// Names waiting for an `ask` answer at once; further names are refused
    /// until the queue drains (counted).
    #[serde(default = "defaults::acme_ask_max_pending")]
    pub max_pending: u32,
}

/// Pre-validation: the name must resolve to one of `addresses` (following
/// CNAMEs) before the edge orders a certificate for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsCheck {
    /// DNS server (`ip:port`) to ask; absent = the system resolver configuration.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_socket_addr"
    )]
    pub resolver: Option<SocketAddr>,
    /// Public addresses of this edge; a name must resolve to one of them.
    pub addresses: Vec<IpAddr>,
}

/// (De)serializes an optional `"ip:port"`.
mod opt_socket_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid socket address {text:?}: expected \"ip:port\" such as \"127.0.0.1:53\""
            ))
        })
    }
}
