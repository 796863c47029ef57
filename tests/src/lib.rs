//! Helpers for integration scenarios over real sockets.
//!
//! Every scenario starts its own servers on free loopback ports: a real
//! Kafka-protocol broker (Tansu, in-memory storage), the real `edge` binary,
//! a test certificate authority for real TLS. Nothing is mocked and nothing
//! is shared between tests. Run through `scripts/test`, which installs Tansu
//! and builds the binaries first.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub mod ask;
mod edge;
mod edge_under_test;
pub mod kafka_tls;
pub mod pebble;

pub use edge::{DEFAULT_RUST_LOG, Edge, EdgeOptions, EdgePorts};
pub use edge_under_test::{EdgeUnderTest, Site, two_site_edge};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

/// `POST` to the admin API at `admin` as an operator's tool does, with
/// `X-Edge-Admin: 1` (state-changing endpoints refuse a request without it
/// or a bearer token: docs/security.md, "The admin API").
pub async fn admin_post(admin: SocketAddr, path_and_query: impl AsRef<str>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{admin}{}", path_and_query.as_ref()))
        .header("x-edge-admin", "1")
        .send()
        .await
        .unwrap()
}

/// Polls `cond` until it holds or `timeout` passes; panics with `what`.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $timeout:expr, $($what:tt)+) => {{
        let deadline = std::time::Instant::now() + $timeout;
        loop {
            if $cond { break; }
            if std::time::Instant::now() > deadline { panic!($($what)+); }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}

/// Installs ring as the process's rustls provider (once).
pub fn init_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A current desktop browser's user agent: the edge's bot filter drops
/// events from clients without one (reqwest sends none by default).
pub const BROWSER_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// A plain HTTP client that identifies as a browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(BROWSER_UA)
        .build()
        .unwrap()
}

/// A browser-like client whose connections come from `source` (a
/// 127.0.0.x address), so the edge sees a distinct client per address.
pub fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .user_agent(BROWSER_UA)
        .build()
        .unwrap()
}

/// A free TCP port on 127.0.0.1 (bound then released), for a server the
/// test starts.
///
/// Ports come from 10000..32000, below Linux's ephemeral range (32768+): a
/// port from `bind(0)` is an ephemeral one, and between its release and the
/// server's bind any outgoing connection (a Kafka client, say) may take it.
/// Each test process walks the range from its own pid-derived offset, so
/// parallel test binaries do not try the same ports in the same order.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

/// Path of a workspace binary built by `cargo build` (target/<profile>/NAME).
pub fn bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("EDGE_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    // target/<profile>/deps/<test binary> → target/<profile>/NAME
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (or `cargo build --bins`) before the integration tests",
        path.display()
    );
    path
}

fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = Path::new(&home).join(".local/tansu/bin/tansu");
    if installed.exists() {
        return installed;
    }
    PathBuf::from("tansu")
}

pub(crate) fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// === impl Broker ===

/// A real Kafka-protocol broker (Tansu) on a free loopback port.
pub struct Broker {
    _child: ChildGuard,
    /// `host:port` for `bootstrap.servers`.
    pub addr: String,
}

impl Broker {
    /// Starts a broker with in-memory storage and waits until it accepts connections.
    pub fn start() -> Broker {
        for _ in 0..5 {
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(tansu_bin())
                .args([
                    "broker",
                    "--silent",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .env_remove("LISTENER_URL")
                .env_remove("ADVERTISED_LISTENER_URL")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start tansu: run scripts/install-deps (or scripts/test) first");
            let guard = ChildGuard(child);
            if wait_for_port(
                format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_secs(10),
            ) {
                return Broker {
                    _child: guard,
                    addr: format!("127.0.0.1:{port}"),
                };
            }
        }
        panic!("tansu did not start listening");
    }

    /// Creates a topic (Tansu does not auto-create).
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .create()
            .unwrap();
        let results = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap();
        for r in results {
            r.unwrap();
        }
    }

    /// Consumes with a fresh consumer group until `count` records arrived or
    /// `timeout` passed; returns (key, payload, partition, offset) per record.
    pub async fn consume(&self, topic: &str, count: usize, timeout: Duration) -> Vec<Record> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("group.id", format!("test-{}", free_port()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while out.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, consumer.recv()).await {
                Ok(Ok(m)) => out.push(Record {
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    key: m.key().unwrap_or_default().to_vec(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    partition: m.partition(),
                    offset: m.offset(),
                }),
                Ok(Err(e)) => panic!("consume failed: {e}"),
                Err(_) => break,
            }
        }
        out
    }
}

/// One consumed Kafka record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Kafka headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
}

// === impl TestCa ===

/// A certificate authority for the test's TLS certificates.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edge test CA");
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes a leaf certificate for `names` into `dir`; returns (cert, key) paths.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// An HTTPS client trusting only this CA, resolving `names` to `addr`.
    pub fn client(&self, names: &[&str], addr: SocketAddr) -> reqwest::Client {
        self.client_builder(names, addr).build().unwrap()
    }

    /// The builder of [`TestCa::client`], for a test that needs one more
    /// setting (e.g. `http1_only`).
    pub fn client_builder(&self, names: &[&str], addr: SocketAddr) -> reqwest::ClientBuilder {
        init_crypto();
        let mut b = reqwest::Client::builder()
            .user_agent(BROWSER_UA)
            .tls_certs_only([reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap()])
            .timeout(Duration::from_secs(30));
        for n in names {
            b = b.resolve(n, addr);
        }
        b
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

// === impl BackendKey ===

/// A backend key pair generated by the real `edge-backend keygen`.
pub struct BackendKey {
    pub key_id: String,
    pub public_key: String,
    pub private_key_path: PathBuf,
}

impl BackendKey {
    pub fn generate(dir: &Path) -> BackendKey {
        let out = Command::new(bin("edge-backend"))
            .args(["keygen", "--out"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let snippet = String::from_utf8(out.stdout).unwrap();
        let field = |name: &str| -> String {
            snippet
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} = \"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_else(|| panic!("keygen output lacks {name}: {snippet}"))
        };
        let key_id = field("id");
        BackendKey {
            private_key_path: dir.join(format!("{key_id}.key")),
            public_key: field("public_key"),
            key_id,
        }
    }

    /// An opener holding this private key.
    pub fn opener(&self) -> edge_envelope::open::Opener {
        let mut ring = edge_envelope::keys::Keyring::new();
        ring.insert(edge_envelope::keys::PrivateKey::read_file(&self.private_key_path).unwrap());
        edge_envelope::open::Opener::new(ring)
    }
}

/// Sum of the samples of `name` in Prometheus text whose labels include all `labels`.
pub fn parse_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
