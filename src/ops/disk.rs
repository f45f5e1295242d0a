//! The database's disk: its free space, and a reserve file kept beside the database by
//! `init-db` (and every full tick, when space allows), released at the first write the disk
//! refuses so that tick's records fit, and made again once free space is back. (What could
//! not be recorded meanwhile waits in `tick::backlog`.)

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The reserve's size: a tick of 10,000 renewals writes at most 1.45 MiB (the WAL grown from
/// empty and the file's growth; BENCHMARKS.md), so 4 MiB holds the records of the tick that
/// found the disk full.
pub const RESERVE_BYTES: u64 = 4 << 20;
/// The reserve is made again only when this much is free (it must not take the space
/// it is meant to give back).
const REMAKE_FREE_BYTES: u64 = 3 * RESERVE_BYTES;

pub fn reserve_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".reserve");
    PathBuf::from(name)
}

/// Makes the reserve file (blocks really allocated, not a sparse file) if it is missing.
pub fn make_reserve(db: &Path) -> std::io::Result<bool> {
    let path = reserve_path(db);
    if path.exists() {
        return Ok(false);
    }
    let made = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
            file.write_all(&zeros)?;
        }
        file.sync_all()
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made.map(|()| true)
}

/// Makes the reserve again when it is missing and the disk has room for it.
pub fn keep_reserve(db: &Path) {
    if reserve_path(db).exists() || space(db).is_none_or(|s| s.free < REMAKE_FREE_BYTES) {
        return;
    }
    match make_reserve(db) {
        Ok(true) => log::info!(
            "disk reserve {} made ({} MiB, released if the disk fills up)",
            reserve_path(db).display(),
            RESERVE_BYTES >> 20
        ),
        Ok(false) => {}
        Err(e) => log::warn!("cannot make the disk reserve: {e}"),
    }
}

/// Deletes the reserve; whether there was one to give back.
pub fn release_reserve(db: &Path) -> bool {
    std::fs::remove_file(reserve_path(db)).is_ok()
}

/// Free space and writability of the file system holding the database.
#[derive(Debug, Clone, Copy)]
pub struct Space {
    pub free: u64,
    pub read_only: bool,
}

pub fn space(db: &Path) -> Option<Space> {
    let dir = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(Space {
        free: st.f_bavail.saturating_mul(st.f_frsize),
        read_only: st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
    })
}

/// "the file system holding /var/lib/x has 0 bytes free (read-only)", for messages.
pub fn describe_space(db: &Path) -> String {
    let dir = db.parent().unwrap_or(Path::new(".")).display();
    match space(db) {
        Some(s) => format!(
            "the file system holding {dir} has {} bytes free{}",
            s.free,
            if s.read_only { " and is read-only" } else { "" }
        ),
        None => format!("the file system holding {dir} cannot be inspected"),
    }
}
