//! Loading certificates from PEM files and choosing one per SNI name.
//!
//! A [`CertMap`] is immutable; the [`SniResolver`] holds the active map in an
//! `ArcSwap` so a reload (or, later, an ACME issuance) swaps every name at
//! once while handshakes keep reading the old map lock-free.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::outcome::{HandshakeOutcome, note_outcome};
use crate::hostmap::HostMap;
use crate::metrics::METRICS;

/// Why a certificate pair could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("cannot read certificate chain {path}: {reason}")]
    Chain {
        /// File path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The key file could not be read or holds no supported private key.
    #[error("cannot read private key {path}: {reason}")]
    Key {
        /// File path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The key does not belong to the certificate, or the certificate is unusable.
    #[error("certificate {path}: {reason}")]
    Invalid {
        /// File path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// One loaded certificate with the DNS names it is valid for.
#[derive(Clone)]
pub struct LoadedCert {
    /// Chain and signing key, ready for rustls.
    pub key: Arc<CertifiedKey>,
    /// DNS names from the leaf's subjectAltName (lowercase, may start with `*.`).
    pub names: Vec<String>,
    /// Leaf `notBefore`, Unix seconds.
    pub not_before: i64,
    /// Leaf `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// Reads a PEM certificate chain and private key and checks they belong together.
pub fn load_pem_pair(cert_file: &Path, key_file: &Path) -> Result<LoadedCert, CertError> {
    let shown = |p: &Path| p.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CertError::Chain {
            path: shown(cert_file),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::Chain {
            path: shown(cert_file),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| CertError::Key {
        path: shown(key_file),
        reason: e.to_string(),
    })?;
    from_der_parts(chain, key, &shown(cert_file))
}

/// Builds a [`LoadedCert`] from DER parts (used for generated certificates too).
pub fn from_der_parts(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'_>,
    origin: &str,
) -> Result<LoadedCert, CertError> {
    let invalid = |reason: String| CertError::Invalid {
        path: origin.to_string(),
        reason,
    };
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid(format!("unsupported private key: {e}")))?;
    let (names, not_before, not_after) = {
        let leaf = chain.first().ok_or_else(|| invalid("empty chain".into()))?;
        let (_, parsed) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| invalid(format!("leaf certificate does not parse: {e}")))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name {
                    names.push(dns.to_ascii_lowercase());
                }
            }
        }
        (
            names,
            parsed.validity().not_before.timestamp(),
            parsed.validity().not_after.timestamp(),
        )
    };
    if names.is_empty() {
        return Err(invalid(
            "leaf certificate has no DNS subjectAltName; SNI cannot select it".into(),
        ));
    }
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| invalid(format!("private key does not match the certificate: {e}")))?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_before,
        not_after,
    })
}

/// Certificates by SNI name. Later entries for the same name replace earlier ones.
#[derive(Default, Clone)]
pub struct CertMap {
    names: HostMap<(Arc<CertifiedKey>, i64)>,
    count: usize,
}

impl CertMap {
    /// Builds the map from loaded certificates.
    pub fn new(certs: &[LoadedCert]) -> Self {
        let mut map = CertMap {
            count: certs.len(),
            ..CertMap::default()
        };
        for cert in certs {
            for name in &cert.names {
                map.names.insert(name, (cert.key.clone(), cert.not_after));
            }
        }
        map
    }

    /// The certificate for `server_name`: an exact match first, then a
    /// one-label wildcard (`*.example.com` covers `a.example.com` only).
    pub fn lookup(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.names.get(server_name).map(|(key, _)| key.clone())
    }

    /// Expiry (Unix seconds) of the certificate that `server_name` selects.
    pub fn not_after(&self, server_name: &str) -> Option<i64> {
        self.names.get(server_name).map(|(_, t)| *t)
    }

    /// Number of certificates (not names) in the map.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no certificate is loaded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// What a name without any certificate is, for the handshake metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissKind {
    /// Nobody authorised this name: refused at once, nothing ordered.
    Unknown,
    /// Authorised; a certificate is being obtained in the background.
    NoCertYet,
}

/// Certificates obtained at run time (ACME), consulted after the
/// operator-provided ones. Every method runs inside a handshake: it must be
/// fast and must never wait for the network.
pub trait ManagedCerts: Send + Sync {
    /// The TLS-ALPN-01 validation certificate for `name`, during an order.
    fn challenge_cert(&self, name: &str) -> Option<Arc<CertifiedKey>>;
    /// The certificate served for `name`.
    fn cert(&self, name: &str) -> Option<Arc<CertifiedKey>>;
    /// Called when no certificate covers `name`; may queue background work.
    fn missing(&self, name: &str) -> MissKind;
}

/// The rustls resolver: picks the certificate for the ClientHello's SNI.
///
/// Order: a TLS-ALPN-01 validation handshake gets the challenge certificate;
/// otherwise the operator's certificates, then managed (ACME) ones. Unknown
/// or missing SNI fails the handshake before any key exchange work.
#[derive(Default)]
pub struct SniResolver {
    certs: ArcSwap<CertMap>,
    managed: std::sync::OnceLock<Arc<dyn ManagedCerts>>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("certificates", &self.certs.load().len())
            .finish()
    }
}

impl SniResolver {
    /// Atomically replaces every certificate.
    pub fn install(&self, map: CertMap) {
        METRICS.tls_certificates.set(map.len() as i64);
        self.certs.store(Arc::new(map));
    }

    /// Connects the run-time certificate source (set once, at startup).
    pub fn set_managed(&self, managed: Arc<dyn ManagedCerts>) {
        if self.managed.set(managed).is_err() {
            tracing::warn!("managed certificate source was already set");
        }
    }
}

/// What a ClientHello's ALPN list asks for, as far as certificates go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlpnOffer {
    /// No ALPN, or a list with `h2` or `http/1.1` in it: HTTP.
    Http,
    /// `acme-tls/1` and nothing else: a TLS-ALPN-01 validation (RFC 8737).
    OnlyAcme,
    /// `acme-tls/1` with other protocols but no HTTP one: rustls would
    /// negotiate `acme-tls/1` with the real certificate, so it is refused.
    AcmeAmongOthers,
}

fn alpn_offer<'a>(protocols: Option<impl Iterator<Item = &'a [u8]>>) -> AlpnOffer {
    let Some(protocols) = protocols else {
        return AlpnOffer::Http;
    };
    let (mut acme, mut http, mut count) = (false, false, 0usize);
    for p in protocols {
        count += 1;
        acme |= p == super::ACME_TLS_ALPN;
        http |= p == b"h2" || p == b"http/1.1";
    }
    match (acme, http, count) {
        (true, _, 1) => AlpnOffer::OnlyAcme,
        (true, false, _) => AlpnOffer::AcmeAmongOthers,
        _ => AlpnOffer::Http,
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            note_outcome(HandshakeOutcome::NoSni);
            return None;
        };
        let managed = self.managed.get();
        match alpn_offer(hello.alpn()) {
            AlpnOffer::Http => {}
            AlpnOffer::OnlyAcme => {
                // Only while a challenge for this very name is pending.
                let cert = managed.and_then(|m| m.challenge_cert(name));
                note_outcome(match cert {
                    Some(_) => HandshakeOutcome::AlpnChallenge,
                    None => HandshakeOutcome::AlpnRefused,
                });
                return cert;
            }
            AlpnOffer::AcmeAmongOthers => {
                note_outcome(HandshakeOutcome::AlpnRefused);
                return None;
            }
        }
        if let Some(found) = self.certs.load().lookup(name) {
            return Some(found);
        }
        if let Some(managed) = managed {
            if let Some(found) = managed.cert(name) {
                return Some(found);
            }
            if managed.missing(name) == MissKind::NoCertYet {
                note_outcome(HandshakeOutcome::NoCertYet);
                return None;
            }
        }
        note_outcome(HandshakeOutcome::UnknownSni);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(names: &[&str]) -> LoadedCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        from_der_parts(vec![cert.der().clone()], key_der, "test").unwrap()
    }

    #[test]
    fn acme_alpn_only_when_it_is_the_sole_protocol() {
        let offer = |list: &[&[u8]]| alpn_offer(Some(list.iter().copied()));
        assert_eq!(alpn_offer(None::<std::iter::Empty<&[u8]>>), AlpnOffer::Http);
        assert_eq!(offer(&[b"acme-tls/1"]), AlpnOffer::OnlyAcme);
        assert_eq!(offer(&[b"acme-tls/1", b"foo"]), AlpnOffer::AcmeAmongOthers);
        assert_eq!(offer(&[b"foo", b"acme-tls/1"]), AlpnOffer::AcmeAmongOthers);
        assert_eq!(offer(&[b"acme-tls/1", b"http/1.1"]), AlpnOffer::Http);
        assert_eq!(offer(&[b"h2", b"acme-tls/1"]), AlpnOffer::Http);
        assert_eq!(offer(&[b"foo"]), AlpnOffer::Http);
    }

    #[test]
    fn exact_then_wildcard_lookup() {
        let a = generated(&["stats.example.com"]);
        let w = generated(&["*.example.org"]);
        let map = CertMap::new(&[a.clone(), w.clone()]);
        assert!(Arc::ptr_eq(
            &map.lookup("STATS.example.com.").unwrap(),
            &a.key
        ));
        assert!(Arc::ptr_eq(&map.lookup("x.example.org").unwrap(), &w.key));
        assert!(map.lookup("a.b.example.org").is_none());
        assert!(map.lookup("example.org").is_none());
        assert!(map.lookup("other.example.com").is_none());
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn pem_files_round_trip_and_mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("o.pem"), other.serialize_pem()).unwrap();
        let loaded = load_pem_pair(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap();
        assert_eq!(loaded.names, vec!["localhost"]);
        let err = load_pem_pair(&dir.path().join("c.pem"), &dir.path().join("o.pem"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("does not match"), "{err}");
        let err = load_pem_pair(&dir.path().join("missing.pem"), &dir.path().join("k.pem"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
