//! Host and browser checks for HTTP endpoints meant for operators' tools,
//! never for browsers: the edge's admin API and the backend's `/stats`.
//!
//! A web page the operator happens to visit can send requests to
//! `127.0.0.1` (a cross-site "simple" request, such as a `text/plain` POST,
//! needs no CORS preflight), and with DNS rebinding it can read the answers
//! under its own name. [`check`] refuses both:
//!
//! * the `Host` (and an absolute-form request target's authority) must be
//!   one of the [`AllowedHosts`]: by default the loopback names plus the
//!   listen address, so `Host: rebind.evil.example` is refused;
//! * a request carrying `Origin`, or `Sec-Fetch-Site` other than `none` or
//!   `same-origin`, was sent by a web page and is refused.
//!
//! An unreadable or repeated header is a refusal, never "absent".

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::uri::Authority;
use http::{HeaderMap, StatusCode, Uri};

/// Default allowed hosts: the loopback names (any port).
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// One allowed `Host`: a name or address, with an optional exact port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    host: String,
    port: Option<u16>,
}

/// The `Host` values an endpoint answers. An entry without a port matches
/// the host with any port (or none): the port is no defence against DNS
/// rebinding, the name is, and SSH tunnels change the port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<Allowed>,
}

impl AllowedHosts {
    /// The hosts in `entries` (invalid ones are skipped: validation refuses
    /// them before they get here) plus the IP of `listen` when it is a
    /// specific address (`0.0.0.0` and `[::]` are no `Host` anyone sends).
    pub fn new(entries: &[String], listen: Option<SocketAddr>) -> Self {
        let mut allowed: Vec<Allowed> =
            entries.iter().filter_map(|e| parse_entry(e).ok()).collect();
        if let Some(addr) = listen
            && !addr.ip().is_unspecified()
        {
            allowed.push(Allowed {
                host: ip_host(addr.ip()),
                port: None,
            });
        }
        Self { entries: allowed }
    }

    /// Whether `authority` (a `Host` value: `name`, `name:port`,
    /// `[v6]:port`) is allowed. Userinfo is never allowed.
    pub fn allows(&self, authority: &str) -> bool {
        let Some(seen) = parse_authority(authority) else {
            return false;
        };
        self.entries
            .iter()
            .any(|a| a.host == seen.host && a.port.is_none_or(|p| seen.port == Some(p)))
    }
}

/// Checks one configured entry (`name`, `name:port`, `1.2.3.4`, `[::1]:9901`).
pub fn check_entry(entry: &str) -> Result<(), String> {
    parse_entry(entry).map(|_| ())
}

fn parse_entry(entry: &str) -> Result<Allowed, String> {
    let parsed = parse_authority(entry).ok_or_else(|| {
        format!("{entry:?} is not a host name, IP address or [IPv6] with an optional :port")
    })?;
    let name_ok = if let Some(inner) = parsed.host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| Ipv6Addr::from_str(ip).is_ok())
    } else {
        parsed
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    };
    if !name_ok {
        return Err(format!(
            "{entry:?}: the host may hold letters, digits, '.', '-' and '_' only, or be a [bracketed] IPv6 address"
        ));
    }
    Ok(parsed)
}

fn parse_authority(s: &str) -> Option<Allowed> {
    if s.is_empty() || s.contains('@') || s.ends_with(':') {
        return None;
    }
    let a = Authority::from_str(s).ok()?;
    if a.as_str() != s || a.host().is_empty() {
        return None;
    }
    // Without userinfo the host is a prefix; what follows is `:port` or nothing.
    let port = match s.get(a.host().len()..)? {
        "" => None,
        rest => {
            let digits = rest.strip_prefix(':')?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
    };
    Some(Allowed {
        host: a.host().to_ascii_lowercase(),
        port,
    })
}

fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Why a request was refused. Each is a fixed metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Host` header, several, or an unreadable one.
    NoHost,
    /// A `Host` (or absolute-form authority) not on the allowed list.
    ForeignHost,
    /// An `Origin` header: a web page sent it.
    Origin,
    /// `Sec-Fetch-Site` is `cross-site`, `same-site` or unreadable.
    CrossSite,
}

impl Refusal {
    /// The answer's status: 400, 421 (misdirected), or 403 for browsers.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NoHost => StatusCode::BAD_REQUEST,
            Refusal::ForeignHost => StatusCode::MISDIRECTED_REQUEST,
            Refusal::Origin | Refusal::CrossSite => StatusCode::FORBIDDEN,
        }
    }

    /// Metric label (`reason`).
    pub const fn as_label(self) -> &'static str {
        match self {
            Refusal::NoHost => "no_host",
            Refusal::ForeignHost => "foreign_host",
            Refusal::Origin => "origin",
            Refusal::CrossSite => "cross_site",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NoHost => "exactly one readable Host header is required",
            Refusal::ForeignHost => {
                "this Host is not served here (allowed: the loopback names, the listen address, and the configured allowed hosts)"
            }
            Refusal::Origin => "requests from web pages (with an Origin header) are refused",
            Refusal::CrossSite => "cross-site requests from web pages (Sec-Fetch-Site) are refused",
        })
    }
}

impl std::error::Error for Refusal {}

/// Refuses foreign hosts and requests sent by web pages.
pub fn check(uri: &Uri, headers: &HeaderMap, allowed: &AllowedHosts) -> Result<(), Refusal> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Err(Refusal::NoHost);
    };
    let host = host.to_str().map_err(|_| Refusal::NoHost)?;
    if !allowed.allows(host) {
        return Err(Refusal::ForeignHost);
    }
    if let Some(authority) = uri.authority()
        && !allowed.allows(authority.as_str())
    {
        return Err(Refusal::ForeignHost);
    }
    if headers.contains_key(http::header::ORIGIN) {
        return Err(Refusal::Origin);
    }
    for site in headers.get_all("sec-fetch-site") {
        let same = site
            .to_str()
            .is_ok_and(|s| s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("same-origin"));
        if !same {
            return Err(Refusal::CrossSite);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn defaults(listen: &str) -> AllowedHosts {
        let entries: Vec<String> = LOOPBACK_HOSTS.iter().map(|s| s.to_string()).collect();
        AllowedHosts::new(&entries, Some(listen.parse().unwrap()))
    }

    fn req(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn loopback_names_and_the_listen_address_with_any_port() {
        let a = defaults("10.0.0.5:9901");
        for ok in [
            "localhost",
            "LOCALHOST:9901",
            "127.0.0.1:19901",
            "[::1]",
            "[::1]:9901",
            "10.0.0.5:9901",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for bad in [
            "rebind.evil.example",
            "rebind.evil.example:9901",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "user@localhost",
            "localhost:",
            "localhost:99999",
            "",
            "::1",
            "localhost/x",
            "10.0.0.6",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
        let unspecified = defaults("0.0.0.0:9901");
        assert!(!unspecified.allows("0.0.0.0:9901"));
    }

    #[test]
    fn an_entry_with_a_port_matches_that_port_only() {
        let a = AllowedHosts::new(&["admin.internal:9901".to_string()], None);
        assert!(a.allows("admin.internal:9901"));
        assert!(!a.allows("admin.internal"));
        assert!(!a.allows("admin.internal:9902"));
    }

    #[test]
    fn entries_are_validated() {
        for ok in [
            "localhost",
            "edge-1.internal:9901",
            "[fd00::1]:80",
            "10.1.2.3",
        ] {
            assert!(check_entry(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "*", "a b", "u@h", "h:", "h:x", "h:+1", "[nope]", "h/p", "%41",
        ] {
            assert!(check_entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn browsers_and_foreign_hosts_are_refused() {
        let a = defaults("127.0.0.1:9901");
        let uri: Uri = "/admin/config".parse().unwrap();
        let ok = req(&[("host", b"127.0.0.1:9901"), ("sec-fetch-site", b"none")]);
        assert_eq!(check(&uri, &ok, &a), Ok(()));
        type Headers<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Headers, Refusal); 8] = [
            (&[], Refusal::NoHost),
            (
                &[("host", b"localhost"), ("host", b"localhost")],
                Refusal::NoHost,
            ),
            (&[("host", b"loc\xffalhost")], Refusal::NoHost),
            (
                &[("host", b"rebind.evil.example:9901")],
                Refusal::ForeignHost,
            ),
            (
                &[("host", b"localhost"), ("origin", b"null")],
                Refusal::Origin,
            ),
            (
                &[("host", b"localhost"), ("origin", b"\xff")],
                Refusal::Origin,
            ),
            (
                &[("host", b"localhost"), ("sec-fetch-site", b"cross-site")],
                Refusal::CrossSite,
            ),
            (
                &[("host", b"localhost"), ("sec-fetch-site", b"same-site")],
                Refusal::CrossSite,
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(check(&uri, &req(headers), &a), Err(want), "{headers:?}");
        }
        let absolute: Uri = "http://rebind.evil.example/admin/config".parse().unwrap();
        assert_eq!(
            check(&absolute, &req(&[("host", b"localhost")]), &a),
            Err(Refusal::ForeignHost)
        );
        assert_eq!(
            Refusal::ForeignHost.status(),
            StatusCode::MISDIRECTED_REQUEST
        );
        assert_eq!(Refusal::Origin.status(), StatusCode::FORBIDDEN);
    }
}
