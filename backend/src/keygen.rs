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

/// Generates a key pair and writes the private key to `dir/<key id>.key`.
pub fn generate(dir: &Path) -> anyhow::Result<GeneratedKey> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
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
