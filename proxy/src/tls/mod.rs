//! TLS termination for the public listener: the handshake wrapper. The
//! certificates it serves (files, SNI map, resolver) are the `edge-certs`
//! crate; the ACME ones come from `edge-acme` through `edge_certs::ManagedCerts`.
pub(crate) mod accept;

pub(crate) use accept::{MinTlsVersion, TlsApp, TlsContext};
