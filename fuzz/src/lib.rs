//! The checks behind the `cargo fuzz` targets of the edge (issue 12).
//!
//! Each `check_*` function takes the fuzzer's bytes, runs one parser of
//! untrusted input exactly as the edge or the backend calls it, and asserts
//! what must hold for every input: no panic, and the properties documented
//! on the function (accepted values respect the configured bounds, errors
//! are well-formed, round trips are exact). A violated property panics, which
//! libFuzzer reports as a crash with a reproducer file.
//!
//! The targets in `fuzz_targets/` are one-line wrappers, so the same checks
//! replay the committed corpora and regressions under `cargo test`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod envelope;
mod event;
pub mod proxy_header;

pub use config::check_config;
pub use envelope::{check_envelope, check_wire};
pub use event::{check_event_body, check_pixel_query};
pub use proxy_header::check_proxy_header;

#[cfg(test)]
mod tests;
