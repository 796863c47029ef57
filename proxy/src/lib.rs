//! The edge: a privacy-first analytics ingestion proxy on Pingora.
//!
//! Requests arrive on public HTTP/HTTPS listeners, are routed by Host to a
//! configured site, validated and anonymised by `edge-collector`, encrypted by
//! `edge-envelope`, and acknowledged once fsync'd in the local spool, from
//! which a shipper delivers them to Kafka. See
//! ARCHITECTURE.md for the map.
//!
//! The crate's public surface is what the `edge` and `edge-dev` binaries
//! call (re-exported below); everything else is `pub(crate)`, and
//! `unreachable_pub` keeps it so.

#![warn(unreachable_pub)]

mod admin;
mod admin_spool;
mod bots;
mod clientip;
mod connections;
mod dev;
mod fleet_sync;
mod http;
mod kafka;
mod kafka_batch;
mod kafka_health;
mod logging;
mod metrics;
mod proxy_protocol;
mod reload;
mod reply;
mod runtime;
mod server;
mod shipper;
mod state;
#[cfg(test)]
mod test_config;
#[cfg(test)]
mod test_kafka;
mod tls;
mod tracker;

pub use dev::run as run_dev;
pub use logging::{COMMAND_FILTER, SERVE_FILTER, init as init_logging};
pub use server::{ExtraServices, Prepared, prepare, run, run_with};
pub use state::{ConfigSource, EdgeState};
