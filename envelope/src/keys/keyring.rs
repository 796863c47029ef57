//! The backend's set of private keys, looked up by [`KeyId`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{KeyError, KeyId, PrivateKey};

/// Several backend private keys by id: the active one plus retired ones whose
/// envelopes may still need opening.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: BTreeMap<KeyId, PrivateKey>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Adds a key; returns the key previously stored under the same id, if any.
    pub fn insert(&mut self, key: PrivateKey) -> Option<PrivateKey> {
        self.keys.insert(key.key_id(), key)
    }

    /// The key with this id.
    pub fn get(&self, id: &KeyId) -> Option<&PrivateKey> {
        self.keys.get(id)
    }

    /// The ids of all keys, in ascending order.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.keys().copied().collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the keyring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads every listed key file (see [`PrivateKey::read_file`]).
    ///
    /// The same key listed twice is kept once.
    pub fn load_paths(paths: &[PathBuf]) -> Result<Keyring, KeyError> {
        let mut ring = Keyring::new();
        for path in paths {
            ring.insert(PrivateKey::read_file(path)?);
        }
        Ok(ring)
    }

    /// Reads every `*.key` file directly inside `dir` (not recursive).
    ///
    /// An empty directory gives an empty keyring; callers decide whether
    /// that is an error.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Keyring, KeyError> {
        let dir = dir.as_ref();
        let io_err = |source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err)? {
            let path = entry.map_err(io_err)?.path();
            if path.extension().is_some_and(|ext| ext == "key") {
                paths.push(path);
            }
        }
        paths.sort();
        Keyring::load_paths(&paths)
    }
}

impl FromIterator<PrivateKey> for Keyring {
    fn from_iter<I: IntoIterator<Item = PrivateKey>>(iter: I) -> Self {
        let mut ring = Keyring::new();
        for key in iter {
            ring.insert(key);
        }
        ring
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn insert_get_ids() {
        let a = PrivateKey::generate();
        let b = PrivateKey::generate();
        let (ida, idb) = (a.key_id(), b.key_id());
        let mut ring = Keyring::new();
        assert!(ring.is_empty());
        assert!(ring.insert(a).is_none());
        assert!(ring.insert(b).is_none());
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.get(&ida).unwrap().key_id(), ida);
        assert_eq!(ring.get(&idb).unwrap().key_id(), idb);
        assert!(ring.get(&KeyId([0; 8])).is_none());
        let mut expected = vec![ida, idb];
        expected.sort();
        assert_eq!(ring.ids(), expected);
    }

    #[test]
    fn load_dir_reads_only_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = PrivateKey::generate();
        let b = PrivateKey::generate();
        a.write_file(dir.path().join("a.key")).unwrap();
        b.write_file(dir.path().join("b.key")).unwrap();
        std::fs::write(dir.path().join("README"), "not a key").unwrap();
        std::fs::write(dir.path().join("a.key.bak"), "not a key").unwrap();

        let ring = Keyring::load_dir(dir.path()).unwrap();
        assert_eq!(ring.len(), 2);
        assert!(ring.get(&a.key_id()).is_some());
        assert!(ring.get(&b.key_id()).is_some());
    }

    #[test]
    fn load_dir_fails_on_an_insecure_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        PrivateKey::generate().write_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keyring::load_dir(dir.path()).unwrap_err();
        assert_eq!(err.kind(), "insecure_permissions");
    }

    #[test]
    fn load_paths_and_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let a = PrivateKey::generate();
        let path = dir.path().join("a.key");
        a.write_file(&path).unwrap();
        let ring = Keyring::load_paths(&[path.clone(), path]).unwrap();
        assert_eq!(ring.ids(), vec![a.key_id()]);

        let err = Keyring::load_dir(dir.path().join("nope")).unwrap_err();
        assert_eq!(err.kind(), "io");
        assert!(
            Keyring::load_dir(tempfile::tempdir().unwrap().path())
                .unwrap()
                .is_empty()
        );
    }
}
