//! Replay input: format detection, parsing a whole file, and planning requests.

use bytes::Bytes;
use http::Method;

use crate::clientaddr::recorded_or_synthetic;
use crate::combined::CombinedParser;
use crate::records::{ParseError, Record, parse_ndjson_line};
use crate::request::PlannedRequest;
use crate::schedule::{Pacing, replay_offsets};
use crate::sources::ClientMap;

/// Input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON request record per line.
    Ndjson,
    /// nginx/Apache combined (or common) access log.
    Combined,
}

/// NDJSON when the first non-empty line starts with `{`, otherwise combined.
pub fn detect_format(text: &str) -> Format {
    match text.lines().map(str::trim_start).find(|l| !l.is_empty()) {
        Some(l) if l.starts_with('{') => Format::Ndjson,
        _ => Format::Combined,
    }
}

/// Parses every non-empty line; the first bad line aborts with its line number.
pub fn parse_records(text: &str) -> Result<Vec<Record>, ParseError> {
    let format = detect_format(text);
    let combined = match format {
        Format::Combined => Some(CombinedParser::new().map_err(|e| ParseError {
            line: 0,
            message: format!("internal regex error: {e}"),
        })?),
        Format::Ndjson => None,
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| match &combined {
            Some(p) => p.parse_line(line.trim_end(), i + 1),
            None => parse_ndjson_line(line, i + 1),
        })
        .collect()
}

/// Turns records into planned requests: schedule from `pacing`, host fallback
/// `default_host`, and client slots in order of first appearance of `client_ip`.
pub fn plan(records: &[Record], pacing: Pacing, default_host: &str) -> Vec<PlannedRequest> {
    let ts: Vec<i64> = records.iter().map(|r| r.ts_ms).collect();
    let offsets = replay_offsets(&ts, pacing);
    let mut clients = ClientMap::new();
    records
        .iter()
        .zip(offsets)
        .map(|(r, offset)| {
            let client = clients.slot(r.client_ip.as_deref().unwrap_or(""));
            PlannedRequest {
                offset,
                method: Method::from_bytes(r.method.as_bytes()).unwrap_or(Method::GET),
                host: r
                    .host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| default_host.to_owned()),
                path: r.path.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                body: Bytes::from(r.body.clone().unwrap_or_default()),
                client,
                client_addr: recorded_or_synthetic(r.client_ip.as_deref(), client),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NDJSON: &str = r#"
{"ts_ms": 1000, "method": "POST", "host": "site1.example", "path": "/api/event", "body": "{}", "client_ip": "203.0.113.7"}
{"ts_ms": 1250, "method": "GET", "path": "/api/event.gif?n=pageview", "client_ip": "198.51.100.1"}

{"ts_ms": 2000, "method": "POST", "host": "site2.example", "path": "/api/event", "client_ip": "203.0.113.7"}
"#;

    #[test]
    fn detects_formats() {
        assert_eq!(detect_format(NDJSON), Format::Ndjson);
        assert_eq!(
            detect_format("\n1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1"),
            Format::Combined
        );
    }

    #[test]
    fn plans_ndjson() {
        let recs = parse_records(NDJSON).unwrap();
        assert_eq!(recs.len(), 3);
        let plan = plan(&recs, Pacing::Speed(2.0), "fallback.example");
        assert_eq!(plan[0].offset, Some(Duration::ZERO));
        assert_eq!(plan[1].offset, Some(Duration::from_millis(125)));
        assert_eq!(plan[2].offset, Some(Duration::from_millis(500)));
        assert_eq!(plan[1].host, "fallback.example");
        assert_eq!(plan[2].host, "site2.example");
        assert_eq!(
            plan.iter().map(|p| p.client).collect::<Vec<_>>(),
            vec![0, 1, 0]
        );
        assert_eq!(plan[0].method, Method::POST);
        assert_eq!(&plan[0].body[..], b"{}");
        assert_eq!(plan[0].client_addr.to_string(), "203.0.113.7");
        assert_eq!(plan[2].client_addr, plan[0].client_addr);
    }

    #[test]
    fn error_names_physical_line() {
        let text = "{\"ts_ms\":1,\"method\":\"GET\",\"path\":\"/\"}\n\n{broken\n";
        let e = parse_records(text).unwrap_err();
        assert_eq!(e.line, 3);
        let log = "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1 \"-\" \"ua\"\nnot a log line\n";
        let e = parse_records(log).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("line 2"));
    }
}
