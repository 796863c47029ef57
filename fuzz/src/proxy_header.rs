//! The PROXY protocol header parser of the edge's public listeners.
//!
//! The items below are compiled from `proxy/src/proxy_protocol.rs` by
//! `build.rs` (the edge's own code, not a copy kept by hand), so the fuzzer
//! exercises `edge_proxy::proxy_protocol::parse_header` without linking
//! Pingora and librdkafka.
#![allow(dead_code, missing_docs, clippy::all)]

use std::net::SocketAddr;

use ppp::{HeaderResult, PartialResult};

include!(concat!(env!("OUT_DIR"), "/proxy_protocol_parse.rs"));

/// `parse_header` on arbitrary bytes: a complete header's length lies within
/// the input and re-parsing exactly those bytes gives the same header (the
/// header is self-delimiting, so what follows it, TLS or HTTP, is never
/// consumed); "need more bytes" is only answered below the size cap; errors
/// have a metric label.
pub fn check_proxy_header(data: &[u8]) {
    match parse_header(data) {
        Ok(Some((header, length, version))) => {
            assert!(
                length > 0 && length <= data.len(),
                "header length {length} outside the {} input bytes",
                data.len()
            );
            assert!(matches!(version, "v1" | "v2"), "version label {version:?}");
            let again = parse_header(&data[..length]);
            assert_eq!(
                again,
                Ok(Some((header, length, version))),
                "the header's own bytes parse differently"
            );
        }
        Ok(None) => assert!(
            data.len() < MAX_HEADER_BYTES,
            "asked for more bytes after {} bytes",
            data.len()
        ),
        Err(e) => {
            assert!(matches!(e.label(), "missing" | "invalid"));
            let _ = e.to_string();
        }
    }
}
