//! The on-disk JSON format of a backend private key file.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize as _, Zeroizing};

use super::{KeyError, KeyId, PrivateKey};

/// Value of the `format` field.
const FORMAT: &str = "edge-backend-private-key";
/// Value of the `version` field.
const VERSION: u32 = 1;
/// Value of the `algorithm` field.
const ALGORITHM: &str = "X25519-HKDF-SHA256";
/// Largest key file we are willing to read.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// The JSON document stored in a key file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    version: u32,
    key_id: KeyId,
    algorithm: String,
    public_key: String,
    private_key: String,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        self.private_key.zeroize();
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The [`KeyError`] of a failed private-file operation on the key file.
fn key_file_err(path: &Path, e: edge_private_fs::PrivateFsError) -> KeyError {
    use edge_private_fs::PrivateFsError as E;
    match e {
        E::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            KeyError::AlreadyExists(path.to_path_buf())
        }
        E::Io { source, .. } => io_err(path)(source),
        E::InsecureMode { mode, .. } => KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        },
        E::NotRegularFile { .. } => format_err(path, "not a regular file"),
        E::TooLarge { .. } => format_err(path, "file too large"),
        E::NotUtf8 { .. } => format_err(path, "not UTF-8 text"),
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Writes `key` to a new file at `path` with mode 0600.
pub(super) fn write(key: &PrivateKey, path: &Path) -> Result<(), KeyError> {
    let doc = KeyFile {
        format: FORMAT.to_owned(),
        version: VERSION,
        key_id: key.key_id(),
        algorithm: ALGORITHM.to_owned(),
        public_key: key.public_key().to_base64(),
        private_key: B64.encode(*key.secret_bytes()),
    };
    let mut json = Zeroizing::new(
        serde_json::to_vec_pretty(&doc).map_err(|e| format_err(path, e.to_string()))?,
    );
    json.push(b'\n');

    edge_private_fs::create_new(path, &json).map_err(|e| key_file_err(path, e))
}

/// Reads and validates the key file at `path`.
pub(super) fn read(path: &Path) -> Result<PrivateKey, KeyError> {
    // The mode is checked on the opened file (no race with a rename).
    let text =
        edge_private_fs::read_secret(path, MAX_FILE_LEN).map_err(|e| key_file_err(path, e))?;
    let doc: KeyFile = serde_json::from_str(&text).map_err(|e| format_err(path, e.to_string()))?;

    if doc.format != FORMAT {
        return Err(format_err(
            path,
            format!("format is {:?}, expected {FORMAT:?}", doc.format),
        ));
    }
    if doc.version != VERSION {
        return Err(format_err(
            path,
            format!("unsupported version {}", doc.version),
        ));
    }
    if doc.algorithm != ALGORITHM {
        return Err(format_err(
            path,
            format!("algorithm is {:?}, expected {ALGORITHM:?}", doc.algorithm),
        ));
    }

    let secret = Zeroizing::new(
        B64.decode(&doc.private_key)
            .map_err(|e| format_err(path, format!("private_key: {e}")))?,
    );
    if secret.len() != 32 {
        return Err(format_err(
            path,
            format!("private_key must be 32 bytes, got {}", secret.len()),
        ));
    }
    let key = PrivateKey::from_secret_bytes(&secret)?;

    if doc.public_key != key.public_key().to_base64() {
        return Err(KeyError::Mismatch {
            path: path.to_path_buf(),
            field: "public_key",
        });
    }
    if doc.key_id != key.key_id() {
        return Err(KeyError::Mismatch {
            path: path.to_path_buf(),
            field: "key_id",
        });
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn written_0600_and_reads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backend.key");
        let key = PrivateKey::generate();
        key.write_file(&path).unwrap();

        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let back = PrivateKey::read_file(&path).unwrap();
        assert_eq!(back.key_id(), key.key_id());
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(*back.secret_bytes(), *key.secret_bytes());
    }

    #[test]
    fn file_has_documented_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = PrivateKey::generate();
        key.write_file(&path).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["format"], "edge-backend-private-key");
        assert_eq!(v["version"], 1);
        assert_eq!(v["key_id"], key.key_id().to_string());
        assert_eq!(v["algorithm"], "X25519-HKDF-SHA256");
        assert_eq!(v["public_key"], key.public_key().to_base64());
        assert_eq!(v["private_key"], B64.encode(*key.secret_bytes()));
        assert_eq!(v.as_object().unwrap().len(), 6);
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backend.key");
        let first = PrivateKey::generate();
        first.write_file(&path).unwrap();
        let err = PrivateKey::generate().write_file(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::AlreadyExists(ref p) if p == &path),
            "{err:?}"
        );
        assert_eq!(err.kind(), "already_exists");
        // The original key is untouched.
        assert_eq!(
            PrivateKey::read_file(&path).unwrap().key_id(),
            first.key_id()
        );
    }

    #[test]
    fn refuses_group_or_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backend.key");
        PrivateKey::generate().write_file(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            set_mode(&path, mode);
            let err = PrivateKey::read_file(&path).unwrap_err();
            match &err {
                KeyError::InsecurePermissions { path: p, mode: m } => {
                    assert_eq!(p, &path);
                    assert_eq!(*m, mode);
                }
                other => panic!("expected InsecurePermissions, got {other:?}"),
            }
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        }
        set_mode(&path, 0o400);
        PrivateKey::read_file(&path).unwrap();
    }

    fn rewrite(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
    }

    #[test]
    fn detects_mismatched_or_malformed_contents() {
        let dir = tempfile::tempdir().unwrap();
        let other = PrivateKey::generate();
        type Edit<'a> = Box<dyn FnOnce(&mut serde_json::Value) + 'a>;
        let cases: Vec<(&str, Edit<'_>, &str)> = vec![
            (
                "pk",
                Box::new(|v| v["public_key"] = other.public_key().to_base64().into()),
                "mismatch",
            ),
            (
                "kid",
                Box::new(|v| v["key_id"] = other.key_id().to_string().into()),
                "mismatch",
            ),
            (
                "fmt",
                Box::new(|v| v["format"] = "something-else".into()),
                "format",
            ),
            ("ver", Box::new(|v| v["version"] = 2.into()), "format"),
            (
                "alg",
                Box::new(|v| v["algorithm"] = "P-256".into()),
                "format",
            ),
            (
                "b64",
                Box::new(|v| v["private_key"] = "!!".into()),
                "format",
            ),
            (
                "len",
                Box::new(|v| v["private_key"] = B64.encode([1u8; 16]).into()),
                "format",
            ),
            ("extra", Box::new(|v| v["comment"] = "hi".into()), "format"),
        ];
        for (name, edit, kind) in cases {
            let path = dir.path().join(format!("{name}.key"));
            PrivateKey::generate().write_file(&path).unwrap();
            rewrite(&path, edit);
            set_mode(&path, 0o600);
            let err = PrivateKey::read_file(&path).unwrap_err();
            assert_eq!(err.kind(), kind, "{name}: {err}");
        }
    }

    #[test]
    fn missing_file_is_io_error_naming_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.key");
        let err = PrivateKey::read_file(&path).unwrap_err();
        assert_eq!(err.kind(), "io");
        assert!(err.to_string().contains("absent.key"));
    }
}
