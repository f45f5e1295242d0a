//! When the disk cannot take a write (full, read-only, failing), renewals go on: a lapse
//! costs the agent its funding, a missing record costs us one bill, and only the second
//! can be repaired later. What could not be recorded waits here, in memory, oldest first,
//! and is written as soon as the database takes writes again.
//!
//! `init-db` (and every full tick, when space allows) keeps a reserve file beside the
//! database: released at the first write the disk refuses, so that tick's records fit,
//! and made again once free space is back.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::agents::{DueAgent, Renewal};
use crate::store::Store;

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

/// One renewal the database did not take, with what its message needs.
#[derive(Debug, Clone)]
struct Unrecorded {
    address: String,
    /// The epoch known when it was made (the window's epoch is decided when written).
    epoch: Option<i64>,
    renewal: Renewal,
}

/// The renewals waiting for the disk, oldest first.
#[derive(Debug, Default)]
pub struct Backlog {
    waiting: Vec<Unrecorded>,
    /// The last refusal, for messages.
    pub last_error: Option<String>,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn attempts(&self) -> usize {
        self.waiting.len()
    }

    /// Windows among them (what a lost record would cost).
    pub fn windows(&self) -> usize {
        self.waiting
            .iter()
            .filter(|u| u.renewal.window.is_some())
            .count()
    }

    /// Records `renewal`, after what waits (an agent's attempts stay in order). A write
    /// the disk refuses releases the reserve and is tried once more; refused again, it
    /// waits. Returns the windows recorded now (this one's and those that waited).
    pub fn record(
        &mut self,
        store: &mut Store,
        db: &Path,
        renewal: Renewal,
        address: &str,
        epoch: Option<i64>,
    ) -> Result<usize> {
        self.waiting.push(Unrecorded {
            address: address.to_string(),
            epoch,
            renewal,
        });
        self.flush(store, db)
    }

    /// Writes what waits, oldest first, until the disk refuses one. Returns the windows
    /// recorded. Errors other than the disk's are the caller's.
    pub fn flush(&mut self, store: &mut Store, db: &Path) -> Result<usize> {
        let mut counted = 0;
        while let Some(first) = self.waiting.first() {
            match write(store, db, &first.renewal) {
                Ok(c) => {
                    counted += usize::from(c);
                    self.waiting.remove(0);
                }
                Err(e) if e.is_storage() => {
                    if self.last_error.is_none() {
                        log::error!(
                            "{e}; renewals go on and their records wait in memory ({})",
                            describe_space(db)
                        );
                    }
                    self.last_error = Some(e.to_string());
                    return Ok(counted);
                }
                Err(e) => return Err(e),
            }
        }
        if self.last_error.take().is_some() {
            log::info!("the database takes writes again: every waiting record is written");
        }
        Ok(counted)
    }

    /// The due list as the records in memory have it: an agent whose last unrecorded
    /// attempt planned its next one later is not due; one that is due is planned from
    /// that attempt's outcome, not the database's older one.
    pub fn overlay(&self, due: Vec<DueAgent>, now: i64) -> Vec<DueAgent> {
        let last = self.latest();
        due.into_iter()
            .filter_map(|mut agent| {
                let Some(r) = last.get(&agent.id) else {
                    return Some(agent);
                };
                if r.next_attempt_ms > now {
                    return None;
                }
                agent.expected_end_ms = r.expected_end_ms;
                agent.backoff_step = r.backoff_step;
                agent.after_end = r.after_end;
                agent.since_probe = r.since_probe;
                agent.stale = r.stale;
                Some(agent)
            })
            .collect()
    }

    /// Agents with a record waiting, and their next attempt as planned in memory.
    pub fn planned(&self) -> Vec<(i64, i64)> {
        self.latest()
            .into_iter()
            .map(|(id, r)| (id, r.next_attempt_ms))
            .collect()
    }

    fn latest(&self) -> HashMap<i64, &Renewal> {
        self.waiting
            .iter()
            .map(|u| (u.renewal.agent_id, &u.renewal))
            .collect()
    }

    /// The error a `tick` ends with when records still wait: every window by agent and
    /// epoch, the disk and its free space, what to do.
    pub fn unrecorded_error(&self, db: &Path) -> Error {
        let windows: Vec<String> = self
            .waiting
            .iter()
            .filter(|u| u.renewal.window.is_some())
            .map(|u| match u.epoch {
                Some(e) => format!("{} epoch {e}", u.address),
                None => format!("{} epoch unknown", u.address),
            })
            .collect();
        let others = self.attempts() - windows.len();
        Error::NeedsHuman(format!(
            "{} windows could not be recorded ({}){}: {}; {}: free space (or make the database writable) and tick again; the streams themselves were renewed, but these windows are in no database and will not be billed",
            windows.len(),
            if windows.is_empty() { "none".to_string() } else { windows.join(", ") },
            if others > 0 { format!(" and {others} other attempts") } else { String::new() },
            self.last_error.as_deref().unwrap_or("database cannot be written"),
            describe_space(db),
        ))
    }
}

/// One write, with the reserve given back and a second try when the disk refuses it.
fn write(store: &mut Store, db: &Path, renewal: &Renewal) -> Result<bool> {
    match store.record_renewal(renewal) {
        Err(e) if e.is_storage() && release_reserve(db) => {
            log::error!(
                "{e}: released the {} MiB disk reserve so this tick's records fit; free space on the disk now ({})",
                RESERVE_BYTES >> 20,
                describe_space(db)
            );
            store.record_renewal(renewal)
        }
        other => other,
    }
}
