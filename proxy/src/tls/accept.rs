//! The public TLS listener: our own handshake in front of Pingora's HTTP app.
//!
//! Pingora's built-in TLS listener fixes the protocol versions and the ALPN
//! list. Doing the handshake here lets the edge choose the minimum TLS
//! version per configuration (hot-reloadable), bound the handshake time,
//! count outcomes, and later answer `acme-tls/1` challenges on the same port.

use std::cell::Cell;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{ALPN, Ssl, Stream};
use pingora::server::ShutdownWatch;
use rustls::ServerConfig;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

use crate::metrics::METRICS;
use edge_certs::HandshakeOutcome;
use edge_certs::SniResolver;
use edge_certs::outcome::RESOLVER_OUTCOME;

/// Minimum TLS protocol version offered on the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinTlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Builds handshake configurations that share one resolver, session cache
/// and ticketer, so a reload does not break session resumption.
pub struct TlsContext {
    resolver: Arc<SniResolver>,
    session_cache: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
    acceptor: ArcSwap<Acceptor>,
    min_version: ArcSwap<MinTlsVersion>,
}

/// Why the TLS context could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS setup failed: {0}")]
pub struct TlsSetupError(String);

impl TlsContext {
    /// Creates the context with an empty certificate map.
    pub fn new(min_version: MinTlsVersion) -> Result<Self, TlsSetupError> {
        let resolver = Arc::new(SniResolver::default());
        let session_cache: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(16 * 1024);
        let ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsSetupError(e.to_string()))?;
        let acceptor = Self::build_acceptor(&resolver, &session_cache, &ticketer, min_version)?;
        Ok(Self {
            resolver,
            session_cache,
            ticketer,
            acceptor: ArcSwap::from_pointee(acceptor),
            min_version: ArcSwap::from_pointee(min_version),
        })
    }

    fn build_acceptor(
        resolver: &Arc<SniResolver>,
        session_cache: &Arc<dyn StoresServerSessions>,
        ticketer: &Arc<dyn ProducesTickets>,
        min_version: MinTlsVersion,
    ) -> Result<Acceptor, TlsSetupError> {
        let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
            MinTlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinTlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| TlsSetupError(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![
            b"h2".to_vec(),
            b"http/1.1".to_vec(),
            edge_certs::ACME_TLS_ALPN.to_vec(),
        ];
        config.session_storage = session_cache.clone();
        config.ticketer = ticketer.clone();
        Ok(Acceptor::from_server_config(Arc::new(config)))
    }

    /// The resolver whose certificate map reloads replace.
    pub fn resolver(&self) -> &SniResolver {
        &self.resolver
    }

    /// Applies a (possibly changed) minimum version; rebuilds the handshake
    /// configuration only when it changed.
    pub fn set_min_version(&self, min_version: MinTlsVersion) -> Result<(), TlsSetupError> {
        if **self.min_version.load() == min_version {
            return Ok(());
        }
        let acceptor = Self::build_acceptor(
            &self.resolver,
            &self.session_cache,
            &self.ticketer,
            min_version,
        )?;
        self.acceptor.store(Arc::new(acceptor));
        self.min_version.store(Arc::new(min_version));
        Ok(())
    }
}

/// A [`ServerApp`] that terminates TLS and hands the stream to `inner`.
pub(crate) struct TlsApp<A> {
    tls: Arc<TlsContext>,
    inner: Arc<A>,
}

impl<A> TlsApp<A> {
    /// Wraps an HTTP app (Pingora's `HttpProxy`).
    pub(crate) fn new(tls: Arc<TlsContext>, inner: A) -> Self {
        Self {
            tls,
            inner: Arc::new(inner),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for TlsApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Pingora hands plain TCP listeners' connections over as its L4 stream.
        let tcp = match stream.into_any().downcast::<L4Stream>() {
            Ok(tcp) => *tcp,
            Err(_) => {
                tracing::error!("TLS listener received a stream that is not TCP");
                return None;
            }
        };
        let acceptor = self.tls.acceptor.load_full();
        let (result, resolver_said) = RESOLVER_OUTCOME
            .scope(Cell::new(None), async {
                let limit = crate::connections::tls_handshake_timeout();
                let r = tokio::time::timeout(limit, acceptor.tls_handshake(tcp)).await;
                (r, RESOLVER_OUTCOME.with(Cell::get))
            })
            .await;
        let count = |o: HandshakeOutcome| {
            METRICS
                .tls_handshakes
                .with_label_values(&[o.as_label()])
                .inc();
        };
        let tls_stream = match result {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                // The resolver's refusal explains the failure; a handshake
                // that failed after it chose a certificate failed for another reason.
                let outcome = match resolver_said {
                    Some(HandshakeOutcome::AlpnChallenge) | None => HandshakeOutcome::Failed,
                    Some(refusal) => refusal,
                };
                count(outcome);
                tracing::debug!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                count(HandshakeOutcome::Timeout);
                return None;
            }
        };
        if resolver_said == Some(HandshakeOutcome::AlpnChallenge) {
            // RFC 8737: the validation handshake is the whole exchange.
            count(HandshakeOutcome::AlpnChallenge);
            edge_acme::METRICS
                .acme_challenges_served
                .with_label_values(&["tls-alpn-01"])
                .inc();
            return None;
        }
        if matches!(tls_stream.selected_alpn_proto(), Some(ALPN::Custom(_))) {
            // Only `acme-tls/1` is custom in our list, and it was not a
            // validation handshake (e.g. a resumed session skipped the
            // resolver): never carry HTTP over it.
            count(HandshakeOutcome::AlpnRefused);
            return None;
        }
        count(HandshakeOutcome::Ok);
        // Keep-alive reuse stays inside this wrapper: returning the TLS stream
        // to Pingora's listener would make it call us again and re-handshake.
        let mut next: Option<Stream> = Some(Box::new(tls_stream));
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
