//! One `tick`/`run` per database: an exclusive `flock` on `<db>.lock`. The kernel drops it
//! when the holder dies, so a crashed run never blocks the next one.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Held for as long as it lives.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock or fails at once, naming the holder.
pub fn acquire(db: &Path, what: &str) -> Result<DbLock> {
    let path = lock_path(db);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::runtime(format!("cannot open lock file {}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let holder = if holder.is_empty() {
            "another process"
        } else {
            holder
        };
        return Err(Error::Locked(format!(
            "database {} is in use by {holder}: only one tick or run works on it at a time",
            db.display()
        )));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(
        file,
        "{what} (pid {}) since {}",
        std::process::id(),
        crate::report::utc(Some(crate::now_ms()))
    );
    let _ = file.flush();
    Ok(DbLock { _file: file })
}
