//! `edge-loadtest`: an open-loop load generator and traffic replayer for the edge.
//!
//! Requests are released at their intended send times (constant rate for `synth`,
//! the recorded schedule for `replay`) and latency is measured from that intended
//! time, so queueing behind a slow server is not hidden (no coordinated omission).

pub mod admin;
pub mod app;
pub mod cli;
pub mod clientaddr;
pub mod combined;
pub mod pageviews;
pub mod plot;
pub mod progress;
pub mod records;
pub mod replay;
pub mod request;
pub mod runner;
pub mod schedule;
pub mod sources;
pub mod stats;
pub mod summary;
pub mod synth;
pub mod transport;
pub mod verdict;
