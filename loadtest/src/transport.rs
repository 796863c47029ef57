//! Connections to the target: TCP from a chosen source address, optional TLS with
//! per-host SNI and session resumption, and a hyper HTTP/1.1 or HTTP/2 client on top.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use crate::clientaddr::{ProxyVersion, proxy_header};
use crate::request::PlannedRequest;
use crate::stats::HandshakeKind;

/// Where to connect and with which protocol.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved socket address of the edge.
    pub addr: SocketAddr,
    /// True for `https://`.
    pub tls: bool,
    /// Host of the target URL (used when a request has no host).
    pub host: String,
}

impl Target {
    /// Parses and resolves a target URL such as `http://127.0.0.1:8080`.
    pub async fn resolve(url: &str) -> Result<Self> {
        let u = url::Url::parse(url).with_context(|| format!("invalid --target {url:?}"))?;
        let tls = match u.scheme() {
            "http" => false,
            "https" => true,
            other => bail!("unsupported scheme {other:?} in --target (use http or https)"),
        };
        let host = u
            .host_str()
            .context("--target has no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = u.port_or_known_default().context("--target has no port")?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} resolved to no address"))?;
        Ok(Self { addr, tls, host })
    }
}

/// Accepts every server certificate (`--insecure`); signatures are still checked.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Builds the shared rustls client config (ring provider; an in-memory
/// session cache when `resumption` is set, else every handshake is full).
pub fn tls_config(
    insecure: bool,
    ca_file: Option<&Path>,
    http2: bool,
    resumption: bool,
) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else {
        let path = ca_file.context("https target needs --ca-file PEM or --insecure")?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("parsing {}", path.display()))?;
            roots.add(cert).context("adding CA certificate")?;
        }
        if roots.is_empty() {
            bail!("{} contains no certificates", path.display());
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.resumption = if resumption {
        Resumption::in_memory_sessions(4096)
    } else {
        Resumption::disabled()
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Opens connections to the target.
#[derive(Clone)]
pub struct Connector {
    target: Target,
    tls: Option<TlsConnector>,
    http2: bool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target)
            .field("tls", &self.tls.is_some())
            .field("http2", &self.http2)
            .finish()
    }
}

/// A TLS handshake's kind and duration.
pub type HandshakeInfo = (HandshakeKind, Duration);

/// An HTTP client connection.
pub enum Conn {
    /// HTTP/1.1.
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// HTTP/2.
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::H1(_) => "Conn::H1",
            Conn::H2(_) => "Conn::H2",
        })
    }
}

/// Headers never copied from a record: computed by the client or hop-by-hop.
const SKIPPED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Recorded headers dropped when the client address is sent in `X-Forwarded-For`.
const FORWARDING_HEADERS: &[&str] = &["x-forwarded-for", "forwarded", "x-real-ip"];

impl Connector {
    /// A connector for `target`; `tls` must be set for https targets.
    pub fn new(target: Target, tls: Option<Arc<ClientConfig>>, http2: bool) -> Self {
        Self {
            target,
            tls: tls.map(TlsConnector::from),
            http2,
        }
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Opens a connection from `source` (if any), with SNI `host` for TLS
    /// targets. With `proxy`, a PROXY protocol header announcing that client
    /// is written first, before any TLS or HTTP byte.
    pub async fn connect(
        &self,
        source: Option<IpAddr>,
        host: &str,
        proxy: Option<(ProxyVersion, IpAddr)>,
    ) -> Result<(Conn, Option<HandshakeInfo>)> {
        let addr = self.target.addr;
        let mut tcp = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .with_context(|| format!("binding source address {ip}"))?;
                socket.connect(addr).await?
            }
        };
        tcp.set_nodelay(true)?;
        if let Some((version, client)) = proxy {
            // The announced source port is this connection's local port.
            let port = tcp.local_addr()?.port();
            let header = proxy_header(version, SocketAddr::new(client, port), addr)?;
            tcp.write_all(&header)
                .await
                .context("writing the PROXY protocol header")?;
        }
        let (io, handshake): (Box<dyn Io>, _) = match &self.tls {
            None => (Box::new(tcp), None),
            Some(connector) => {
                let name = ServerName::try_from(host.to_owned())
                    .with_context(|| format!("invalid TLS server name {host:?}"))?;
                let started = Instant::now();
                let tls = connector.connect(name, tcp).await?;
                let took = started.elapsed();
                let kind = match tls.get_ref().1.handshake_kind() {
                    Some(rustls::HandshakeKind::Resumed) => HandshakeKind::Resumed,
                    _ => HandshakeKind::Full,
                };
                (Box::new(tls), Some((kind, took)))
            }
        };
        let io = TokioIo::new(io);
        let conn = if self.http2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Conn::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Conn::H1(sender)
        };
        Ok((conn, handshake))
    }

    /// Builds the hyper request for `req` (origin-form + Host for HTTP/1.1,
    /// absolute URI for HTTP/2). With `forwarded_for`, recorded forwarding
    /// headers are replaced by `X-Forwarded-For: <that address>`.
    pub fn build_request(
        &self,
        req: &PlannedRequest,
        forwarded_for: Option<IpAddr>,
    ) -> Result<Request<Full<Bytes>>> {
        let host = if req.host.is_empty() {
            self.target.host.as_str()
        } else {
            req.host.as_str()
        };
        let mut builder = Request::builder().method(req.method.clone());
        builder = if self.http2 {
            let scheme = if self.target.tls { "https" } else { "http" };
            builder.uri(format!("{scheme}://{host}{}", req.path))
        } else {
            builder.uri(req.path.as_str()).header(HOST, host)
        };
        for (name, value) in &req.headers {
            let lower = name.to_ascii_lowercase();
            if SKIPPED_HEADERS.contains(&lower.as_str())
                || (forwarded_for.is_some() && FORWARDING_HEADERS.contains(&lower.as_str()))
            {
                continue;
            }
            builder = builder.header(
                HeaderName::from_bytes(name.as_bytes())
                    .with_context(|| format!("invalid header name {name:?}"))?,
                HeaderValue::from_str(value)
                    .with_context(|| format!("invalid value for header {name}"))?,
            );
        }
        if let Some(ip) = forwarded_for {
            builder = builder.header("x-forwarded-for", ip.to_string());
        }
        Ok(builder.body(Full::new(req.body.clone()))?)
    }
}

impl Conn {
    /// True when the connection can no longer be used.
    pub fn is_closed(&self) -> bool {
        match self {
            Conn::H1(s) => s.is_closed(),
            Conn::H2(s) => s.is_closed(),
        }
    }

    /// Sends a request and reads the whole response body; returns the status.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<u16> {
        let resp: Response<Incoming> = match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }
}
