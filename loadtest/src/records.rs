//! Request records read from a replay file, and the NDJSON format.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

/// A parse failure, naming the 1-based line number.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number in the input file.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// One recorded request, as read from NDJSON or converted from an access log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Record {
    /// Original arrival time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Host (site); `None` falls back to `--host` or the target's host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path and query.
    pub path: String,
    /// Request headers to replay.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default)]
    pub body: Option<String>,
    /// Original client address.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// Recorded response status (access logs; `--as-events` reads it).
    #[serde(default)]
    pub status: Option<u16>,
}

/// Parses one NDJSON line (`line_no` is 1-based, used in errors).
pub fn parse_ndjson_line(line: &str, line_no: usize) -> Result<Record, ParseError> {
    let rec: Record = serde_json::from_str(line).map_err(|e| ParseError {
        line: line_no,
        message: format!("invalid NDJSON record: {e}"),
    })?;
    if !rec.path.starts_with('/') {
        return Err(ParseError {
            line: line_no,
            message: format!("path {:?} must start with '/'", rec.path),
        });
    }
    if http::Method::from_bytes(rec.method.as_bytes()).is_err() {
        return Err(ParseError {
            line: line_no,
            message: format!("invalid method {:?}", rec.method),
        });
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_record() {
        let line = r#"{"ts_ms": 1700000000123, "method": "POST", "host": "site1.example", "path": "/api/event", "headers": {"user-agent": "UA"}, "body": "{\"name\":\"pageview\"}", "client_ip": "203.0.113.7"}"#;
        let r = parse_ndjson_line(line, 1).unwrap();
        assert_eq!(r.ts_ms, 1_700_000_000_123);
        assert_eq!(r.method, "POST");
        assert_eq!(r.host.as_deref(), Some("site1.example"));
        assert_eq!(r.headers.get("user-agent").map(String::as_str), Some("UA"));
        assert_eq!(r.body.as_deref(), Some(r#"{"name":"pageview"}"#));
        assert_eq!(r.client_ip.as_deref(), Some("203.0.113.7"));
    }

    #[test]
    fn optional_fields_default() {
        let r = parse_ndjson_line(
            r#"{"ts_ms":1,"method":"GET","path":"/api/event.gif?n=pageview"}"#,
            3,
        )
        .unwrap();
        assert!(r.host.is_none() && r.body.is_none() && r.client_ip.is_none());
        assert!(r.headers.is_empty());
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let e = parse_ndjson_line("{not json", 7).unwrap_err();
        assert_eq!(e.line, 7);
        assert!(e.to_string().starts_with("line 7:"), "{e}");
        let e = parse_ndjson_line(r#"{"method":"GET","path":"/"}"#, 2).unwrap_err();
        assert!(e.to_string().contains("ts_ms"), "{e}");
        let e = parse_ndjson_line(r#"{"ts_ms":1,"method":"GET","path":"api"}"#, 4).unwrap_err();
        assert_eq!(e.line, 4);
        let e = parse_ndjson_line(r#"{"ts_ms":1,"method":"G E","path":"/"}"#, 5).unwrap_err();
        assert!(e.message.contains("method"));
    }
}
