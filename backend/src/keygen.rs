//! `edge-backend keygen`: a new X25519 key pair for envelope encryption.

use std::path::{Path, PathBuf};

use edge_envelope::keys::PrivateKey;

/// A freshly written key.
pub struct GeneratedKey {
    /// Where the private key was written (mode 0600).
    pub path: PathBuf,
    /// Key id (16 hex chars).
    pub key_id: String,
    /// Public key, standard base64.
    pub public_key: String,
}

/// Why a key could not be written.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The key directory could not be created.
    #[error("cannot create {}: {error}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The key file could not be written.
    #[error(transparent)]
    Write(#[from] edge_envelope::keys::KeyError),
}

/// Generates a key pair and writes the private key to `dir/<key id>.key`.
pub fn generate(dir: &Path) -> Result<GeneratedKey, KeygenError> {
    edge_private_fs::create_dir(dir).map_err(|e| KeygenError::CreateDir {
        dir: dir.to_path_buf(),
        error: match e {
            edge_private_fs::PrivateFsError::Io { source, .. } => source,
            other => std::io::Error::other(other),
        },
    })?;
    let key = PrivateKey::generate();
    let key_id = key.key_id().to_string();
    let path = dir.join(format!("{key_id}.key"));
    key.write_file(&path)?;
    Ok(GeneratedKey {
        path,
        key_id,
        public_key: key.public_key().to_base64(),
    })
}

impl GeneratedKey {
    /// The TOML snippet that goes into the edge configuration.
    pub fn config_snippet(&self) -> String {
        format!(
            "[encryption]\nactive_key_id = \"{id}\"\n\n[[encryption.backend_keys]]\nid = \"{id}\"\npublic_key = \"{pk}\"\n",
            id = self.key_id,
            pk = self.public_key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_uncreatable_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let Err(err) = generate(&file.join("keys")) else {
            panic!("a directory under a file cannot be created")
        };
        let err = err.to_string();
        assert!(
            err.starts_with("cannot create ") && err.contains("file/keys"),
            "{err}"
        );
    }

    #[test]
    fn writes_private_key_0600_and_snippet_names_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let k = generate(&dir.path().join("keys")).unwrap();
        let mode = std::fs::metadata(&k.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = PrivateKey::read_file(&k.path).unwrap();
        assert_eq!(back.key_id().to_string(), k.key_id);
        assert!(
            k.config_snippet()
                .contains(&format!("active_key_id = \"{}\"", k.key_id))
        );
        let text = std::fs::read_to_string(&k.path).unwrap();
        assert!(!k.config_snippet().contains(&text));
    }
}
