//! Event schema, validation and privacy-preserving enrichment for the edge.
//!
//! Raw request data goes in (a JSON body or a query string, the client IP
//! address and its user agent); an anonymous [`edge_envelope::EventRecord`]
//! comes out. The pipeline is:
//!
//! 1. [`schema`]: parse and bound-check the event(s) sent by the browser.
//! 2. [`sanitize`]: strip query strings, fragments and credentials from URLs,
//!    keeping only the `utm_*` campaign parameters.
//! 3. [`useragent`]: reduce the user agent to coarse device/browser/OS classes.
//! 4. [`salt`] + [`enrich`]: derive a visitor id with a keyed hash under a salt
//!    that rotates daily and is deleted after two days, then assemble the record.
//!
//! The raw IP address and user agent never appear in the output.

pub mod enrich;
pub mod salt;
pub mod sanitize;
pub mod schema;
pub mod useragent;

pub use enrich::{ClientContext, EnrichError, Enricher, Visitor};
pub use salt::{SaltError, SaltStore};
pub use schema::{Bounds, EventError, IncomingEvent, parse_body, parse_query};
pub use useragent::classify;
