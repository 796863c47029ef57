//! TLS certificates of the edge, without the listener around them.
//!
//! * `sni.rs`: loading PEM pairs ([`load_pem_pair`], [`from_der_parts`]), the
//!   immutable SNI map ([`CertMap`]) and the rustls resolver
//!   ([`SniResolver`]) that consults it, then the run-time certificates
//!   behind [`ManagedCerts`] (ACME).
//! * [`outcome`]: what a handshake came to, as the resolver saw it.
//! * [`hostmap`]: exact-then-one-label-wildcard lookup, shared by the SNI map
//!   and the edge's Host routing.
//! * [`secret_file`]: reading files that hold secrets (mode checked).
//! * [`clock`]: Unix time helpers shared with the edge and the ACME manager.
//! * `metrics.rs`: `edge_tls_certificates` and `edge_tls_certificate_expiry_seconds`,
//!   which the edge registers into its registry.

// Only what another crate uses is `pub` (ARCHITECTURE.md); this keeps it so.
#![warn(unreachable_pub)]

pub mod clock;
pub mod hostmap;
mod metrics;
pub mod outcome;
pub mod secret_file;
mod sni;

pub use metrics::{CertMetrics, METRICS};
pub use outcome::HandshakeOutcome;
pub use sni::{
    CertError, CertMap, LoadedCert, ManagedCerts, MissKind, SniResolver, from_der_parts,
    load_pem_pair,
};

/// The ALPN protocol of ACME TLS-ALPN-01 validation handshakes (RFC 8737).
/// The resolver here answers it; the ACME manager (which depends on this
/// crate, never the reverse) provisions the challenge certificates.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
