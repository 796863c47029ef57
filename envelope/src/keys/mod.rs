//! Backend key pairs (X25519), their ids, key files and the backend keyring.
//!
//! The edge only ever holds a [`PublicKey`]; the backend holds one or more
//! [`PrivateKey`]s in a [`Keyring`], looked up by the [`KeyId`] that every
//! envelope carries in clear.

mod file;
mod keyring;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hpke::{Deserializable as _, Kem as _, Serializable as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::suite::Kem;

pub use keyring::Keyring;

/// Label hashed in front of the public key to derive a [`KeyId`].
const KEY_ID_LABEL: &[u8] = b"edge-backend-key-v1";

/// Why a key, key id or key file could not be used.
#[derive(Debug, Error)]
pub enum KeyError {
    /// A base64 key is not valid standard (padded) base64.
    #[error("key is not valid base64: {0}")]
    InvalidBase64(#[from] base64::DecodeError),
    /// A key decoded to the wrong number of bytes.
    #[error("key must be {expected} bytes, got {actual}")]
    InvalidLength {
        /// Required length.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// A key id is not 16 lowercase hex characters.
    #[error("invalid key id {0:?}: expected 16 lowercase hex characters")]
    InvalidKeyId(String),
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Refused to overwrite an existing key file.
    #[error("{0}: key file already exists, refusing to overwrite")]
    AlreadyExists(PathBuf),
    /// A private key file is readable or writable by group or others.
    #[error(
        "{path}: insecure permissions {mode:04o}, private key files must not be accessible to group or others (chmod 600)"
    )]
    InsecurePermissions {
        /// File involved.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file is not in the expected format.
    #[error("{path}: invalid key file: {reason}")]
    Format {
        /// File involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key id or public key stored in a key file does not match its secret.
    #[error("{path}: stored {field} does not match the private key")]
    Mismatch {
        /// File involved.
        path: PathBuf,
        /// `key_id` or `public_key`.
        field: &'static str,
    },
}

impl KeyError {
    /// Short fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyError::InvalidBase64(_) => "invalid_base64",
            KeyError::InvalidLength { .. } => "invalid_length",
            KeyError::InvalidKeyId(_) => "invalid_key_id",
            KeyError::Io { .. } => "io",
            KeyError::AlreadyExists(_) => "already_exists",
            KeyError::InsecurePermissions { .. } => "insecure_permissions",
            KeyError::Format { .. } => "format",
            KeyError::Mismatch { .. } => "mismatch",
        }
    }
}

/// Short public identifier of a backend key pair, carried in every envelope.
///
/// The first 8 bytes of `SHA-256("edge-backend-key-v1" || public key)`.
/// Displayed and parsed as 16 lowercase hex characters; serialized the same way.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// Derives the id of an X25519 public key.
    pub fn derive(public_key_bytes: &[u8; 32]) -> KeyId {
        let digest = Sha256::new()
            .chain_update(KEY_ID_LABEL)
            .chain_update(public_key_bytes)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }

    /// The raw 8 bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let well_formed =
            s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut id = [0u8; 8];
        if !well_formed || hex::decode_to_slice(s, &mut id).is_err() {
            return Err(KeyError::InvalidKeyId(s.to_owned()));
        }
        Ok(KeyId(id))
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A backend X25519 public key; all the edge needs to seal envelopes.
///
/// Serialized (and displayed) as standard padded base64.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    key_id: KeyId,
    inner: <Kem as hpke::Kem>::PublicKey,
}

impl PublicKey {
    fn from_bytes(bytes: [u8; 32]) -> PublicKey {
        // Infallible for X25519: any 32 bytes are a public key encoding.
        let inner = match <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes) {
            Ok(pk) => pk,
            Err(_) => unreachable!("X25519 public keys accept any 32 bytes"),
        };
        PublicKey {
            bytes,
            key_id: KeyId::derive(&bytes),
            inner,
        }
    }

    fn from_hpke(inner: <Kem as hpke::Kem>::PublicKey) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&inner.to_bytes());
        PublicKey {
            bytes,
            key_id: KeyId::derive(&bytes),
            inner,
        }
    }

    /// Parses standard (padded) base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<PublicKey, KeyError> {
        let decoded = B64.decode(s)?;
        let bytes: [u8; 32] =
            decoded
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::InvalidLength {
                    expected: 32,
                    actual: decoded.len(),
                })?;
        Ok(PublicKey::from_bytes(bytes))
    }

    /// Standard padded base64 of the 32 key bytes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.bytes)
    }

    /// The id envelopes sealed to this key carry.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The raw 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub(crate) fn hpke(&self) -> &<Kem as hpke::Kem>::PublicKey {
        &self.inner
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("key_id", &self.key_id)
            .field("base64", &self.to_base64())
            .finish()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_base64(s)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        PublicKey::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

/// A backend X25519 private key (zeroized on drop by the underlying type).
///
/// `Debug` shows only the key id, never the secret.
pub struct PrivateKey {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: PublicKey,
}

impl PrivateKey {
    /// Generates a fresh key pair from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// Panics if the operating system RNG fails (as `hpke` does).
    pub fn generate() -> PrivateKey {
        let (secret, public) = Kem::gen_keypair();
        PrivateKey {
            secret,
            public: PublicKey::from_hpke(public),
        }
    }

    /// Rebuilds a private key from its 32 secret bytes (clamped as X25519 requires).
    pub(crate) fn from_secret_bytes(bytes: &[u8]) -> Result<PrivateKey, KeyError> {
        let secret = <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes).map_err(|_| {
            KeyError::InvalidLength {
                expected: 32,
                actual: bytes.len(),
            }
        })?;
        let public = PublicKey::from_hpke(Kem::sk_to_pk(&secret));
        Ok(PrivateKey { secret, public })
    }

    /// The 32 secret bytes, in a buffer that is wiped on drop.
    pub(crate) fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.secret.write_exact(out.as_mut_slice());
        out
    }

    /// The matching public key (to put in the edge configuration).
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// The id of this key pair.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id
    }

    /// Writes the key to a new file with mode 0600; never overwrites.
    ///
    /// See `docs/envelope.md` for the JSON format.
    pub fn write_file(&self, path: impl AsRef<std::path::Path>) -> Result<(), KeyError> {
        file::write(self, path.as_ref())
    }

    /// Reads a key file written by [`PrivateKey::write_file`].
    ///
    /// Refuses files accessible to group or others, and files whose stored
    /// key id or public key do not match the secret.
    pub fn read_file(path: impl AsRef<std::path::Path>) -> Result<PrivateKey, KeyError> {
        file::read(path.as_ref())
    }

    pub(crate) fn hpke(&self) -> &<Kem as hpke::Kem>::PrivateKey {
        &self.secret
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_id", &self.public.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn key_id_derivation_is_first_8_bytes_of_labelled_sha256() {
        let pk = [0x42u8; 32];
        let mut input = b"edge-backend-key-v1".to_vec();
        input.extend_from_slice(&pk);
        let digest = Sha256::digest(&input);
        assert_eq!(KeyId::derive(&pk).0, digest[..8]);
        assert_ne!(KeyId::derive(&pk), KeyId::derive(&[0x43u8; 32]));
    }

    #[test]
    fn key_id_text_round_trip() {
        let id = KeyId([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert_eq!("0123456789abcdef".parse::<KeyId>().unwrap(), id);
        for bad in [
            "",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789abcdeg",
            "+123456789abcdef",
        ] {
            let err = bad.parse::<KeyId>().unwrap_err();
            assert_eq!(err.kind(), "invalid_key_id", "{bad:?}");
        }
    }

    #[test]
    fn key_id_serde_is_hex_string() {
        let id = KeyId([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"deadbeef00010203\"");
        assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<KeyId>("\"xyz\"").is_err());
    }

    #[test]
    fn public_key_base64_round_trip_and_validation() {
        let sk = PrivateKey::generate();
        let pk = sk.public_key();
        let b64 = pk.to_base64();
        assert_eq!(b64.len(), 44);
        let back = PublicKey::from_base64(&b64).unwrap();
        assert_eq!(back, pk);
        assert_eq!(back.key_id(), sk.key_id());
        assert_eq!(back.key_id(), KeyId::derive(back.as_bytes()));
        assert_eq!(
            serde_json::from_str::<PublicKey>(&serde_json::to_string(&pk).unwrap()).unwrap(),
            pk
        );

        assert_eq!(
            PublicKey::from_base64("not base64!").unwrap_err().kind(),
            "invalid_base64"
        );
        let short = B64.encode([1u8; 31]);
        assert!(matches!(
            PublicKey::from_base64(&short),
            Err(KeyError::InvalidLength {
                expected: 32,
                actual: 31
            })
        ));
        let unpadded = b64.trim_end_matches('=');
        assert!(PublicKey::from_base64(unpadded).is_err());
    }

    #[test]
    fn private_key_debug_hides_secret() {
        let sk = PrivateKey::generate();
        let dbg = format!("{sk:?}");
        let secret = sk.secret_bytes();
        assert!(!dbg.contains(&B64.encode(*secret)));
        assert!(!dbg.contains(&hex::encode(*secret)));
        assert!(dbg.contains(&sk.key_id().to_string()));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn secret_bytes_round_trip() {
        let sk = PrivateKey::generate();
        let back = PrivateKey::from_secret_bytes(sk.secret_bytes().as_slice()).unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        assert!(PrivateKey::from_secret_bytes(&[0u8; 31]).is_err());
    }
}
