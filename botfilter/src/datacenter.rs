//! Data-centre IP ranges: CIDR list files in prefix tries (longest prefix
//! match), one for IPv4 and one for IPv6.
//!
//! Format: one network per line (`192.0.2.0/24`, `2001:db8::/32`); a bare
//! address is a /32 or /128; host bits must be zero. `#` starts a comment,
//! blank lines are skipped. A leading `!` marks an exception: the longest
//! matching prefix decides whether an address is flagged.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use serde::Serialize;

use crate::error::LoadError;

/// Entries read from one CIDR or referrer-spam file.
#[derive(Debug, Clone, Serialize)]
pub struct ListFileStats {
    /// The file.
    pub path: PathBuf,
    /// Entries read (exceptions included).
    pub entries: usize,
}

/// Reads `files` in order into one `T` with `add_text` (one line-based list
/// per file: data-centre ranges or referrer-spam hosts); stats per file.
pub(crate) fn load_list_files<T: Default>(
    files: &[PathBuf],
    add_text: impl Fn(&mut T, &Path, &str) -> Result<ListFileStats, LoadError>,
) -> Result<(T, Vec<ListFileStats>), LoadError> {
    let mut set = T::default();
    let stats = files
        .iter()
        .map(|path| add_text(&mut set, path, &crate::error::read_list_file(path)?))
        .collect::<Result<_, _>>()?;
    Ok((set, stats))
}

/// Data-centre networks; the value is `true` for a listed network and
/// `false` for an exception.
#[derive(Debug, Clone, Default)]
pub struct DatacenterRanges {
    v4: PrefixMap<Ipv4Net, bool>,
    v6: PrefixMap<Ipv6Net, bool>,
}

impl DatacenterRanges {
    /// Reads every file into one pair of tries.
    pub fn load(files: &[PathBuf]) -> Result<(Self, Vec<ListFileStats>), LoadError> {
        load_list_files(files, Self::add_text)
    }

    /// Adds the entries of one list's contents; `path` names it in errors.
    pub(crate) fn add_text(&mut self, path: &Path, text: &str) -> Result<ListFileStats, LoadError> {
        let mut entries = 0;
        for (i, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let (listed, net_text) = match entry.strip_prefix('!') {
                Some(rest) => (false, rest.trim()),
                None => (true, entry),
            };
            let net = parse_network(net_text).map_err(|message| LoadError::Network {
                path: path.to_path_buf(),
                line: i + 1,
                text: entry.to_string(),
                message,
            })?;
            match net {
                IpNet::V4(n) => self.v4.insert(n, listed),
                IpNet::V6(n) => self.v6.insert(n, listed),
            };
            entries += 1;
        }
        Ok(ListFileStats {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Number of IPv4 and IPv6 prefixes held.
    pub fn len(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// Whether no prefix is held.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The longest listed or excepted prefix containing `ip`, with `true` if
    /// it is listed. IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn longest_match(&self, ip: IpAddr) -> Option<(IpNet, bool)> {
        match ip.to_canonical() {
            IpAddr::V4(a) => self
                .v4
                .get_lpm(&Ipv4Net::from(a))
                .map(|(n, l)| (IpNet::V4(n), *l)),
            IpAddr::V6(a) => self
                .v6
                .get_lpm(&Ipv6Net::from(a))
                .map(|(n, l)| (IpNet::V6(n), *l)),
        }
    }

    /// Whether `ip` is in a listed data-centre network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.longest_match(ip).is_some_and(|(_, listed)| listed)
    }
}

fn parse_network(text: &str) -> Result<IpNet, String> {
    if text.contains('/') {
        let net: IpNet = text.parse().map_err(|e| format!("{e}"))?;
        if net.trunc() != net {
            return Err(format!(
                "host bits are set (the network is {})",
                net.trunc()
            ));
        }
        Ok(net)
    } else {
        let addr: IpAddr = text.parse().map_err(|e| format!("{e}"))?;
        Ok(IpNet::from(addr))
    }
}
