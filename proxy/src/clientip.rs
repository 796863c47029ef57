//! Which address a request comes from.
//!
//! The socket peer (or the address a PROXY protocol header carried, see
//! [`crate::proxy_protocol`]) is the client, unless that peer is a trusted
//! proxy: then the configured forwarding header is read from right to left,
//! skipping trusted hops, and the first untrusted address is the client.
//! Headers from untrusted peers are ignored entirely, so a client cannot
//! pick its own address (and so its own rate-limit bucket).

use std::net::IpAddr;

use edge_config::{ClientIp, ForwardedHeader, validate::parse_cidr};
use ipnet::IpNet;

/// Where the client address came from, the `source` label of `edge_client_ip_source_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSource {
    /// The TCP peer (or PROXY protocol source).
    Peer,
    /// `X-Forwarded-For` from a trusted proxy.
    XForwardedFor,
    /// `Forwarded` from a trusted proxy.
    Forwarded,
    /// A trusted proxy sent an unparsable header; the nearest valid hop was used.
    HeaderInvalid,
}

impl IpSource {
    /// The label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::XForwardedFor => "x_forwarded_for",
            Self::Forwarded => "forwarded",
            Self::HeaderInvalid => "header_invalid",
        }
    }
}

/// The compiled `[client_ip]` table.
#[derive(Debug, Clone, Default)]
pub struct ClientIpPolicy {
    trusted: Vec<IpNet>,
    header: Option<ForwardedHeader>,
    /// Public listeners expect a PROXY protocol header.
    pub proxy_protocol: bool,
}

impl ClientIpPolicy {
    /// Compiles the table (validated already: invalid CIDRs are skipped).
    pub fn new(cfg: &ClientIp) -> Self {
        Self {
            trusted: cfg
                .trusted_proxies
                .iter()
                .filter_map(|c| parse_cidr(c).ok())
                .collect(),
            header: Some(cfg.header),
            proxy_protocol: cfg.proxy_protocol,
        }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The header to read (`None` when no proxy is trusted).
    pub fn header_name(&self) -> Option<&'static str> {
        if self.trusted.is_empty() {
            return None;
        }
        self.header.map(|h| match h {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        })
    }

    /// The client address of a request from `peer` carrying `header_values`
    /// (every value of the configured header, in order).
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        header_values: impl Iterator<Item = &'a str>,
    ) -> (IpAddr, IpSource) {
        let peer = canonical(peer);
        let (Some(header), true) = (self.header, self.is_trusted(peer)) else {
            return (peer, IpSource::Peer);
        };
        let mut hops: Vec<Option<IpAddr>> = Vec::new();
        for value in header_values {
            match header {
                ForwardedHeader::XForwardedFor => {
                    hops.extend(value.split(',').map(|h| parse_xff_hop(h.trim())));
                }
                ForwardedHeader::Forwarded => {
                    hops.extend(rfc7239::parse(value).map(|node| {
                        node.ok()
                            .and_then(|n| n.forwarded_for)
                            .and_then(|id| match id.name {
                                rfc7239::NodeName::Ip(ip) => Some(ip),
                                _ => None,
                            })
                    }));
                }
            }
        }
        let found = match header {
            ForwardedHeader::XForwardedFor => IpSource::XForwardedFor,
            ForwardedHeader::Forwarded => IpSource::Forwarded,
        };
        let mut client = peer;
        let mut source = IpSource::Peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(*ip);
                    source = found;
                    if !self.is_trusted(client) {
                        break;
                    }
                }
                None => {
                    // Anything left of a hop we cannot read was written by
                    // someone we cannot vouch for: keep the nearest valid hop.
                    source = IpSource::HeaderInvalid;
                    break;
                }
            }
        }
        (client, source)
    }
}

/// An `X-Forwarded-For` element: an address, maybe with a port
/// (`192.0.2.1:1234`, `[2001:db8::1]:443`).
fn parse_xff_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &[&str], header: ForwardedHeader) -> ClientIpPolicy {
        ClientIpPolicy::new(&ClientIp {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            header,
            proxy_protocol: false,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let p = policy(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        assert_eq!(
            p.resolve(ip("203.0.113.9"), ["198.51.100.1"].into_iter()),
            (ip("203.0.113.9"), IpSource::Peer)
        );
        let none = policy(&[], ForwardedHeader::XForwardedFor);
        assert_eq!(none.header_name(), None);
        assert_eq!(
            none.resolve(ip("10.0.0.1"), ["198.51.100.1"].into_iter()).1,
            IpSource::Peer
        );
    }

    #[test]
    fn x_forwarded_for_is_read_right_to_left_past_trusted_hops() {
        let p = policy(
            &["10.0.0.0/8", "2001:db8::/32"],
            ForwardedHeader::XForwardedFor,
        );
        // The client could have forged the leftmost entry; the rightmost untrusted one is real.
        assert_eq!(
            p.resolve(
                ip("10.0.0.1"),
                ["6.6.6.6, 198.51.100.7", "10.1.1.1"].into_iter()
            ),
            (ip("198.51.100.7"), IpSource::XForwardedFor)
        );
        assert_eq!(
            p.resolve(
                ip("::ffff:10.0.0.1"),
                ["[2001:db9::5]:443, 2001:db8::1"].into_iter()
            ),
            (ip("2001:db9::5"), IpSource::XForwardedFor)
        );
        // Only trusted hops: the leftmost one.
        assert_eq!(
            p.resolve(ip("10.0.0.1"), ["10.9.9.9"].into_iter()),
            (ip("10.9.9.9"), IpSource::XForwardedFor)
        );
        // Garbage stops the walk at the nearest valid hop.
        assert_eq!(
            p.resolve(ip("10.0.0.1"), ["198.51.100.7, junk, 10.2.2.2"].into_iter()),
            (ip("10.2.2.2"), IpSource::HeaderInvalid)
        );
        // No header: the peer.
        assert_eq!(
            p.resolve(ip("10.0.0.1"), std::iter::empty()),
            (ip("10.0.0.1"), IpSource::Peer)
        );
    }

    #[test]
    fn forwarded_header_per_rfc_7239() {
        let p = policy(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        assert_eq!(
            p.resolve(
                ip("10.0.0.1"),
                ["for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\""].into_iter()
            ),
            (ip("2001:db8:cafe::17"), IpSource::Forwarded)
        );
        assert_eq!(
            p.resolve(ip("10.0.0.1"), ["for=192.0.2.60, for=10.3.3.3"].into_iter()),
            (ip("192.0.2.60"), IpSource::Forwarded)
        );
        // An obfuscated identifier cannot be keyed: the nearest valid hop is used.
        assert_eq!(
            p.resolve(ip("10.0.0.1"), ["for=_hidden, for=10.3.3.3"].into_iter()),
            (ip("10.3.3.3"), IpSource::HeaderInvalid)
        );
    }
}
