//! Let's Encrypt's test CA (Debian's `pebble` and `pebble-challtestsrv`) on
//! free loopback ports, plus a TLS client that trusts only pebble's root.
//!
//! Pebble validates HTTP-01 at `http://{name}:{http_port}/` and TLS-ALPN-01
//! at `{ip}:{tls_port}`, resolving names through challtestsrv's DNS server,
//! which answers 127.0.0.1 for every name unless told otherwise
//! ([`Pebble::point`]). So the edge under test listens on exactly those two
//! ports. Each test runs its own pebble: nothing is shared.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{ChildGuard, EdgePorts, TestCa, free_port, init_crypto, wait_for_port};

/// A running pebble with its challenge test server (used only for DNS).
pub struct Pebble {
    _challtestsrv: ChildGuard,
    _pebble: ChildGuard,
    /// The ACME directory URL.
    pub directory_url: String,
    /// PEM file of the CA that signed pebble's own HTTPS certificate
    /// (`acme.ca_file` for the edge).
    pub api_ca_file: PathBuf,
    /// challtestsrv's DNS server (`acme.dns_check.resolver`).
    pub dns: SocketAddr,
    management: SocketAddr,
    challtest_management: SocketAddr,
    api_ca: TestCa,
    log_path: PathBuf,
}

impl Pebble {
    /// Starts pebble validating against the edge's `ports`, issuing
    /// certificates valid for `validity_seconds`.
    pub fn start(dir: &Path, ports: &EdgePorts, validity_seconds: u64) -> Pebble {
        let api_ca = TestCa::new();
        let (cert, key) = api_ca.issue(dir, "pebble-api", &["127.0.0.1", "localhost"]);
        let api_ca_file = dir.join("pebble-api-ca.pem");
        std::fs::write(&api_ca_file, &api_ca.cert_pem).unwrap();

        let dns_port = free_port();
        let challtest_management = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &challtest_management.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv missing: run scripts/install-deps (apt package pebble)");
        let challtestsrv = ChildGuard(challtestsrv);

        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let management = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": cert,
                "privateKey": key,
                "httpPort": ports.http.port(),
                "tlsPort": ports.https.port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity_seconds,
            }
        });
        let config_path = dir.join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log_path = dir.join("pebble.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order validates afresh, so renewals exercise challenges too.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble missing: run scripts/install-deps (apt package pebble)");
        let pebble = ChildGuard(pebble);
        // Pebble generates its root and intermediate keys before listening:
        // seconds on a busy machine.
        let up = Duration::from_secs(60);
        assert!(
            wait_for_port(listen, up)
                && wait_for_port(management, up)
                && wait_for_port(challtest_management, up),
            "pebble did not start:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        Pebble {
            _challtestsrv: challtestsrv,
            _pebble: pebble,
            directory_url: format!("https://{listen}/dir"),
            api_ca_file,
            dns: SocketAddr::from(([127, 0, 0, 1], dns_port)),
            management,
            challtest_management,
            api_ca,
            log_path,
        }
    }

    /// Pebble's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Orders pebble has accepted (it logs one line per new order).
    pub fn orders(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("POST /order-plz"))
            .count()
    }

    /// The `[acme]` table pointing an edge at this pebble; `extra` is
    /// appended inside the table (then further tables may follow).
    pub fn acme_table(&self, storage_key_file: &Path, extra: &str) -> String {
        format!(
            "[acme]\ndirectory_url = {dir:?}\nca_file = {ca:?}\nstorage_key_file = {key:?}\n\
             contact = [\"mailto:ops@example.com\"]\n{extra}\n",
            dir = self.directory_url,
            ca = self.api_ca_file.display().to_string(),
            key = storage_key_file.display().to_string(),
        )
    }

    /// The root that signs issued certificates (it changes at every start).
    pub async fn root(&self) -> CertificateDer<'static> {
        init_crypto();
        let client = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(self.api_ca.cert_pem.as_bytes()).unwrap(),
            ])
            .build()
            .unwrap();
        let pem = client
            .get(format!("https://{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// Makes challtestsrv's DNS answer `ip` for `host` (so validation goes elsewhere).
    pub async fn point(&self, host: &str, ip: &str) {
        let r = reqwest::Client::new()
            .post(format!("http://{}/add-a", self.challtest_management))
            .json(&serde_json::json!({ "host": host, "addresses": [ip] }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "add-a failed: {}", r.status());
    }
}

/// A certificate chain an edge served, verified against `root` for `name`.
pub struct Served {
    /// DER chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

impl Served {
    /// The leaf's serial number (hex).
    pub fn serial(&self) -> String {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, leaf) = X509Certificate::from_der(self.chain[0].as_ref()).unwrap();
        leaf.raw_serial_as_string()
    }

    /// The named curve of the leaf's EC key (`P-256`, `P-384`), or `other`.
    pub fn key_curve(&self) -> &'static str {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, leaf) = X509Certificate::from_der(self.chain[0].as_ref()).unwrap();
        let params = leaf.public_key().algorithm.parameters.as_ref();
        match params
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string())
        {
            Some(oid) if oid == "1.2.840.10045.3.1.7" => "P-256",
            Some(oid) if oid == "1.3.132.0.34" => "P-384",
            _ => "other",
        }
    }

    /// The leaf's `notAfter`, Unix seconds.
    pub fn not_after(&self) -> i64 {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, leaf) = X509Certificate::from_der(self.chain[0].as_ref()).unwrap();
        leaf.validity().not_after.timestamp()
    }
}

/// Why a handshake in [`tls_connect`] did not give a verified chain.
#[derive(Debug)]
pub enum TlsFailure {
    /// No TCP connection (refused, reset before the handshake).
    Connect(std::io::Error),
    /// The server ended the handshake with this fatal alert.
    Alert(rustls::AlertDescription),
    /// No answer within 10 s.
    TimedOut,
    /// Anything else (a chain that does not verify, a protocol error, …).
    Other(String),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::Alert(a) => write!(f, "received fatal alert: {a:?}"),
            Self::TimedOut => f.write_str("handshake timed out"),
            Self::Other(e) => f.write_str(e),
        }
    }
}

/// Handshakes with `addr` for SNI `name`, trusting only `root`. Ok only when
/// the served chain verifies for that name (a real client's check).
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    root: &CertificateDer<'static>,
) -> Result<Served, TlsFailure> {
    init_crypto();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(root.clone())
        .map_err(|e| TlsFailure::Other(e.to_string()))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(TlsFailure::Connect)?;
    let server_name =
        ServerName::try_from(name.to_string()).map_err(|e| TlsFailure::Other(e.to_string()))?;
    let stream = tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name, tcp))
        .await
        .map_err(|_| TlsFailure::TimedOut)?
        .map_err(|e| {
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls::Error::AlertReceived(alert)) => TlsFailure::Alert(*alert),
                _ => TlsFailure::Other(e.to_string()),
            }
        })?;
    let chain = stream
        .get_ref()
        .1
        .peer_certificates()
        .ok_or_else(|| TlsFailure::Other("no peer certificates".into()))?
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    Ok(Served { chain })
}

/// Handshakes for `name` and panics unless the edge refused it the way it
/// refuses a name it has no certificate for: a fatal `access_denied` alert
/// (rustls' answer when the certificate resolver has nothing).
pub async fn assert_no_certificate(addr: SocketAddr, name: &str, root: &CertificateDer<'static>) {
    match tls_connect(addr, name, root).await {
        Err(TlsFailure::Alert(rustls::AlertDescription::AccessDenied)) => {}
        Ok(_) => panic!("{name}: handshake succeeded, a refusal was expected"),
        Err(other) => panic!("{name}: expected an access_denied alert, got: {other}"),
    }
}

/// Writes a fresh 0600 storage key (base64 of 32 random bytes) to `path`.
pub fn write_storage_key(path: &Path) {
    use base64::Engine;
    use ring::rand::SecureRandom;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(
        f,
        "{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
    .unwrap();
}
