//! Transports: raw HTTP/1.1 over TCP or TLS, the `h2` client, raw HTTP/2
//! frames and bare handshakes, and how what came back is judged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_tests::EdgePorts;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::probe::{BOUND, Expect, H2Req, HOST, Probe};

// === transports ===

/// What came back.
#[derive(Debug)]
pub enum Seen {
    /// An HTTP response; `closed_after` when the edge closed the connection after it.
    Response {
        status: u16,
        body: Vec<u8>,
        closed_after: bool,
    },
    /// The connection closed without a response.
    Closed,
    /// The TLS handshake failed.
    Refused,
    /// The TLS handshake succeeded (handshake-only cases).
    Handshaken,
    /// HTTP/2 frames seen on a raw connection.
    Frames {
        goaway: bool,
        rst_streams: usize,
        headers: usize,
        closed: bool,
    },
}

pub struct Target {
    pub ports: EdgePorts,
    pub roots: Arc<rustls::RootCertStore>,
}

impl Target {
    fn tls(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut cfg = rustls::ClientConfig::builder()
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg.enable_sni = true;
        TlsConnector::from(Arc::new(cfg))
    }

    async fn tls_stream(
        &self,
        sni: Option<&'static str>,
        alpn: &[&[u8]],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.ports.https).await?;
        let mut connector = self.tls(alpn);
        let name = match sni {
            Some(n) => ServerName::try_from(n).unwrap(),
            None => {
                // An IP address as server name: rustls sends no SNI.
                let mut cfg = rustls::ClientConfig::builder()
                    .with_root_certificates(self.roots.clone())
                    .with_no_client_auth();
                cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
                connector = TlsConnector::from(Arc::new(cfg));
                ServerName::from(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
            }
        };
        connector.connect(name, tcp).await
    }

    /// Sends `send`; for HTTP/1.1, `wait_close` also waits (up to 5 s) to see
    /// whether the edge closes the connection after its answer.
    pub async fn send(&self, send: &Probe, wait_close: bool) -> Seen {
        match send {
            Probe::Plain(bytes) => {
                let mut s = TcpStream::connect(self.ports.http).await.unwrap();
                exchange_h1(&mut s, bytes, wait_close).await
            }
            Probe::Tls(bytes) => {
                let mut s = self.tls_stream(Some(HOST), &[b"http/1.1"]).await.unwrap();
                exchange_h1(&mut s, bytes, wait_close).await
            }
            Probe::Handshake(sni, alpn) => {
                let alpn: Vec<&[u8]> = alpn.iter().map(|p| p.as_bytes()).collect();
                match self.tls_stream(*sni, &alpn).await {
                    Ok(mut s) => {
                        let _ = s.shutdown().await;
                        Seen::Handshaken
                    }
                    Err(_) => Seen::Refused,
                }
            }
            Probe::H2(req) => {
                let s = self.tls_stream(Some(HOST), &[b"h2"]).await.unwrap();
                exchange_h2(s, req).await
            }
            Probe::H2Raw(bytes) => {
                let mut s = self.tls_stream(Some(HOST), &[b"h2"]).await.unwrap();
                exchange_h2_raw(&mut s, bytes).await
            }
        }
    }
}

/// Writes `bytes`, reads one response (or a close), then whether the edge closes.
pub async fn exchange_h1<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    bytes: &[u8],
    wait_close: bool,
) -> Seen {
    let head_only = bytes.starts_with(b"HEAD ");
    // The edge may answer (and close) before reading everything: ignore write errors.
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return Seen::Closed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let length = if head_only || status == 304 || status == 204 {
        0
    } else {
        length
    };
    while buf.len() < head_end + length {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..].to_vec();
    let closed_after = if wait_close {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    } else {
        false
    };
    Seen::Response {
        status,
        body,
        closed_after,
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub async fn exchange_h2<S: AsyncRead + AsyncWrite + Unpin + std::marker::Send + 'static>(
    s: S,
    req: &H2Req,
) -> Seen {
    let (client, conn) = match h2::client::handshake(s).await {
        Ok(x) => x,
        Err(_) => return Seen::Closed,
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = match client.ready().await {
        Ok(c) => c,
        Err(_) => return Seen::Closed,
    };
    let mut builder = http::Request::builder()
        .method(req.method)
        .uri(req.uri.as_str());
    for (k, v) in &req.headers {
        builder = builder.header(*k, http::HeaderValue::from_bytes(v).unwrap());
    }
    let request = builder.body(()).unwrap();
    let (response, mut stream) = match client.send_request(request, req.body.is_none()) {
        Ok(x) => x,
        Err(_) => return Seen::Closed,
    };
    if let Some(body) = &req.body {
        let _ = stream.send_data(Bytes::from(body.clone()), true);
    }
    match response.await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let mut body_stream = resp.into_body();
            let mut body = Vec::new();
            while let Some(Ok(chunk)) = body_stream.data().await {
                let _ = body_stream.flow_control().release_capacity(chunk.len());
                body.extend_from_slice(&chunk);
            }
            Seen::Response {
                status,
                body,
                closed_after: false,
            }
        }
        Err(_) => Seen::Closed,
    }
}

/// Writes hand-made HTTP/2 bytes and reads frames until the edge closes or
/// goes quiet for a second after a GOAWAY/RST/response.
pub async fn exchange_h2_raw<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> Seen {
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    let (mut goaway, mut rst_streams, mut headers, mut closed) = (false, 0, 0, false);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + BOUND;
    loop {
        // Parse whole frames.
        while buf.len() >= 9 {
            let len = ((buf[0] as usize) << 16) | ((buf[1] as usize) << 8) | buf[2] as usize;
            if buf.len() < 9 + len {
                break;
            }
            match buf[3] {
                0x7 => goaway = true,
                0x3 => rst_streams += 1,
                0x1 => headers += 1,
                _ => {}
            }
            buf.drain(..9 + len);
        }
        let quiet = if goaway || rst_streams > 0 || headers > 0 {
            Duration::from_secs(1)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match tokio::time::timeout(quiet, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
        if Instant::now() > deadline {
            break;
        }
    }
    Seen::Frames {
        goaway,
        rst_streams,
        headers,
        closed,
    }
}

/// Whether `seen` is what `expect` asks for.
pub fn matches(expect: Expect, seen: &Seen) -> bool {
    match (expect, seen) {
        (Expect::Status(0), Seen::Handshaken) => true,
        (Expect::Status(want), Seen::Response { status, .. }) => *status == want,
        (
            Expect::StatusThenClose(want),
            Seen::Response {
                status,
                closed_after,
                ..
            },
        ) => *status == want && *closed_after,
        (Expect::Refused, Seen::Refused) => true,
        (Expect::GoAway, Seen::Frames { goaway, closed, .. }) => *goaway || *closed,
        (Expect::GoAway, Seen::Closed) => true,
        (
            Expect::RefusedStreams,
            Seen::Frames {
                goaway,
                rst_streams,
                headers,
                ..
            },
        ) => *goaway || *rst_streams > 0 || *headers > 0,
        _ => false,
    }
}
