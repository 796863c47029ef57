//! Replay input: format detection, parsing a whole file, and planning requests.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Method;
use serde::Serialize;

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

/// How many malformed lines are reported by number.
pub const REPORTED_MALFORMED: usize = 10;

/// A parsed replay file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The detected format.
    pub format: Format,
    /// Non-empty lines read.
    pub lines: u64,
    /// The records of the well-formed lines, in file order.
    pub records: Vec<Record>,
    /// Malformed lines (skipped).
    pub malformed: u64,
    /// The first [`REPORTED_MALFORMED`] malformed lines.
    pub first_malformed: Vec<ParseError>,
}

/// Parses every non-empty line. A malformed line is skipped and counted
/// (the first few are kept with their line numbers); with `strict`, the
/// first one aborts instead.
pub fn parse_records(text: &str, strict: bool) -> Result<Parsed, ParseError> {
    let format = detect_format(text);
    let combined = match format {
        Format::Combined => Some(CombinedParser::new().map_err(|e| ParseError {
            line: 0,
            message: format!("internal regex error: {e}"),
        })?),
        Format::Ndjson => None,
    };
    let mut out = Parsed {
        format,
        lines: 0,
        records: Vec::new(),
        malformed: 0,
        first_malformed: Vec::new(),
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.lines += 1;
        let parsed = match &combined {
            Some(p) => p.parse_line(line.trim_end(), i + 1),
            None => parse_ndjson_line(line, i + 1),
        };
        match parsed {
            Ok(r) => out.records.push(r),
            Err(e) if strict => return Err(e),
            Err(e) => {
                out.malformed += 1;
                if out.first_malformed.len() < REPORTED_MALFORMED {
                    out.first_malformed.push(e);
                }
            }
        }
    }
    Ok(out)
}

/// One malformed line in a report: its number and what was wrong (never its content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MalformedLine {
    /// 1-based line number.
    pub line: usize,
    /// Why it was skipped.
    pub reason: String,
}

/// What the replay made of its input file; `--json` prints it as `input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputReport {
    /// `ndjson` or `access_log`.
    pub format: &'static str,
    /// Non-empty lines read.
    pub lines: u64,
    /// Malformed lines skipped.
    pub malformed: u64,
    /// The first malformed lines.
    pub malformed_lines: Vec<MalformedLine>,
    /// `--as-events`: page views turned into events (`null` otherwise).
    pub page_views: Option<u64>,
    /// `--as-events`: well-formed lines that were not page views, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Requests planned from the file.
    pub requests: u64,
}

impl InputReport {
    /// The report for `parsed`, with `requests` planned and (for
    /// `--as-events`) the page views and skips.
    pub fn new(
        parsed: &Parsed,
        requests: u64,
        as_events: Option<&crate::pageviews::Conversion>,
    ) -> Self {
        Self {
            format: match parsed.format {
                Format::Ndjson => "ndjson",
                Format::Combined => "access_log",
            },
            lines: parsed.lines,
            malformed: parsed.malformed,
            malformed_lines: parsed
                .first_malformed
                .iter()
                .map(|e| MalformedLine {
                    line: e.line,
                    reason: e.message.clone(),
                })
                .collect(),
            page_views: as_events.map(|c| c.events.len() as u64),
            skipped: as_events
                .map(|c| {
                    c.skipped
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), *v))
                        .collect()
                })
                .unwrap_or_default(),
            requests,
        }
    }
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
        let recs = parse_records(NDJSON, true).unwrap().records;
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
    fn strict_stops_at_the_first_bad_line_naming_it() {
        let text = "{\"ts_ms\":1,\"method\":\"GET\",\"path\":\"/\"}\n\n{broken\n";
        let e = parse_records(text, true).unwrap_err();
        assert_eq!(e.line, 3);
        let log = "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1 \"-\" \"ua\"\nnot a log line\n";
        let e = parse_records(log, true).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("line 2"));
    }

    #[test]
    fn malformed_lines_are_skipped_counted_and_the_first_reported() {
        let good = "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1 \"-\" \"ua\"";
        let cut = "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1 \"-\" \"Mozilla/5.0 (Win";
        let mut text = format!("{good}\n{cut}\n\n{good}\n");
        for _ in 0..(REPORTED_MALFORMED + 2) {
            text.push_str("garbage\n");
        }
        let p = parse_records(&text, false).unwrap();
        assert_eq!(p.format, Format::Combined);
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.lines, 3 + REPORTED_MALFORMED as u64 + 2);
        assert_eq!(p.malformed, 1 + REPORTED_MALFORMED as u64 + 2);
        assert_eq!(p.first_malformed.len(), REPORTED_MALFORMED);
        assert_eq!(p.first_malformed[0].line, 2);
        assert!(p.first_malformed[0].message.contains("not closed"));
        assert_eq!(p.first_malformed[1].line, 5);
        let report = InputReport::new(&p, 2, None);
        assert_eq!(report.malformed_lines[0].line, 2);
        assert_eq!(report.format, "access_log");
        assert_eq!(report.page_views, None);
    }
}
