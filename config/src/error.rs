//! Configuration errors: one [`ConfigError`] per problem, collected into a
//! [`ConfigErrors`] so that every problem in a file is reported at once.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line of the offending key in the file, when known.
    pub line: Option<usize>,
    /// Key path such as `sites[1].domains[0]` or `kafka.delivery_timeout_ms`
    /// (empty for errors about the file as a whole).
    pub key: String,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl ConfigError {
    /// An error for `key` without a known line.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error with its line set.
    pub fn with_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// All problems found in one configuration file.
///
/// Displays as one line per error: `{file}:{line}: {key}: {message}` (the
/// `:{line}` part is left out when the line is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The configuration file the errors are about.
    pub file: PathBuf,
    /// The errors, in file order where lines are known.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// An empty collection for `file`.
    pub fn new(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            errors: Vec::new(),
        }
    }

    /// A collection holding exactly one error.
    pub fn single(file: impl Into<PathBuf>, error: ConfigError) -> Self {
        Self {
            file: file.into(),
            errors: vec![error],
        }
    }

    /// Adds an error.
    pub fn push(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// Whether no error was collected.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// The file the errors are about.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(line) = error.line {
                write!(f, ":{line}")?;
            }
            if error.key.is_empty() {
                write!(f, ": {}", error.message)?;
            } else {
                write!(f, ": {}: {}", error.key, error.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_one_line_per_error() {
        let mut errors = ConfigErrors::single(
            "/etc/edge.toml",
            ConfigError::new("limits.max_body_bytes", "must be at most 67108864")
                .with_line(Some(7)),
        );
        errors.push(ConfigError::new("encryption.active_key_id", "is required"));
        errors.push(ConfigError::new("", "cannot read file"));
        assert_eq!(
            errors.to_string(),
            "/etc/edge.toml:7: limits.max_body_bytes: must be at most 67108864\n\
             /etc/edge.toml: encryption.active_key_id: is required\n\
             /etc/edge.toml: cannot read file"
        );
        assert_eq!(errors.len(), 3);
    }
}
