//! nginx/Apache combined access-log parsing (regex based).
//!
//! Accepted shape (referer/user agent and a trailing quoted host are optional):
//! `IP - user [10/Oct/2000:13:55:36 -0700] "GET /path HTTP/1.1" 200 2326 "referer" "agent" "host"`

use std::collections::BTreeMap;

use regex::Regex;

use crate::records::{ParseError, Record};

/// Parser for combined-format lines; build once, use for every line.
#[derive(Debug)]
pub struct CombinedParser {
    line: Regex,
    time: Regex,
}

const QUOTED: &str = r#""((?:[^"\\]|\\.)*)""#;

impl CombinedParser {
    /// Compiles the patterns.
    pub fn new() -> Result<Self, regex::Error> {
        let line = format!(
            r#"^(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+)(?: [^"]*)?" (?:\d{{3}}|-) (?:\d+|-)(?: {QUOTED} {QUOTED})?(?: {QUOTED})?\s*$"#
        );
        Ok(Self {
            line: Regex::new(&line)?,
            time: Regex::new(
                r"^(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$",
            )?,
        })
    }

    /// Parses one line (`line_no` is 1-based, used in errors).
    pub fn parse_line(&self, line: &str, line_no: usize) -> Result<Record, ParseError> {
        let err = |message: String| ParseError {
            line: line_no,
            message,
        };
        let caps = self
            .line
            .captures(line)
            .ok_or_else(|| err("not a combined/common access-log line".to_owned()))?;
        let get = |i: usize| caps.get(i).map(|m| m.as_str());
        let ts_ms = self
            .parse_time(get(2).unwrap_or_default())
            .ok_or_else(|| err(format!("bad timestamp {:?}", get(2).unwrap_or_default())))?;
        let method = get(3).unwrap_or_default().to_owned();
        let path = get(4).unwrap_or_default().to_owned();
        if !path.starts_with('/') {
            return Err(err(format!("request target {path:?} must start with '/'")));
        }
        let mut headers = BTreeMap::new();
        if let Some(referer) = get(5).map(unescape).filter(|r| r != "-" && !r.is_empty()) {
            headers.insert("referer".to_owned(), referer);
        }
        if let Some(ua) = get(6).map(unescape).filter(|u| u != "-" && !u.is_empty()) {
            headers.insert("user-agent".to_owned(), ua);
        }
        let host = get(7).map(unescape).filter(|h| h != "-" && !h.is_empty());
        Ok(Record {
            ts_ms,
            method,
            host,
            path,
            headers,
            body: None,
            client_ip: get(1).map(str::to_owned),
        })
    }

    /// `10/Oct/2000:13:55:36 -0700` → milliseconds since the Unix epoch (UTC).
    fn parse_time(&self, s: &str) -> Option<i64> {
        let c = self.time.captures(s)?;
        let num = |i: usize| c.get(i)?.as_str().parse::<i64>().ok();
        let month = match c.get(2)?.as_str().to_ascii_lowercase().as_str() {
            "jan" => 1,
            "feb" => 2,
            "mar" => 3,
            "apr" => 4,
            "may" => 5,
            "jun" => 6,
            "jul" => 7,
            "aug" => 8,
            "sep" => 9,
            "oct" => 10,
            "nov" => 11,
            "dec" => 12,
            _ => return None,
        };
        let (day, year) = (num(1)?, num(3)?);
        let (h, m, sec) = (num(4)?, num(5)?, num(6)?);
        if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
            return None;
        }
        let sign = if c.get(7)?.as_str() == "-" { -1 } else { 1 };
        let offset_s = sign * (num(8)? * 3600 + num(9)? * 60);
        let local_s = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec;
        Some((local_s - offset_s) * 1000)
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_combined_line() {
        let p = CombinedParser::new().unwrap();
        let r = p
            .parse_line(
                r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET /api/event.gif?n=pageview HTTP/1.1" 200 2326 "https://ref.example/" "Mozilla/5.0 (X11) \"quoted\"""#,
                1,
            )
            .unwrap();
        assert_eq!(r.client_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/event.gif?n=pageview");
        // 2000-10-10T20:55:36Z
        assert_eq!(r.ts_ms, 971_211_336_000);
        assert_eq!(r.headers["referer"], "https://ref.example/");
        assert_eq!(r.headers["user-agent"], r#"Mozilla/5.0 (X11) "quoted""#);
        assert_eq!(r.host, None);
    }

    #[test]
    fn parses_trailing_host_and_dash_fields() {
        let p = CombinedParser::new().unwrap();
        let r = p
            .parse_line(
                r#"198.51.100.1 - frank [01/Jan/1970:00:00:01 +0000] "POST /api/event HTTP/2.0" 202 - "-" "curl/8" "site2.example""#,
                2,
            )
            .unwrap();
        assert_eq!(r.ts_ms, 1000);
        assert_eq!(r.host.as_deref(), Some("site2.example"));
        assert!(!r.headers.contains_key("referer"));
        // common log format (no referer / agent) is accepted too
        let r = p
            .parse_line(
                r#"192.0.2.5 - - [29/Feb/2024:23:59:59 +0100] "GET / HTTP/1.0" 404 0"#,
                3,
            )
            .unwrap();
        assert_eq!(r.ts_ms, 1_709_247_599_000);
        assert!(r.headers.is_empty());
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let p = CombinedParser::new().unwrap();
        let e = p.parse_line("garbage", 12).unwrap_err();
        assert_eq!(e.line, 12);
        assert!(e.to_string().starts_with("line 12:"), "{e}");
        let e = p
            .parse_line(
                r#"1.2.3.4 - - [10/Foo/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1 "-" "-""#,
                4,
            )
            .unwrap_err();
        assert!(e.message.contains("timestamp"), "{e}");
        assert_eq!(e.line, 4);
    }
}
