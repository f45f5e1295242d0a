//! Backups and restores of the database: the only record of windows counted and not yet
//! billed. A backup is SQLite's `VACUUM INTO` (a consistent snapshot while `run`, ticks
//! and `serve` keep writing), checked (`integrity_check`, our schema version) before it
//! replaces anything (temporary file, fsync, rename), mode 0600. Signatures stay as stored.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::store::recognize::{self, Found};
use crate::store::Store;

/// Dated backups in a directory are named `PREFIX<UTC time>.db` (they sort by time).
pub const PREFIX: &str = "stream-agency-";

/// What a backup produced.
#[derive(Debug)]
pub struct Made {
    pub path: PathBuf,
    pub bytes: u64,
    /// Older dated copies removed by `--keep`.
    pub pruned: usize,
}

/// Where a backup goes: `to` itself, or a dated file inside the directory `to`.
pub fn target(db: &Path, to: &Path, now_ms: i64) -> Result<PathBuf> {
    let target = if to.is_dir() {
        to.join(format!("{PREFIX}{}.db", stamp(now_ms)))
    } else {
        to.to_path_buf()
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "backup directory {} does not exist: create it first",
            dir.display()
        )));
    }
    let same = |a: &Path, b: &Path| {
        a.canonicalize()
            .ok()
            .zip(b.canonicalize().ok())
            .is_some_and(|(a, b)| a == b)
    };
    if same(&target, db) {
        return Err(Error::usage(format!(
            "--to {} is the live database: give another file or a directory",
            target.display()
        )));
    }
    Ok(target)
}

/// Copies the live database into `target` through a checked temporary file.
pub fn backup(db: &Path, target: &Path, keep: Option<usize>) -> Result<Made> {
    let tmp = sibling(target, ".tmp");
    let _ = fs::remove_file(&tmp);
    // An empty file of mode 0600 first: VACUUM INTO fills it, never readable by others.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::usage(format!("cannot write in {}: {e}", tmp.display())))?;
    let made = snapshot(db, &tmp).and_then(|()| check(&tmp));
    if let Err(e) = made {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    install(&tmp, target)?;
    let pruned = match (keep, target.parent()) {
        (Some(n), Some(dir))
            if target
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with(PREFIX)) =>
        {
            prune(dir, n)?
        }
        _ => 0,
    };
    let bytes = fs::metadata(target).map_or(0, |m| m.len());
    Ok(Made {
        path: target.to_path_buf(),
        bytes,
        pruned,
    })
}

fn snapshot(db: &Path, tmp: &Path) -> Result<()> {
    let conn = Connection::open(db)
        .map_err(|e| Error::runtime(format!("cannot open {}: {e}", db.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute("VACUUM INTO ?1", [tmp.to_string_lossy()])
        .map_err(|e| Error::runtime(format!("backup failed: {e}")))?;
    Ok(())
}

/// A file is a database of ours, whole, at a schema this binary knows.
pub fn check(path: &Path) -> Result<usize> {
    let shown = path.display();
    let found = recognize::recognize(path).map_err(|e| {
        Error::usage(format!(
            "{shown} cannot be read as a database ({e}): nothing was changed"
        ))
    })?;
    let version = match found {
        Found::Ours(v) if v <= Store::schema_version() => v,
        Found::Ours(v) => {
            return Err(Error::usage(format!(
                "{shown} has schema version {v}, newer than this binary's {}: upgrade stream-agency first",
                Store::schema_version()
            )))
        }
        other => {
            let why = recognize::refusal(path, &other, Store::schema_version())
                .map_or("it is empty".to_string(), |e| e.to_string());
            return Err(Error::usage(format!("{why}: nothing was changed")));
        }
    };
    let conn = recognize::open_read_only(path)?;
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| Error::usage(format!("{shown} is damaged ({e}): nothing was changed")))?;
    if ok != "ok" {
        return Err(Error::usage(format!(
            "{shown} fails its integrity check ({ok}): nothing was changed"
        )));
    }
    Ok(version)
}

/// fsync, rename over `target`, fsync the directory: all or nothing.
fn install(tmp: &Path, target: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::runtime(format!("cannot write {}: {e}", target.display()));
    File::open(tmp).and_then(|f| f.sync_all()).map_err(io)?;
    fs::rename(tmp, target).map_err(io)?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Keeps the newest `keep` dated backups in `dir`.
fn prune(dir: &Path, keep: usize) -> Result<usize> {
    let mut dated: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::runtime(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            name.starts_with(PREFIX) && name.ends_with(".db")
        })
        .collect();
    dated.sort();
    let extra = dated.len().saturating_sub(keep);
    for old in &dated[..extra] {
        fs::remove_file(old)
            .map_err(|e| Error::runtime(format!("cannot remove {}: {e}", old.display())))?;
    }
    Ok(extra)
}

/// Replaces the live database with a checked backup; the replaced file is kept beside it
/// as `<db>.replaced-<time>` (its WAL checkpointed into it first). Returns that path.
pub fn restore(db: &Path, from: &Path, now_ms: i64) -> Result<Option<PathBuf>> {
    check(from)?;
    let kept = if db.exists() {
        let conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        drop(conn);
        let kept = sibling(db, &format!(".replaced-{}", stamp(now_ms)));
        fs::rename(db, &kept)
            .map_err(|e| Error::runtime(format!("cannot move {} aside: {e}", db.display())))?;
        for ext in ["-wal", "-shm"] {
            let _ = fs::remove_file(sibling(db, ext));
        }
        Some(kept)
    } else {
        None
    };
    let tmp = sibling(db, ".restoring");
    let _ = fs::remove_file(&tmp);
    let copy = || -> std::io::Result<()> {
        let mut src = File::open(from)?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::copy(&mut src, &mut dst)?;
        Ok(())
    };
    copy().map_err(|e| Error::runtime(format!("cannot copy {}: {e}", from.display())))?;
    install(&tmp, db)?;
    Ok(kept)
}

/// A UTC time for file names that sort by time: `20261201T233510Z`.
fn stamp(now_ms: i64) -> String {
    crate::ops::output::utc(Some(now_ms)).replace([':', '-', ' ', '.'], "")
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
