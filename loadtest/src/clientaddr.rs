//! How the target learns which client a request comes from
//! (`--client-ip-mode`): a bound local source address, an `X-Forwarded-For`
//! header, or a PROXY protocol (v1 text or v2 binary) header at the start of
//! each connection.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Result, bail};
use clap::ValueEnum;

/// Where the client address is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ClientIpMode {
    /// Bind each client's socket to its own local address (`--source-ips`).
    #[default]
    Bind,
    /// Send the client address in `X-Forwarded-For` (the target must trust this host).
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// Start each connection with a PROXY protocol v1 (text) header.
    #[value(name = "proxy-v1")]
    ProxyV1,
    /// Start each connection with a PROXY protocol v2 (binary) header.
    #[value(name = "proxy-v2")]
    ProxyV2,
}

impl ClientIpMode {
    /// The PROXY protocol version this mode writes, if any.
    pub fn proxy_version(self) -> Option<ProxyVersion> {
        match self {
            ClientIpMode::ProxyV1 => Some(ProxyVersion::V1),
            ClientIpMode::ProxyV2 => Some(ProxyVersion::V2),
            ClientIpMode::Bind | ClientIpMode::XForwardedFor => None,
        }
    }
}

/// A PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    /// Human-readable `PROXY TCP4 …\r\n`.
    V1,
    /// Binary, 16-byte signature and header, then the addresses.
    V2,
}

/// First address of the synthetic client range, 198.18.0.0/15 (RFC 2544,
/// benchmarking; never routed on the internet).
pub const SYNTHETIC_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Usable synthetic client addresses: the /15 without its first and last.
pub const SYNTHETIC_CLIENTS: usize = (1 << 17) - 2;

/// The synthetic address of client slot `slot`: 198.18.0.1, 198.18.0.2, …
/// (wrapping after [`SYNTHETIC_CLIENTS`]).
pub fn synthetic(slot: usize) -> IpAddr {
    let offset = (slot % SYNTHETIC_CLIENTS) as u32 + 1;
    IpAddr::V4(Ipv4Addr::from(u32::from(SYNTHETIC_NET) + offset))
}

/// The recorded `client_ip` of a replay record, or the synthetic address of
/// its slot when there is none or it is not an IP address.
pub fn recorded_or_synthetic(recorded: Option<&str>, slot: usize) -> IpAddr {
    recorded
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
        .unwrap_or_else(|| synthetic(slot))
}

/// The PROXY protocol header announcing a TCP connection from `client` to
/// `destination`. When the families differ, the IPv4 side is written as an
/// IPv4-mapped IPv6 address (both sides of a header share one family).
///
/// # Errors
///
/// When the v2 header cannot be built.
pub fn proxy_header(
    version: ProxyVersion,
    client: SocketAddr,
    destination: SocketAddr,
) -> Result<Vec<u8>> {
    let (src, dst) = same_family(client, destination);
    match version {
        ProxyVersion::V1 => {
            let addrs = ppp::v1::Addresses::from((src, dst));
            if matches!(addrs, ppp::v1::Addresses::Unknown) {
                bail!("no PROXY v1 address form for {src} → {dst}");
            }
            Ok(addrs.to_string().into_bytes())
        }
        ProxyVersion::V2 => Ok(ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (src, dst),
        )
        .build()?),
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |s: SocketAddr| match s {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_header_is_the_text_line() {
        let h = proxy_header(
            ProxyVersion::V1,
            sa("198.18.0.7:40000"),
            sa("127.0.0.1:8080"),
        )
        .unwrap();
        assert_eq!(h, b"PROXY TCP4 198.18.0.7 127.0.0.1 40000 8080\r\n");
        let h = proxy_header(ProxyVersion::V1, sa("[2001:db8::1]:5"), sa("[::1]:443")).unwrap();
        assert_eq!(h, b"PROXY TCP6 2001:db8::1 ::1 5 443\r\n");
        // Mixed families: the IPv4 destination becomes IPv4-mapped IPv6.
        let h = proxy_header(ProxyVersion::V1, sa("[2001:db8::1]:5"), sa("127.0.0.1:80")).unwrap();
        assert_eq!(h, b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 5 80\r\n");
    }

    #[test]
    fn v2_header_bytes() {
        let h = proxy_header(
            ProxyVersion::V2,
            sa("198.18.0.7:40000"),
            sa("127.0.0.1:8080"),
        )
        .unwrap();
        let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 12]); // v2 PROXY, TCP over IPv4, 12 bytes
        want.extend_from_slice(&[198, 18, 0, 7, 127, 0, 0, 1]);
        want.extend_from_slice(&40000u16.to_be_bytes());
        want.extend_from_slice(&8080u16.to_be_bytes());
        assert_eq!(h, want);
        let parsed = ppp::v2::Header::try_from(&h[..]).unwrap();
        assert_eq!(
            parsed.addresses,
            ppp::v2::Addresses::from((sa("198.18.0.7:40000"), sa("127.0.0.1:8080")))
        );

        let h = proxy_header(ProxyVersion::V2, sa("[2001:db8::1]:5"), sa("[::1]:443")).unwrap();
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 36]); // TCP over IPv6, 36 bytes
        assert_eq!(h.len(), 16 + 36);
    }

    #[test]
    fn synthetic_addresses_and_recorded_fallback() {
        assert_eq!(synthetic(0), "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(synthetic(255), "198.18.1.0".parse::<IpAddr>().unwrap());
        assert_eq!(
            synthetic(SYNTHETIC_CLIENTS - 1),
            "198.19.255.254".parse::<IpAddr>().unwrap()
        );
        assert_eq!(synthetic(SYNTHETIC_CLIENTS), synthetic(0));
        assert_eq!(
            recorded_or_synthetic(Some(" 203.0.113.7 "), 3),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(recorded_or_synthetic(Some("unknown"), 3), synthetic(3));
        assert_eq!(recorded_or_synthetic(None, 4), synthetic(4));
    }
}
