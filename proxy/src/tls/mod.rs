//! TLS termination for the public listener: the handshake wrapper. The
//! certificates it serves (files, SNI map, resolver) are the `edge-certs`
//! crate; the ACME ones come from `edge-acme` through its resolver.
pub mod accept;

pub use accept::{MinTlsVersion, TlsApp, TlsContext};
