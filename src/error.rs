//! One error type for the whole tool. The variant decides the exit status, the text is
//! the one line an operator reads. No variant ever carries a signature or key material:
//! every constructor site formats its own message from non-secret facts.

use std::fmt;

/// Exit statuses, documented in the README and in `--help`.
pub mod exit {
    /// All well.
    pub const OK: i32 = 0;
    /// Fatal runtime error (database unreadable, disk full, ...).
    pub const RUNTIME: i32 = 1;
    /// Usage or configuration error: nothing was done.
    pub const USAGE: i32 = 2;
    /// Another tick or run holds the database's lock.
    pub const LOCKED: i32 = 3;
    /// Ran, but something needs a human: a window lapsed, an agent failing for over an
    /// hour, an epoch lost for billing, billing stopped by its configuration.
    pub const NEEDS_HUMAN: i32 = 4;
}

#[derive(Debug)]
pub enum Error {
    /// Bad input or configuration; nothing was changed.
    Usage(String),
    /// Something failed while working (database, file system).
    Runtime(String),
    /// The database cannot be written: disk full, read-only, I/O error. A tick keeps
    /// renewing through it (see `crate::ops::disk`); elsewhere it is a runtime error.
    Storage(String),
    /// Another process holds the database's lock.
    Locked(String),
    /// The work was done, but a human must look (the message says at what).
    NeedsHuman(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn runtime(msg: impl Into<String>) -> Self {
        Error::Runtime(msg.into())
    }

    /// The database could not be written for want of disk (full, read-only, I/O).
    pub fn is_storage(&self) -> bool {
        matches!(self, Error::Storage(_))
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Runtime(_) | Error::Storage(_) => exit::RUNTIME,
            Error::Locked(_) => exit::LOCKED,
            Error::NeedsHuman(_) => exit::NEEDS_HUMAN,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m)
            | Error::Runtime(m)
            | Error::Storage(m)
            | Error::Locked(m)
            | Error::NeedsHuman(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        // SQLite messages name tables and constraints, never bound values, so they are
        // safe to show even when a statement carried a signature.
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DiskFull | C::ReadOnly | C::SystemIoFailure | C::CannotOpen) => {
                Error::Storage(format!("database cannot be written: {e}"))
            }
            _ => Error::Runtime(format!("database error: {e}")),
        }
    }
}
