//! The acknowledged position, kept in a small fsync'd file so a restart does
//! not ship acknowledged records again (a crash between a broker ack and the
//! checkpoint only causes duplicates, never a loss).

use std::fs;
use std::io;
use std::path::Path;

const NAME: &str = "acked";
const TMP: &str = "acked.tmp";

/// Reads the checkpoint: every record with `seq <= ` the result is acknowledged.
/// A missing file means nothing was acknowledged; a damaged one is an error
/// (guessing could skip unshipped records).
pub fn read(dir: &Path) -> io::Result<u64> {
    let bytes = match fs::read(dir.join(NAME)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let valid = bytes.len() == 12
        && crc32c::crc32c(&bytes[..8]).to_le_bytes() == [bytes[8], bytes[9], bytes[10], bytes[11]];
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is damaged", dir.join(NAME).display()),
        ));
    }
    let mut seq = [0; 8];
    seq.copy_from_slice(&bytes[..8]);
    Ok(u64::from_le_bytes(seq))
}

/// Durably records `seq` as acknowledged: temporary file, fsync, rename, directory fsync.
pub fn write(dir: &Path, seq: u64) -> io::Result<()> {
    let mut bytes = seq.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    edge_private_fs::write_atomic_via(&dir.join(NAME), &dir.join(TMP), &bytes).map_err(into_io)
}

/// Makes directory entries (created, renamed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    edge_private_fs::sync_dir(dir).map_err(into_io)
}

/// The [`io::Error`] of a private-file operation: same kind, and a message
/// that names the path.
pub(crate) fn into_io(e: edge_private_fs::PrivateFsError) -> io::Error {
    let kind = e.io_kind().unwrap_or(io::ErrorKind::Other);
    io::Error::new(kind, e)
}
