//! Local source addresses: parsing `--source-ips` and mapping clients onto them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use thiserror::Error;

/// Errors from parsing a `--source-ips` value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceRangeError {
    /// A side of the range is not an IP address.
    #[error("invalid address {0:?} in --source-ips")]
    BadAddress(String),
    /// Ranges are only supported between two IPv4 addresses.
    #[error("--source-ips ranges must be IPv4 (A-B)")]
    NotIpv4,
    /// The end of the range comes before its start.
    #[error("--source-ips range {0} ends before it starts")]
    Reversed(String),
}

/// An ordered, non-empty list of local addresses to bind outgoing sockets to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRange {
    addrs: Vec<IpAddr>,
}

impl SourceRange {
    /// Parses `A-B` (inclusive IPv4 range) or a single address.
    pub fn parse(s: &str) -> Result<Self, SourceRangeError> {
        let s = s.trim();
        let parse_ip = |p: &str| {
            p.trim()
                .parse::<IpAddr>()
                .map_err(|_| SourceRangeError::BadAddress(p.trim().to_owned()))
        };
        match s.split_once('-') {
            None => Ok(Self {
                addrs: vec![parse_ip(s)?],
            }),
            Some((a, b)) => {
                let (IpAddr::V4(a), IpAddr::V4(b)) = (parse_ip(a)?, parse_ip(b)?) else {
                    return Err(SourceRangeError::NotIpv4);
                };
                let (lo, hi) = (u32::from(a), u32::from(b));
                if hi < lo {
                    return Err(SourceRangeError::Reversed(s.to_owned()));
                }
                Ok(Self {
                    addrs: (lo..=hi).map(|v| IpAddr::V4(Ipv4Addr::from(v))).collect(),
                })
            }
        }
    }

    /// Number of addresses in the range.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Always false: a parsed range has at least one address.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The address for slot `i`, wrapping around (round robin).
    pub fn get(&self, i: usize) -> IpAddr {
        self.addrs[i % self.addrs.len()]
    }
}

/// Stable mapping from recorded client IPs to local source addresses.
///
/// Clients get addresses in order of first appearance, round robin over the range,
/// so the same input always produces the same mapping.
#[derive(Debug, Default)]
pub struct ClientMap {
    slots: HashMap<String, usize>,
}

impl ClientMap {
    /// Creates an empty mapping.
    pub fn new() -> Self {
        Self::default()
    }

    /// The client slot (0, 1, 2, …) of `client_ip`, assigning the next one on first sight.
    pub fn slot(&mut self, client_ip: &str) -> usize {
        let next = self.slots.len();
        *self.slots.entry(client_ip.to_owned()).or_insert(next)
    }

    /// Number of distinct clients seen.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no client was seen yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_range_and_single() {
        let r = SourceRange::parse("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(0), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(r.get(2), "127.0.0.4".parse::<IpAddr>().unwrap());
        assert_eq!(r.get(3), r.get(0), "round robin wraps");
        let one = SourceRange::parse("::1").unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn rejects_bad_ranges() {
        assert_eq!(
            SourceRange::parse("127.0.0.9-127.0.0.2"),
            Err(SourceRangeError::Reversed("127.0.0.9-127.0.0.2".into()))
        );
        assert!(matches!(
            SourceRange::parse("nope"),
            Err(SourceRangeError::BadAddress(_))
        ));
        assert_eq!(
            SourceRange::parse("::1-::2"),
            Err(SourceRangeError::NotIpv4)
        );
    }

    #[test]
    fn client_mapping_is_stable() {
        let range = SourceRange::parse("127.0.0.2-127.0.0.3").unwrap();
        let ips = [
            "203.0.113.7",
            "198.51.100.1",
            "203.0.113.7",
            "192.0.2.5",
            "198.51.100.1",
        ];
        let run = || {
            let mut m = ClientMap::new();
            ips.iter()
                .map(|ip| range.get(m.slot(ip)))
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run(), "same input, same mapping");
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        // first-appearance order, round robin over two addresses
        assert_eq!(first, vec![a, b, a, a, b]);
        let mut m = ClientMap::new();
        for ip in ips {
            m.slot(ip);
        }
        assert_eq!(m.len(), 3);
    }
}
