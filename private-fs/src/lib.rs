//! Private files and directories, in one place for every crate that keeps
//! secrets or private data on disk (salts, spool segments, backend keys,
//! ACME certificates and accounts, capture files, dev-mode files):
//!
//! - [`create_dir`] creates a directory (and its parents) with mode 0700;
//!   [`ensure_dir`] also tightens an existing one to 0700;
//! - [`write_atomic`] replaces a file with a 0600 one through a synced
//!   temporary file, a rename and a directory fsync, so a reader (or a crash)
//!   sees the old content or the new, never a part;
//! - [`create_new`] writes a new 0600 file and refuses to replace one;
//! - [`open_append`] opens a 0600 file for appending, tightening an existing one;
//!   [`open_write`] likewise for writing at chosen offsets;
//! - [`read_secret`] reads a secret, refusing a file that group or others may
//!   read, with a typed error that names the path and the mode.
//!
//! The crate depends on no workspace crate, so every crate may use it.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Mode of a private directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a private file.
pub const FILE_MODE: u32 = 0o600;
/// Permission bits that must be clear on a secret file (group and others).
const GROUP_OTHER_BITS: u32 = 0o077;

/// Why a private file or directory could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFsError {
    /// An operating-system call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create directory", "write", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A secret file that group or others may read.
    #[error(
        "{} has mode {mode:o}; a secret file must not be readable by group or others (chmod 600)",
        path.display()
    )]
    InsecureMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits (including setuid, setgid and sticky).
        mode: u32,
    },
    /// A secret path that is not a regular file (a directory, a FIFO, ...).
    #[error("{} is not a regular file", path.display())]
    NotRegularFile {
        /// The path.
        path: PathBuf,
    },
    /// A secret file larger than the caller's limit.
    #[error("{} is larger than {max_len} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max_len: u64,
    },
    /// A secret file that is not UTF-8 text.
    #[error("{} is not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
}

impl PrivateFsError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::InsecureMode { path, .. }
            | Self::NotRegularFile { path }
            | Self::TooLarge { path, .. }
            | Self::NotUtf8 { path } => path,
        }
    }

    /// The OS error kind of an [`PrivateFsError::Io`], `None` for the others.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// An [`PrivateFsError::Io`] maker for `op` on `path`.
fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PrivateFsError + 'a {
    move |source| PrivateFsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and its missing parents with mode 0700. An existing
/// directory keeps its mode (use [`ensure_dir`] to tighten it).
pub fn create_dir(dir: &Path) -> Result<(), PrivateFsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_err("create directory", dir))
}

/// Creates `dir` like [`create_dir`] and restricts it to mode 0700 even if it
/// already existed.
pub fn ensure_dir(dir: &Path) -> Result<(), PrivateFsError> {
    create_dir(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        .map_err(io_err("set permissions on", dir))
}

/// Restricts an existing file to mode 0600.
pub fn restrict_file(path: &Path) -> Result<(), PrivateFsError> {
    fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
        .map_err(io_err("set permissions on", path))
}

/// Makes the entries of `dir` (created, renamed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), PrivateFsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

/// The default temporary file of [`write_atomic`]: `.<name>.tmp` beside `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` atomically with a 0600 file holding `bytes`, through
/// [`temp_path`]; see [`write_atomic_via`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PrivateFsError> {
    write_atomic_via(path, &temp_path(path), bytes)
}

/// Replaces `path` atomically with a 0600 file holding `bytes`: a fresh
/// `temp` (a leftover one is deleted first, so its mode and owner do not
/// carry over), fsync, rename over `path`, fsync of the directory. On error
/// the temporary file is removed (best effort) and `path` is untouched.
pub fn write_atomic_via(path: &Path, temp: &Path, bytes: &[u8]) -> Result<(), PrivateFsError> {
    remove_if_exists(temp)?;
    let written = write_new_file(temp, bytes);
    if written.is_err() {
        // Best effort: the caller's error is the write's, not this one's.
        let _ = fs::remove_file(temp);
        return written;
    }
    fs::rename(temp, path).map_err(io_err("rename into", path))?;
    sync_dir(parent_dir(path))
}

/// Writes `bytes` to a new 0600 file at `path`, synced, and makes its
/// directory entry durable. An existing file is not replaced: the error's
/// [`PrivateFsError::io_kind`] is [`io::ErrorKind::AlreadyExists`]. A file
/// whose write fails is removed (best effort).
pub fn create_new(path: &Path, bytes: &[u8]) -> Result<(), PrivateFsError> {
    let written = write_new_file(path, bytes);
    if let Err(e) = written {
        if e.io_kind() != Some(io::ErrorKind::AlreadyExists) {
            let _ = fs::remove_file(path);
        }
        return Err(e);
    }
    sync_dir(parent_dir(path))
}

/// Opens `path` for appending, creating it with mode 0600; an existing file
/// is tightened to 0600 (opening keeps the mode it had).
pub fn open_append(path: &Path) -> Result<File, PrivateFsError> {
    open_private(path, OpenOptions::new().append(true))
}

/// Opens `path` for reading and for writing at chosen offsets (not
/// appending), creating it with mode 0600; an existing file is tightened to
/// 0600. For files written in place, such as a spool segment whose blocks
/// are written ahead with zeros.
pub fn open_write(path: &Path) -> Result<File, PrivateFsError> {
    open_private(
        path,
        OpenOptions::new().read(true).write(true).truncate(false),
    )
}

/// Opens `path` with `options`, creating it with mode 0600, and tightens an
/// existing file to 0600.
fn open_private(path: &Path, options: &mut OpenOptions) -> Result<File, PrivateFsError> {
    let file = options
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err("open", path))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(io_err("set permissions on", path))?;
    Ok(file)
}

/// Reads the secret text file at `path`, at most `max_len` bytes. Refuses a
/// file that group or others may read ([`PrivateFsError::InsecureMode`]) and
/// anything but a regular file. The checks are made on the opened file, so a
/// rename in between cannot swap in another one. The text is zeroed on drop.
pub fn read_secret(path: &Path, max_len: u64) -> Result<Zeroizing<String>, PrivateFsError> {
    let file = File::open(path).map_err(io_err("read", path))?;
    let meta = file.metadata().map_err(io_err("read", path))?;
    if !meta.is_file() {
        return Err(PrivateFsError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(PrivateFsError::InsecureMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let too_large = || PrivateFsError::TooLarge {
        path: path.to_path_buf(),
        max_len,
    };
    if meta.len() > max_len {
        return Err(too_large());
    }
    let mut bytes = Zeroizing::new(Vec::new());
    // One byte more than allowed: a file that grew since the check is caught.
    file.take(max_len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err("read", path))?;
    if bytes.len() as u64 > max_len {
        return Err(too_large());
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| PrivateFsError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Creates `path` (which must not exist) with mode 0600, writes and syncs it.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), PrivateFsError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err("create", path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", path))
}

/// Deletes `path`; a file that is already gone is not an error.
fn remove_if_exists(path: &Path) -> Result<(), PrivateFsError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("delete", path)(e)),
        _ => Ok(()),
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests;
