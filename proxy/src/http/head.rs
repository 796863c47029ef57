//! Checks on the request head, before any routing: size, target length and
//! every header the edge reads.
//!
//! Pingora parses the head (and refuses malformed ones, conflicting
//! `Content-Length`s, `Content-Length` with `Transfer-Encoding` in HTTP/2, and
//! heads above its own hard limit of 1 MiB); these checks add what a strict
//! edge needs on top:
//!
//! * the whole head above `limits.max_request_head_bytes` → 431;
//! * the request target above `limits.max_uri_bytes` → 414;
//! * more than one `Content-Length` (even identical values, which RFC 9110
//!   §8.6 would let a recipient merge) or a list in one → 400: nothing the
//!   browser tracker sends has that shape, and smuggling attempts do;
//! * a header from [`CHECKED_HEADERS`] that is not visible ASCII → invalid,
//!   never "absent" (400; 415 for `Content-Type`, 403 for `Origin`), and a
//!   single-valued one given twice → 400.
//!
//! No answer echoes what the client sent.

use http::{HeaderMap, HeaderName, HeaderValue, header};
use pingora::protocols::http::ServerSession as Session;

use crate::metrics::{METRICS, RequestOutcome};
use crate::reply::Reply;
use crate::runtime::Runtime;

/// Single-valued headers the edge reads, with their parsed names (looked up
/// without parsing a name per request). The forwarding header that
/// `[client_ip]` trusts (`x-forwarded-for` or `forwarded`, lists by design)
/// is checked too when configured.
pub(crate) static CHECKED_HEADERS: [(&str, HeaderName); 7] = [
    ("host", header::HOST),
    ("origin", header::ORIGIN),
    ("content-type", header::CONTENT_TYPE),
    ("content-length", header::CONTENT_LENGTH),
    ("user-agent", header::USER_AGENT),
    ("referer", header::REFERER),
    ("if-none-match", header::IF_NONE_MATCH),
];

/// The first problem of a request head, if any, as the answer to send.
pub(crate) fn check(session: &Session, rt: &Runtime) -> Option<Reply> {
    let req = session.req_header();
    let limits = &rt.loaded.config.limits;
    let target = req.raw_path().len() as u64;
    if target > limits.max_uri_bytes {
        return Some(
            Reply::text(
                414,
                RequestOutcome::UriTooLong,
                format!("request target longer than {} bytes", limits.max_uri_bytes),
            )
            .closing(),
        );
    }
    if head_size(req.method.as_str().len() as u64, target, &req.headers)
        > limits.max_request_head_bytes
    {
        return Some(
            Reply::text(
                431,
                RequestOutcome::HeadTooLarge,
                format!(
                    "request head larger than {} bytes",
                    limits.max_request_head_bytes
                ),
            )
            .closing(),
        );
    }
    check_headers(&req.headers, rt.client_ip.header_name())
        .map(|(name, problem)| refuse(name, problem))
}

/// Bytes of the head as HTTP/1.1 would carry it: request line, then
/// `name: value\r\n` per header, then the blank line.
fn head_size(method: u64, target: u64, headers: &HeaderMap) -> u64 {
    let fields: u64 = headers
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len() + 4) as u64)
        .sum();
    method + 1 + target + " HTTP/1.1\r\n".len() as u64 + fields + 2
}

/// What is wrong with a checked header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// Not visible ASCII (or, for `Content-Length`, not one decimal number).
    Unreadable,
    /// Given more than once where one value is allowed.
    Repeated,
}

impl HeaderProblem {
    /// The `reason` label of `edge_header_rejections_total`.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::Repeated => "repeated",
        }
    }
}

/// The first checked header that is unreadable or repeated; `forwarding` is
/// the forwarding header the edge reads, if any.
pub(crate) fn check_headers(
    headers: &HeaderMap,
    forwarding: Option<&'static str>,
) -> Option<(&'static str, HeaderProblem)> {
    for (name, key) in &CHECKED_HEADERS {
        let decimal = *key == header::CONTENT_LENGTH;
        if let Some(problem) = single_value_problem(headers.get_all(key).iter(), decimal) {
            return Some((name, problem));
        }
    }
    let name = forwarding?;
    let mut values = headers.get_all(name).iter();
    values
        .any(|value| value.to_str().is_err())
        .then_some((name, HeaderProblem::Unreadable))
}

/// What is wrong with the values of a single-valued header: given twice, not
/// visible ASCII, or (`decimal`, for `Content-Length`) not one decimal
/// number. `None` when it is absent or fine.
fn single_value_problem<'a>(
    mut values: impl Iterator<Item = &'a HeaderValue>,
    decimal: bool,
) -> Option<HeaderProblem> {
    let value = values.next()?;
    if values.next().is_some() {
        return Some(HeaderProblem::Repeated);
    }
    if value.to_str().is_err() {
        return Some(HeaderProblem::Unreadable);
    }
    if decimal && !value.as_bytes().iter().all(u8::is_ascii_digit) {
        // Pingora accepts `5, 5`; one decimal number is all we take.
        return Some(HeaderProblem::Repeated);
    }
    None
}

/// The answer for a bad header, counted.
fn refuse(name: &'static str, problem: HeaderProblem) -> Reply {
    METRICS
        .input
        .header_rejections
        .with_label_values(&[name, problem.as_label()])
        .inc();
    let message = match problem {
        HeaderProblem::Unreadable => format!("the {name} header is not readable"),
        HeaderProblem::Repeated => format!("the {name} header must be given once"),
    };
    let reply = match name {
        "content-type" => Reply::text(415, RequestOutcome::UnsupportedMediaType, message),
        "origin" => Reply::text(403, RequestOutcome::OriginForbidden, message),
        _ => Reply::text(400, RequestOutcome::InvalidHeader, message),
    };
    reply.closing()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn readable_single_headers_pass() {
        let h = headers(&[
            ("host", b"site1.example"),
            ("content-type", b"application/json"),
            ("content-length", b"12"),
            ("user-agent", b"Mozilla/5.0 (X11)"),
            ("x-forwarded-for", b"192.0.2.1"),
            ("x-forwarded-for", b"192.0.2.2"),
            ("cookie", b"\xff not read by the edge"),
            ("forwarded", b"for=\xff (not trusted, not read)"),
        ]);
        assert_eq!(check_headers(&h, Some("x-forwarded-for")), None);
    }

    #[test]
    fn non_ascii_is_unreadable_not_absent() {
        for name in [
            "content-type",
            "origin",
            "user-agent",
            "referer",
            "host",
            "if-none-match",
        ] {
            let h = headers(&[(name, b"a\xffb")]);
            assert_eq!(
                check_headers(&h, Some("x-forwarded-for")),
                Some((name, HeaderProblem::Unreadable)),
                "{name}"
            );
        }
        let h = headers(&[
            ("x-forwarded-for", b"192.0.2.1"),
            ("x-forwarded-for", b"\xc3\xa9"),
        ]);
        assert_eq!(
            check_headers(&h, Some("x-forwarded-for")),
            Some(("x-forwarded-for", HeaderProblem::Unreadable))
        );
    }

    #[test]
    fn repeated_single_headers_and_content_length_lists_are_refused() {
        let h = headers(&[("content-length", b"5"), ("content-length", b"5")]);
        assert_eq!(
            check_headers(&h, Some("x-forwarded-for")),
            Some(("content-length", HeaderProblem::Repeated))
        );
        let h = headers(&[("content-length", b"5, 5")]);
        assert_eq!(
            check_headers(&h, Some("x-forwarded-for")),
            Some(("content-length", HeaderProblem::Repeated))
        );
        let h = headers(&[
            ("origin", b"https://a.example"),
            ("origin", b"https://b.example"),
        ]);
        assert_eq!(
            check_headers(&h, Some("x-forwarded-for")),
            Some(("origin", HeaderProblem::Repeated))
        );
    }

    #[test]
    fn head_size_counts_the_wire_form() {
        let h = headers(&[("host", b"a.example")]);
        // "GET / HTTP/1.1\r\n" + "host: a.example\r\n" + "\r\n"
        assert_eq!(head_size(3, 1, &h), 16 + 17 + 2);
    }
}
