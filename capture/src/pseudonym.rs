//! Stable pseudonyms for client addresses: `10.x.y.z` from a keyed hash.
//!
//! The pseudonym is the first three bytes of HMAC-SHA256 over the client's
//! rate-limit key ([`IpKey`]: the IPv4 address, or the IPv6 /64 prefix),
//! under a random key generated once per process with ring's `SystemRandom`.
//! The key is never written, logged or exported, so a pseudonym cannot be
//! turned back into an address, and the same client maps to the same
//! pseudonym only for the life of the process: pseudonyms are not linkable
//! across restarts.
//!
//! 24 bits leave room for collisions: with `n` distinct clients in one
//! process lifetime, about `n² / 2²⁵` pairs share a pseudonym (≈ 0.5 for
//! 4,000 clients, ≈ 30 for 32,000). A replay then treats such a pair as one
//! client, which only makes per-IP limits slightly stricter.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use ring::hmac;
use ring::rand::SystemRandom;

use edge_ratelimit::IpKey;

/// IPv6 prefix a client is identified by (as for rate limits by default).
const IPV6_PREFIX_LEN: u8 = 64;

/// Maps client addresses to `10.x.y.z` pseudonyms under a secret key.
pub struct Pseudonymizer {
    key: hmac::Key,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer { key: <secret> }")
    }
}

static PROCESS: OnceLock<Pseudonymizer> = OnceLock::new();

impl Pseudonymizer {
    /// A pseudonymizer under a fresh random key.
    ///
    /// # Errors
    ///
    /// When the operating system's random source fails.
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())?;
        Ok(Self { key })
    }

    /// The process-wide pseudonymizer, generated on first use and kept for
    /// the life of the process (across reloads and capture on/off).
    ///
    /// # Errors
    ///
    /// When the key cannot be generated.
    pub fn process() -> Result<&'static Self, ring::error::Unspecified> {
        if let Some(p) = PROCESS.get() {
            return Ok(p);
        }
        let fresh = Self::generate()?;
        // A concurrent first call may have won; either way one key stays.
        let _ = PROCESS.set(fresh);
        PROCESS.get().ok_or(ring::error::Unspecified)
    }

    /// The pseudonym of `ip`: `10.a.b.c`, equal for addresses with the same
    /// rate-limit key (IPv4 address, IPv6 /64).
    pub fn pseudonym(&self, ip: IpAddr) -> Ipv4Addr {
        let key = IpKey::new(ip, IPV6_PREFIX_LEN);
        let tag = hmac::sign(&self.key, &key.0.to_be_bytes());
        let t = tag.as_ref();
        Ipv4Addr::new(10, t[0], t[1], t[2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pseudonyms_are_stable_10_x_addresses_per_client() {
        let p = Pseudonymizer::generate().unwrap();
        let a = p.pseudonym(ip("203.0.113.7"));
        assert_eq!(a.octets()[0], 10);
        assert_eq!(a, p.pseudonym(ip("203.0.113.7")), "stable");
        assert_eq!(a, p.pseudonym(ip("::ffff:203.0.113.7")), "mapped IPv4");
        assert_ne!(a, p.pseudonym(ip("203.0.113.8")));
        // One IPv6 /64 is one client.
        let v6 = p.pseudonym(ip("2001:db8:1:2::1"));
        assert_eq!(v6, p.pseudonym(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(v6, p.pseudonym(ip("2001:db8:1:3::1")));
        assert_eq!(v6.octets()[0], 10);
    }

    #[test]
    fn keys_differ_between_instances_and_the_process_key_is_kept() {
        let (p, q) = (
            Pseudonymizer::generate().unwrap(),
            Pseudonymizer::generate().unwrap(),
        );
        let addrs: Vec<IpAddr> = (1..=8u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let a: Vec<_> = addrs.iter().map(|&i| p.pseudonym(i)).collect();
        let b: Vec<_> = addrs.iter().map(|&i| q.pseudonym(i)).collect();
        assert_ne!(
            a, b,
            "a new key gives new pseudonyms (not linkable across restarts)"
        );
        let first = Pseudonymizer::process().unwrap().pseudonym(addrs[0]);
        assert_eq!(first, Pseudonymizer::process().unwrap().pseudonym(addrs[0]));
        assert_eq!(format!("{p:?}"), "Pseudonymizer { key: <secret> }");
    }
}
