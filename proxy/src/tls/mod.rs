//! TLS termination for the public listener: certificates by SNI and the handshake wrapper.
pub mod accept;
pub mod certs;

pub use accept::{MinTlsVersion, TlsApp, TlsContext};
pub use certs::{CertMap, LoadedCert, SniResolver, load_pem_pair};
