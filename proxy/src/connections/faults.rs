//! Per-connection client faults and timeouts as counters, and the request
//! summary Pingora puts in its own log lines.
//!
//! A client that resets mid-response, sends a broken head or lets a
//! deadline pass is not an operator's problem: it is counted in
//! `edge_client_faults_total{kind}` or `edge_connection_timeouts_total`,
//! never logged per connection.

use pingora::protocols::http::ServerSession as Session;
use pingora::{Error, ErrorSource, ErrorType};

use super::Settings;
use crate::metrics::METRICS;

/// A kind of client fault, the `kind` label of `edge_client_faults_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// The client reset or closed the connection mid-request or mid-response.
    Reset,
    /// The client was too slow to read or send (a Pingora I/O timeout).
    Timeout,
    /// The client broke HTTP framing (HTTP/1 or HTTP/2).
    Protocol,
    /// The connection closed in the middle of a request head.
    IncompleteHead,
    /// A request head larger than the connection layer reads (answered 431).
    HeadTooLarge,
    /// An HTTP/2 handshake failed (no or broken preface).
    H2Handshake,
    /// A transport handshake failed below HTTP (Pingora's accept step).
    Handshake,
    /// `accept()` failed (for example out of file descriptors).
    AcceptError,
}

impl FaultKind {
    /// The label value.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
            Self::IncompleteHead => "incomplete_head",
            Self::HeadTooLarge => "head_too_large",
            Self::H2Handshake => "h2_handshake",
            Self::Handshake => "handshake",
            Self::AcceptError => "accept_error",
        }
    }
}

/// Counts one client fault.
pub(crate) fn count_fault(kind: FaultKind) {
    METRICS
        .connections
        .client_faults
        .with_label_values(&[kind.as_label()])
        .inc();
}

/// A connection deadline, the `phase` label of `edge_connection_timeouts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutPhase {
    /// The whole request head did not arrive within `header_timeout_ms`.
    Header,
    /// No new request within `keepalive_timeout_ms`.
    Keepalive,
    /// No HTTP/2 preface within `h2_handshake_timeout_ms`.
    H2Handshake,
}

impl TimeoutPhase {
    /// The label value.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Keepalive => "keepalive",
            Self::H2Handshake => "h2_handshake",
        }
    }
}

/// Counts a connection closed by a deadline on this task's listener.
pub(crate) fn count_timeout(phase: TimeoutPhase) {
    METRICS
        .connections
        .timeouts
        .with_label_values(&[Settings::current().listener.as_label(), phase.as_label()])
        .inc();
}

/// The client fault behind a Pingora error, if it is one. The edge has no
/// upstream, so transport and framing errors come from the client.
pub(crate) fn client_fault(e: &Error) -> Option<FaultKind> {
    if *e.esource() == ErrorSource::Upstream {
        return None;
    }
    match e.etype() {
        ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => {
            Some(FaultKind::Reset)
        }
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Some(FaultKind::Timeout),
        ErrorType::InvalidHTTPHeader
        | ErrorType::H1Error
        | ErrorType::H2Error
        | ErrorType::InvalidH2
        | ErrorType::H2Downgrade => Some(FaultKind::Protocol),
        _ if *e.esource() == ErrorSource::Downstream => Some(FaultKind::Reset),
        _ => None,
    }
}

/// For the public request path ([`crate::http::app`]): a client fault is counted instead
/// of logged; anything else is logged (with [`request_summary`]).
pub(crate) fn suppress_error_log(e: &Error) -> bool {
    match client_fault(e) {
        Some(kind) => {
            count_fault(kind);
            true
        }
        None => false,
    }
}

/// Longest path shown in a request summary.
const SUMMARY_PATH_CHARS: usize = 64;

/// For log lines about a public request: the method and the path, without the
/// query string, the Host or any other header; a long path is cut and
/// anything but printable ASCII escaped.
pub(crate) fn request_summary(session: &Session) -> String {
    let req = session.req_header();
    summary(req.method.as_str(), req.uri.path())
}

fn summary(method: &str, path: &str) -> String {
    let mut out = String::with_capacity(method.len() + 1 + SUMMARY_PATH_CHARS + 3);
    out.push_str(method);
    out.push(' ');
    for (i, c) in path.chars().enumerate() {
        if i == SUMMARY_PATH_CHARS {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_method_and_bounded_path() {
        assert_eq!(summary("GET", "/api/event.gif"), "GET /api/event.gif");
        let long = "/".to_string() + &"a".repeat(200);
        let s = summary("POST", &long);
        assert!(s.ends_with('…') && s.len() < 80, "{s}");
        assert_eq!(summary("GET", "/a b"), "GET /a\\u{20}b");
    }

    #[test]
    fn transport_errors_are_client_faults() {
        let reset = Error::new(ErrorType::WriteError);
        assert_eq!(client_fault(&reset), Some(FaultKind::Reset));
        let slow = Error::new(ErrorType::ReadTimedout);
        assert_eq!(client_fault(&slow), Some(FaultKind::Timeout));
        let mut bad = Error::new(ErrorType::InvalidHTTPHeader);
        bad.as_down();
        assert_eq!(client_fault(&bad), Some(FaultKind::Protocol));
        assert_eq!(client_fault(&Error::new(ErrorType::InternalError)), None);
        let mut down = Error::new(ErrorType::InternalError);
        down.as_down();
        assert_eq!(client_fault(&down), Some(FaultKind::Reset));
        let before = METRICS
            .connections
            .client_faults
            .with_label_values(&["reset"])
            .get();
        assert!(suppress_error_log(&reset));
        assert!(!suppress_error_log(&Error::new(ErrorType::InternalError)));
        let after = METRICS
            .connections
            .client_faults
            .with_label_values(&["reset"])
            .get();
        assert!(after > before);
    }
}
