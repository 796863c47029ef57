//! The edge: a privacy-first analytics ingestion proxy on Pingora.
//!
//! Requests arrive on public HTTP/HTTPS listeners, are routed by Host to a
//! configured site, validated and anonymised by `edge-collector`, encrypted by
//! `edge-envelope`, and acknowledged once fsync'd in the local spool, from
//! which a shipper delivers them to Kafka. See
//! ARCHITECTURE.md for the map.

pub mod admin;
pub mod admin_spool;
pub mod bots;
pub mod clientip;
pub mod connections;
pub mod dev;
pub mod fleet_sync;
pub mod http;
pub mod kafka;
pub mod kafka_health;
pub mod logging;
pub mod metrics;
pub mod proxy_protocol;
pub mod reload;
pub mod reply;
pub mod runtime;
pub mod server;
pub mod shipper;
pub mod state;
#[cfg(test)]
mod test_config;
#[cfg(test)]
mod test_kafka;
pub mod tls;
pub mod tracker;
