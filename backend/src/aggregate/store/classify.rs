//! Is a failed store write the fault of a record's *content* (retrying the
//! same records can never succeed: isolate and dead-letter them) or of the
//! *infrastructure* (connection lost, lock timeout, server shutting down:
//! retry the same batch with backoff)?
//!
//! PostgreSQL errors are classified by SQLSTATE class, SQLite errors by
//! primary result code; anything that is not a database error (I/O, pool
//! timeout, TLS, protocol) is infrastructure. When in doubt the answer is
//! infrastructure: a retried batch loses nothing, a dead-lettered one drops
//! counts.

/// Which side a store error is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Caused by what a record holds (bad text, a value too large to
    /// index, a constraint): the same records fail every time.
    Content,
    /// Caused by the database or the path to it: retried with backoff.
    Infrastructure,
}

impl ErrorClass {
    /// Every class, for pre-registering metric labels.
    pub const ALL: [ErrorClass; 2] = [ErrorClass::Content, ErrorClass::Infrastructure];

    /// Fixed metric label: `content` or `infrastructure`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Content => "content",
            ErrorClass::Infrastructure => "infrastructure",
        }
    }
}

/// Classifies one `sqlx::Error`.
pub fn classify_sqlx(e: &sqlx::Error) -> ErrorClass {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => classify_code(&code),
            None => ErrorClass::Infrastructure,
        },
        // The driver could not encode a bound value: the value's fault.
        sqlx::Error::Encode(_) => ErrorClass::Content,
        _ => ErrorClass::Infrastructure,
    }
}

/// Classifies a database error code: a five-character PostgreSQL SQLSTATE
/// (which may be all digits, e.g. `22021`) or a decimal SQLite (extended)
/// result code (at most four digits: extended codes are below 10,000).
pub fn classify_code(code: &str) -> ErrorClass {
    if code.len() < 5
        && let Ok(n) = code.parse::<i64>()
    {
        return classify_sqlite(n);
    }
    match code {
        // program_limit_exceeded: an index row too large, among others.
        "54000" => ErrorClass::Content,
        // serialization_failure, deadlock_detected, lock_not_available.
        "40001" | "40P01" | "55P03" => ErrorClass::Infrastructure,
        // data exceptions (22021: invalid byte sequence, 22001: string too
        // long, …) and integrity constraint violations.
        c if c.starts_with("22") || c.starts_with("23") => ErrorClass::Content,
        // 08 connection, 53 insufficient resources, 57 operator intervention
        // (57P01 admin_shutdown), 58 system error, XX internal, and the rest.
        _ => ErrorClass::Infrastructure,
    }
}

/// SQLite primary result codes (the low byte of an extended code).
fn classify_sqlite(code: i64) -> ErrorClass {
    const SQLITE_TOOBIG: i64 = 18;
    const SQLITE_CONSTRAINT: i64 = 19;
    const SQLITE_MISMATCH: i64 = 20;
    const SQLITE_RANGE: i64 = 25;
    match code & 0xff {
        SQLITE_TOOBIG | SQLITE_CONSTRAINT | SQLITE_MISMATCH | SQLITE_RANGE => ErrorClass::Content,
        // BUSY, LOCKED, IOERR, FULL, CANTOPEN, NOMEM, READONLY, CORRUPT, …
        _ => ErrorClass::Infrastructure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_and_sqlite_codes() {
        for c in [
            "22021", "22001", "23505", "23502", "54000", "2067", "19", "18",
        ] {
            assert_eq!(classify_code(c), ErrorClass::Content, "{c}");
        }
        for c in [
            "40001", "40P01", "55P03", "57P01", "08006", "53300", "XX000", "5", "517", "10",
        ] {
            assert_eq!(classify_code(c), ErrorClass::Infrastructure, "{c}");
        }
    }

    #[test]
    fn non_database_errors_are_infrastructure() {
        assert_eq!(
            classify_sqlx(&sqlx::Error::PoolTimedOut),
            ErrorClass::Infrastructure
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            classify_sqlx(&sqlx::Error::Io(io)),
            ErrorClass::Infrastructure
        );
        assert_eq!(
            classify_sqlx(&sqlx::Error::Encode("too large".into())),
            ErrorClass::Content
        );
    }
}
