//! nginx/Apache combined (and common) access-log parsing.
//!
//! Accepted shapes (referer/user agent, the vhost and the trailing host are optional):
//!
//! ```text
//! IP - user [10/Oct/2000:13:55:36 -0700] "GET /path HTTP/1.1" 200 2326 "referer" "agent"
//! IP - user [10/Oct/2000:13:55:36 -0700] "GET /path HTTP/1.1" 200 2326 "referer" "agent" "host"
//! vhost:443 IP - user [10/Oct/2000:13:55:36 -0700] "GET /path HTTP/1.1" 200 2326 "referer" "agent"
//! ```
//!
//! The last two carry the site: a trailing quoted host (a common nginx
//! `log_format`), or Apache's `vhost_combined` leading `%v:%p`.
//!
//! The line is matched with a regex and the timestamp parsed by chrono. The
//! one maintained crate for this format (`access_log_parser` 0.11) was
//! tried first and is not used: it requires the client field to be an IP
//! address, parses the referer as an `http::Uri` (real referers with spaces,
//! `|` or non-ASCII characters fail the whole line), does not read `\"`
//! inside quoted fields, and knows neither vhost form. A line that does not
//! match (for example a user agent cut off before its closing quote) is an
//! error naming its line number; [`crate::replay`] skips and counts it.

use std::collections::BTreeMap;

use chrono::DateTime;
use regex::Regex;

use crate::records::{ParseError, Record};

/// Parser for combined-format lines; build once, use for every line.
#[derive(Debug)]
pub struct CombinedParser {
    line: Regex,
}

/// A double-quoted field with `\"` and `\\` escapes (Apache and nginx both escape).
const QUOTED: &str = r#""((?:[^"\\]|\\.)*)""#;

impl CombinedParser {
    /// Compiles the pattern.
    pub fn new() -> Result<Self, regex::Error> {
        let line = format!(
            r#"^(?:(\S+?):\d+ )?(\S+) \S+ \S+ \[([^\]]+)\] {QUOTED} (\d{{3}}|-) (?:\d+|-)(?: {QUOTED} {QUOTED})?(?: {QUOTED})?\s*$"#
        );
        Ok(Self {
            line: Regex::new(&line)?,
        })
    }

    /// Parses one line (`line_no` is 1-based, used in errors).
    pub fn parse_line(&self, line: &str, line_no: usize) -> Result<Record, ParseError> {
        let err = |message: String| ParseError {
            line: line_no,
            message,
        };
        let Some(caps) = self.line.captures(line) else {
            return Err(err(if has_open_quote(line) {
                "a quoted field is not closed (line cut off?)".to_owned()
            } else {
                "not a combined/common access-log line".to_owned()
            }));
        };
        let get = |i: usize| caps.get(i).map(|m| m.as_str());
        let time = get(3).unwrap_or_default();
        let ts_ms = DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z")
            .map_err(|e| err(format!("bad timestamp {time:?}: {e}")))?
            .timestamp_millis();
        let request = unescape(get(4).unwrap_or_default());
        let mut parts = request.split(' ').filter(|p| !p.is_empty());
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return Err(err(
                "the request line has no method and target (\"-\" or garbage)".to_owned(),
            ));
        };
        if !path.starts_with('/') {
            return Err(err("the request target must start with '/'".to_owned()));
        }
        if http::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(err("the request method is not a valid token".to_owned()));
        }
        let status = get(5).and_then(|s| s.parse::<u16>().ok());
        let mut headers = BTreeMap::new();
        if let Some(referer) = get(6).map(unescape).filter(|r| r != "-" && !r.is_empty()) {
            headers.insert("referer".to_owned(), referer);
        }
        if let Some(ua) = get(7).map(unescape).filter(|u| u != "-" && !u.is_empty()) {
            headers.insert("user-agent".to_owned(), ua);
        }
        let host = get(8)
            .map(unescape)
            .or_else(|| get(1).map(str::to_owned))
            .filter(|h| h != "-" && !h.is_empty());
        Ok(Record {
            ts_ms,
            method: method.to_owned(),
            host,
            path: path.to_owned(),
            headers,
            body: None,
            client_ip: get(2).map(str::to_owned),
            status,
        })
    }
}

/// True when the line has an odd number of unescaped double quotes.
fn has_open_quote(line: &str) -> bool {
    let mut open = false;
    let mut escaped = false;
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => open = !open,
            _ => {}
        }
    }
    open
}

fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
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
        assert_eq!(r.status, Some(200));
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
        assert_eq!(r.status, Some(202));
        assert!(!r.headers.contains_key("referer"));
        // common log format (no referer / agent) is accepted too
        let r = p
            .parse_line(
                r#"192.0.2.5 - - [29/Feb/2024:23:59:59 +0100] "GET / HTTP/1.0" 404 0"#,
                3,
            )
            .unwrap();
        assert_eq!(r.ts_ms, 1_709_247_599_000);
        assert_eq!(r.status, Some(404));
        assert!(r.headers.is_empty());
    }

    #[test]
    fn parses_apache_vhost_combined_and_odd_clients() {
        let p = CombinedParser::new().unwrap();
        let r = p
            .parse_line(
                r#"www.shop.example:443 2001:db8::1 - - [10/Oct/2000:13:55:36 +0000] "GET /cart HTTP/1.1" 304 0 "-" "Mozilla/5.0""#,
                1,
            )
            .unwrap();
        assert_eq!(r.host.as_deref(), Some("www.shop.example"));
        assert_eq!(r.client_ip.as_deref(), Some("2001:db8::1"));
        assert_eq!(r.status, Some(304));
        // An IPv6 client without a vhost is not mistaken for one.
        let r = p
            .parse_line(
                r#"2001:db8::1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "Mozilla/5.0""#,
                1,
            )
            .unwrap();
        assert_eq!(r.client_ip.as_deref(), Some("2001:db8::1"));
        assert_eq!(r.host, None);
        // Host names as clients (HostnameLookups On) and referers that are
        // not valid URIs are real and accepted.
        let r = p
            .parse_line(
                r#"crawl-66-249-66-1.googlebot.com - - [10/Oct/2000:13:55:36 +0000] "GET /a%20b HTTP/1.1" 200 5 "http://x.example/a b|ü" "Googlebot/2.1""#,
                1,
            )
            .unwrap();
        assert_eq!(r.headers["referer"], "http://x.example/a b|ü");
        assert_eq!(
            r.client_ip.as_deref(),
            Some("crawl-66-249-66-1.googlebot.com")
        );
    }

    #[test]
    fn a_user_agent_cut_off_before_its_quote_is_an_error_naming_the_line() {
        let p = CombinedParser::new().unwrap();
        let e = p
            .parse_line(
                r#"203.0.113.9 - - [10/Oct/2000:13:55:36 +0000] "GET /page HTTP/1.1" 200 5 "-" "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWeb"#,
                8899,
            )
            .unwrap_err();
        assert_eq!(e.line, 8899);
        assert!(e.message.contains("not closed"), "{e}");
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
        let e = p
            .parse_line(
                r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "-" 408 0 "-" "-""#,
                5,
            )
            .unwrap_err();
        assert!(e.message.contains("request line"), "{e}");
    }
}
