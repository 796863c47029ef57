//! Reading files that hold secrets (admin token, ACME storage key).

use std::path::Path;

use edge_private_fs::PrivateFsError;

/// Reads `path` as text, refusing a file that group or others can read
/// (checked on the opened file, see [`edge_private_fs::read_secret`]).
/// `what` names the secret in the error message.
pub fn read_private_text(path: &Path, what: &str) -> Result<String, String> {
    match edge_private_fs::read_secret(path, u64::MAX) {
        Ok(text) => Ok(text.to_string()),
        Err(PrivateFsError::InsecureMode { mode, .. }) => Err(format!(
            "{} has mode {mode:o}; {what} must not be readable by group or others (chmod 600)",
            path.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}
