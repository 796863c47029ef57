//! Values by host name: exact names first, then one-label `*.` wildcards.
//!
//! Sites (by Host header) and certificates (by SNI) follow the same rule, so
//! a name that selects a certificate also selects the same kind of site entry.

use std::collections::HashMap;

/// Exact and wildcard entries; `*.example.com` covers `a.example.com` only.
#[derive(Debug, Clone)]
pub struct HostMap<T> {
    exact: HashMap<String, T>,
    wildcard: HashMap<String, T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> HostMap<T> {
    /// Adds `name` (case-insensitive; `*.parent` for a wildcard). A later
    /// entry for the same name replaces the earlier one.
    pub fn insert(&mut self, name: &str, value: T) {
        let name = name.to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.insert(parent.to_string(), value),
            None => self.exact.insert(name, value),
        };
    }

    /// The entry for `name` (case and a trailing dot ignored).
    pub fn get(&self, name: &str) -> Option<&T> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(value) = self.exact.get(&name) {
            return Some(value);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_wildcard_and_wildcards_cover_one_label() {
        let mut map = HostMap::default();
        map.insert("*.Example.org", 1);
        map.insert("stats.example.org", 2);
        assert_eq!(map.get("STATS.example.org."), Some(&2));
        assert_eq!(map.get("x.example.org"), Some(&1));
        assert_eq!(map.get("a.b.example.org"), None);
        assert_eq!(map.get("example.org"), None);
    }
}
