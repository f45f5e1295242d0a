//! The standby's two databases: the primary's copy (Litestream's, read-only, replaced or
//! rewritten underneath: read whole, never written, never locked) and its own, which
//! mirrors the copy's agents with a plan that renews one only when no window of it (in
//! the copy or its own) reaches past `now + lead`; and `absorb`, which brings the windows
//! the standby opened into the primary's ledger, each once.

use std::path::Path;

use rusqlite::{params, OptionalExtension};

use super::{recognize, Store, SCHEMA_VERSION};
use crate::chain::epochs::{Timeline, TIMELINE_KEY};
use crate::error::{Error, Result};

/// An agent as the primary's copy has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyAgent {
    pub address: String,
    /// As stored (encrypted with the key file both hosts share, or plain).
    pub stored_signature: String,
    pub fee_bps: i64,
    /// The primary renews it (active, not removed, not cancelled on the escrow).
    pub served: bool,
    /// The end of its window as the primary knows it.
    pub end_ms: Option<i64>,
    /// The primary's next attempt.
    pub next_ms: i64,
}

/// A window a (standby) database opened, for `absorb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedWindow {
    pub address: String,
    pub end_ms: i64,
    pub opened_ms: i64,
    pub observed: bool,
    /// The highest epoch seen before it opened.
    pub min_epoch: Option<i64>,
}

/// What the copy said at one pass.
#[derive(Debug, Clone, Default)]
pub struct CopyView {
    pub agents: Vec<CopyAgent>,
    /// The newest time the primary wrote (an epoch observation, a renewal attempt): how
    /// fresh the copy is.
    pub written_ms: Option<i64>,
}

/// A replicated copy's file as last read whole (modified time, length): unchanged, it need
/// not be read again (reading and applying the same copy changes nothing).
#[derive(Debug, Default)]
pub struct CopyStamp(Option<(std::time::SystemTime, u64)>);

impl CopyStamp {
    /// The file's stamp now, or `None` when it is unchanged since the last good read.
    pub fn changed(&self, path: &Path) -> Option<CopyStamp> {
        let now = std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        (now.is_none() || now != self.0).then_some(CopyStamp(now))
    }
}

/// Reads the copy whole. An error (missing, torn, another schema) leaves the caller's last
/// good view in place.
pub fn read_copy(path: &Path) -> Result<CopyView> {
    if !path.is_file() {
        return Err(Error::runtime(format!(
            "no copy at {} yet (is the Litestream follower running?)",
            path.display()
        )));
    }
    let conn = recognize::open_read_only(path)?;
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        return Err(Error::runtime(format!(
            "the copy {} has schema {version}, this binary {SCHEMA_VERSION}: run the same version on both hosts",
            path.display()
        )));
    }
    let mut stmt = conn.prepare(concat!(
        "SELECT address, stream_signature, fee_bps, removed_ms IS NULL AND ",
        super::served!(),
        ", expected_end_ms, next_attempt_ms FROM agents"
    ))?;
    let agents = stmt
        .query_map([], |r| {
            Ok(CopyAgent {
                address: r.get(0)?,
                stored_signature: r.get(1)?,
                fee_bps: r.get(2)?,
                served: r.get(3)?,
                end_ms: r.get(4)?,
                next_ms: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let attempted: Option<i64> =
        conn.query_row("SELECT MAX(attempted_ms) FROM attempts", [], |r| r.get(0))?;
    let observed = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [TIMELINE_KEY],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .as_deref()
        .and_then(Timeline::decode)
        .map(|t| t.observed_ms);
    Ok(CopyView {
        agents,
        written_ms: attempted.max(observed),
    })
}

impl Store {
    /// Mirrors the copy's agents into the standby's own database, in one transaction, and
    /// plans each one's attempt at `max(the copy's window end, its own) - lead` (an agent
    /// without a window: the primary's attempt + `lead`, its grace). Writes nothing for an
    /// agent whose row already says so. Returns the agents served.
    pub fn mirror(&mut self, view: &CopyView, lead_ms: i64, now: i64) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut served = 0;
        for a in &view.agents {
            let status = if a.served { "active" } else { "paused" };
            served += usize::from(a.served);
            let floor = match a.end_ms {
                Some(end) => end - lead_ms,
                None => a.next_ms + lead_ms,
            };
            tx.prepare_cached(
                "INSERT INTO agents (address, stream_signature, fee_bps, status, expected_end_ms,
                                     next_attempt_ms, enrolled_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (address) DO UPDATE SET
                    stream_signature = excluded.stream_signature, fee_bps = excluded.fee_bps,
                    status = excluded.status,
                    expected_end_ms = MAX(COALESCE(expected_end_ms, excluded.expected_end_ms),
                                          COALESCE(excluded.expected_end_ms, expected_end_ms)),
                    next_attempt_ms = MAX(next_attempt_ms, excluded.next_attempt_ms)
                 WHERE stream_signature IS NOT excluded.stream_signature
                    OR fee_bps IS NOT excluded.fee_bps OR status IS NOT excluded.status
                    OR next_attempt_ms < excluded.next_attempt_ms
                    OR COALESCE(expected_end_ms, 0) < COALESCE(excluded.expected_end_ms, 0)",
            )?
            .execute(params![
                a.address,
                a.stored_signature,
                a.fee_bps,
                status,
                a.end_ms,
                floor,
                now
            ])?;
        }
        tx.commit()?;
        Ok(served)
    }

    /// The windows this (standby) database opened, for `absorb`.
    pub fn opened_windows(&self) -> Result<Vec<OpenedWindow>> {
        let mut stmt = self.conn.prepare(
            "SELECT a.address, w.end_stream_ms, w.opened_ms, w.observed, w.min_epoch
             FROM stream_windows w JOIN agents a ON a.id = w.agent_id ORDER BY w.opened_ms",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(OpenedWindow {
                address: r.get(0)?,
                end_ms: r.get(1)?,
                opened_ms: r.get(2)?,
                observed: r.get(3)?,
                min_epoch: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Brings windows another database opened into this one's ledger, each once: a window
    /// already known by its end (counted here, e.g. observed as "already streaming" with
    /// `--count-observed-windows`) is skipped. They wait for their epoch like any window
    /// recorded while the gateway was down, so the next tick attributes and bills them.
    /// Returns (windows added, windows already known, windows of agents unknown here).
    pub fn absorb(&mut self, windows: &[OpenedWindow]) -> Result<(usize, usize, usize)> {
        let tx = self.conn.transaction()?;
        let (mut added, mut known, mut strangers) = (0, 0, 0);
        for w in windows {
            let id: Option<i64> = tx
                .prepare_cached("SELECT id FROM agents WHERE address = ?1")?
                .query_row([&w.address], |r| r.get(0))
                .optional()?;
            let Some(id) = id else {
                strangers += 1;
                continue;
            };
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO stream_windows (agent_id, end_stream_ms, opened_ms, observed, min_epoch)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, w.end_ms, w.opened_ms, w.observed, w.min_epoch])?;
            if n == 1 {
                added += 1;
            } else {
                known += 1;
            }
        }
        tx.commit()?;
        Ok((added, known, strangers))
    }
}

/// In the standby's own database: the last time its pass ran (its heartbeat). Once its copy
/// on the primary shows a heartbeat at `T`, every window the standby opened before `T` is
/// in that copy (one writer, replicated in order).
pub const ALIVE_KEY: &str = "standby_alive_ms";
/// In the primary's database: the standby's heartbeat as its copy last showed it.
pub const FRESH_KEY: &str = "standby_copy_fresh_ms";
/// The standby writes its heartbeat at least this often, and at every epoch change.
pub const HEARTBEAT_MS: i64 = 60_000;

/// What the primary reads of the standby's copy: the windows it opened, and how fresh it is.
#[derive(Debug, Clone, Default)]
pub struct StandbyCopy {
    pub windows: Vec<OpenedWindow>,
    pub fresh_ms: Option<i64>,
}

/// Reads the standby's database as replicated back to the primary (read-only, never
/// locked). An error (missing, torn, another schema) leaves the primary's view as it was.
pub fn read_standby_copy(path: &Path) -> Result<StandbyCopy> {
    let copy = Store::open_read_only(path)?.ok_or_else(|| {
        Error::runtime(format!(
            "the standby's copy {} is missing or not of this version (is its replication running?)",
            path.display()
        ))
    })?;
    Ok(StandbyCopy {
        windows: copy.opened_windows()?,
        fresh_ms: copy.meta_get_i64(ALIVE_KEY)?,
    })
}

impl Store {
    /// On the standby: its heartbeat, written when `HEARTBEAT_MS` passed
    /// or the epoch changed since the last (so its copy is soon fresh past every epoch end).
    pub fn standby_heartbeat(&self, now: i64) -> Result<()> {
        let last = self.meta_get_i64(ALIVE_KEY)?;
        let epoch_at = |t: i64| {
            self.timeline()
                .ok()
                .flatten()
                .and_then(|tl| tl.at(t))
                .map(|a| a.0)
        };
        let due = match last {
            None => true,
            Some(last) => now - last >= HEARTBEAT_MS || epoch_at(now) != epoch_at(last),
        };
        if due {
            self.meta_set(ALIVE_KEY, &now.to_string())?;
        }
        Ok(())
    }

    /// On the primary: the standby's heartbeat its copy showed, kept when it moves forward.
    pub fn set_standby_fresh(&self, fresh_ms: i64) -> Result<()> {
        if self.standby_fresh_ms()?.is_none_or(|f| fresh_ms > f) {
            self.meta_set(FRESH_KEY, &fresh_ms.to_string())?;
        }
        Ok(())
    }

    pub fn standby_fresh_ms(&self) -> Result<Option<i64>> {
        self.meta_get_i64(FRESH_KEY)
    }

    /// The end of `epoch` (the start of the next epoch known), when known.
    pub fn epoch_end(&self, epoch: i64) -> Result<Option<i64>> {
        Ok(self.conn.query_row(
            "SELECT MIN(start_ms) FROM epoch_starts WHERE epoch > ?1",
            [epoch],
            |r| r.get(0),
        )?)
    }

    /// Whether this host's own records show it did not renew an agent in time around an
    /// epoch `[start, end)`: two windows in a row with more than `tolerance_ms` between the
    /// first's end and the second's opening (or now, after the last one), the gap reaching
    /// into the epoch. A standby may
    /// have kept the stream alive there; its windows (once absorbed) close the gap.
    pub fn renewal_gap(
        &self,
        agent_id: i64,
        (start, end): (Option<i64>, i64),
        tolerance_ms: i64,
        now: i64,
    ) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM (
                 SELECT end_stream_ms AS ended,
                        COALESCE(LEAD(opened_ms) OVER (ORDER BY end_stream_ms), ?5) AS next_opened
                 FROM stream_windows WHERE agent_id = ?1
                   AND end_stream_ms >= COALESCE((SELECT MAX(end_stream_ms) FROM stream_windows
                                                  WHERE agent_id = ?1 AND end_stream_ms <= ?2), 0))
             WHERE next_opened - ended > ?4 AND ended < ?3 AND next_opened > ?2)",
            )?
            .query_row(
                params![agent_id, start.unwrap_or(0), end, tolerance_ms, now],
                |r| r.get(0),
            )?)
    }

    /// Records that an epoch is billed without waiting any longer for the standby's windows.
    pub fn mark_standby_clip(&self, agent_id: i64, epoch: i64, reason: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE usage_windows SET standby_clip = ?3 WHERE agent_id = ?1 AND epoch = ?2",
            params![agent_id, epoch, reason],
        )?;
        Ok(())
    }

    /// Epochs billed without the standby's windows whose end its copy has still not
    /// reached: (address, epoch, reason), for `check`.
    pub fn standby_clips_open(&self) -> Result<Vec<(String, i64, String)>> {
        let fresh = self.standby_fresh_ms()?.unwrap_or(i64::MIN);
        let mut stmt = self.conn.prepare(
            "SELECT a.address, u.epoch, u.standby_clip FROM usage_windows u
             JOIN agents a ON a.id = u.agent_id
             WHERE u.standby_clip IS NOT NULL
               AND COALESCE((SELECT MIN(start_ms) FROM epoch_starts s WHERE s.epoch > u.epoch),
                            9223372036854775807) > ?1
             ORDER BY u.epoch, a.address",
        )?;
        let rows = stmt.query_map([fresh], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
