//! Reading a running edge: one [`Snapshot`] per refresh from its admin
//! listener (`/metrics`, `/readyz`, `/admin/spool`, `/admin/certs`).

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::samples::Samples;

/// How long one admin request may take before the refresh counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything read from the edge in one refresh.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the `/metrics` answer arrived.
    pub at: Instant,
    /// The counters and gauges of `/metrics`.
    pub samples: Samples,
    /// `/readyz`: ready, and the answer's text.
    pub ready: Result<(bool, String), String>,
    /// `/admin/spool`.
    pub spool: Result<SpoolStatus, String>,
    /// `/admin/certs`.
    pub certs: Result<CertsStatus, String>,
}

/// The parts of `GET /admin/spool` the view shows.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SpoolStatus {
    /// `null`, `"max_bytes"` or `"min_free_disk_bytes"`.
    #[serde(default)]
    pub full: Option<String>,
    /// Segment files on disk.
    #[serde(default)]
    pub segments: u64,
    /// The Kafka side.
    pub broker: BrokerStatus,
}

/// `broker` of `/admin/spool`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BrokerStatus {
    /// The topic records are produced to.
    #[serde(default)]
    pub topic: String,
    /// The shipper's last failed delivery.
    #[serde(default)]
    pub last_error: Option<LastError>,
}

/// `broker.last_error` of `/admin/spool`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LastError {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The error as the Kafka client reported it.
    pub error: String,
}

/// `GET /admin/certs`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CertsStatus {
    /// The `[acme]` settings in effect; `None` when ACME is off.
    pub acme: Option<serde_json::Value>,
    /// Every managed name.
    #[serde(default)]
    pub names: Vec<CertName>,
}

/// One entry of `names` in `/admin/certs`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CertName {
    /// The DNS name.
    pub name: String,
    /// `pending`, `issuing`, `valid`, `backoff`, `rate_limited`,
    /// `dns_mismatch`; absent for a served certificate with no status.
    #[serde(default)]
    pub state: Option<String>,
    /// Earliest next order (backoff or rate limit), Unix seconds.
    #[serde(default)]
    pub next_attempt_unix: Option<i64>,
    /// The certificate's `notAfter`, Unix seconds.
    #[serde(default)]
    pub not_after_unix: Option<i64>,
    /// The last failure.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// An HTTP client for one admin listener.
pub struct Admin {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Admin {
    /// A client for the admin listener at `base` (`http://host:port`),
    /// sending `token` as a bearer token when given.
    pub fn new(base: String, token: Option<String>) -> anyhow::Result<Admin> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("edge-top/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Admin {
            base,
            token,
            client,
        })
    }

    /// The admin listener's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Reads one snapshot. Fails when `/metrics` cannot be read; the other
    /// endpoints' failures are kept in their fields.
    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        let (metrics, ready, spool, certs) = tokio::join!(
            self.get("/metrics"),
            self.get("/readyz"),
            self.get("/admin/spool"),
            self.get("/admin/certs"),
        );
        let at = Instant::now();
        let (status, body) = metrics?;
        if status != 200 {
            return Err(explain_status("/metrics", status, &body));
        }
        let samples = Samples::parse(&body)?;
        let ready = ready.and_then(|(status, body)| match status {
            200 | 503 => Ok((status == 200, first_line(&body))),
            _ => Err(explain_status("/readyz", status, &body)),
        });
        Ok(Snapshot {
            at,
            samples,
            ready,
            spool: json_of("/admin/spool", spool),
            certs: json_of("/admin/certs", certs),
        })
    }

    async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| describe(&e))?;
        Ok((status, body))
    }
}

fn json_of<T: serde::de::DeserializeOwned>(
    path: &str,
    answer: Result<(u16, String), String>,
) -> Result<T, String> {
    let (status, body) = answer?;
    if status != 200 {
        return Err(explain_status(path, status, &body));
    }
    serde_json::from_str(&body).map_err(|e| format!("{path}: unexpected JSON: {e}"))
}

/// A request failure in one short line: the root cause of a failed
/// connection, or the error chain without the URL (the screen shows it).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
    }
    let mut chain = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    if e.is_connect() {
        let root = chain.last().cloned().unwrap_or_default();
        return format!("cannot connect: {root}");
    }
    // reqwest's own message names the URL, which the screen already shows
    let mut text = match chain[0].split_once(" for url (") {
        Some((head, _)) => head.to_string(),
        None => chain[0].clone(),
    };
    for cause in &chain[1..] {
        if !text.contains(cause.as_str()) {
            text.push_str(": ");
            text.push_str(cause);
        }
    }
    text
}

/// What an error status of the admin API means for `edge top`.
fn explain_status(path: &str, status: u16, body: &str) -> String {
    let hint = match status {
        401 => " (pass --token-file, or --config naming admin.token_file)",
        421 => " (this Host is not in admin.allowed_hosts)",
        _ => "",
    };
    format!("{path}: HTTP {status} {}{hint}", first_line(body))
}

fn first_line(body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    line.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn admin_json_documents_parse() {
        let spool: SpoolStatus = serde_json::from_str(
            r#"{"dir":"/d","bytes":10,"records":2,"segments":1,"oldest_record_age_seconds":1.5,
                "acked_seq":3,"writable":true,"full":null,"corrupt_skipped":0,"torn_bytes_truncated":0,
                "broker":{"ready":false,"topic":"t","last_error":{"at_ms":5,"error":"Broker: down"}}}"#,
        )
        .unwrap();
        assert_eq!(spool.segments, 1);
        assert_eq!(spool.broker.last_error.unwrap().error, "Broker: down");
        let certs: CertsStatus = serde_json::from_str(
            r#"{"acme":{"directory_url":"x"},"names":[{"name":"a.test","site":"a","state":"backoff",
                "failures":2,"attempts":2,"next_attempt_unix":99,"last_error":"nope"}]}"#,
        )
        .unwrap();
        assert!(certs.acme.is_some());
        assert_eq!(certs.names[0].state.as_deref(), Some("backoff"));
        let off: CertsStatus = serde_json::from_str(r#"{"acme":null,"names":[]}"#).unwrap();
        assert!(off.acme.is_none());
    }

    #[test]
    fn error_statuses_say_what_to_do() {
        let e = explain_status("/metrics", 401, "admin token required\n");
        assert_eq!(
            e,
            "/metrics: HTTP 401 admin token required (pass --token-file, or --config naming admin.token_file)"
        );
        assert!(explain_status("/metrics", 421, "").contains("admin.allowed_hosts"));
    }
}
