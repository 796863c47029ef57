//! A complete HTTP answer, built by handlers and written once.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession as Session;

use crate::metrics::RequestOutcome;

/// The 1×1 transparent GIF answered by `GET /api/event.gif`.
pub(crate) const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Status, headers and body of one response, plus how it is counted.
#[derive(Debug)]
pub(crate) struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Metric outcome.
    pub outcome: RequestOutcome,
    /// Extra headers, already in their wire types (no name parsing or value
    /// validation while writing).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Bytes,
    /// Close the connection afterwards (the request body was not fully read).
    pub close: bool,
}

impl Reply {
    /// A plain-text error or status message; the text names the problem.
    pub(crate) fn text(status: u16, outcome: RequestOutcome, message: impl Into<String>) -> Self {
        let mut body = message.into();
        body.push('\n');
        Self {
            status,
            outcome,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body),
            close: false,
        }
    }

    /// The `202` answer to accepted events: `{"accepted":<count>}`, written
    /// directly (no JSON value is built for it).
    pub(crate) fn accepted(outcome: RequestOutcome, count: usize) -> Self {
        Self {
            status: 202,
            outcome,
            headers: Vec::new(),
            content_type: "application/json",
            body: Bytes::from(format!("{{\"accepted\":{count}}}")),
            close: false,
        }
    }

    /// The tracking pixel.
    pub(crate) fn pixel() -> Self {
        Self {
            status: 200,
            outcome: RequestOutcome::Accepted,
            headers: vec![(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, max-age=0"),
            )],
            content_type: "image/gif",
            body: Bytes::from_static(PIXEL_GIF),
            close: false,
        }
    }

    /// Adds a header (replacing one of the same name set by [`Reply::write`]).
    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds a header whose value is built at run time. A value that is not a
    /// valid header value is a bug of the edge: the reply becomes a 500 (and
    /// the bug is logged, with the header's name only).
    pub(crate) fn with_built_header(self, name: HeaderName, value: String) -> Self {
        match HeaderValue::try_from(value) {
            Ok(value) => self.with_header(name, value),
            Err(_) => {
                tracing::error!(header = %name, "a response header value was not valid");
                Reply::text(
                    500,
                    RequestOutcome::InternalError,
                    "internal error while building the response",
                )
            }
        }
    }

    /// Marks the connection to be closed after this response.
    pub(crate) fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Writes the response to the client.
    ///
    /// The header is built as plain `http` parts and handed to Pingora as a
    /// header without its case-preserving name map (our names are constants;
    /// HTTP/1 writes well-known names in their usual capitalisation):
    /// Pingora's `insert_header` would turn every name into bytes and parse
    /// it back (BENCHMARKS.md, issue 15).
    pub(crate) async fn write(self, session: &mut Session, head_only: bool) -> pingora::Result<()> {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = StatusCode::from_u16(self.status).map_err(|_| {
            pingora::Error::explain(pingora::ErrorType::InternalError, "invalid response status")
        })?;
        let headers = &mut parts.headers;
        headers.reserve(5 + self.headers.len());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        // A 304 has no content; a Content-Length there would have to be the
        // 200's (RFC 9110 §8.6), which HTTP/2 clients (h2) reject: leave it out.
        if self.status != 304 {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            session.set_keepalive(None);
        }
        let resp = ResponseHeader::from(parts);
        let empty = head_only || self.body.is_empty();
        session.write_response_header(Box::new(resp)).await?;
        if !empty {
            session.write_response_body(self.body, true).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pixel_is_a_gif() {
        assert!(PIXEL_GIF.starts_with(b"GIF89a"));
        assert_eq!(PIXEL_GIF.last(), Some(&0x3b));
        assert_eq!(Reply::pixel().status, 200);
    }

    #[test]
    fn an_invalid_built_header_value_is_a_500_not_a_broken_answer() {
        let ok = Reply::text(308, RequestOutcome::Redirect, "use HTTPS")
            .with_built_header(header::LOCATION, "https://a.example/".into());
        assert_eq!(ok.status, 308);
        assert_eq!(ok.headers[0].1, "https://a.example/");
        let bad = Reply::text(308, RequestOutcome::Redirect, "use HTTPS")
            .with_built_header(header::LOCATION, "https://a.example/\r\nx: y".into());
        assert_eq!(bad.status, 500);
        assert_eq!(bad.outcome, RequestOutcome::InternalError);
        assert!(bad.headers.is_empty());
    }

    #[test]
    fn accepted_body_is_the_json_it_was() {
        for count in [0, 1, 10, 100] {
            let reply = Reply::accepted(RequestOutcome::Accepted, count);
            assert_eq!(reply.status, 202);
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body, serde_json::json!({ "accepted": count }));
        }
    }
}
