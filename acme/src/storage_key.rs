//! The storage key: encrypts ACME private keys and account credentials at rest.
//!
//! Sealed files are `"EDGESK1" | key check (8) | nonce (12) | ChaCha20-Poly1305
//! ciphertext`. The associated data binds each file to its purpose and name,
//! so an encrypted key cannot be moved to another name's slot unnoticed. The
//! key check (first 8 bytes of SHA-256 over the key) turns "wrong storage
//! key" into a clear error instead of a generic decryption failure.

use std::path::Path;

use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 7] = b"EDGESK1";
const CHECK_LEN: usize = 8;
const HEADER_LEN: usize = MAGIC.len() + CHECK_LEN + NONCE_LEN;

/// Why a storage key could not be loaded or a sealed file opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageKeyError {
    /// The key source is unreadable, world-readable or malformed.
    #[error("{0}")]
    Source(String),
    /// The sealed data was written under another storage key.
    #[error("sealed with a different storage key (check {found}, this key is {expected})")]
    WrongKey {
        /// Key check found in the file.
        found: String,
        /// Key check of the configured key.
        expected: String,
    },
    /// The data is not a sealed file or was modified.
    #[error("not a sealed file, or it was modified: {0}")]
    Corrupt(&'static str),
}

/// A 32-byte symmetric key for data at rest.
pub struct StorageKey {
    key: LessSafeKey,
    check: [u8; CHECK_LEN],
    rng: SystemRandom,
}

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageKey")
            .field("check", &hex::encode(self.check))
            .finish_non_exhaustive()
    }
}

impl StorageKey {
    /// Builds the key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StorageKeyError> {
        if bytes.len() != 32 {
            return Err(StorageKeyError::Source(format!(
                "the storage key must be 32 bytes, got {}",
                bytes.len()
            )));
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| StorageKeyError::Source("unusable storage key".into()))?;
        let digest = Sha256::digest(bytes);
        let mut check = [0u8; CHECK_LEN];
        check.copy_from_slice(&digest[..CHECK_LEN]);
        Ok(Self {
            key: LessSafeKey::new(unbound),
            check,
            rng: SystemRandom::new(),
        })
    }

    /// Decodes base64 text (surrounding whitespace ignored).
    pub(crate) fn from_base64(text: &str) -> Result<Self, StorageKeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| StorageKeyError::Source(format!("the storage key is not base64: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// Reads a key file, refusing one that group or others can read.
    pub fn from_file(path: &Path) -> Result<Self, StorageKeyError> {
        let text = edge_certs::secret_file::read_private_text(path, "the storage key")
            .map_err(StorageKeyError::Source)?;
        Self::from_base64(&text)
            .map_err(|e| StorageKeyError::Source(format!("{}: {e}", path.display())))
    }

    /// Reads the key from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, StorageKeyError> {
        let text = std::env::var(var).map_err(|_| {
            StorageKeyError::Source(format!("environment variable {var} is not set"))
        })?;
        Self::from_base64(&text)
            .map_err(|e| StorageKeyError::Source(format!("environment variable {var}: {e}")))
    }

    /// Hex of the key check, safe to show (identifies, does not reveal, the key).
    pub(crate) fn check_hex(&self) -> String {
        hex::encode(self.check)
    }

    /// Encrypts `plaintext`, binding it to `context` (purpose and name).
    pub(crate) fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, StorageKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StorageKeyError::Source("the system random source failed".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.check);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .map_err(|_| StorageKeyError::Corrupt("encryption failed"))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypts what [`seal`](Self::seal) wrote for the same `context`.
    pub(crate) fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, StorageKeyError> {
        if sealed.len() < HEADER_LEN + 16 || &sealed[..MAGIC.len()] != MAGIC {
            return Err(StorageKeyError::Corrupt("missing EDGESK1 header"));
        }
        let check = &sealed[MAGIC.len()..MAGIC.len() + CHECK_LEN];
        if check != self.check {
            return Err(StorageKeyError::WrongKey {
                found: hex::encode(check),
                expected: self.check_hex(),
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[MAGIC.len() + CHECK_LEN..HEADER_LEN]);
        let mut body = sealed[HEADER_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .map_err(|_| StorageKeyError::Corrupt("authentication failed"))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> StorageKey {
        StorageKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn round_trip_and_context_binding() {
        let k = key(1);
        let sealed = k.seal("cert-key:a.example", b"secret key").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"secret key"));
        assert_eq!(
            k.open("cert-key:a.example", &sealed).unwrap(),
            b"secret key"
        );
        assert!(matches!(
            k.open("cert-key:b.example", &sealed),
            Err(StorageKeyError::Corrupt(_))
        ));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(k.open("cert-key:a.example", &flipped).is_err());
        assert!(matches!(
            key(2).open("cert-key:a.example", &sealed),
            Err(StorageKeyError::WrongKey { .. })
        ));
    }

    #[test]
    fn key_sources_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        assert!(StorageKey::from_base64("c2hvcnQ=").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("storage.key");
        let text = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = StorageKey::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            StorageKey::from_file(&path).unwrap().check_hex(),
            key(7).check_hex()
        );
    }
}
