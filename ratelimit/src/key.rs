//! Limiter keys for client addresses: IPv4 by address, IPv6 by prefix.

use std::net::IpAddr;

/// A client address reduced to what a limiter keys on, as one integer:
/// IPv4 (also IPv4-mapped IPv6) as `::ffff:a.b.c.d`, IPv6 with the bits
/// past the configured prefix cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(pub u128);

impl IpKey {
    /// Keys `ip`, keeping the first `ipv6_prefix_len` bits of IPv6 addresses.
    pub fn new(ip: IpAddr, ipv6_prefix_len: u8) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey(u128::from(v4.to_ipv6_mapped())),
                None => {
                    let bits = u32::from(ipv6_prefix_len.min(128));
                    let mask = if bits == 0 {
                        0
                    } else {
                        u128::MAX << (128 - bits)
                    };
                    IpKey(u128::from(v6) & mask)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str, len: u8) -> IpKey {
        IpKey::new(s.parse().unwrap(), len)
    }

    #[test]
    fn ipv6_addresses_in_one_prefix_share_a_key() {
        assert_eq!(key("2001:db8:1:2::1", 64), key("2001:db8:1:2:ffff::9", 64));
        assert_ne!(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64));
        assert_eq!(key("2001:db8:1:2::1", 48), key("2001:db8:1:3::1", 48));
        assert_ne!(key("2001:db8::1", 128), key("2001:db8::2", 128));
    }

    #[test]
    fn ipv4_is_keyed_by_address_even_when_mapped() {
        assert_ne!(key("192.0.2.1", 64), key("192.0.2.2", 64));
        assert_eq!(key("192.0.2.1", 64), key("::ffff:192.0.2.1", 64));
        // A /64 prefix must not merge IPv4 clients (they all share ::ffff:0:0/96).
        assert_ne!(key("::ffff:192.0.2.1", 32), key("::ffff:192.0.2.2", 32));
    }
}
