//! A tiny recording HTTP server for the integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support code

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub peer: IpAddr,
    pub host: String,
    pub method: String,
    pub path: String,
    pub body: String,
    pub status: u16,
    pub user_agent: String,
    pub content_type: String,
    pub origin: String,
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// Answers 429 to every 10th request; otherwise 202 for POST /api/event, 200 for
/// GET /api/event.gif, 404 for anything else. `http2` serves h2c (prior knowledge).
pub async fn start(http2: bool) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicU64::new(0));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                break;
            };
            let log = log.clone();
            let counter = counter.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let log = log.clone();
                let counter = counter.clone();
                async move { Ok::<_, hyper::Error>(handle(req, peer.ip(), &log, &counter).await) }
            });
            let io = TokioIo::new(stream);
            tokio::spawn(async move {
                if http2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    TestServer { addr, seen }
}

async fn handle(
    req: Request<Incoming>,
    peer: IpAddr,
    log: &Mutex<Vec<Seen>>,
    counter: &AtomicU64,
) -> Response<Full<Bytes>> {
    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().host().map(str::to_owned))
        .unwrap_or_default();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (user_agent, content_type, origin) = (
        header("user-agent"),
        header("content-type"),
        header("origin"),
    );
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let bare = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let status = if n.is_multiple_of(10) {
        StatusCode::TOO_MANY_REQUESTS
    } else if method == "POST" && bare == "/api/event" {
        StatusCode::ACCEPTED
    } else if method == "GET" && bare == "/api/event.gif" {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    log.lock().unwrap().push(Seen {
        peer,
        host,
        method,
        path,
        body,
        status: status.as_u16(),
        user_agent,
        content_type,
        origin,
    });
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Runs the built binary with `args` and returns the parsed `--json` summary.
pub async fn run_json(args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-loadtest"))
        .args(args)
        .arg("--json")
        .arg("--quiet")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

/// Runs the built binary with `args` (plus `--quiet`): (exit code, stdout, stderr).
pub async fn run_raw(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge-loadtest"))
        .args(args)
        .arg("--quiet")
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Counts of (2xx, 429, other 4xx) answered by the server.
pub fn answered(seen: &[Seen]) -> (u64, u64, u64) {
    let mut c = (0, 0, 0);
    for s in seen {
        match s.status {
            200..=299 => c.0 += 1,
            429 => c.1 += 1,
            400..=499 => c.2 += 1,
            _ => {}
        }
    }
    c
}

/// A TLS (HTTP/1.1) server with a self-signed certificate for site1/site2.example.
pub struct TlsServer {
    pub addr: SocketAddr,
    /// SNI of every accepted connection.
    pub sni: Arc<Mutex<Vec<String>>>,
    /// Requests served.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The certificate, PEM (usable as --ca-file).
    pub cert_pem: String,
}

/// Starts a TLS server (same answers as [`start`]).
pub async fn start_tls() -> TlsServer {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ck = rcgen::generate_simple_self_signed(vec![
        "site1.example".to_owned(),
        "site2.example".to_owned(),
    ])
    .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sni = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicU64::new(0));
    let (log, sni_log) = (seen.clone(), sni.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                break;
            };
            let (log, sni_log, counter, acceptor) = (
                log.clone(),
                sni_log.clone(),
                counter.clone(),
                acceptor.clone(),
            );
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let name = tls.get_ref().1.server_name().unwrap_or_default().to_owned();
                sni_log.lock().unwrap().push(name);
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    let counter = counter.clone();
                    async move { Ok::<_, hyper::Error>(handle(req, peer.ip(), &log, &counter).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsServer {
        addr,
        sni,
        seen,
        cert_pem: ck.cert.pem(),
    }
}
