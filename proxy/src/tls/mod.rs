//! TLS termination for the public listener: certificates by SNI and the handshake wrapper.
pub mod accept;
pub mod certs;
pub mod outcome;

/// The ALPN protocol of ACME TLS-ALPN-01 validation handshakes (RFC 8737).
/// The TLS layer answers it; the ACME manager (which depends on the TLS
/// layer, never the reverse) provisions the challenge certificates.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

pub use accept::{MinTlsVersion, TlsApp, TlsContext};
pub use certs::{
    CertMap, LoadedCert, ManagedCerts, MissKind, SniResolver, from_der_parts, load_pem_pair,
};
pub use outcome::HandshakeOutcome;
