//! How SQLite's failures become [`PortError`]s: every message names the database file and,
//! where there is one, the fix, because the person reading it is at a terminal and did not
//! write this code.

use ferry_engine::ports::PortError;
use rusqlite::ErrorCode;
use std::path::Path;
use std::time::Duration;

/// A failure inside one store operation, before it is given the database's path.
#[derive(Debug)]
pub(crate) enum Failure {
    /// SQLite or rusqlite said no.
    Sql(rusqlite::Error),
    /// A row holds a value this code cannot read (a status it does not know, bad JSON):
    /// the file was written by another ferry or edited by hand.
    Bad {
        table: &'static str,
        column: &'static str,
        value: String,
    },
    /// Already a port error (not found, conflict …).
    Port(PortError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<PortError> for Failure {
    fn from(e: PortError) -> Self {
        Failure::Port(e)
    }
}

pub(crate) type Fallible<T> = Result<T, Failure>;

/// A value read from `table.column` that this code cannot interpret.
pub(crate) fn bad(table: &'static str, column: &'static str, value: impl Into<String>) -> Failure {
    Failure::Bad {
        table,
        column,
        value: value.into(),
    }
}

/// `5s`, `200ms`, `1.5s`: how long we waited for a lock, as people write it.
fn waited(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Turns a failure into the port's error, naming `path`.
pub(crate) fn to_port(failure: Failure, path: &Path, busy: Duration) -> PortError {
    let p = path.display();
    match failure {
        Failure::Port(e) => e,
        Failure::Bad {
            table,
            column,
            value,
        } => PortError::unavailable(format!(
            "state database `{p}` holds `{value}` in {table}.{column}, which this ferry does not understand; it was written by another version of ferry or edited by hand"
        )),
        Failure::Sql(e) => sql_to_port(&e, path, busy),
    }
}

fn sql_to_port(e: &rusqlite::Error, path: &Path, busy: Duration) -> PortError {
    let p = path.display();
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => PortError::unavailable(format!(
                "state database `{p}` is locked by another process (waited {}); wait for it to finish or stop it",
                waited(busy)
            )),
            ErrorCode::ReadOnly => PortError::unavailable(format!(
                "state database `{p}` is read-only ({e}); make the file and its folder writable by this user, or run ferry where it can write"
            )),
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied => PortError::unavailable(format!(
                "cannot open state database `{p}` ({e}); check that its folder exists and that this user may read and write both"
            )),
            ErrorCode::NotADatabase => not_a_database(path),
            ErrorCode::DatabaseCorrupt => PortError::unavailable(format!(
                "state database `{p}` is corrupt ({e}); move it away; ferry will create a new one (the run history in it is lost)"
            )),
            ErrorCode::DiskFull => PortError::unavailable(format!(
                "cannot write state database `{p}`: the disk is full; free some space and retry"
            )),
            ErrorCode::SystemIoFailure
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::NoLargeFileSupport => PortError::unavailable(format!(
                "cannot read or write state database `{p}` ({e}); check the disk and the filesystem it is on"
            )),
            ErrorCode::ConstraintViolation => {
                PortError::conflict(format!("state database `{p}` refused a write: {e}"))
            }
            _ => PortError::permanent(format!("state database `{p}`: {e}")),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => PortError::unavailable(format!(
            "state database `{p}` holds a value this ferry cannot read ({e}); it was written by another version of ferry or edited by hand"
        )),
        _ => PortError::permanent(format!("state database `{p}`: {e}")),
    }
}

/// The file at `path` exists but is not a SQLite database.
pub(crate) fn not_a_database(path: &Path) -> PortError {
    PortError::unavailable(format!(
        "`{}` is not a ferry state database (it is not a SQLite file); move it away; ferry will create a new one",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> Failure {
        Failure::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    fn mapped(code: std::ffi::c_int) -> PortError {
        to_port(
            sqlite(code),
            Path::new(".ferry/ferry.db"),
            Duration::from_secs(5),
        )
    }

    /// Every way the file can be unusable is `Unavailable`, names the file and says what
    /// to do (the cases a test cannot provoke as root, like a read-only file, included).
    #[test]
    fn unusable_databases_name_the_file_and_the_fix() {
        use ferry_engine::ports::PortErrorKind;
        use rusqlite::ffi;
        let cases = [
            (
                ffi::SQLITE_BUSY,
                "is locked by another process (waited 5s); wait for it to finish or stop it",
            ),
            (ffi::SQLITE_LOCKED, "is locked by another process"),
            (
                ffi::SQLITE_READONLY,
                "make the file and its folder writable",
            ),
            (ffi::SQLITE_CANTOPEN, "check that its folder exists"),
            (ffi::SQLITE_PERM, "check that its folder exists"),
            (
                ffi::SQLITE_NOTADB,
                "move it away; ferry will create a new one",
            ),
            (ffi::SQLITE_CORRUPT, "is corrupt"),
            (ffi::SQLITE_FULL, "the disk is full"),
            (ffi::SQLITE_IOERR, "check the disk"),
        ];
        for (code, fix) in cases {
            let e = mapped(code);
            assert_eq!(e.kind, PortErrorKind::Unavailable, "{code}: {e}");
            assert!(e.message.contains("`.ferry/ferry.db`"), "{code}: {e}");
            assert!(e.message.contains(fix), "{code}: {e}");
        }
        assert_eq!(mapped(ffi::SQLITE_CONSTRAINT).kind, PortErrorKind::Conflict);
        assert_eq!(mapped(ffi::SQLITE_ERROR).kind, PortErrorKind::Permanent);
    }

    #[test]
    fn unreadable_values_name_table_and_column() {
        let e = to_port(
            bad("stages", "status", "paused"),
            Path::new("x.db"),
            Duration::ZERO,
        );
        assert!(e.message.contains("holds `paused` in stages.status"), "{e}");
    }

    #[test]
    fn waits_read_naturally() {
        assert_eq!(waited(Duration::from_secs(5)), "5s");
        assert_eq!(waited(Duration::from_millis(200)), "200ms");
        assert_eq!(waited(Duration::from_millis(1500)), "1.5s");
    }
}
