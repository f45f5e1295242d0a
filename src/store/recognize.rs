//! What kind of file `--db` names, found without changing it: ours (and which schema),
//! the Python MVP's, another application's SQLite database, or not SQLite at all.

use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No file, an empty one, or an SQLite file without tables: a new database.
    New,
    /// Ours, at this schema version.
    Ours(usize),
    /// A database of the Python MVP (`stream_agency.py`).
    Mvp,
    /// An SQLite database of another application, with some of its tables.
    OtherSqlite(Vec<String>),
    /// A file that is not SQLite.
    NotSqlite,
}

const HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Opens an SQLite file read-only, creating nothing beside it: with no `-wal` file next to
/// it (its writer stopped cleanly), as immutable; with one (its writer was killed, or still
/// runs), read-only through the WAL, which needs its `-shm` file. The database file itself
/// is never written.
pub fn open_read_only(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let shown = path.display();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let opened = if std::path::PathBuf::from(wal).exists() {
        Connection::open_with_flags(path, flags)
    } else {
        let uri = format!("file:{}?immutable=1", uri_path(path));
        Connection::open_with_flags(&uri, flags | OpenFlags::SQLITE_OPEN_URI)
    };
    opened
        .and_then(|conn| {
            conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(()))?;
            Ok(conn)
        })
        .map_err(|e| Error::runtime(format!("cannot read {shown}: {e}")))
}

/// A path as the path of a `file:` URI (`%`, `?` and `#` escaped).
fn uri_path(path: &Path) -> String {
    path.to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

/// Looks at the file at `path` without changing it.
pub fn recognize(path: &Path) -> Result<Found> {
    let mut head = Vec::new();
    match std::fs::File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::New),
        Err(e) => return Err(Error::usage(format!("cannot read {}: {e}", path.display()))),
        Ok(f) => {
            f.take(16)
                .read_to_end(&mut head)
                .map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display())))?;
        }
    }
    if head.is_empty() {
        return Ok(Found::New);
    }
    if head.as_slice() != HEADER {
        return Ok(Found::NotSqlite);
    }
    let conn = open_read_only(path)?;
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    let columns = |table: &str| -> Result<Vec<String>> {
        Ok(conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    };
    if tables.is_empty() && version == 0 {
        return Ok(Found::New);
    }
    let ours = [
        "agents",
        "attempts",
        "usage_windows",
        "billing_attempts",
        "stream_windows",
        "meta",
    ];
    if version > 0 && ours.iter().all(|t| has(t)) {
        return Ok(Found::Ours(version));
    }
    if version == 0
        && ["agents", "attempts", "usage_windows", "billing_attempts"]
            .iter()
            .all(|t| has(t))
    {
        let agents = columns("agents")?;
        let billing = columns("billing_attempts")?;
        let with =
            |cols: &[String], names: &[&str]| names.iter().all(|n| cols.iter().any(|c| c == n));
        if with(&agents, &["retry_step", "fee_due_claw"])
            && with(&billing, &["return_code", "stdout", "stderr"])
        {
            return Ok(Found::Mvp);
        }
    }
    Ok(Found::OtherSqlite(tables.into_iter().take(5).collect()))
}

/// The one-line refusal for a file that is not ours, or `None` when it is ours or new.
pub fn refusal(path: &Path, found: &Found, newest: usize) -> Option<Error> {
    let shown = path.display();
    match found {
        Found::New => None,
        Found::Ours(v) if *v <= newest => None,
        Found::Ours(v) => Some(Error::runtime(format!(
            "database {shown} has a newer schema than this binary knows (version {v}, this binary: {newest}): upgrade stream-agency"
        ))),
        Found::Mvp => Some(Error::usage(format!(
            "{shown} is a database of the Python stream_agency.py; import it with: stream-agency --db NEW.db import-mvp {shown}"
        ))),
        Found::OtherSqlite(tables) => Some(Error::usage(format!(
            "{shown} is an SQLite database of another application (tables: {}), not a stream-agency database: check --db / STREAM_AGENCY_DB",
            tables.join(", ")
        ))),
        Found::NotSqlite => Some(Error::usage(format!(
            "{shown} is not an SQLite database: check --db / STREAM_AGENCY_DB"
        ))),
    }
}
