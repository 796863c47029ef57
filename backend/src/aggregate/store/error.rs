//! [`StoreError`]: every way a store operation fails, with the statement's
//! purpose named, and which side it is on ([`StoreError::class`]).

use std::borrow::Cow;
use std::path::PathBuf;

use super::classify::{ErrorClass, classify_sqlx};
use crate::aggregate::rollup::SketchError;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL (expected sqlite: or postgres:): {0}")]
    UnsupportedUrl(String),
    /// The directory of a SQLite file could not be created.
    #[error("cannot create {}: {error}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A statement, a connection or a row decode failed.
    #[error("{what}: {error}")]
    Sql {
        /// What was being done (`cannot upsert bucket`, …).
        what: Cow<'static, str>,
        /// The driver's error (a database error carries its code).
        error: sqlx::Error,
    },
    /// The embedded migrations could not be applied.
    #[error("aggregation store migrations failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A stored sketch cannot be decoded.
    #[error("bucket {bucket}: {error}")]
    Sketch {
        /// `site size start_ms` of the bucket.
        bucket: String,
        /// Why it cannot be read.
        error: SketchError,
    },
    /// A stored value is outside the range its type allows.
    #[error("{0} out of range")]
    OutOfRange(&'static str),
}

impl StoreError {
    /// Whether the records' content or the infrastructure is at fault: only
    /// a database error (by its code) or a value the driver could not encode
    /// can be the content's fault; everything else is infrastructure.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Sql { error, .. } => classify_sqlx(error),
            _ => ErrorClass::Infrastructure,
        }
    }

    /// The database's own message and code when there is one (no context
    /// naming the statement), else the whole message. Used as the reason of
    /// a record the store refused.
    pub fn database_message(&self) -> String {
        match self {
            StoreError::Sql {
                error: sqlx::Error::Database(db),
                ..
            } => match db.code() {
                Some(code) => format!("{} (code {code})", db.message()),
                None => db.message().to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// A row that could not be decoded.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Sql {
            what: Cow::Borrowed("cannot decode a row"),
            error,
        }
    }
}

/// Names what a failed `sqlx` call was doing, as a [`StoreError::Sql`].
pub(crate) trait SqlContext<T> {
    /// With a fixed description.
    fn context(self, what: &'static str) -> Result<T, StoreError>;
    /// With a description built only on failure.
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for Result<T, sqlx::Error> {
    fn context(self, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::Sql {
            what: Cow::Borrowed(what),
            error,
        })
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::Sql {
            what: Cow::Owned(what()),
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sql_errors_can_be_the_contents_fault() {
        let encode = Err::<(), _>(sqlx::Error::Encode("value too large".into()))
            .context("cannot upsert bucket")
            .unwrap_err();
        assert_eq!(encode.class(), ErrorClass::Content);
        assert_eq!(
            encode.to_string(),
            "cannot upsert bucket: error occurred while encoding a value: value too large"
        );
        let timeout = Err::<(), _>(sqlx::Error::PoolTimedOut)
            .context("cannot begin transaction")
            .unwrap_err();
        assert_eq!(timeout.class(), ErrorClass::Infrastructure);
        assert_eq!(
            timeout.database_message(),
            "cannot begin transaction: pool timed out while waiting for an open connection"
        );
        let url = StoreError::UnsupportedUrl("mysql://x".into());
        assert_eq!(url.class(), ErrorClass::Infrastructure);
        assert!(url.to_string().contains("expected sqlite: or postgres:"));
    }
}
