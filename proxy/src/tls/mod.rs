//! TLS termination for the public listener: certificates by SNI and the handshake wrapper.
pub mod accept;
pub mod certs;

pub use accept::{HandshakeOutcome, MinTlsVersion, TlsApp, TlsContext};
pub use certs::{
    CertMap, LoadedCert, ManagedCerts, MissKind, SniResolver, from_der_parts, load_pem_pair,
};
