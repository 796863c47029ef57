//! Kafka over TLS for integration tests, and broker faults.
//!
//! Tansu speaks plaintext here, so TLS comes from a real `socat
//! OPENSSL-LISTEN` front (OpenSSL) with Tansu advertising the front's port:
//! clients only ever reach the broker through TLS. The certificates are made
//! by rcgen in the test: a CA, a server certificate that is not a CA
//! (`basicConstraints CA:FALSE`, SAN `IP:127.0.0.1`), a client certificate
//! for mutual TLS, and an unrelated "wrong" CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::{Broker, ChildGuard, free_port, tansu_bin, wait_for_port};

// === certificates ===

/// Certificate files for a TLS broker and its clients, in one directory.
pub struct KafkaPki {
    /// CA that issued the server and client certificates (PEM).
    pub ca: PathBuf,
    /// An unrelated CA: trusting it instead of `ca` must fail (PEM).
    pub wrong_ca: PathBuf,
    /// Server certificate followed by its key, as socat's `cert=` wants.
    pub server_bundle: PathBuf,
    /// Client certificate for mutual TLS (PEM).
    pub client_cert: PathBuf,
    /// Client private key, mode 0600 (PEM).
    pub client_key: PathBuf,
}

fn new_ca(name: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let pem = params.self_signed(&key).unwrap().pem();
    (rcgen::Issuer::new(params, key), pem)
}

fn leaf(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    // webpki and OpenSSL refuse a CA certificate as an end entity.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl KafkaPki {
    /// Generates every certificate into `dir`.
    pub fn generate(dir: &Path) -> KafkaPki {
        std::fs::create_dir_all(dir).unwrap();
        let (issuer, ca_pem) = new_ca("edge test kafka CA");
        let (_, wrong_pem) = new_ca("some other CA");
        let (srv_cert, srv_key) = leaf(
            &issuer,
            "kafka broker",
            &["127.0.0.1"],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (cli_cert, cli_key) = leaf(
            &issuer,
            "edge producer",
            &[],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        );
        let pki = KafkaPki {
            ca: dir.join("kafka-ca.pem"),
            wrong_ca: dir.join("wrong-ca.pem"),
            server_bundle: dir.join("kafka-server.pem"),
            client_cert: dir.join("kafka-client.crt"),
            client_key: dir.join("kafka-client.key"),
        };
        std::fs::write(&pki.ca, ca_pem).unwrap();
        std::fs::write(&pki.wrong_ca, wrong_pem).unwrap();
        write_private(&pki.server_bundle, &format!("{srv_cert}{srv_key}"));
        std::fs::write(&pki.client_cert, cli_cert).unwrap();
        write_private(&pki.client_key, &cli_key);
        pki
    }
}

// === broker behind a TLS front ===

/// Whether the TLS front asks for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Server-authenticated TLS only (`verify=0`).
    None,
    /// Mutual TLS: a client certificate from the CA is required (`verify=1`).
    Required,
}

/// Starts Tansu on `listen` advertising `advertise`, with extra arguments.
pub(crate) fn start_tansu(listen: u16, advertise: u16, extra: &[&str]) -> Option<ChildGuard> {
    let child = Command::new(tansu_bin())
        .args(["broker", "--silent", "--listener-url"])
        .arg(format!("tcp://127.0.0.1:{listen}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://127.0.0.1:{advertise}"))
        .args(["--storage-engine", "memory://tansu/"])
        .args(extra)
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start tansu: run scripts/install-deps (or scripts/test) first");
    let guard = ChildGuard(child);
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], listen)),
        Duration::from_secs(10),
    )
    .then_some(guard)
}

/// A Tansu broker reachable only through a socat TLS front.
pub struct TlsBroker {
    /// The broker itself (its `addr` is the plaintext port behind the front).
    pub inner: Broker,
    _front: ChildGuard,
    /// `host:port` of the TLS front, the only address the broker advertises.
    pub addr: String,
    /// The certificates.
    pub pki: KafkaPki,
    /// What the front asks of clients.
    pub client_auth: ClientAuth,
}

impl TlsBroker {
    /// Generates certificates into `dir`, starts Tansu and the TLS front.
    pub fn start(dir: &Path, client_auth: ClientAuth) -> TlsBroker {
        Self::start_with(dir, client_auth, &[])
    }

    /// [`TlsBroker::start`] with extra Tansu arguments (e.g. `--authentication`).
    pub fn start_with(dir: &Path, client_auth: ClientAuth, tansu_args: &[&str]) -> TlsBroker {
        let pki = KafkaPki::generate(dir);
        for _ in 0..5 {
            let (plain, tls) = (free_port(), free_port());
            let Some(tansu) = start_tansu(plain, tls, tansu_args) else {
                continue;
            };
            let verify = match client_auth {
                ClientAuth::None => 0,
                ClientAuth::Required => 1,
            };
            let listen = format!(
                "OPENSSL-LISTEN:{tls},bind=127.0.0.1,reuseaddr,fork,cert={},cafile={},verify={verify}",
                pki.server_bundle.display(),
                pki.ca.display()
            );
            let front = Command::new("socat")
                .arg(listen)
                .arg(format!("TCP:127.0.0.1:{plain}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start socat (apt-get install socat)");
            let front = ChildGuard(front);
            if wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], tls)),
                Duration::from_secs(10),
            ) {
                return TlsBroker {
                    inner: Broker {
                        _child: tansu,
                        addr: format!("127.0.0.1:{plain}"),
                    },
                    _front: front,
                    addr: format!("127.0.0.1:{tls}"),
                    pki,
                    client_auth,
                };
            }
        }
        panic!("tansu behind a socat TLS front did not start");
    }

    /// librdkafka properties of a client that trusts the CA and, for mutual
    /// TLS, presents the client certificate.
    pub fn client_properties(&self) -> Vec<(String, String)> {
        let mut p = vec![
            ("security.protocol".to_string(), "ssl".to_string()),
            (
                "ssl.ca.location".to_string(),
                self.pki.ca.display().to_string(),
            ),
        ];
        if self.client_auth == ClientAuth::Required {
            p.push((
                "ssl.certificate.location".into(),
                self.pki.client_cert.display().to_string(),
            ));
            p.push((
                "ssl.key.location".into(),
                self.pki.client_key.display().to_string(),
            ));
        }
        p
    }

    /// A client config for the TLS front with [`TlsBroker::client_properties`].
    pub fn client_config(&self) -> ClientConfig {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &self.addr);
        for (k, v) in self.client_properties() {
            cc.set(k, v);
        }
        cc
    }

    /// The `[kafka.tls]` table an edge needs to reach this broker.
    pub fn edge_tls_toml(&self) -> String {
        let mut s = format!(
            "[kafka.tls]\nca_file = {:?}\n",
            self.pki.ca.display().to_string()
        );
        if self.client_auth == ClientAuth::Required {
            s.push_str(&format!(
                "cert_file = {:?}\nkey_file = {:?}\n",
                self.pki.client_cert.display().to_string(),
                self.pki.client_key.display().to_string()
            ));
        }
        s.push('\n');
        s
    }

    /// Creates a topic through the TLS front.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().unwrap();
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

    /// Writes `properties` as a 0600 `KEY=VALUE` file for `--properties-file`.
    pub fn write_properties_file(&self, path: &Path) {
        let text: String = self
            .client_properties()
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        write_private(path, &format!("# written by the test\n{text}"));
    }
}

// === broker faults ===

impl Broker {
    /// Process id of the broker.
    pub fn pid(&self) -> u32 {
        self._child.0.id()
    }

    /// Freezes the broker (`SIGSTOP`): connections stay open, nothing answers.
    pub fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    /// Thaws a paused broker (`SIGCONT`).
    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid} failed");
}
