//! PROXY protocol (v1 and v2) on the public listeners, for an edge behind
//! an L4 load balancer.
//!
//! When `client_ip.proxy_protocol` is on, every new connection must start
//! with a PROXY header (HAProxy's specification, parsed by the `ppp` crate).
//! Its source address replaces the socket peer in the connection's socket
//! digest, so everything downstream (rate limits, visitor hashing) sees the
//! real client. Connections without a valid header are closed and counted.
//! Bytes read past the header are put back for TLS or HTTP.
//!
//! [`ProxyProtocolApp`] is the outermost app of both public listeners, so it
//! also admits each connection under the connection caps and sets the
//! connection's deadlines (see [`crate::connections`]).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::protocols::{Stream, l4::socket::SocketAddr as PingoraAddr};
use pingora::server::ShutdownWatch;
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;

use crate::connections::admission::{self, Slot};
use crate::connections::{ListenerKind, Settings};
use crate::metrics::METRICS;
use crate::state::EdgeState;

/// Time a load balancer has to send its PROXY header.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest header accepted: v2's 16-byte preamble plus its 16-bit length.
const MAX_HEADER_BYTES: usize = 16 + u16::MAX as usize;

/// What was read at the start of a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProxyHeader {
    /// A proxied TCP connection from this client address.
    Client(SocketAddr),
    /// A `LOCAL`/`UNKNOWN` header (the balancer's own health check): keep the peer.
    Local,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ProxyHeaderError {
    /// The connection closed before a complete header.
    #[error("connection closed before a PROXY header")]
    Missing,
    /// The bytes are not a PROXY header.
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
}

impl ProxyHeaderError {
    fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// Parses a complete header at the start of `buf`: `Ok(None)` means more
/// bytes are needed; `Ok(Some((header, length)))` consumed `length` bytes.
pub(crate) fn parse_header(
    buf: &[u8],
) -> Result<Option<(ProxyHeader, usize, &'static str)>, ProxyHeaderError> {
    let parsed = HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        if buf.len() >= MAX_HEADER_BYTES {
            return Err(ProxyHeaderError::Invalid("header too long".into()));
        }
        return Ok(None);
    }
    match parsed {
        HeaderResult::V1(Ok(h)) => {
            let header = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    ProxyHeader::Client(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    ProxyHeader::Client(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                ppp::v1::Addresses::Unknown => ProxyHeader::Local,
            };
            Ok(Some((header, h.header.len(), "v1")))
        }
        HeaderResult::V2(Ok(h)) => {
            let header = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => ProxyHeader::Local,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    ProxyHeader::Client(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    ProxyHeader::Client(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                (_, other) => {
                    return Err(ProxyHeaderError::Invalid(format!(
                        "unsupported address family {:?}",
                        other.address_family()
                    )));
                }
            };
            Ok(Some((header, h.len(), "v2")))
        }
        HeaderResult::V1(Err(e)) => Err(ProxyHeaderError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyHeaderError::Invalid(e.to_string())),
    }
}

/// Reads the header off `stream`, puts back what followed it, and installs
/// the client address in the stream's socket digest.
async fn accept_header(stream: &mut L4Stream) -> Result<&'static str, ProxyHeaderError> {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ProxyHeaderError::Invalid(e.to_string()))?;
        if n == 0 {
            return Err(ProxyHeaderError::Missing);
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some((header, length, version)) = parse_header(&buf)? else {
            continue;
        };
        stream.rewind(&buf[length..]);
        match header {
            ProxyHeader::Client(addr) => {
                let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
                let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(addr)));
                stream.set_socket_digest(digest);
                return Ok(version);
            }
            ProxyHeader::Local => return Ok("local"),
        }
    }
}

/// A [`ServerApp`] for a public listener: admits the connection under the
/// listener's and the client's caps ([`crate::connections::admission`]),
/// reads a PROXY header (when configured), then serves it with `inner`
/// under the connection's [`Settings`].
pub(crate) struct ProxyProtocolApp<A> {
    state: Arc<EdgeState>,
    listener: ListenerKind,
    inner: Arc<A>,
}

impl<A> ProxyProtocolApp<A> {
    /// Wraps `inner` (the TLS app or the HTTP app) for `listener`.
    pub(crate) fn new(state: Arc<EdgeState>, listener: ListenerKind, inner: A) -> Self {
        Self {
            state,
            listener,
            inner: Arc::new(inner),
        }
    }
}

/// The client address the connection's socket digest names.
fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(SocketAddr::ip)
}

impl<A: ServerApp + Send + Sync + 'static> ProxyProtocolApp<A> {
    async fn serve(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
        slot: &mut Slot,
        settings: Settings,
        proxy_protocol: bool,
    ) {
        let mut stream = stream;
        if proxy_protocol {
            let mut tcp = match stream.into_any().downcast::<L4Stream>() {
                Ok(tcp) => tcp,
                Err(_) => {
                    tracing::error!("PROXY protocol listener received a stream that is not TCP");
                    return;
                }
            };
            let outcome = match tokio::time::timeout(HEADER_TIMEOUT, accept_header(&mut tcp)).await
            {
                Ok(Ok(version)) => version,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "connection refused: no valid PROXY header");
                    e.label()
                }
                Err(_) => "timeout",
            };
            METRICS
                .abuse
                .proxy_protocol
                .with_label_values(&[outcome])
                .inc();
            if !matches!(outcome, "v1" | "v2" | "local") {
                return;
            }
            stream = tcp;
        }
        // The per-client cap applies to the address everything downstream
        // sees: the PROXY header's when there is one.
        if let Some(ip) = peer_ip(&stream)
            && slot
                .admit_client(ip, settings.ipv6_prefix_len, settings.max_per_client)
                .is_err()
        {
            return;
        }
        // Keep-alive reuse stays inside this wrapper, so a reused connection
        // is never asked for a second PROXY header.
        let mut next = Some(stream);
        while let Some(s) = next {
            next = self.inner.process_new(s, shutdown).await;
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ProxyProtocolApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (settings, proxy_protocol) = {
            let rt = self.state.runtime();
            (
                Settings::from_config(&rt.loaded.config, self.listener),
                rt.client_ip.proxy_protocol,
            )
        };
        // Refused connections are dropped (closed) here, before any read.
        let mut slot = admission::admit(self.listener, settings.max_per_listener).ok()?;
        settings
            .scope(self.serve(stream, shutdown, &mut slot, settings, proxy_protocol))
            .await;
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_give_the_client_and_their_length() {
        let v1 = b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (h, len, version) = parse_header(v1).unwrap().unwrap();
        assert_eq!(
            h,
            ProxyHeader::Client("198.51.100.7:51234".parse().unwrap())
        );
        assert_eq!(&v1[len..len + 3], b"GET");
        assert_eq!(version, "v1");

        let addresses: ppp::v2::Addresses = (
            "[2001:db8::7]:5555".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:443".parse::<SocketAddr>().unwrap(),
        )
            .into();
        let mut v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addresses,
        )
        .build()
        .unwrap();
        let header_len = v2.len();
        v2.extend_from_slice(b"\x16\x03\x01");
        let (h, len, version) = parse_header(&v2).unwrap().unwrap();
        assert_eq!(
            h,
            ProxyHeader::Client("[2001:db8::7]:5555".parse().unwrap())
        );
        assert_eq!(len, header_len);
        assert_eq!(version, "v2");
    }

    #[test]
    fn partial_local_and_invalid_headers() {
        assert_eq!(parse_header(b"PROXY TCP4 198.51").unwrap(), None);
        assert_eq!(
            parse_header(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0,
            ProxyHeader::Local
        );
        assert!(matches!(
            parse_header(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(ProxyHeaderError::Invalid(_))
        ));
    }
}
