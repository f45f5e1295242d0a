//! One `tick`/`run` per database: an exclusive `flock` on `<db>.lock`. The kernel drops it
//! when the holder dies, so a crashed run never blocks the next one.
//!
//! The lock file also says who holds it (first line) and when the last tick completed
//! (`last_tick_ms=`), for `check --prometheus`: kept out of the database, so a tick with
//! nothing to do writes nothing there (no WAL, no fsync).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::Shard;

const LAST_TICK: &str = "last_tick_ms=";

/// Held for as long as it lives.
#[derive(Debug)]
pub struct DbLock {
    file: File,
    holder: String,
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn parse_last_tick(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(LAST_TICK))
        .and_then(|v| v.trim().parse().ok())
}

/// When the last tick on this database completed, if one ever did.
pub fn last_tick_ms(db: &Path) -> Option<i64> {
    parse_last_tick(&std::fs::read_to_string(lock_path(db)).ok()?)
}

impl DbLock {
    fn write(&mut self, last_tick: Option<i64>) {
        let mut text = format!("{}\n", self.holder);
        if let Some(ms) = last_tick {
            text.push_str(&format!("{LAST_TICK}{ms}\n"));
        }
        // Overwritten in place, then cut to length: a reader never sees the holder line
        // missing (truncating first left a moment with an empty file).
        let _ = self.file.rewind();
        let _ = self.file.write_all(text.as_bytes());
        let _ = self.file.set_len(text.len() as u64);
    }

    /// Records that a tick completed now.
    pub fn tick_completed(&mut self, now_ms: i64) {
        self.write(Some(now_ms));
    }
}

/// The lock of one renewer: `<db>.lock` for the whole agency and for shard 0 (the one that
/// bills), `<db>.shard-K.lock` for shard K of any N (so two copies of one shard exclude
/// each other).
pub fn shard_lock_path(db: &Path, shard: Option<Shard>) -> PathBuf {
    match shard {
        Some(Shard { index, .. }) if index > 0 => {
            let mut name = db.as_os_str().to_owned();
            name.push(format!(".shard-{index}.lock"));
            PathBuf::from(name)
        }
        _ => lock_path(db),
    }
}

/// Takes the lock or fails at once, naming the holder.
pub fn acquire(db: &Path, what: &str) -> Result<DbLock> {
    acquire_at(db, &lock_path(db), what)
}

/// [`acquire`] for one shard's renewer.
pub fn acquire_shard(db: &Path, what: &str, shard: Option<Shard>) -> Result<DbLock> {
    match shard {
        Some(s) if s.count > 1 => acquire_at(
            db,
            &shard_lock_path(db, shard),
            &format!("{what} --shard {s}"),
        ),
        _ => acquire(db, what),
    }
}

fn acquire_at(db: &Path, path: &Path, what: &str) -> Result<DbLock> {
    let path = path.to_path_buf();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .or_else(|e| match e.kind() {
            // A read-only file system: a lock file opened for reading locks as well (and
            // renewals go on; see `crate::ops::disk`).
            std::io::ErrorKind::ReadOnlyFilesystem => std::fs::File::open(&path),
            _ => Err(e),
        })
        .map_err(|e| Error::runtime(format!("cannot open lock file {}: {e}", path.display())))?;
    // flock(LOCK_EX | LOCK_NB) on Unix: the kernel drops it when the process dies.
    let locked = file.try_lock();
    let mut previous = String::new();
    let _ = file.read_to_string(&mut previous);
    if let Err(e) = locked {
        if let std::fs::TryLockError::Error(e) = e {
            return Err(Error::runtime(format!(
                "cannot lock {}: {e}",
                path.display()
            )));
        }
        let holder = previous.lines().next().unwrap_or("").trim();
        let holder = if holder.is_empty() {
            "another process"
        } else {
            holder
        };
        return Err(Error::Locked(format!(
            "database {} is in use by {holder}: only one tick or run (per shard) works on it at a time",
            db.display()
        )));
    }
    let holder = format!(
        "{what} (pid {}) since {}",
        std::process::id(),
        crate::ops::output::utc(Some(crate::net::clock::now_ms()))
    );
    let mut lock = DbLock { file, holder };
    lock.write(parse_last_tick(&previous));
    Ok(lock)
}
