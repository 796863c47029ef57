//! Extra librdkafka properties of every backend command that talks to Kafka
//! (`tail`, `aggregate`, `backup`, `replay`): `--property KEY=VALUE` and
//! `--properties-file FILE`, parsed in one place.
//!
//! Secrets (`sasl.password`, `ssl.key.password`) belong in the file: command
//! lines are visible to every local user in `ps`. The file must not be
//! readable by group or others (mode 0600), and its values are never printed:
//! errors name the file, the line and the key only.

use std::path::{Path, PathBuf};

/// Largest properties file read (a few dozen lines are normal).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Why the properties could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PropsError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// Group or others may read the file.
    #[error(
        "{path} has mode {mode:o}; a Kafka properties file may hold secrets and must not be readable by group or others (chmod 600)"
    )]
    InsecureMode {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// A line is not `KEY=VALUE`, or the key is empty or repeated.
    #[error("{path}:{line}: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong (names the key, never the value).
        reason: String,
    },
}

/// The `--property` and `--properties-file` arguments (flattened into each command).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaPropsArgs {
    /// Extra librdkafka property KEY=VALUE (repeatable), e.g. security.protocol=ssl.
    /// Put secrets in --properties-file instead: command lines show in `ps`.
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// File of librdkafka properties, one KEY=VALUE per line (`#` comments,
    /// blank lines ignored); must be mode 0600. `--property` wins over the file.
    #[arg(long)]
    pub properties_file: Option<PathBuf>,
}

impl KafkaPropsArgs {
    /// The properties: the file's first, then `--property` ones (later wins in librdkafka).
    pub fn resolve(&self) -> Result<Vec<(String, String)>, PropsError> {
        let mut out = match &self.properties_file {
            Some(path) => read_file(path)?,
            None => Vec::new(),
        };
        out.extend(self.properties.iter().cloned());
        Ok(out)
    }
}

/// Parses one `KEY=VALUE` command-line argument.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        Some(_) => Err("expected KEY=VALUE with a non-empty KEY".to_string()),
        None => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Reads a properties file; refuses one that group or others can read.
/// The mode is checked on the opened file, so a rename in between cannot
/// swap in another one.
pub fn read_file(path: &Path) -> Result<Vec<(String, String)>, PropsError> {
    let shown = path.display().to_string();
    let text = edge_private_fs::read_secret(path, MAX_FILE_BYTES).map_err(|e| {
        use edge_private_fs::PrivateFsError as E;
        match e {
            E::InsecureMode { mode, .. } => PropsError::InsecureMode {
                path: shown.clone(),
                mode,
            },
            E::TooLarge { .. } => PropsError::TooLarge {
                path: shown.clone(),
            },
            E::Io { source, .. } => PropsError::Io {
                path: shown.clone(),
                reason: source.to_string(),
            },
            other @ (E::NotRegularFile { .. } | E::NotUtf8 { .. }) => PropsError::Io {
                path: shown.clone(),
                reason: other.to_string(),
            },
        }
    })?;
    parse_text(&text).map_err(|(line, reason)| PropsError::Syntax {
        path: shown,
        line,
        reason,
    })
}

/// Parses `KEY=VALUE` lines; `(line, reason)` on the first bad one. The
/// value is everything after the first `=`, trailing whitespace removed.
fn parse_text(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err((i + 1, "expected KEY=VALUE".to_string()));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err((i + 1, "empty key".to_string()));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err((i + 1, format!("{key} is set twice")));
        }
        out.push((key.to_string(), value.trim().to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn command_line_properties_need_a_key_and_an_equals_sign() {
        assert_eq!(
            parse_property("security.protocol=ssl").unwrap(),
            ("security.protocol".into(), "ssl".into())
        );
        assert_eq!(
            parse_property("sasl.password=a=b").unwrap().1,
            "a=b",
            "value keeps later '='"
        );
        assert!(parse_property("nokey").is_err());
        assert!(parse_property("=v").is_err());
    }

    #[test]
    fn file_lines_comments_and_errors_name_line_not_value() {
        let ok = parse_text("# TLS\nsecurity.protocol = ssl\n\nsasl.password=s3cr=t \n").unwrap();
        assert_eq!(
            ok,
            vec![
                ("security.protocol".into(), "ssl".into()),
                ("sasl.password".into(), "s3cr=t".into())
            ]
        );
        assert_eq!(parse_text("a=1\njunk\n").unwrap_err().0, 2);
        let (line, reason) = parse_text("sasl.password=one\nsasl.password=two\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(
            !reason.contains("one") && !reason.contains("two"),
            "{reason}"
        );
    }

    #[test]
    fn file_must_be_private_and_file_comes_before_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kafka.properties");
        std::fs::write(&path, "sasl.password=hunter2\nclient.id=file\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("mode 640") && err.contains("chmod 600"),
            "{err}"
        );
        assert!(!err.contains("hunter2"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let args = KafkaPropsArgs {
            properties: vec![("client.id".into(), "flag".into())],
            properties_file: Some(path),
        };
        assert_eq!(
            args.resolve().unwrap(),
            vec![
                ("sasl.password".into(), "hunter2".into()),
                ("client.id".into(), "file".into()),
                ("client.id".into(), "flag".into()),
            ]
        );
        let missing = KafkaPropsArgs {
            properties: vec![],
            properties_file: Some(dir.path().join("absent")),
        };
        assert!(
            missing
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("absent")
        );
    }
}
