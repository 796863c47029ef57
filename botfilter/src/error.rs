//! Load errors. Every variant names the file and, where there is one, the line.

use std::path::{Path, PathBuf};

/// Why a [`crate::BotFilter`] could not be built. The message starts with
/// `file:line:` wherever a line is known.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A list file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `.json` user-agent file is not valid JSON or not one of the two
    /// supported shapes.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line reported by the JSON parser.
        line: usize,
        /// 1-based column reported by the JSON parser.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A user-agent pattern is not a valid regular expression.
    #[error("{}:{line}: invalid user-agent pattern {pattern:?}: {message}", path.display())]
    Regex {
        /// The file.
        path: PathBuf,
        /// 1-based line of the pattern.
        line: usize,
        /// The pattern as written in the file.
        pattern: String,
        /// The regex parser's message.
        message: String,
    },
    /// A line of a data-centre list is not an IP network.
    #[error("{}:{line}: invalid network {text:?}: {message}", path.display())]
    Network {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The text of the entry.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// A line of a referrer-spam list is not a host name.
    #[error("{}:{line}: invalid referrer-spam host {text:?}: {message}", path.display())]
    Host {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The text of the entry.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// The user-agent patterns are individually valid but do not compile
    /// into one matcher (for example the compiled size limit is exceeded).
    #[error("user-agent patterns do not compile together: {message}")]
    Compile {
        /// The regex compiler's message.
        message: String,
    },
}

/// Reads one list file; a failure names the file.
pub(crate) fn read_list_file(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}
