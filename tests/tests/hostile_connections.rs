//! Connection hygiene over real sockets: the caps on open connections, the
//! deadlines that close slow and idle connections, and what the edge logs
//! when clients misbehave.
//!
//! The edge is the real binary (one run under `ulimit -n 1024`); clients are
//! raw TCP, TLS (tokio-rustls) and hand-made HTTP/2 bytes, bound to distinct
//! 127.0.0.x source addresses where the edge must tell clients apart.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edge_tests::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const SITE: &str = "site1.example";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: the rest of a client's connection preface.
const H2_EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const SIMPLE_GET: &[u8] = b"GET /nothing-here HTTP/1.1\r\nHost: site1.example\r\n\r\n";
/// Generous bound for "the edge closed it" once a deadline has passed.
const CLOSE_BOUND: Duration = Duration::from_secs(20);

struct Setup {
    _dir: tempfile::TempDir,
    _broker: Broker,
    edge: Edge,
    tls: TlsConnector,
}

/// A broker, and an edge serving `site1.example` over HTTP and HTTPS with
/// `extra` appended to its config.
async fn setup(topic: &str, extra: &str, options: EdgeOptions) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(dir.path(), "site", &[SITE]);
    let broker = Broker::start();
    broker.create_topic(topic, 1).await;
    let key = BackendKey::generate(&dir.path().join("keys"));
    let edge = EdgeUnderTest::new(dir.path(), &broker.addr, topic, &key)
        .cert(cert)
        .site("s1", &[SITE])
        .raw(extra)
        .options(options)
        .start()
        .await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Setup {
        _dir: dir,
        _broker: broker,
        edge,
        tls: TlsConnector::from(Arc::new(tls)),
    }
}

/// A TCP connection to `addr` from the loopback address `source`.
async fn tcp_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
    socket.connect(addr).await
}

/// A TLS connection (ALPN `h2`) from `source`; Err when the edge refused it.
async fn tls_from(
    tls: &TlsConnector,
    source: &str,
    addr: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(source, addr).await?;
    tls.connect(ServerName::try_from(SITE).unwrap(), tcp).await
}

/// Reads and discards until the peer closes; how long that took, or None
/// if the connection is still open after `limit`.
async fn wait_closed<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(start + limit, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// `text` without ANSI colour sequences (the edge colours its text log).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads one HTTP/1.1 response (head and Content-Length body); its status.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(status)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// One HTTP/1.1 request, then the connection kept idle.
    H1KeepAlive,
    /// TCP to the HTTP port, nothing sent.
    SilentHttp,
    /// TLS with ALPN h2, the preface sent, then idle.
    H2Idle,
    /// TLS with ALPN h2, no preface.
    H2NoPreface,
    /// TCP to the HTTPS port, no ClientHello.
    SilentHttps,
}

/// One attacking connection: whether the edge took it, and when it closed it.
#[derive(Debug)]
struct AttackOutcome {
    attack: Attack,
    closed_after: Option<Duration>,
}

async fn attack(
    attack: Attack,
    ports: EdgePorts,
    tls: TlsConnector,
    ready: Arc<AtomicUsize>,
) -> AttackOutcome {
    let source = "127.0.0.1";
    let limit = Duration::from_secs(60);
    let closed_after = match attack {
        Attack::H1KeepAlive | Attack::SilentHttp => match tcp_from(source, ports.http).await {
            Err(_) => {
                ready.fetch_add(1, Ordering::SeqCst);
                Some(Duration::ZERO)
            }
            Ok(mut t) => {
                if attack == Attack::H1KeepAlive {
                    let answered = t.write_all(SIMPLE_GET).await.is_ok()
                        && read_response(&mut t).await.is_some();
                    ready.fetch_add(1, Ordering::SeqCst);
                    if answered {
                        wait_closed(&mut t, limit).await
                    } else {
                        Some(Duration::ZERO)
                    }
                } else {
                    ready.fetch_add(1, Ordering::SeqCst);
                    wait_closed(&mut t, limit).await
                }
            }
        },
        Attack::H2Idle | Attack::H2NoPreface => match tls_from(&tls, source, ports.https).await {
            Err(_) => {
                ready.fetch_add(1, Ordering::SeqCst);
                Some(Duration::ZERO)
            }
            Ok(mut t) => {
                if attack == Attack::H2Idle {
                    let _ = t.write_all(H2_PREFACE).await;
                    let _ = t.write_all(H2_EMPTY_SETTINGS).await;
                    let _ = t.flush().await;
                }
                ready.fetch_add(1, Ordering::SeqCst);
                wait_closed(&mut t, limit).await
            }
        },
        Attack::SilentHttps => match tcp_from(source, ports.https).await {
            Err(_) => {
                ready.fetch_add(1, Ordering::SeqCst);
                Some(Duration::ZERO)
            }
            Ok(mut t) => {
                ready.fetch_add(1, Ordering::SeqCst);
                wait_closed(&mut t, limit).await
            }
        },
    };
    AttackOutcome {
        attack,
        closed_after,
    }
}

/// 1,500 idle connections from one address against an edge under
/// `ulimit -n 1024`: the per-client cap refuses most at accept, the edge
/// never runs out of descriptors, another client's event still gets 202
/// within 1 s, `/healthz` answers, and the deadlines close every idle one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_cannot_exhaust_an_edge_under_ulimit_1024() {
    let s = setup(
        "conn-exhaust",
        "[connections]\nheader_timeout_ms = 5000\nkeepalive_timeout_ms = 5000\nh2_handshake_timeout_ms = 5000\nh2_idle_timeout_ms = 5000\ntls_handshake_timeout_ms = 5000\n",
        EdgeOptions {
            open_files_limit: Some(1024),
            ..EdgeOptions::default()
        },
    )
    .await;
    let log = without_ansi(&s.edge.log());
    assert!(
        log.contains("open_files_limit=1024"),
        "the edge says its open-file limit:\n{log}"
    );
    assert_eq!(s.edge.metric("edge_open_files_limit", &[]).await, 1024.0);

    let plan = [
        (Attack::H1KeepAlive, 250),
        (Attack::SilentHttp, 250),
        (Attack::H2Idle, 350),
        (Attack::H2NoPreface, 350),
        (Attack::SilentHttps, 300),
    ];
    let total: usize = plan.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 1500);
    let ready = Arc::new(AtomicUsize::new(0));
    let mut attackers = tokio::task::JoinSet::new();
    // Interleaved, so every kind competes for the client's slots.
    let mut left = plan;
    while left.iter().any(|(_, n)| *n > 0) {
        for (kind, n) in left.iter_mut().filter(|(_, n)| *n > 0) {
            *n -= 1;
            attackers.spawn(attack(*kind, s.edge.ports, s.tls.clone(), ready.clone()));
        }
    }
    assert_eventually!(
        ready.load(Ordering::SeqCst) == total,
        Duration::from_secs(60),
        "attackers did not all connect or get refused: {}",
        ready.load(Ordering::SeqCst)
    );

    // A legitimate client (another address) is served at once.
    let started = Instant::now();
    let r = client_from("127.0.0.2")
        .post(format!("http://{}/api/event", s.edge.ports.http))
        .header("host", SITE)
        .header("content-type", "application/json")
        .body(r#"{"name":"pageview","url":"https://site1.example/"}"#)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    assert!(took < Duration::from_secs(1), "event took {took:?}");
    let health = reqwest::get(format!("http://{}/healthz", s.edge.ports.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let refused = s
        .edge
        .metric(
            "edge_connections_refused_total",
            &[("reason", "client_limit")],
        )
        .await;
    assert!(refused >= 1000.0, "refused at accept: {refused}");

    // Every idle connection is closed by a deadline.
    let mut outcomes = Vec::new();
    while let Some(o) = attackers.join_next().await {
        outcomes.push(o.unwrap());
    }
    let open: Vec<&AttackOutcome> = outcomes
        .iter()
        .filter(|o| o.closed_after.is_none())
        .collect();
    assert!(open.is_empty(), "still open after 60 s: {open:?}");
    for kind in [
        Attack::H1KeepAlive,
        Attack::SilentHttp,
        Attack::H2Idle,
        Attack::H2NoPreface,
        Attack::SilentHttps,
    ] {
        let held = outcomes
            .iter()
            .filter(|o| o.attack == kind && o.closed_after > Some(Duration::from_secs(2)))
            .count();
        assert!(held > 0, "no {kind:?} connection was admitted and held");
    }
    assert_eventually!(
        s.edge
            .metric("edge_connections_open", &[("listener", "http")])
            .await
            == 0.0
            && s.edge
                .metric("edge_connections_open", &[("listener", "https")])
                .await
                == 0.0,
        Duration::from_secs(20),
        "connections still open on the public listeners"
    );
    for (listener, phase) in [
        ("http", "header"),
        ("http", "keepalive"),
        ("https", "h2_handshake"),
    ] {
        let n = s
            .edge
            .metric(
                "edge_connection_timeouts_total",
                &[("listener", listener), ("phase", phase)],
            )
            .await;
        assert!(n >= 1.0, "{listener} {phase} timeouts: {n}");
    }
    let tls_timeouts = s
        .edge
        .metric("edge_tls_handshakes_total", &[("outcome", "timeout")])
        .await;
    assert!(tls_timeouts >= 1.0);
    assert_eq!(
        s.edge
            .metric("edge_client_faults_total", &[("kind", "accept_error")])
            .await,
        0.0
    );
    // Dropped HTTP/2 handshakes are counted, not logged one per connection.
    assert!(
        s.edge
            .metric("edge_client_faults_total", &[("kind", "h2_handshake")])
            .await
            >= 1.0
    );
    assert!(
        s.edge
            .metric(
                "edge_log_lines_suppressed_total",
                &[("reason", "client_fault")]
            )
            .await
            >= 1.0
    );
    let log = s.edge.log();
    for line in ["Too many open files", "H2 handshake error", "ERROR"] {
        assert!(!log.contains(line), "{line}:\n{log}");
    }
}

/// Each deadline closes its kind of idle or slow connection, and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_close_slowloris_idle_and_silent_connections() {
    let s = setup(
        "conn-deadlines",
        "[connections]\nheader_timeout_ms = 1500\nkeepalive_timeout_ms = 1500\nh2_handshake_timeout_ms = 1500\nh2_idle_timeout_ms = 1500\ntls_handshake_timeout_ms = 1500\n",
        EdgeOptions::default(),
    )
    .await;
    let ports = s.edge.ports;

    // Slowloris: header lines every 200 ms, far inside any per-read timeout.
    let slowloris = async {
        let t = tcp_from("127.0.0.1", ports.http).await.unwrap();
        let (mut rd, mut wr) = t.into_split();
        let trickle = tokio::spawn(async move {
            let _ = wr
                .write_all(b"GET / HTTP/1.1\r\nHost: site1.example\r\n")
                .await;
            for i in 0..200 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if wr
                    .write_all(format!("X-Pad-{i}: a\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let closed = wait_closed(&mut rd, CLOSE_BOUND).await;
        trickle.abort();
        closed
    };
    // Keep-alive: two requests on one connection, then idle.
    let keepalive = async {
        let mut t = tcp_from("127.0.0.1", ports.http).await.unwrap();
        t.write_all(SIMPLE_GET).await.unwrap();
        assert_eq!(read_response(&mut t).await, Some(404));
        t.write_all(SIMPLE_GET).await.unwrap();
        assert_eq!(
            read_response(&mut t).await,
            Some(404),
            "the connection is reused"
        );
        wait_closed(&mut t, CLOSE_BOUND).await
    };
    let silent_tcp = async {
        let mut t = tcp_from("127.0.0.1", ports.http).await.unwrap();
        wait_closed(&mut t, CLOSE_BOUND).await
    };
    let h2_no_preface = async {
        let mut t = tls_from(&s.tls, "127.0.0.1", ports.https).await.unwrap();
        assert_eq!(t.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        wait_closed(&mut t, CLOSE_BOUND).await
    };
    let h2_idle = async {
        let mut t = tls_from(&s.tls, "127.0.0.1", ports.https).await.unwrap();
        t.write_all(H2_PREFACE).await.unwrap();
        t.write_all(H2_EMPTY_SETTINGS).await.unwrap();
        t.flush().await.unwrap();
        wait_closed(&mut t, CLOSE_BOUND).await
    };
    let silent_tls = async {
        let mut t = tcp_from("127.0.0.1", ports.https).await.unwrap();
        wait_closed(&mut t, CLOSE_BOUND).await
    };
    let (slowloris, keepalive, silent_tcp, h2_no_preface, h2_idle, silent_tls) = tokio::join!(
        slowloris,
        keepalive,
        silent_tcp,
        h2_no_preface,
        h2_idle,
        silent_tls
    );
    for (name, closed) in [
        ("slowloris", slowloris),
        ("idle keep-alive", keepalive),
        ("silent TCP", silent_tcp),
        ("h2 without preface", h2_no_preface),
        ("idle h2", h2_idle),
        ("silent TLS", silent_tls),
    ] {
        let after = closed.unwrap_or_else(|| panic!("{name}: still open after {CLOSE_BOUND:?}"));
        // Closed by the 1.5 s deadline, not by anything earlier.
        assert!(
            after >= Duration::from_millis(1000),
            "{name} closed after {after:?}"
        );
    }
    for (listener, phase, at_least) in [
        ("http", "header", 2.0),
        ("http", "keepalive", 1.0),
        ("https", "h2_handshake", 1.0),
    ] {
        let n = s
            .edge
            .metric(
                "edge_connection_timeouts_total",
                &[("listener", listener), ("phase", phase)],
            )
            .await;
        assert!(n >= at_least, "{listener} {phase}: {n}");
    }
    assert!(
        s.edge
            .metric("edge_tls_handshakes_total", &[("outcome", "timeout")])
            .await
            >= 1.0
    );
    assert_eventually!(
        s.edge
            .metric("edge_connections_open", &[("listener", "https")])
            .await
            == 0.0,
        Duration::from_secs(10),
        "https connections still open"
    );
}

/// The per-client cap refuses a client's next connection while another
/// address still connects; the listener cap refuses everyone past it; the
/// admin listener stays reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_refuse_per_client_and_per_listener_at_accept() {
    let s = setup(
        "conn-caps",
        "[connections]\nmax_per_listener = 5\nmax_per_client = 3\nheader_timeout_ms = 60000\n",
        EdgeOptions::default(),
    )
    .await;
    let ports = s.edge.ports;
    let edge = &s.edge;
    let open_http = || async move {
        edge.metric("edge_connections_open", &[("listener", "http")])
            .await
    };
    let refused = |reason: &'static str| async move {
        edge.metric(
            "edge_connections_refused_total",
            &[("listener", "http"), ("reason", reason)],
        )
        .await
    };

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_from("127.0.0.3", ports.http).await.unwrap());
    }
    assert_eventually!(open_http().await == 3.0, Duration::from_secs(10), "3 open");

    // The 4th from the same address is closed at once.
    let mut fourth = tcp_from("127.0.0.3", ports.http).await.unwrap();
    assert!(
        wait_closed(&mut fourth, Duration::from_secs(10))
            .await
            .is_some()
    );
    assert_eq!(refused("client_limit").await, 1.0);

    // Another address still gets in, up to the listener's cap.
    let mut other = tcp_from("127.0.0.4", ports.http).await.unwrap();
    held.push(tcp_from("127.0.0.5", ports.http).await.unwrap());
    assert_eventually!(open_http().await == 5.0, Duration::from_secs(10), "5 open");
    other.write_all(SIMPLE_GET).await.unwrap();
    assert_eq!(read_response(&mut other).await, Some(404));

    let mut sixth = tcp_from("127.0.0.6", ports.http).await.unwrap();
    assert!(
        wait_closed(&mut sixth, Duration::from_secs(10))
            .await
            .is_some()
    );
    assert_eq!(refused("listener_limit").await, 1.0);

    // Caps are per listener: HTTPS from the capped address works, and so does admin.
    let tls = tls_from(&s.tls, "127.0.0.3", ports.https).await;
    assert!(tls.is_ok(), "{:?}", tls.err());
    let health = reqwest::get(format!("http://{}/healthz", ports.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    drop((held, other, tls));
    assert_eventually!(
        open_http().await == 0.0,
        Duration::from_secs(10),
        "all closed"
    );
}

/// Bytes the edge has not yet read on its side of the connection from
/// `client_port` to `server_port` (Linux's /proc/net/tcp).
fn edge_rx_queue(server_port: u16, client_port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |s: &str| u16::from_str_radix(s.rsplit(':').next()?, 16).ok();
        if port(f.get(1)?)? == server_port && port(f.get(2)?)? == client_port {
            u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()
        } else {
            None
        }
    })
}

/// A client that resets while the edge works on its request (query with an
/// e-mail address) is counted, and the edge's log shows neither the query
/// nor the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_request_is_counted_and_logs_no_query() {
    let s = setup("conn-reset", "", EdgeOptions::default()).await;
    let ports = s.edge.ports;
    let faults_before = s
        .edge
        .metric("edge_client_faults_total", &[("kind", "reset")])
        .await;
    for _ in 0..3 {
        let mut t = tcp_from("127.0.0.1", ports.http).await.unwrap();
        let client_port = t.local_addr().unwrap().port();
        t.write_all(
            b"POST /api/event?email=alice%40x.com&ref=alice@x.com HTTP/1.1\r\nHost: site1.example\r\n\
              Content-Type: application/json\r\nUser-Agent: Mozilla/5.0 alice-agent\r\n\
              Content-Length: 100\r\n\r\n{\"name\":",
        )
        .await
        .unwrap();
        // The edge has read the head and waits for the rest of the body.
        assert_eventually!(
            edge_rx_queue(ports.http.port(), client_port) == Some(0),
            Duration::from_secs(10),
            "the edge did not read the request"
        );
        t.set_zero_linger().unwrap();
        drop(t);
    }
    assert_eventually!(
        s.edge
            .metric("edge_client_faults_total", &[("kind", "reset")])
            .await
            >= faults_before + 3.0,
        Duration::from_secs(20),
        "resets not counted"
    );
    // A normal request afterwards: the edge is fine and has logged since.
    let r = browser()
        .get(format!("http://{}/nothing", ports.http))
        .header("host", SITE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let log = s.edge.log();
    for marker in ["alice", "x.com", "email", "?ref", "alice-agent"] {
        assert!(!log.contains(marker), "{marker} in the edge's log:\n{log}");
    }
}
