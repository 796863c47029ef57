//! The unit of work handed to workers: one HTTP request to send at an intended time.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

/// One planned request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRequest {
    /// Intended send time as an offset from the run start; `None` means "as soon as
    /// possible" (closed loop: latency is then measured from the actual send).
    pub offset: Option<Duration>,
    /// HTTP method.
    pub method: Method,
    /// Host header and TLS SNI.
    pub host: String,
    /// Path and query, e.g. `/api/event`.
    pub path: String,
    /// Extra headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Request body (empty for none).
    pub body: Bytes,
    /// Client slot; selects the local source address.
    pub client: usize,
    /// The client's address as sent in `X-Forwarded-For` or a PROXY header
    /// (recorded, or synthetic from 198.18.0.0/15).
    pub client_addr: IpAddr,
}
