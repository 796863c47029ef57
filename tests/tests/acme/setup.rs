//! An edge with `[acme]` pointed at its own pebble, and the operator's
//! on-demand `ask` endpoint, for the ACME scenarios.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edge_tests::pebble::{Pebble, Served, assert_no_certificate, tls_connect, write_storage_key};
use edge_tests::*;
use rustls::pki_types::CertificateDer;

pub const TOPIC: &str = "acme-events";

pub struct Setup {
    pub dir: tempfile::TempDir,
    _broker: Broker,
    pub pebble: Pebble,
    pub edge: Edge,
    pub ports: EdgePorts,
    /// The edge without its site and `[acme]` table (see [`Setup::config`]).
    base: EdgeUnderTest,
    storage_key: PathBuf,
}

impl Setup {
    /// An edge with `[acme]` pointed at a fresh pebble, serving `domains`
    /// for site `s` (plus `localhost`, which is never ordered).
    pub async fn start(validity_seconds: u64, domains: &[&str], acme_extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start();
        broker.create_topic(TOPIC, 1).await;
        let key = BackendKey::generate(&dir.path().join("keys"));
        let base = EdgeUnderTest::new(dir.path(), &broker.addr, TOPIC, &key).plain_http("redirect");
        let ports = base.ports;
        let pebble = Pebble::start(dir.path(), &ports, validity_seconds);
        let storage_key = dir.path().join("storage.key");
        write_storage_key(&storage_key);
        let config = with_acme(&base, &pebble, &storage_key, domains, acme_extra);
        Setup {
            edge: config.start().await,
            _broker: broker,
            pebble,
            ports,
            base,
            storage_key,
            dir,
        }
    }

    /// The config serving `domains` (and `localhost`) with `acme_extra` in `[acme]`.
    pub fn config(&self, domains: &[&str], acme_extra: &str) -> EdgeUnderTest {
        with_acme(
            &self.base,
            &self.pebble,
            &self.storage_key,
            domains,
            acme_extra,
        )
    }

    /// Rewrites the config and reloads; panics unless it applied.
    pub async fn reload(&self, domains: &[&str], acme_extra: &str) {
        self.config(domains, acme_extra).write();
        let (status, body) = self.edge.reload().await;
        assert_eq!(status, 200, "{body}");
    }

    /// Waits until the edge serves `name` a chain that verifies against pebble's root.
    pub async fn wait_for_cert(&self, name: &str, timeout: Duration) -> Served {
        let root = self.pebble.root().await;
        let deadline = Instant::now() + timeout;
        loop {
            match tls_connect(self.ports.https, name, &root).await {
                Ok(served) => return served,
                Err(e) if Instant::now() > deadline => panic!(
                    "no valid certificate for {name} within {timeout:?}: {e}\nedge log:\n{}\ncerts: {}",
                    self.edge.log(),
                    self.certs().await
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Handshakes for `name`, asserts the edge refused it with an
    /// `access_denied` alert, and waits until exactly one more handshake is
    /// counted under `outcome` (`unknown_sni`, `no_cert_yet`).
    pub async fn assert_refused(&self, root: &CertificateDer<'static>, name: &str, outcome: &str) {
        let before = self.handshakes(outcome).await;
        assert_no_certificate(self.ports.https, name, root).await;
        assert_eventually!(
            self.handshakes(outcome).await >= before + 1.0,
            Duration::from_secs(10),
            "the refusal of {name} was not counted as {outcome}: {}",
            self.edge.metrics().await
        );
        assert_eq!(self.handshakes(outcome).await, before + 1.0, "{name}");
    }

    /// `edge_tls_handshakes_total{outcome}`.
    pub async fn handshakes(&self, outcome: &str) -> f64 {
        self.edge
            .metric("edge_tls_handshakes_total", &[("outcome", outcome)])
            .await
    }

    pub async fn certs(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/admin/certs", self.ports.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The names `/admin/certs` lists, in its order.
    pub async fn cert_names(&self) -> Vec<String> {
        self.certs().await["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// The `/admin/certs` entry of `name` (`null` when it is not listed).
    pub async fn cert_status(&self, name: &str) -> serde_json::Value {
        self.certs().await["names"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn orders(&self, challenge: &str, outcome: &str) -> f64 {
        self.edge
            .metric(
                "edge_acme_orders_total",
                &[("challenge", challenge), ("outcome", outcome)],
            )
            .await
    }
}

fn with_acme(
    base: &EdgeUnderTest,
    pebble: &Pebble,
    storage_key: &std::path::Path,
    domains: &[&str],
    acme_extra: &str,
) -> EdgeUnderTest {
    let mut all = vec!["localhost"];
    all.extend_from_slice(domains);
    base.clone()
        .site("s", &all)
        .raw(&pebble.acme_table(storage_key, acme_extra))
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub use edge_tests::ask::AskServer;
