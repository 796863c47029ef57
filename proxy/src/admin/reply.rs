//! Building the admin listener's answers.

use http::{Response, StatusCode};

/// An answer with `body` of `content_type` and its `Content-Length`.
pub(super) fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    if let Ok(v) = resp.body().len().to_string().parse() {
        resp.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
    resp
}

/// A one-line plain-text answer.
pub(super) fn text(status: StatusCode, msg: &str) -> Response<Vec<u8>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        format!("{msg}\n").into_bytes(),
    )
}

/// A JSON answer.
pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", value.to_string().into_bytes())
}

/// `resp` with `name: value` added (values that are not valid header
/// values are left out; callers pass fixed names and numbers).
pub(super) fn with_header(
    mut resp: Response<Vec<u8>>,
    name: http::header::HeaderName,
    value: &str,
) -> Response<Vec<u8>> {
    if let Ok(v) = value.parse() {
        resp.headers_mut().insert(name, v);
    }
    resp
}
