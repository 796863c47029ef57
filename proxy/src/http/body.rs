//! Reading a request body without ever holding more than the limit.

use std::time::Duration;

use bytes::BytesMut;
use pingora::protocols::http::ServerSession as Session;

/// Why the body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// Declared or actual size above the limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The client did not finish sending in time.
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    /// The connection failed while reading.
    #[error("reading the request body failed: {0}")]
    Read(String),
}

/// Most bytes reserved for a body before any of it arrived.
const INITIAL_CAPACITY_MAX: u64 = 16 * 1024;

/// The `Content-Length` the client declared, if any and valid.
pub(crate) fn declared_length(session: &Session) -> Option<u64> {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the whole body, failing as soon as it exceeds `limit` bytes
/// (before reading at all when `Content-Length` already says so).
pub(crate) async fn read_bounded(
    session: &mut Session,
    limit: u64,
    timeout: Duration,
) -> Result<BytesMut, BodyError> {
    if declared_length(session).is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    // Grow with what arrives: a declared length alone never makes the edge
    // reserve memory (a client could declare 1 MiB and send nothing).
    let capacity = declared_length(session)
        .unwrap_or(1024)
        .min(limit)
        .min(INITIAL_CAPACITY_MAX) as usize;
    let read = async {
        let mut body = BytesMut::with_capacity(capacity);
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|e| BodyError::Read(e.to_string()))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(BodyError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(BodyError::Timeout(timeout)),
    }
}
