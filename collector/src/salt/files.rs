//! On-disk salt files: naming, listing, atomic writes and deletion.
//!
//! Each salt lives in `<dir>/salt-<day>` (mode 0600), written through a
//! temporary file `.salt-<day>.tmp<pid>` that is fsynced and renamed into
//! place, so a reader never sees a partial salt.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{SALT_LEN, SaltError};

/// Prefix of salt file names.
const PREFIX: &str = "salt-";
/// Prefix of temporary files written before the rename.
const TEMP_PREFIX: &str = ".salt-";

/// A file found in the salt directory.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    /// A salt file for the given day.
    Salt(i64, PathBuf),
    /// A leftover temporary file from an interrupted write.
    Temp(PathBuf),
}

/// Path of the salt file for `day`.
pub(super) fn path_for(dir: &Path, day: i64) -> PathBuf {
    dir.join(format!("{PREFIX}{day}"))
}

/// The day a file name refers to, if it is a salt file name.
fn day_of_name(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(PREFIX)?;
    let valid = digits.strip_prefix('-').unwrap_or(digits);
    if valid.is_empty() || !valid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Creates `dir` (and parents) if needed and restricts it to mode 0700.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), SaltError> {
    edge_private_fs::ensure_dir(dir).map_err(private_fs_err)
}

/// Salt and temporary files in `dir`; other files are left out.
pub(super) fn list(dir: &Path) -> Result<Vec<Entry>, SaltError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(day) = day_of_name(&name) {
            entries.push(Entry::Salt(day, entry.path()));
        } else if name.starts_with(TEMP_PREFIX) && name.contains(".tmp") {
            entries.push(Entry::Temp(entry.path()));
        }
    }
    Ok(entries)
}

/// Reads a salt file, which must hold exactly [`SALT_LEN`] bytes, and
/// re-applies mode 0600.
pub(super) fn read(path: &Path) -> Result<[u8; SALT_LEN], SaltError> {
    let file = File::open(path).map_err(|e| io_err("read", path, e))?;
    let mut bytes = Vec::with_capacity(SALT_LEN + 1);
    // Read at most one byte more than needed: enough to detect a wrong size.
    file.take(SALT_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err("read", path, e))?;
    let salt = <[u8; SALT_LEN]>::try_from(bytes.as_slice()).map_err(|_| SaltError::Corrupt {
        path: path.to_owned(),
        len: bytes.len(),
    })?;
    edge_private_fs::restrict_file(path).map_err(private_fs_err)?;
    Ok(salt)
}

/// Writes the salt for `day` atomically: temp file (0600), fsync, rename,
/// fsync of the directory. The temp file is `.salt-<day>.tmp<pid>`, which
/// [`list`] reports for cleanup if a crash leaves it behind.
pub(super) fn write(dir: &Path, day: i64, salt: &[u8; SALT_LEN]) -> Result<(), SaltError> {
    let temp = dir.join(format!("{TEMP_PREFIX}{day}.tmp{}", std::process::id()));
    edge_private_fs::write_atomic_via(&path_for(dir, day), &temp, salt).map_err(private_fs_err)
}

/// Deletes a file; a file that is already gone is not an error.
pub(super) fn remove(path: &Path) -> Result<(), SaltError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("delete", path, e)),
    }
}

/// The [`SaltError::Io`] of a failed private-file operation.
fn private_fs_err(e: edge_private_fs::PrivateFsError) -> SaltError {
    match e {
        edge_private_fs::PrivateFsError::Io { op, path, source } => {
            SaltError::Io { op, path, source }
        }
        // Only secret reads fail otherwise, and salts are not read that way.
        other => SaltError::Io {
            op: "write",
            path: other.path().to_owned(),
            source: io::Error::other(other.to_string()),
        },
    }
}

/// A [`SaltError::Io`] for `op` on `path`.
fn io_err(op: &'static str, path: &Path, source: io::Error) -> SaltError {
    SaltError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn salt_file_names() {
        assert_eq!(day_of_name("salt-20000"), Some(20000));
        assert_eq!(day_of_name("salt--3"), Some(-3));
        assert_eq!(day_of_name("salt-"), None);
        assert_eq!(day_of_name("salt-+5"), None);
        assert_eq!(day_of_name("salt-12x"), None);
        assert_eq!(day_of_name(".salt-12.tmp7"), None);
        assert_eq!(day_of_name("other"), None);
    }

    #[test]
    fn write_then_read_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let salt = [7u8; SALT_LEN];
        write(dir.path(), 42, &salt).unwrap();
        let path = path_for(dir.path(), 42);
        assert_eq!(read(&path).unwrap(), salt);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(list(dir.path()).unwrap(), vec![Entry::Salt(42, path)]);
    }

    #[test]
    fn wrong_size_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path(), 1);
        fs::write(&path, [0u8; 31]).unwrap();
        let err = read(&path).unwrap_err();
        assert_eq!(err.kind(), "corrupt");
        fs::write(&path, [0u8; 100]).unwrap();
        assert!(matches!(
            read(&path),
            Err(SaltError::Corrupt { len: 33, .. })
        ));
    }

    #[test]
    fn temp_files_are_listed_for_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".salt-5.tmp99"), b"x").unwrap();
        fs::write(dir.path().join("unrelated"), b"x").unwrap();
        assert_eq!(
            list(dir.path()).unwrap(),
            vec![Entry::Temp(dir.path().join(".salt-5.tmp99"))]
        );
    }
}
