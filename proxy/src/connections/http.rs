//! HTTP connections under deadlines.
//!
//! [`HttpConnApp`] stands where Pingora's own `ServerApp` for HTTP apps
//! would: it owns the HTTP/1.1 keep-alive loop so that
//!
//! - a connection's first request head must be complete within
//!   `header_timeout_ms` of the connection's start (a silent or trickling
//!   client is closed), and a later one within `header_timeout_ms` of its
//!   first byte;
//! - between two requests the connection may idle `keepalive_timeout_ms`.
//!
//! The head is read here, until `httparse` says it is complete, and handed
//! to Pingora as the session's first bytes (its "pipelined prefix"), so
//! Pingora parses it exactly as it would have. HTTP/2 (ALPN `h2`) goes to
//! Pingora's HTTP/2 server with the stream wrapped so the preface must
//! arrive within `h2_handshake_timeout_ms`; Pingora's `h2_idle_timeout`
//! closes connections without streams.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::ALPN;
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::Settings;
use super::faults::{FaultKind, TimeoutPhase, count_fault, count_timeout};
use super::preface::{H2_PREFACE_LEN, ReadDeadline};

/// Largest request head read before Pingora sees it; a larger one is
/// answered 431 and the connection closed.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Headers `httparse` may see in one head (Pingora's own limit).
const MAX_HEADERS: usize = 256;
/// Keep-alive seconds set on a first session, as Pingora does: it only
/// marks the session reusable (the idle wait happens here).
const SESSION_KEEPALIVE_SECS: u64 = 60;
/// Bound for writing the 431 answer to a client that may not read.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Pingora's HTTP app `inner` behind connection deadlines.
pub(crate) struct HttpConnApp<H> {
    inner: Arc<H>,
}

impl<H> HttpConnApp<H> {
    /// Wraps an HTTP app (Pingora's `HttpProxy`, or an `HttpServer`).
    pub(crate) fn new(inner: H) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

/// Why no request head was read.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// Closed or reset before the first byte: the client went away.
    Closed,
    /// Closed or reset in the middle of the head.
    Incomplete,
    /// The head was not complete by its deadline.
    Timeout,
    /// More than [`MAX_HEAD_BYTES`] without the end of the head.
    TooLarge,
}

#[async_trait]
impl<H: HttpServerApp + Send + Sync + 'static> ServerApp for HttpConnApp<H> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let settings = Settings::current();
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            let guarded: Stream = Box::new(ReadDeadline::new(
                stream,
                H2_PREFACE_LEN,
                settings.h2_handshake_timeout,
            ));
            return ServerApp::process_new(&self.inner, guarded, shutdown).await;
        }
        self.serve_h1(stream, shutdown, settings).await;
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

impl<H: HttpServerApp + Send + Sync + 'static> HttpConnApp<H> {
    /// The HTTP/1.1 keep-alive loop: head under its deadline, then Pingora.
    async fn serve_h1(&self, mut stream: Stream, shutdown: &ShutdownWatch, settings: Settings) {
        let mut carried: Option<HttpPersistentSettings> = None;
        let mut deadline = Instant::now() + settings.header_timeout;
        let mut first = true;
        loop {
            let mut buf = BytesMut::with_capacity(1024);
            if !first {
                let mut stop = shutdown.clone();
                if *stop.borrow() {
                    return;
                }
                let idle =
                    tokio::time::timeout(settings.keepalive_timeout, stream.read_buf(&mut buf));
                let read = tokio::select! {
                    r = idle => r,
                    _ = stop.changed() => return,
                };
                match read {
                    Err(_) => {
                        count_timeout(TimeoutPhase::Keepalive);
                        return;
                    }
                    // Closing or resetting an idle connection is the client's right.
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) => {}
                }
                deadline = Instant::now() + settings.header_timeout;
            }
            match read_head(&mut stream, &mut buf, deadline).await {
                Ok(()) => {}
                Err(HeadError::Closed) => return,
                Err(HeadError::Incomplete) => {
                    count_fault(FaultKind::IncompleteHead);
                    return;
                }
                Err(HeadError::Timeout) => {
                    count_timeout(TimeoutPhase::Header);
                    return;
                }
                Err(HeadError::TooLarge) => {
                    count_fault(FaultKind::HeadTooLarge);
                    let _ =
                        tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, stream.write_all(TOO_LARGE))
                            .await;
                    return;
                }
            }
            let mut session = ServerSession::new_http1(stream);
            match carried.take() {
                Some(persistent) => persistent.apply_to_session(&mut session),
                None => {
                    session.set_keepalive(Some(SESSION_KEEPALIVE_SECS));
                    session.set_keepalive_reuses_remaining(
                        self.inner
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            // Pipelining stays off in the edge, so no prefix was carried over.
            session.set_pipelined_prefix(buf);
            let Some(reused) = self.inner.process_new_http(session, shutdown).await else {
                return;
            };
            let (next, persistent) = reused.consume();
            stream = next;
            carried = persistent;
            first = false;
        }
    }
}

/// Reads into `buf` until it holds a complete request head, by `deadline`.
async fn read_head(
    stream: &mut Stream,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Result<(), HeadError> {
    let mut scanned = 0;
    loop {
        if head_complete(buf, &mut scanned) {
            return Ok(());
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
        buf.reserve(4096.min(MAX_HEAD_BYTES - buf.len()).max(1));
        let gone = if buf.is_empty() {
            HeadError::Closed
        } else {
            HeadError::Incomplete
        };
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => return Err(HeadError::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(gone),
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether `buf` starts with a whole request head, or with bytes Pingora
/// will refuse anyway. Only bytes past `scanned` are searched for the empty
/// line that ends a head, so a trickled head costs linear time.
///
/// A head whose first byte is not a line break starts with its request
/// line, which ends at the first line feed: the first empty line after it
/// ends the head (or the bytes are malformed, which Pingora refuses as soon
/// as it parses them). Only when the buffer starts with empty lines, which
/// the parser skips, does `httparse` decide whether an empty line found was
/// the end or a leading one (the tests compare the two on random heads).
fn head_complete(buf: &[u8], scanned: &mut usize) -> bool {
    let from = scanned.saturating_sub(2);
    *scanned = buf.len();
    if !has_blank_line(&buf[from..]) {
        return false;
    }
    if !matches!(buf.first(), Some(b'\r' | b'\n')) {
        return true;
    }
    parsed_head_complete(buf)
}

/// `httparse`'s answer: a whole head, or bytes it refuses (not `Partial`).
fn parsed_head_complete(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    // Partial: the empty line was a leading one. An error means Pingora
    // answers 400 (or escapes the request line and parses again) as soon as
    // it sees the bytes.
    !matches!(
        httparse::Request::new(&mut headers).parse(buf),
        Ok(httparse::Status::Partial)
    )
}

/// Whether `bytes` hold an empty line (`\n\n` or `\n\r\n`), in one pass
/// that stops at each line feed (found by `memchr`, a word or a vector at a
/// time).
fn has_blank_line(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', bytes)
        .any(|i| matches!(&bytes[i + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(chunks: &[&[u8]]) -> bool {
        let mut buf = Vec::new();
        let mut scanned = 0;
        let mut done = false;
        for c in chunks {
            buf.extend_from_slice(c);
            done = head_complete(&buf, &mut scanned);
        }
        done
    }

    #[test]
    fn blank_lines_are_found_in_one_pass() {
        for (text, blank) in [
            ("", false),
            ("\n", false),
            ("\n\n", true),
            ("\n\r\n", true),
            ("\r\n\r", false),
            ("a\r\nb\r\n", false),
            ("a\r\nb\r\n\r\nbody", true),
            ("a\nb\n\nbody", true),
            ("a\n\rb\n", false),
        ] {
            assert_eq!(has_blank_line(text.as_bytes()), blank, "{text:?}");
        }
    }

    #[test]
    fn heads_are_complete_at_their_empty_line() {
        assert!(complete(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]));
        assert!(complete(&[
            b"GET / HTTP/1.1\r\nHost: a\r",
            b"\n",
            b"\r",
            b"\n"
        ]));
        assert!(complete(&[b"GET / HTTP/1.1\nHost: a\n\n"]));
        assert!(!complete(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]));
        assert!(!complete(&[b"GET / HTTP/1.1\r\nX: 1\r\n", b"X: 2\r\n"]));
        // Leading empty lines are skipped by the parser, not an end.
        assert!(!complete(&[b"\r\n\r\n"]));
        assert!(complete(&[b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"]));
        // Garbage is handed over at its first empty line for Pingora's 400.
        assert!(complete(&[b"\x01\x02 nonsense\r\n\r\n"]));
        // Body bytes may follow the head in the same read.
        assert!(complete(&[
            b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}"
        ]));
    }

    /// Heads built from the pieces that decide where a head ends.
    fn head_pieces() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(&b"\r\n"[..]),
            Just(&b"\n"[..]),
            Just(&b"\r"[..]),
            Just(&b"GET / HTTP/1.1"[..]),
            Just(&b"POST /api/event HTTP/1.0"[..]),
            Just(&b"Host: a"[..]),
            Just(&b"X:"[..]),
            Just(&b" \t"[..]),
            Just(&b"a"[..]),
            Just(&b"\x00"[..]),
            Just(&b"\xff"[..]),
            Just(&b"{}"[..]),
        ];
        proptest::collection::vec(piece, 0..16).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        /// The shortcut for heads that start with their request line answers
        /// as `httparse` does, on every prefix (as if read byte by byte).
        #[test]
        fn the_shortcut_agrees_with_httparse(head in head_pieces()) {
            for end in 0..=head.len() {
                let prefix = &head[..end];
                let expected = has_blank_line(prefix) && parsed_head_complete(prefix);
                proptest::prop_assert_eq!(
                    head_complete(prefix, &mut 0),
                    expected,
                    "{:?}",
                    String::from_utf8_lossy(prefix)
                );
            }
        }
    }

    async fn pair() -> (tokio::net::TcpStream, Stream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (
            client,
            Box::new(pingora::protocols::l4::stream::Stream::from(server)),
        )
    }

    #[tokio::test]
    async fn a_trickled_head_times_out_as_a_whole() {
        let (mut client, mut server) = pair().await;
        let deadline = Instant::now() + Duration::from_millis(300);
        let writer = tokio::spawn(async move {
            client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if client.write_all(b"X-A: b\r\n").await.is_err() {
                    break;
                }
            }
            client
        });
        let mut buf = BytesMut::new();
        let started = Instant::now();
        assert_eq!(
            read_head(&mut server, &mut buf, deadline).await,
            Err(HeadError::Timeout)
        );
        assert!(started.elapsed() < Duration::from_millis(900));
        drop(server);
        let _ = writer.await;
    }

    #[tokio::test]
    async fn heads_close_and_size_errors() {
        let (mut client, mut server) = pair().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nnext")
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        read_head(&mut server, &mut buf, deadline).await.unwrap();
        assert!(buf.ends_with(b"next"));

        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        drop(client);
        let mut buf = BytesMut::new();
        assert_eq!(
            read_head(&mut server, &mut buf, deadline).await,
            Err(HeadError::Incomplete)
        );

        let (mut client, mut server) = pair().await;
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        let w = tokio::spawn(async move {
            let _ = client.write_all(big.as_bytes()).await;
            client
        });
        let mut buf = BytesMut::new();
        assert_eq!(
            read_head(&mut server, &mut buf, deadline).await,
            Err(HeadError::TooLarge)
        );
        drop(server);
        let _ = w.await;
    }
}
