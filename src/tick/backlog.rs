//! Renewals whose records the disk did not take (full, read-only, failing): they wait here,
//! in memory, oldest first, and are written as soon as the database takes writes again.
//! A lapse costs the agent its funding, a missing record costs us one bill, and only the
//! second can be repaired later: renewals never wait for the disk.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::ops::disk::{describe_space, release_reserve, RESERVE_BYTES};
use crate::renewal::outcome::{DueAgent, Renewal};
use crate::store::Store;

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
