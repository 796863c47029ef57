//! The endpoint's guard and limits against real sockets on loopback.
#![allow(clippy::unwrap_used)]

use super::*;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone)]
struct Echo;

impl Routes for Echo {
    async fn answer(&self, req: Request<Incoming>) -> Answer {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/data" => text(StatusCode::OK, "data\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

struct Running {
    addr: SocketAddr,
    refused: IntCounterVec,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), HttpError>>,
}

impl Running {
    async fn start(limits: Limits) -> Running {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = IntCounterVec::new(
            prometheus::Opts::new("test_http_refused_total", "test"),
            &["reason"],
        )
        .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let allowed = AllowedHosts::new(&default_allowed_hosts(), Some(addr));
        let task = tokio::spawn(serve_limited(
            listener,
            Echo,
            allowed,
            refused.clone(),
            limits,
            async {
                let _ = rx.await;
            },
        ));
        Running {
            addr,
            refused,
            stop: Some(tx),
            task,
        }
    }

    fn refused(&self, reason: &str) -> u64 {
        self.refused.with_label_values(&[reason]).get()
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Sends `req` and reads until the server closes the connection.
async fn exchange(addr: SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Like [`exchange`], empty when the server closed or reset the connection
/// without answering.
async fn try_exchange(addr: SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    if s.write_all(req.as_bytes()).await.is_ok() {
        let _ = s.read_to_end(&mut out).await;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends one keep-alive request and reads its whole answer, leaving the
/// connection open.
async fn kept_alive(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /data HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.ends_with(b"data\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the answer: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    s
}

/// Waits (at most `within`) for the server to close `s`; returns how long it took.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(within, s.read(&mut buf)).await;
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => started.elapsed(),
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", &buf[..n]),
        Err(_) => panic!("the server kept the connection open for {within:?}"),
    }
}

#[tokio::test]
async fn guard_refuses_foreign_hosts_pages_and_writes_and_counts_them() {
    let server = Running::start(Limits::DEFAULT).await;
    let addr = server.addr;
    let ok = exchange(
        addr,
        "GET /data HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.ends_with("data\n"),
        "{ok}"
    );
    let listen_addr = exchange(
        addr,
        &format!("GET /data HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"),
    )
    .await;
    assert!(listen_addr.starts_with("HTTP/1.1 200"), "{listen_addr}");
    let rebound = exchange(
        addr,
        "GET /data HTTP/1.1\r\nhost: rebind.evil.example\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    let page = exchange(
        addr,
        "GET /data HTTP/1.1\r\nhost: 127.0.0.1\r\norigin: https://evil.example\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 403"), "{page}");
    let cross = exchange(
        addr,
        "GET /data HTTP/1.1\r\nhost: 127.0.0.1\r\nsec-fetch-site: cross-site\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(cross.starts_with("HTTP/1.1 403"), "{cross}");
    let no_host = exchange(addr, "GET /data HTTP/1.0\r\n\r\n").await;
    assert!(no_host.starts_with("HTTP/1.0 400"), "{no_host}");
    let post = exchange(
        addr,
        "POST /data HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    // The probe answers any Host.
    let probe = exchange(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: 10.1.2.3:9903\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
    for (reason, n) in [
        ("foreign_host", 1),
        ("origin", 1),
        ("cross_site", 1),
        ("no_host", 1),
        (CONNECTION_LIMIT_REASON, 0),
    ] {
        assert_eq!(server.refused(reason), n, "{reason}");
    }
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_counted_and_a_freed_slot_serves_again() {
    let server = Running::start(Limits {
        max_connections: 2,
        ..Limits::DEFAULT
    })
    .await;
    let first = kept_alive(server.addr).await;
    let _second = kept_alive(server.addr).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    closed_by_server(&mut third, Duration::from_secs(30)).await;
    assert_eq!(server.refused(CONNECTION_LIMIT_REASON), 1);
    // One slot freed: the server notices the close and serves a new
    // connection (it may take a moment to see the close).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = try_exchange(
            server.addr,
            "GET /data HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.is_empty(), "{answer}");
        assert!(Instant::now() < deadline, "the freed slot never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_slow_head_and_an_idle_kept_alive_connection_are_closed_at_the_head_timeout() {
    let server = Running::start(Limits {
        head_timeout: Duration::from_millis(300),
        ..Limits::DEFAULT
    })
    .await;
    // Half a head, never finished.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /data HTTP/1.1\r\nhost: loc")
        .await
        .unwrap();
    let took = closed_by_server(&mut slow, Duration::from_secs(30)).await;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    // Idle between requests.
    let mut idle = kept_alive(server.addr).await;
    closed_by_server(&mut idle, Duration::from_secs(30)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_busy_connection_is_closed_at_its_lifetime() {
    let server = Running::start(Limits {
        connection_lifetime: Duration::from_millis(300),
        ..Limits::DEFAULT
    })
    .await;
    // Requests keep coming (the head timeout never fires); the lifetime ends it.
    let mut s = kept_alive(server.addr).await;
    let started = Instant::now();
    let ended = loop {
        if s.write_all(b"GET /data HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .is_err()
        {
            break started.elapsed();
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("no answer and no close"),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        ended >= Duration::from_millis(200),
        "closed after {ended:?}"
    );
    server.stop().await;
}
