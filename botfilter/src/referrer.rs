//! Referrer-spam host names.
//!
//! Format: one host name per line (the Matomo `spammers.txt` format). `#`
//! starts a comment line, blank lines are skipped. Names are parsed as URL
//! hosts (the `url` crate): internationalised names are stored in their
//! ASCII (`xn--`) form, case is ignored. A listed name also matches all its
//! subdomains.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::datacenter::ListFileStats;
use crate::error::LoadError;

/// Longest DNS name; longer hosts cannot be listed and are not looked up.
const MAX_HOST_LEN: usize = 253;

/// The set of spam host names.
#[derive(Debug, Clone, Default)]
pub struct ReferrerSpam {
    hosts: HashSet<Box<str>>,
}

impl ReferrerSpam {
    /// Reads every file into one set.
    pub fn load(files: &[PathBuf]) -> Result<(Self, Vec<ListFileStats>), LoadError> {
        crate::datacenter::load_list_files(files, Self::add_text)
    }

    /// Adds the entries of one list's contents; `path` names it in errors.
    pub(crate) fn add_text(&mut self, path: &Path, text: &str) -> Result<ListFileStats, LoadError> {
        let mut entries = 0;
        for (i, line) in text.lines().enumerate() {
            let entry = line.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let error = |message: String| LoadError::Host {
                path: path.to_path_buf(),
                line: i + 1,
                text: entry.to_string(),
                message,
            };
            let host = match url::Host::parse(entry).map_err(|e| error(e.to_string()))? {
                url::Host::Domain(d) => d,
                url::Host::Ipv4(a) => a.to_string(),
                url::Host::Ipv6(a) => a.to_string(),
            };
            let host = host.trim_end_matches('.');
            if host.is_empty() || host.len() > MAX_HOST_LEN {
                return Err(error("not a host name".into()));
            }
            self.hosts.insert(host.into());
            entries += 1;
        }
        Ok(ListFileStats {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Number of distinct host names.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The listed name that `host` equals or is a subdomain of. ASCII case and
    /// one trailing dot are ignored; does not allocate.
    pub fn find<'a>(&'a self, host: &str) -> Option<&'a str> {
        if self.hosts.is_empty() {
            return None;
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() || host.len() > MAX_HOST_LEN {
            return None;
        }
        let mut buf = [0u8; MAX_HOST_LEN];
        let lower = &mut buf[..host.len()];
        lower.copy_from_slice(host.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII lowercasing keeps valid UTF-8 valid.
        let lower = std::str::from_utf8(lower).ok()?;
        let mut candidate = lower;
        loop {
            if let Some(hit) = self.hosts.get(candidate) {
                return Some(hit);
            }
            match candidate.find('.') {
                Some(dot) => candidate = &candidate[dot + 1..],
                None => return None,
            }
        }
    }
}
