//! Probes: what a case sends, what it expects, and the builders for raw
//! HTTP/1.1 requests and hand-made HTTP/2 frames.

use std::time::Duration;

use edge_tests::BROWSER_UA;

/// Upper bound for any one exchange.
pub const BOUND: Duration = Duration::from_secs(10);

// Planted markers: none may reach the log, the capture file or Kafka.
pub const EMAIL: &str = "hostile.marker@mail.example";
pub const EMAIL_ENC: &str = "hostile.marker%40mail.example";
pub const UA_MARKER: &str = "HostileMarker/7.7 (probe)";
pub const IP_MARKER: &str = "203.0.113.77";
pub const QS_MARKER: &str = "qsmarker5a5a";
/// Every planted marker.
pub const MARKERS: [&str; 5] = [EMAIL, EMAIL_ENC, UA_MARKER, IP_MARKER, QS_MARKER];

/// What a case sends.
pub enum Probe {
    /// Raw bytes on the plain-HTTP listener.
    Plain(Vec<u8>),
    /// Raw HTTP/1.1 bytes over TLS (SNI site1.example, ALPN http/1.1).
    Tls(Vec<u8>),
    /// One request through the `h2` client (TLS, ALPN h2).
    H2(H2Req),
    /// Hand-made HTTP/2 bytes after the TLS handshake (ALPN h2), preface included.
    H2Raw(Vec<u8>),
    /// Only a TLS handshake with this SNI and ALPN list.
    Handshake(Option<&'static str>, &'static [&'static str]),
}

/// An HTTP/2 request for the `h2` client.
pub struct H2Req {
    pub method: &'static str,
    pub uri: String,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
}

/// What the client must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// This status (and then, for HTTP/1.1, nothing else on the connection
    /// unless it is kept alive).
    Status(u16),
    /// This status, then the connection is closed by the edge.
    StatusThenClose(u16),
    /// The TLS handshake fails.
    Refused,
    /// HTTP/2: a GOAWAY or a closed connection.
    GoAway,
    /// HTTP/2: the edge refuses streams (RST_STREAM) or the connection (GOAWAY).
    RefusedStreams,
}

/// An expected change of one metric (summed over the series matching `labels`).
pub struct Delta {
    pub name: &'static str,
    pub labels: Vec<(&'static str, &'static str)>,
    pub by: f64,
}

pub struct Case {
    pub name: &'static str,
    pub send: Probe,
    pub expect: Expect,
    pub metrics: Vec<Delta>,
}

pub fn delta(name: &'static str, labels: &[(&'static str, &'static str)], by: f64) -> Delta {
    Delta {
        name,
        labels: labels.to_vec(),
        by,
    }
}

/// `edge_requests_total{site,outcome}` +1.
pub fn request(site: &'static str, outcome: &'static str) -> Delta {
    delta(
        "edge_requests_total",
        &[("site", site), ("outcome", outcome)],
        1.0,
    )
}

/// `edge_event_rejections_total{reason}` +1.
pub fn rejection(reason: &'static str) -> Delta {
    delta("edge_event_rejections_total", &[("reason", reason)], 1.0)
}

/// `edge_header_rejections_total{header,reason}` +1.
pub fn header_rejection(header: &'static str, reason: &'static str) -> Delta {
    delta(
        "edge_header_rejections_total",
        &[("header", header), ("reason", reason)],
        1.0,
    )
}

/// No request reached the handlers (Pingora or the h2 codec answered).
pub fn no_request() -> Delta {
    delta("edge_requests_total", &[], 0.0)
}

/// `edge_events_total{site=s1,outcome=accepted}` +n.
pub fn accepted(n: f64) -> Delta {
    delta(
        "edge_events_total",
        &[("site", "s1"), ("outcome", "accepted")],
        n,
    )
}

pub fn handshake(outcome: &'static str) -> Delta {
    delta("edge_tls_handshakes_total", &[("outcome", outcome)], 1.0)
}

// === request builders ===

pub const HOST: &str = "site1.example";

/// A raw HTTP/1.1 request: request line, `headers` as given (no implicit
/// ones), then `body`.
pub fn raw(method: &str, target: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `POST /api/event` with a JSON body, a browser UA and `extra` headers.
pub fn post(body: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let len = body.len().to_string();
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("Host", HOST.as_bytes()),
        ("User-Agent", BROWSER_UA.as_bytes()),
        ("Content-Type", b"application/json"),
        ("Content-Length", len.as_bytes()),
    ];
    headers.extend_from_slice(extra);
    raw("POST", "/api/event", &headers, body)
}

/// `POST /api/event` with `headers` replacing the defaults entirely (plus Host).
pub fn post_with(headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut all: Vec<(&str, &[u8])> = vec![("Host", HOST.as_bytes())];
    all.extend_from_slice(headers);
    raw("POST", "/api/event", &all, body)
}

/// `GET` of `target` with a browser UA and `extra` headers.
pub fn get(target: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("Host", HOST.as_bytes()),
        ("User-Agent", BROWSER_UA.as_bytes()),
    ];
    headers.extend_from_slice(extra);
    raw("GET", target, &headers, b"")
}

pub fn event(name: &str) -> String {
    format!(
        r#"{{"n":{},"u":"https://site1.example/p?{QS_MARKER}=1&email={EMAIL_ENC}"}}"#,
        serde_json::to_string(name).unwrap()
    )
}

pub fn h2_req(method: &'static str, path: &str, headers: &[(&'static str, &[u8])]) -> H2Req {
    H2Req {
        method,
        uri: format!("https://{HOST}{path}"),
        headers: headers.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
        body: None,
    }
}

pub fn h2_post(body: &str, headers: &[(&'static str, &[u8])]) -> H2Req {
    let mut all: Vec<(&'static str, &[u8])> = vec![
        ("user-agent", BROWSER_UA.as_bytes()),
        ("content-type", b"application/json"),
    ];
    all.extend_from_slice(headers);
    H2Req {
        body: Some(body.as_bytes().to_vec()),
        ..h2_req("POST", "/api/event", &all)
    }
}

// === hand-made HTTP/2 frames ===

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK string literal (no Huffman), lengths below 127.
pub fn hpack_str(s: &str) -> Vec<u8> {
    assert!(s.len() < 127);
    let mut out = vec![s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

/// A HEADERS block: `:method` (static index), `:scheme https`, `:path`,
/// `:authority`, each as literals without indexing where needed.
pub fn hpack_request(post: bool, path: &str) -> Vec<u8> {
    let mut out = vec![if post { 0x83 } else { 0x82 }, 0x87];
    out.push(0x04); // :path, literal without indexing
    out.extend(hpack_str(path));
    out.push(0x01); // :authority, literal without indexing
    out.extend(hpack_str(HOST));
    out
}

/// Preface plus an empty SETTINGS frame.
pub fn h2_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out
}

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub fn h2_rst_flood(n: u32) -> Vec<u8> {
    let mut out = h2_start();
    for i in 0..n {
        let id = 2 * i + 1;
        out.extend(frame(
            0x1,
            END_HEADERS,
            id,
            &hpack_request(true, "/api/event"),
        ));
        out.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    out
}

pub fn h2_many_streams(n: u32) -> Vec<u8> {
    let mut out = h2_start();
    for i in 0..n {
        out.extend(frame(
            0x1,
            END_HEADERS,
            2 * i + 1,
            &hpack_request(true, "/api/event"),
        ));
    }
    out
}
