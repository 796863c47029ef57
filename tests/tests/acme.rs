//! Automatic certificates against a real ACME CA (pebble), verified by a
//! real TLS client that trusts only pebble's root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edge_tests::pebble::{Pebble, tls_connect, write_storage_key};
use edge_tests::*;

struct Setup {
    dir: tempfile::TempDir,
    _broker: Broker,
    pebble: Pebble,
    edge: Edge,
    ports: EdgePorts,
    storage_key: PathBuf,
    key: BackendKey,
    broker_addr: String,
}

const TOPIC: &str = "acme-events";

impl Setup {
    /// An edge with `[acme]` pointed at a fresh pebble, serving `domains`
    /// for site `s` (plus `localhost`, which is never ordered).
    async fn start(validity_seconds: u64, domains: &[&str], acme_extra: &str) -> Setup {
        init_crypto();
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start();
        broker.create_topic(TOPIC, 1).await;
        let key = BackendKey::generate(&dir.path().join("keys"));
        let ports = EdgePorts::pick();
        let pebble = Pebble::start(dir.path(), &ports, validity_seconds);
        let storage_key = dir.path().join("storage.key");
        write_storage_key(&storage_key);
        let config = make_config(
            &ports,
            dir.path(),
            &broker.addr,
            &key,
            &pebble,
            &storage_key,
            domains,
            acme_extra,
        );
        let edge = Edge::start(dir.path(), ports, &config).await;
        Setup {
            broker_addr: broker.addr.clone(),
            _broker: broker,
            pebble,
            edge,
            ports,
            storage_key,
            key,
            dir,
        }
    }

    fn config(&self, domains: &[&str], acme_extra: &str) -> String {
        make_config(
            &self.ports,
            self.dir.path(),
            &self.broker_addr,
            &self.key,
            &self.pebble,
            &self.storage_key,
            domains,
            acme_extra,
        )
    }

    /// Rewrites the config and reloads; panics unless it applied.
    async fn reload(&self, domains: &[&str], acme_extra: &str) {
        std::fs::write(&self.edge.config_path, self.config(domains, acme_extra)).unwrap();
        let (status, body) = self.edge.reload().await;
        assert_eq!(status, 200, "{body}");
    }

    /// Waits until the edge serves `name` a chain that verifies against pebble's root.
    async fn wait_for_cert(&self, name: &str, timeout: Duration) -> pebble::Served {
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

    async fn certs(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/admin/certs", self.ports.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The `/admin/certs` entry of `name` (`null` when it is not listed).
    async fn cert_status(&self, name: &str) -> serde_json::Value {
        self.certs().await["names"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or_default()
    }

    async fn orders(&self, challenge: &str, outcome: &str) -> f64 {
        self.edge
            .metric(
                "edge_acme_orders_total",
                &[("challenge", challenge), ("outcome", outcome)],
            )
            .await
    }
}

use edge_tests::pebble;

#[allow(clippy::too_many_arguments)]
fn make_config(
    ports: &EdgePorts,
    dir: &std::path::Path,
    broker: &str,
    key: &BackendKey,
    pebble: &Pebble,
    storage_key: &std::path::Path,
    domains: &[&str],
    acme_extra: &str,
) -> String {
    let mut all = vec!["localhost"];
    all.extend_from_slice(domains);
    edge_config(
        ports,
        &dir.join("data"),
        broker,
        TOPIC,
        key,
        &[],
        &[SiteSpec {
            id: "s",
            domains: &all,
        }],
        &pebble.acme_table(storage_key, acme_extra),
    )
    .replace("plain_http = \"events\"", "plain_http = \"redirect\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_added_by_reload_get_certificates_over_http01_and_tls_alpn01() {
    let s = Setup::start(3600, &[], "challenges = [\"http-01\"]").await;
    let root = s.pebble.root().await;
    // Nothing is orderable yet (localhost is single-label): no order at all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.pebble.orders(), 0);
    let refused = tls_connect(s.ports.https, "h1.example.com", &root).await;
    assert!(refused.is_err(), "no certificate may exist yet");

    // HTTP-01: add the domain, reload, and the certificate appears.
    s.reload(&["h1.example.com"], "challenges = [\"http-01\"]")
        .await;
    let started = Instant::now();
    let served = s
        .wait_for_cert("h1.example.com", Duration::from_secs(30))
        .await;
    let took = started.elapsed();
    assert!(served.chain.len() >= 2, "leaf and intermediate expected");
    assert_eq!(s.orders("http-01", "valid").await, 1.0);
    // Pebble validates from several perspectives, each fetching the token.
    assert!(
        s.edge
            .metric(
                "edge_acme_challenges_served_total",
                &[("challenge", "http-01")]
            )
            .await
            >= 1.0
    );

    // The new certificate carries events end to end, verified by pebble's root.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_der(root.as_ref()).unwrap()])
        .resolve("h1.example.com", s.ports.https)
        .build()
        .unwrap();
    let r = client
        .post(format!(
            "https://h1.example.com:{}/api/event",
            s.ports.https.port()
        ))
        .body(r#"{"name":"pageview","url":"https://h1.example.com/"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Plain HTTP redirects everything but challenges to HTTPS.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}/api/event.gif?n=pageview", s.ports.http))
        .header("host", "h1.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!(
            "https://h1.example.com:{}/api/event.gif?n=pageview",
            s.ports.https.port()
        )
        .as_str()
    );

    // A token nobody issued, or a token asked for under another host: 404.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for host in ["h1.example.com", "other.example.com"] {
        let r = no_redirect
            .get(format!(
                "http://{}/.well-known/acme-challenge/not-a-token",
                s.ports.http
            ))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }

    // TLS-ALPN-01 for a second domain, without touching the first one's connections.
    let kept = tls_connect(s.ports.https, "h1.example.com", &root)
        .await
        .unwrap();
    s.reload(
        &["h1.example.com", "t1.example.com"],
        "challenges = [\"tls-alpn-01\"]",
    )
    .await;
    s.wait_for_cert("t1.example.com", Duration::from_secs(30))
        .await;
    assert_eq!(s.orders("tls-alpn-01", "valid").await, 1.0);
    assert!(
        s.edge
            .metric(
                "edge_tls_handshakes_total",
                &[("outcome", "alpn_challenge")]
            )
            .await
            >= 1.0
    );
    let again = tls_connect(s.ports.https, "h1.example.com", &root)
        .await
        .unwrap();
    assert_eq!(
        kept.serial(),
        again.serial(),
        "the first certificate is untouched"
    );

    // Removing a domain stops serving it.
    s.reload(&["t1.example.com"], "challenges = [\"tls-alpn-01\"]")
        .await;
    assert_eventually!(
        tls_connect(s.ports.https, "h1.example.com", &root)
            .await
            .is_err(),
        Duration::from_secs(5),
        "h1.example.com is still served after its removal"
    );
    tls_connect(s.ports.https, "t1.example.com", &root)
        .await
        .unwrap();
    let certs = s.certs().await;
    let names: Vec<&str> = certs["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["t1.example.com"], "{certs}");
    assert_eq!(certs["names"][0]["state"], "valid", "{certs}");
    assert_eq!(
        certs["names"][0]["last_challenge"], "tls-alpn-01",
        "{certs}"
    );
    eprintln!("first certificate after reload took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_before_expiry_without_failed_handshakes() {
    // 30 s certificates renewed with half their lifetime left: a renewal
    // about 15 s after issuance.
    let s = Setup::start(
        30,
        &["renew.example.com"],
        "renew_remaining_fraction = 0.5\nmax_orders_per_name_per_day = 100",
    )
    .await;
    let root = s.pebble.root().await;
    let first = s
        .wait_for_cert("renew.example.com", Duration::from_secs(30))
        .await;
    let first_serial = first.serial();
    let deadline = first.not_after();
    let mut handshakes = 0u32;
    let mut renewed = None;
    while renewed.is_none() {
        assert!(
            state_unix_now() < deadline,
            "no renewal before the first certificate expired:\n{}",
            s.edge.log()
        );
        let served = tls_connect(s.ports.https, "renew.example.com", &root)
            .await
            .unwrap_or_else(|e| panic!("handshake {handshakes} failed during renewal: {e}"));
        handshakes += 1;
        if served.serial() != first_serial {
            renewed = Some(served);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let renewed = renewed.unwrap();
    assert!(renewed.not_after() > deadline);
    assert!(handshakes > 20, "only {handshakes} handshakes observed");
    assert_eq!(
        s.edge
            .metric("edge_acme_renewals_total", &[("outcome", "renewed")])
            .await,
        1.0
    );
    let expiry = s
        .edge
        .metric("edge_tls_certificate_expiry_seconds", &[("site", "s")])
        .await;
    assert!(expiry > 0.0 && expiry <= 31.0, "expiry gauge {expiry}");
}

fn state_unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_names_never_cause_an_order_even_in_a_burst() {
    // The burst comes from one address: lift the per-client connection cap
    // (256 by default) so every handshake reaches the resolver.
    let s = Setup::start(
        3600,
        &["known.example.com"],
        "\n[connections]\nmax_per_client = 1024",
    )
    .await;
    let root = s.pebble.root().await;
    s.wait_for_cert("known.example.com", Duration::from_secs(30))
        .await;
    let orders_before = s.pebble.orders();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let addr = s.ports.https;
        let root = root.clone();
        tasks.push(tokio::spawn(async move {
            tls_connect(addr, &format!("r{i}-{}.example.net", i * 7919), &root)
                .await
                .is_err()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "a random name got a certificate");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        s.pebble.orders(),
        orders_before,
        "a random SNI caused an order"
    );
    assert_eq!(
        s.edge
            .metric("edge_tls_handshakes_total", &[("outcome", "unknown_sni")])
            .await,
        300.0
    );
    let certs = s.certs().await;
    assert_eq!(certs["names"].as_array().unwrap().len(), 1, "{certs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_validation_backs_off_instead_of_hammering_the_ca() {
    // Validation connects to 127.0.0.2, where nothing listens.
    let s = Setup::start(
        3600,
        &[],
        "backoff_initial_seconds = 1\nbackoff_max_seconds = 4",
    )
    .await;
    s.pebble.point("broken.example.com", "127.0.0.2").await;
    s.reload(
        &["broken.example.com"],
        "backoff_initial_seconds = 1\nbackoff_max_seconds = 4",
    )
    .await;
    let watch = Duration::from_secs(9);
    tokio::time::sleep(watch).await;
    // Attempts at about 0, 1, 3 and 7 s, two challenge types each; a client
    // without backoff would have placed hundreds of orders.
    let orders = s.pebble.orders();
    assert!(
        (4..=10).contains(&orders),
        "{orders} orders in {watch:?}:\n{}",
        s.edge.log()
    );
    let certs = s.certs().await;
    let entry = &certs["names"][0];
    assert_eq!(entry["name"], "broken.example.com", "{certs}");
    assert_eq!(entry["state"], "backoff", "{certs}");
    assert!(entry["failures"].as_u64().unwrap() >= 2, "{certs}");
    assert!(entry["next_attempt_unix"].as_i64().is_some(), "{certs}");
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap()
            .contains("validation failed"),
        "{certs}"
    );
    assert_eq!(s.edge.metric("edge_acme_names_in_backoff", &[]).await, 1.0);
    assert!(s.orders("http-01", "invalid").await + s.orders("tls-alpn-01", "invalid").await >= 4.0);
    // The name is refused quickly meanwhile, counted as waiting for its certificate.
    let root = s.pebble.root().await;
    assert!(
        tls_connect(s.ports.https, "broken.example.com", &root)
            .await
            .is_err()
    );
    assert!(
        s.edge
            .metric("edge_tls_handshakes_total", &[("outcome", "no_cert_yet")])
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_check_holds_orders_until_the_name_points_here() {
    let s = Setup::start(3600, &[], "").await;
    s.pebble.point("moved.example.com", "192.0.2.10").await;
    let extra = format!(
        "backoff_initial_seconds = 60\n[acme.dns_check]\nresolver = \"{}\"\naddresses = [\"127.0.0.1\"]",
        s.pebble.dns
    );
    s.reload(&["moved.example.com", "here.example.com"], &extra)
        .await;
    s.wait_for_cert("here.example.com", Duration::from_secs(30))
        .await;
    assert_eventually!(
        s.cert_status("moved.example.com").await["state"] == "dns_mismatch",
        Duration::from_secs(10),
        "moved.example.com not reported as dns_mismatch"
    );
    // Only here.example.com was ordered (one order: http-01 succeeded first).
    assert_eq!(s.pebble.orders(), 1);
    assert!(
        s.edge
            .metric("edge_acme_dns_checks_total", &[("outcome", "mismatch")])
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_serves_stored_certificates_without_new_orders_and_keys_are_encrypted() {
    let mut s = Setup::start(3600, &["keep.example.com"], "").await;
    let first = s
        .wait_for_cert("keep.example.com", Duration::from_secs(30))
        .await;
    assert!(s.edge.terminate(Duration::from_secs(10)));
    let orders = s.pebble.orders();

    // Stored files: 0600, the chain readable, the private key sealed.
    let certs_dir = s.dir.path().join("data/acme/certs");
    let file = certs_dir.join("keep.example.com.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&certs_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "plaintext key on disk");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sealed = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(doc["key_sealed"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(&sealed[..7], b"EDGESK1");
    // A PKCS#8 key starts with a DER SEQUENCE; the sealed bytes carry no such structure in clear.
    assert!(!sealed.windows(4).any(|w| w == [0x30, 0x81, 0x87, 0x02]));
    let accounts: Vec<_> = std::fs::read_dir(s.dir.path().join("data/acme/accounts"))
        .unwrap()
        .collect();
    assert_eq!(accounts.len(), 1);

    // Restart: the stored certificate is served at once, nothing is ordered.
    let config = std::fs::read_to_string(&s.edge.config_path).unwrap();
    s.edge = Edge::start(s.dir.path(), s.ports, &config).await;
    let root = s.pebble.root().await;
    let again = tls_connect(s.ports.https, "keep.example.com", &root)
        .await
        .unwrap();
    assert_eq!(again.serial(), first.serial());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.pebble.orders(), orders, "restart placed a new order");
    assert_eq!(s.edge.metric("edge_acme_certificates", &[]).await, 1.0);
}

/// The operator's `ask` endpoint, played by a small Python HTTP server.
struct AskServer {
    child: Option<ChildGuard>,
    port: u16,
    log: PathBuf,
}

impl AskServer {
    fn start(dir: &std::path::Path) -> AskServer {
        let port = free_port();
        let log = dir.join("ask.log");
        std::fs::write(&log, "").unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/ask_server.py");
        let child = std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&log)
            .spawn()
            .unwrap();
        let server = AskServer {
            child: Some(ChildGuard(child)),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "ask server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn calls(&self, name: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| *l == name)
            .count()
    }

    fn total_calls(&self) -> usize {
        std::fs::read_to_string(&self.log).unwrap().lines().count()
    }

    fn stop(&mut self) {
        self.child.take();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_names_are_asked_for_cached_and_survive_an_ask_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mut ask = AskServer::start(dir.path());
    let on_demand = format!(
        "[acme.on_demand]\nask_url = \"http://127.0.0.1:{}/ask\"\nask_cache_seconds = 600",
        ask.port
    );
    let s = Setup::start(3600, &["*.customers.example.com"], &on_demand).await;
    let root = s.pebble.root().await;

    // An approved name: the first handshake fails fast (no_cert_yet), the
    // certificate follows in the background.
    let first = tls_connect(s.ports.https, "ok1.customers.example.com", &root).await;
    assert!(first.is_err(), "the first handshake cannot wait for the CA");
    s.wait_for_cert("ok1.customers.example.com", Duration::from_secs(30))
        .await;
    assert_eq!(ask.calls("ok1.customers.example.com"), 1);
    let orders_after_first = s.pebble.orders();

    // A burst of refused names under the wildcard: asked once each (answers
    // are cached), never ordered. Names outside every wildcard are not even asked.
    for round in 0..3 {
        for i in 0..20 {
            let name = format!("bad{i}.customers.example.com");
            assert!(tls_connect(s.ports.https, &name, &root).await.is_err());
            assert!(
                tls_connect(
                    s.ports.https,
                    &format!("x{round}-{i}.elsewhere.example"),
                    &root
                )
                .await
                .is_err()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for i in 0..20 {
        assert_eq!(ask.calls(&format!("bad{i}.customers.example.com")), 1);
    }
    assert_eq!(
        ask.total_calls(),
        21,
        "names outside the wildcard were asked"
    );
    assert_eq!(
        s.pebble.orders(),
        orders_after_first,
        "a refused name was ordered"
    );
    assert_eq!(
        s.edge
            .metric("edge_acme_ask_total", &[("outcome", "denied")])
            .await,
        20.0
    );

    // The ask endpoint goes down: the certified name keeps working, and a
    // new name is neither approved nor ordered.
    ask.stop();
    for _ in 0..5 {
        tls_connect(s.ports.https, "ok1.customers.example.com", &root)
            .await
            .unwrap();
    }
    assert!(
        tls_connect(s.ports.https, "ok2.customers.example.com", &root)
            .await
            .is_err()
    );
    assert_eventually!(
        s.edge
            .metric("edge_acme_ask_total", &[("outcome", "error")])
            .await
            >= 1.0,
        Duration::from_secs(10),
        "the failed ask call was not counted"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.pebble.orders(), orders_after_first);
    tls_connect(s.ports.https, "ok1.customers.example.com", &root)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_type_change_and_forced_renewal_replace_the_certificate() {
    let s = Setup::start(3600, &["rekey.example.com"], "").await;
    let first = s
        .wait_for_cert("rekey.example.com", Duration::from_secs(30))
        .await;
    assert_eq!(first.key_curve(), "P-256");

    // A changed key policy renews with the new algorithm, without a restart.
    s.reload(&["rekey.example.com"], "key_type = \"ecdsa-p384\"")
        .await;
    let root = s.pebble.root().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let p384 = loop {
        let served = tls_connect(s.ports.https, "rekey.example.com", &root)
            .await
            .unwrap();
        if served.key_curve() == "P-384" {
            break served;
        }
        assert!(
            Instant::now() < deadline,
            "no P-384 certificate after the key_type change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(p384.serial(), first.serial());

    // An operator-forced renewal (after a revocation or key compromise).
    let renew = |name: &str| admin_post(s.ports.admin, format!("/admin/certs/renew?name={name}"));
    assert_eq!(renew("unknown.example.com").await.status(), 404);
    assert_eq!(renew("rekey.example.com").await.status(), 202);
    assert_eventually!(
        tls_connect(s.ports.https, "rekey.example.com", &root)
            .await
            .unwrap()
            .serial()
            != p384.serial(),
        Duration::from_secs(30),
        "forced renewal did not replace the certificate"
    );
    assert_eq!(
        s.edge
            .metric("edge_acme_renewals_total", &[("outcome", "renewed")])
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_issuance_limit_holds_names_back_visibly() {
    let s = Setup::start(
        3600,
        &["first.example.com", "second.example.com"],
        "max_orders_per_hour = 1",
    )
    .await;
    // Names are handled in order; the first takes the hour's only attempt.
    s.wait_for_cert("first.example.com", Duration::from_secs(30))
        .await;
    assert_eventually!(
        {
            let n = s.cert_status("second.example.com").await;
            n["state"] == "rate_limited"
                && n["next_attempt_unix"].as_i64().unwrap_or(0) > state_unix_now() + 60
        },
        Duration::from_secs(10),
        "second.example.com not shown as rate limited: {}",
        s.certs().await
    );
    assert!(
        s.edge
            .metric("edge_acme_rate_limited_total", &[("scope", "global")])
            .await
            >= 1.0
    );
    assert_eq!(s.pebble.orders(), 1);
    let root = s.pebble.root().await;
    assert!(
        tls_connect(s.ports.https, "second.example.com", &root)
            .await
            .is_err()
    );
}
