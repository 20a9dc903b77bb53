//! What can go wrong opening or using a store.

use std::fmt;
use std::path::PathBuf;

/// Why a store could not be opened; each says what to do about it.
#[derive(Debug)]
pub enum OpenError {
    /// Another process holds the SQLite file.
    Locked(PathBuf),
    /// The database was written by a newer natter.
    Newer {
        /// The schema version found in the database.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The database itself refused (cannot open, connect or migrate).
    Database(String),
    /// The SQLite file cannot be opened for writing (read-only, not ours, not there).
    File(PathBuf, std::io::Error),
    /// The file around it (creating or locking it) failed.
    Io(std::io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Locked(path) => write!(
                f,
                "{} is in use by another natter-server; each server needs its own SQLite file \
                 (servers that share accounts form a cluster on PostgreSQL)",
                path.display()
            ),
            OpenError::Newer { found, known } => write!(
                f,
                "the database's schema is version {found}, newer than this natter-server knows \
                 ({known}); run a newer natter-server"
            ),
            OpenError::Database(e) => write!(f, "the store cannot be opened: {e}"),
            OpenError::File(path, e) => write!(
                f,
                "{} cannot be opened for writing ({e}); the server keeps its accounts and \
                 history there, so it must be a file this user may write (or pick another \
                 with --store)",
                path.display()
            ),
            OpenError::Io(e) => write!(f, "the store cannot be opened: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// Why a request to an open store failed. None of them is fatal to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database failed the request (full disk, lost connection, ...); nothing of it was
    /// kept.
    Unavailable(String),
    /// The store's queue is full: the database is slower than the traffic.
    Busy,
    /// The store has stopped.
    Closed,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "the store failed: {e}"),
            StoreError::Busy => f.write_str("the store is busy"),
            StoreError::Closed => f.write_str("the store has stopped"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Unavailable(describe(&e))
    }
}

/// A PostgreSQL error with the server's own words (its `Display` alone says "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}
