//! Reading files that hold secrets (admin token, ACME storage key).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Reads `path` as text, refusing a file that group or others can read.
/// The mode is checked on the opened file, so a rename in between cannot
/// swap in another one. `what` names the secret in the error message.
pub fn read_private_text(path: &Path, what: &str) -> Result<String, String> {
    let shown = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} has mode {mode:o}; {what} must not be readable by group or others (chmod 600)"
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    Ok(text)
}
