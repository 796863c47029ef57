//! Backend side of the edge: key generation and consumers that decrypt events.
//!
//! This crate depends on the shared `edge-envelope` crate only, never on the
//! edge itself.

pub mod aggregate;
pub mod backup;
pub mod endpoint;
pub mod kafka_props;
pub mod keygen;
pub mod output;
pub mod tail;
